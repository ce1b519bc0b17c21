"""`vdir init`: make a project folder from a video (frames stage).

Order matters for "never leave a half project": the options and the destination are checked,
then the video is decoded completely into memory, and only then is anything created or an old
project replaced. If writing fails, a folder this command created is removed again; an old
project (--force) is replaced all or nothing: the new frames are written beside it and every
stage folder and the manifest are swapped in together (project/atomic.replace_folders).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from videodirector_cli import __version__
from videodirector_cli.errors import LockedError, ProjectError, UsageError
from videodirector_cli.media.decode import DecodedClip, FrameChoice, decode
from videodirector_cli.media.fit import check_fit, fit_frame, parse_size
from videodirector_cli.media.frames import write_png
from videodirector_cli.output import Output
from videodirector_cli.project.atomic import TEMP_PREFIX, replace_folders, staging_dir
from videodirector_cli.project.fingerprint import hash_file, hash_files
from videodirector_cli.project.lock import is_locked
from videodirector_cli.project.manifest import (
    FramesRecord,
    Manifest,
    SourceInfo,
    StageProgress,
    utc_now,
)
from videodirector_cli.project.params import FramesParams
from videodirector_cli.project.paths import ProjectPaths
from videodirector_cli.project.store import (
    Project,
    is_project_dir,
    library_versions,
    read_manifest,
)
from videodirector_cli.settings.init import InitRequest
from videodirector_cli.stages.outcome import StageOutcome

CHECKPOINT_EVERY_S = 0.25
"""How often progress is written to the manifest while frames are saved."""


def check_destination(folder: Path, force: bool) -> bool:
    """Refuse what ``Project.create`` would refuse, before decoding; True if it is a project."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a folder", hint="give a folder for the project")
    if is_project_dir(folder):
        if not force:
            raise ProjectError(
                f"{folder} is already a vdir project", hint="use --force to start it over"
            )
        read_manifest(ProjectPaths(folder).manifest)  # a damaged manifest is refused, not replaced
        ProjectPaths(folder).refuse_links()  # never delete through a link
        if is_locked(ProjectPaths(folder).lock):
            raise LockedError(
                f"another vdir process is writing {folder}",
                hint="wait for it to finish, or stop it; nothing was changed",
            )
        return True
    if folder.is_dir() and any(folder.iterdir()):
        raise ProjectError(
            f"{folder} is not empty and not a vdir project",
            hint="choose an empty or new folder",
        )
    return False


def run_init(folder: Path, request: InitRequest, output: Output) -> StageOutcome:
    """`vdir init`: the one stage that makes its project, so it takes the folder."""
    request.check()
    choice = request.frame_choice()
    target = parse_size(request.size)
    fit = check_fit(request.fit)
    folder = Path(folder)
    replacing = check_destination(folder, request.force)

    with output.progress("decoding", total=choice.count) as bar:
        clip = decode(
            Path(request.video),
            choice,
            transform=lambda frame: fit_frame(frame, target, fit),
            on_frame=lambda done: bar.update(completed=done),
        )
    for warning in clip.warnings:
        output.warn(warning)
    from videodirector_cli.diffusion.windows import default_model_limits, long_clip_note

    note = long_clip_note(clip.frames.shape[0], default_model_limits())
    if note is not None:
        output.warn(note)
    source = _source_info(Path(request.video), clip, choice, target, fit)

    if replacing:
        project = Project.open(folder)
        _replace_project(project, request, choice, clip, source, output)
        return _result(project, source, clip, replaced=True)
    existed_before = folder.exists()
    project = Project.create(folder)
    try:
        _write_project(project, request, choice, clip, source, output)
    except BaseException:
        _remove_created(folder, existed_before)
        raise
    return _result(project, source, clip, replaced=False)


def _source_info(
    video: Path, clip: DecodedClip, choice: FrameChoice, target: tuple[int, int], fit: str
) -> SourceInfo:
    info = clip.info
    output_fps = choice.fps if choice.fps is not None else info.fps / choice.stride
    return SourceInfo(
        path=str(video.resolve()),
        sha256=hash_file(video),
        container=info.container,
        codec=info.codec,
        fps=info.fps,
        width=info.width,
        height=info.height,
        rotation=info.rotation,
        frame_count=info.frame_count,
        frame_times=clip.times,
        frame_indices=clip.indices,
        output_fps=output_fps,
        size=target,
        fit=fit,
    )


def _frames_params(choice: FrameChoice, source: SourceInfo) -> FramesParams:
    return FramesParams(
        frames=choice.count,
        start=choice.start.describe(),
        stride=choice.stride if choice.fps is None else None,
        fps=choice.fps,
        size=source.size,
        fit=source.fit,
    )


def _write_project(
    project: Project,
    request: InitRequest,
    choice: FrameChoice,
    clip: DecodedClip,
    source: SourceInfo,
    output: Output,
) -> None:
    """A new project: frames written in place, progress recorded as they are."""
    paths = project.paths
    count = len(clip.frames)
    with project.writing("init"):
        project.manifest = Manifest(vdir_version=__version__, prompt=request.prompt, source=source)
        params = _frames_params(choice, source)
        with project.stage(("frames", None), params, {"source": source.sha256}, total=count) as run:
            last_checkpoint = time.monotonic()
            with output.progress("writing frames", total=count) as bar:
                for index, frame in enumerate(clip.frames):
                    write_png(paths.frame(index), frame)
                    bar.advance(1)
                    if time.monotonic() - last_checkpoint > CHECKPOINT_EVERY_S:
                        run.checkpoint(index + 1)
                        last_checkpoint = time.monotonic()
            files = paths.frame_files(count)
            project.file_index.remember(files)
            run.record.outputs["frames"] = project.file_index.combined(files)


def _replace_project(
    project: Project,
    request: InitRequest,
    choice: FrameChoice,
    clip: DecodedClip,
    source: SourceInfo,
    output: Output,
) -> None:
    """`init --force`: the new frames are written beside the old project, then every stage
    folder and the manifest are swapped in together (project/atomic.replace_folders). Any
    failure before the new manifest is written (a full disk, Ctrl-C, kill -9) leaves the old
    project exactly as it was."""
    paths = project.paths
    count = len(clip.frames)
    with project.writing("init"):
        staging = staging_dir(paths.frames_dir)
        try:
            with output.progress("writing frames", total=count) as bar:
                for index, frame in enumerate(clip.frames):
                    write_png(staging / paths.frame(index).name, frame)
                    bar.advance(1)
            staged = [staging / f.name for f in paths.frame_files(count)]
            record = FramesRecord(
                status="done",
                params=_frames_params(choice, source),
                inputs={"source": source.sha256},
                outputs={"frames": hash_files(staged)},
                versions=library_versions(),
                finished_at=utc_now(),
                progress=StageProgress(done=count, total=count),
            )
            manifest = Manifest(
                vdir_version=__version__, prompt=request.prompt, source=source, frames=record
            )

            def commit() -> None:
                for folder in paths.stage_dirs:
                    project.file_index.forget_under(folder)
                project.file_index.remember(paths.frame_files(count))
                project.manifest = manifest
                project.save()

            targets: dict[Path, Path | None] = dict.fromkeys(paths.stage_dirs)
            targets[paths.frames_dir] = staging
            replace_folders(paths.root, paths.manifest, targets, commit)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for leftover in paths.root.glob(f"{TEMP_PREFIX}*"):  # of interrupted atomic writes
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _remove_created(folder: Path, existed_before: bool) -> None:
    """Undo a failed init of a new project: the folder goes back to how it was (absent or empty)."""
    if not existed_before:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _result(
    project: Project, source: SourceInfo, clip: DecodedClip, replaced: bool
) -> StageOutcome:
    width, height = source.size
    count = len(clip.frames)
    root = project.paths.root.resolve()
    data = {
        "project": str(root),
        "replaced": replaced,
        "frames": count,
        "size": [width, height],
        "fit": source.fit,
        "fps": source.output_fps,
        "frame_indices": source.frame_indices,
        "frame_times": source.frame_times,
        "source": {
            "path": source.path,
            "sha256": source.sha256,
            "container": source.container,
            "codec": source.codec,
            "width": source.width,
            "height": source.height,
            "rotation": source.rotation,
            "fps": source.fps,
            "frame_count": source.frame_count,
        },
        "next": "vdir invert",
    }
    first, last = source.frame_indices[0], source.frame_indices[-1]
    human = (
        f"{'Started over' if replaced else 'Created'} project {root}: {count} frames "
        f"{width}x{height} ({source.fit}) at {source.output_fps:.4g} fps, source frames "
        f"{first}..{last} of {Path(source.path).name}.\n"
        f"Next: vdir invert (optionally vdir mask first to limit the edit to an object)."
    )
    return StageOutcome(data, human)

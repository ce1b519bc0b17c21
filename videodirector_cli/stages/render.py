"""`vdir render`: H.264 videos and contact sheets of the source frames or of edits.

A render reads only files whose hashes the manifest vouches for: frames or an edit that changed
since they were recorded are refused as stale instead of being quietly encoded. Each render is
recorded with the hashes it was made from, so `vdir status` shows it stale once its edit is redone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videodirector_cli.errors import MissingPrerequisiteError, StaleError, UsageError
from videodirector_cli.media.encode import write_mp4
from videodirector_cli.media.fit import fit_frame
from videodirector_cli.media.frames import read_frames, read_masks, write_png
from videodirector_cli.media.sheet import contact_sheet, overlay_mask, side_by_side
from videodirector_cli.output import Output
from videodirector_cli.project import lineage
from videodirector_cli.project.fingerprint import hash_file, hash_files
from videodirector_cli.project.manifest import Manifest, stage_state
from videodirector_cli.project.store import Project
from videodirector_cli.stages.outcome import StageOutcome

SOURCE = "source"
"""The render name of the project's own frames (an edit cannot be called this)."""
DEFAULT_CRF = 18
SHEET_COLUMNS = 8
COMPARE_SHEET_COLUMNS = 4
SHEET_MAX_WIDTH = 2048
"""A quick look, not an archive: frames are shrunk so a sheet stays about this wide."""


@dataclass
class RenderRequest:
    names: list[str] = field(default_factory=list)
    """Empty: every up-to-date edit, or the source when there is none."""
    compare: bool = False
    out: Path | None = None
    crf: int = DEFAULT_CRF

    def check(self) -> None:
        if not 0 <= self.crf <= 51:
            raise UsageError(f"--crf {self.crf} is outside 0..51", hint="18 is visually lossless")
        if self.out is not None:
            if len(self.names) != 1:
                raise UsageError(
                    "--out needs exactly one NAME", hint="e.g. vdir render tiger --out tiger.mp4"
                )
            if self.out.suffix.lower() != ".mp4":
                raise UsageError(f"--out {self.out} must end in .mp4")
            if self.out.exists() and self.out.is_dir():
                raise UsageError(
                    f"--out {self.out} is a folder", hint="give a file name ending in .mp4"
                )


@dataclass
class Clip:
    """What one NAME renders: its frames and the lineage keys those frames came from."""

    name: str
    frames: np.ndarray
    input_keys: list[str]


def _current(manifest: Manifest) -> dict[str, str]:
    found = lineage.current_inputs(manifest)
    if manifest.source is not None:
        found["source"] = manifest.source.sha256
    return found


def _frame_count(project: Project) -> int:
    manifest = project.manifest
    state = stage_state(manifest.frames, _current(manifest), locked=False)
    if manifest.source is None or state != "done":
        raise MissingPrerequisiteError(
            f"the project has no usable frames yet (frames stage: {state})",
            hint="run: vdir init VIDEO --force",
        )
    return manifest.frame_count


def _verified(files: list[Path], expected: str | None, what: str, hint: str) -> list[Path]:
    """The files, if they are exactly those the manifest recorded."""
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise StaleError(f"{what}: {missing[0]} is missing", hint=hint)
    if expected is None or hash_files(files) != expected:
        raise StaleError(f"{what} changed since they were recorded in manifest.json", hint=hint)
    return files


def _source_clip(project: Project, count: int) -> Clip:
    assert project.manifest.frames is not None
    files = _verified(
        project.paths.frame_files(count),
        project.manifest.frames.outputs.get("frames"),
        "the frames in frames/",
        "run vdir init again with --force to re-extract them",
    )
    return Clip(SOURCE, read_frames(files), ["frames"])


def _edit_clip(project: Project, name: str, count: int) -> Clip:
    manifest = project.manifest
    record = manifest.edits.get(name)
    if record is None:
        known = ", ".join(sorted(manifest.edits)) or "none yet"
        raise MissingPrerequisiteError(
            f"there is no edit named {name!r} (edits: {known}; or '{SOURCE}' for the source)",
            hint='make it with: vdir edit "TARGET PROMPT"',
        )
    state = stage_state(record, _current(manifest), locked=False)
    if state == "stale":
        raise StaleError(
            f"edit {name!r} is stale: what it was made from has changed since",
            hint="run vdir edit again for it (vdir status shows what changed)",
        )
    if state != "done":
        raise MissingPrerequisiteError(
            f"edit {name!r} is {state}", hint="run vdir edit again for it, then render"
        )
    files = _verified(
        [project.paths.edit_frame(name, i) for i in range(count)],
        record.outputs.get("edit"),
        f"the frames of edit {name!r}",
        "run vdir edit again for it",
    )
    return Clip(name, read_frames(files), ["frames", f"edit:{name}"])


def _default_names(project: Project, output: Output) -> list[str]:
    manifest = project.manifest
    now = _current(manifest)
    names = []
    for name, record in manifest.edits.items():
        state = stage_state(record, now, locked=False)
        if state == "done":
            names.append(name)
        elif state == "stale":
            output.warn(f"skipping edit {name!r}: it is stale (run vdir edit again for it)")
    return names or [SOURCE]


def _masks(project: Project, count: int, output: Output) -> np.ndarray | None:
    """Current masks for the comparison's middle panel, or None (then the panel is left out)."""
    manifest = project.manifest
    state = stage_state(manifest.masks, _current(manifest), locked=False)
    if state == "missing":
        return None
    if state != "done":
        output.warn(f"the masks are {state}: the comparison leaves out the mask panel")
        return None
    assert manifest.masks is not None
    files = _verified(
        project.paths.mask_files(count),
        manifest.masks.outputs.get("masks"),
        "the masks in masks/",
        "run vdir mask again",
    )
    return read_masks(files)


def _as_size(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if frames.shape[2] == size[0] and frames.shape[1] == size[1]:
        return frames
    return np.stack([fit_frame(f, size, "stretch") for f in frames])


def _compare_panels(source: Clip, clip: Clip, masks: np.ndarray | None) -> list[np.ndarray]:
    """source | source with the mask tinted (when there are masks) | the edit."""
    height, width = source.frames.shape[1:3]
    panels = [source.frames]
    if masks is not None:
        panels.append(overlay_mask(source.frames, _as_size_masks(masks, (width, height))))
    if clip.name != SOURCE:
        panels.append(_as_size(clip.frames, (width, height)))
    return panels


def _as_size_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if masks.shape[2] == size[0] and masks.shape[1] == size[1]:
        return masks
    rgb = np.repeat(masks[..., None].astype(np.uint8) * 255, 3, axis=-1)
    return _as_size(rgb, size)[..., 0] >= 128


def _sheet(frames: np.ndarray, columns: int) -> np.ndarray:
    height, width = frames.shape[1:3]
    thumb_width = min(width, SHEET_MAX_WIDTH // min(columns, len(frames)))
    if thumb_width < width:
        thumb_height = max(1, round(height * thumb_width / width))
        frames = _as_size(frames, (thumb_width, thumb_height))
    return contact_sheet(frames, columns=columns)


def run_render(project: Project, request: RenderRequest, output: Output) -> StageOutcome:
    request.check()
    with project.writing("render"):
        count = _frame_count(project)
        source = _source_clip(project, count)
        names = request.names or _default_names(project, output)
        if request.out is not None and len(names) != 1:
            raise UsageError("--out needs exactly one NAME")
        clips = [source if n == SOURCE else _edit_clip(project, n, count) for n in names]
        masks = _masks(project, count, output) if request.compare else None
        rendered = []
        with output.progress("rendering", total=len(clips)) as bar:
            for clip in clips:
                rendered.append(_render_one(project, request, source, clip, masks, output))
                bar.advance(1)
    return _result(project, rendered)


def _render_one(
    project: Project,
    request: RenderRequest,
    source: Clip,
    clip: Clip,
    masks: np.ndarray | None,
    output: Output,
) -> dict[str, Any]:
    manifest = project.manifest
    assert manifest.source is not None
    fps = manifest.source.output_fps
    renders = project.paths.renders_dir
    panels = _compare_panels(source, clip, masks) if request.compare else []
    if request.compare and len(panels) < 2:
        output.warn(f"nothing to compare {clip.name!r} with (no masks, no edit): plain render only")
    compare = len(panels) >= 2
    video = renders / f"{clip.name}.mp4"
    compare_video = renders / f"{clip.name}_compare.mp4"
    if request.out is not None:
        if compare:
            compare_video = request.out
        else:
            video = request.out

    keys = list(clip.input_keys) + (["masks"] if compare else [])
    inputs = lineage.inputs_for(manifest, keys, use_masks=masks is not None)
    params = {"crf": request.crf, "compare": compare, "fps": fps, "out": str(request.out or "")}
    with project.stage(("renders", clip.name), params, inputs, total=2 if compare else 1) as run:
        written = {"video": video, "sheet": video.with_suffix(".png")}
        write_mp4(video, clip.frames, fps=fps, crf=request.crf)
        write_png(written["sheet"], _sheet(clip.frames, SHEET_COLUMNS))
        if compare:
            joined = side_by_side(panels)
            written["compare"] = compare_video
            written["compare_sheet"] = compare_video.with_suffix(".png")
            run.checkpoint(1)
            write_mp4(compare_video, joined, fps=fps, crf=request.crf)
            write_png(written["compare_sheet"], _sheet(joined, COMPARE_SHEET_COLUMNS))
        for key, path in written.items():
            run.record.outputs[key] = hash_file(path)
        height, width = clip.frames.shape[1:3]
        run.record.metrics.update({"frames": len(clip.frames), "width": width, "height": height})
    return {
        "name": clip.name,
        "frames": len(clip.frames),
        "size": [width, height],
        "fps": fps,
        "crf": request.crf,
        "panels": len(panels) if compare else 1,
        **{key: str(path) for key, path in written.items()},
    }


def _result(project: Project, rendered: list[dict[str, Any]]) -> StageOutcome:
    lines = []
    for item in rendered:
        line = (
            f"{item['name']}: {item['video']} ({item['frames']} frames, "
            f"{item['size'][0]}x{item['size'][1]}, {item['fps']:.4g} fps) and {item['sheet']}"
        )
        if "compare" in item:
            line += f"\n  comparison ({item['panels']} panels): {item['compare']}"
        lines.append(line)
    data = {"project": str(project.paths.root.resolve()), "renders": rendered}
    return StageOutcome(data, "\n".join(lines))

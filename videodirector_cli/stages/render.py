"""`vdir render`: H.264 videos and contact sheets of the source frames or of edits.

A render reads only files whose hashes the manifest vouches for: frames or an edit that changed
since they were recorded are refused as stale instead of being quietly encoded. Each render is
recorded with the hashes it was made from, so `vdir status` shows it stale once its edit is redone.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np

from videodirector_cli.errors import MissingPrerequisiteError, UsageError
from videodirector_cli.media.encode import write_mp4
from videodirector_cli.media.fit import fit_frame
from videodirector_cli.media.frames import read_frames, write_png
from videodirector_cli.media.sheet import contact_sheet, overlay_mask, side_by_side
from videodirector_cli.output import Output
from videodirector_cli.project import lineage
from videodirector_cli.project.atomic import move_into_place, staging_dir
from videodirector_cli.project.fingerprint import hash_file
from videodirector_cli.project.manifest import stage_state
from videodirector_cli.project.params import RenderParams
from videodirector_cli.project.readers import frames_info, read_edit_frames, read_project_masks
from videodirector_cli.project.store import Project
from videodirector_cli.settings.render import RenderRequest
from videodirector_cli.stages.common import SOURCE, done_edit, done_edits
from videodirector_cli.stages.outcome import StageOutcome

SHEET_COLUMNS = 8
COMPARE_SHEET_COLUMNS = 4
SHEET_MAX_WIDTH = 2048
"""A quick look, not an archive: frames are shrunk so a sheet stays about this wide."""


@dataclass
class Clip:
    """What one NAME renders: its frames and the lineage keys those frames came from."""

    name: str
    frames: np.ndarray
    input_keys: list[str]


def _source_clip(project: Project) -> Clip:
    info = frames_info(project)
    if project.manifest.source is None:
        raise MissingPrerequisiteError(
            "the project records no source video", hint="run: vdir init VIDEO --force"
        )
    return Clip(SOURCE, read_frames(info.files), ["frames"])


def _edit_clip(project: Project, name: str) -> Clip:
    record = done_edit(project, name, also=f"; or '{SOURCE}' for the source")
    return Clip(name, read_edit_frames(project, name, record), ["frames", f"edit:{name}"])


def _masks(project: Project, output: Output) -> np.ndarray | None:
    """Current masks for the comparison's middle panel, or None (then the panel is left out)."""
    manifest = project.manifest
    state = stage_state(manifest.masks, lineage.current_inputs(manifest), locked=False)
    if state == "missing":
        return None
    if state != "done":
        output.warn(f"the masks are {state}: the comparison leaves out the mask panel")
        return None
    return read_project_masks(project)


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
        source = _source_clip(project)
        names = list(request.names) or done_edits(project, output) or [SOURCE]
        if request.out is not None and len(names) != 1:
            raise UsageError(
                f"--out writes one video, and there are {len(names)} edits to render "
                f"({', '.join(names)})",
                hint="name one: vdir render NAME --out FILE.mp4",
            )
        clips = [source if n == SOURCE else _edit_clip(project, n) for n in names]
        masks = _masks(project, output) if request.compare else None
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
    video = project.paths.render_file(clip.name, ".mp4")
    compare_video = project.paths.render_file(f"{clip.name}_compare", ".mp4")
    if request.out is not None:
        if compare:
            compare_video = request.out
        else:
            video = request.out

    keys = list(clip.input_keys) + (["masks"] if compare else [])
    inputs = lineage.inputs_for(manifest, keys, use_masks=masks is not None)
    params = RenderParams(crf=request.crf, compare=compare, fps=fps, out=str(request.out or ""))
    written = {"video": video, "sheet": video.with_suffix(".png")}
    if compare:
        written["compare"] = compare_video
        written["compare_sheet"] = compare_video.with_suffix(".png")
    renders.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(renders)
    staged = {key: staging / f"{key}{path.suffix}" for key, path in written.items()}
    try:
        with project.stage(("renders", clip.name), params, inputs, total=len(written) // 2) as run:
            # Every file is made in the staging folder first: a failure (a full disk) leaves
            # neither a half set nor unrecorded files in renders/.
            write_mp4(staged["video"], clip.frames, fps=fps, crf=request.crf)
            write_png(staged["sheet"], _sheet(clip.frames, SHEET_COLUMNS))
            if compare:
                joined = side_by_side(panels)
                run.checkpoint(1)
                write_mp4(staged["compare"], joined, fps=fps, crf=request.crf)
                write_png(staged["compare_sheet"], _sheet(joined, COMPARE_SHEET_COLUMNS))
            for key, path in written.items():
                run.record.outputs[key] = hash_file(staged[key])
                move_into_place(staged[key], path)
            height, width = clip.frames.shape[1:3]
            run.record.metrics.update(
                {"frames": len(clip.frames), "width": width, "height": height}
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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

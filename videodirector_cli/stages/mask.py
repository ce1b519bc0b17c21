"""`vdir mask`: one binary mask per frame marking what the edit may change.

Three ways to get them: SAM2 tracking prompts from one frame, importing the user's own masks, or a
static box/ellipse (a crude fallback). Optionally each mask is OR-ed with its fitted ellipse
(supplementary III). Everything is computed and checked before the project is touched; the new set
is written to a temp folder beside masks/ and swapped in, so a failure or an empty result leaves
the previous masks exactly as they were.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from videodirector_cli.errors import InputError
from videodirector_cli.masks import importer, sam2_backend, shapes
from videodirector_cli.masks.ellipse import add_ellipse
from videodirector_cli.output import Output
from videodirector_cli.project import lineage
from videodirector_cli.project.atomic import recover_dir, replace_dir, staging_dir
from videodirector_cli.project.fingerprint import short
from videodirector_cli.project.manifest import NO_MASK
from videodirector_cli.project.params import MaskParams
from videodirector_cli.project.paths import ProjectPaths
from videodirector_cli.project.readers import FramesInfo, frames_info
from videodirector_cli.project.store import Project
from videodirector_cli.settings.mask import MaskRequest
from videodirector_cli.stages.outcome import StageOutcome

DEFAULT_PREVIEW_FPS = 8.0
SHEET_THUMB_WIDTH = 256


def _check_against_frames(request: MaskRequest, info: FramesInfo) -> None:
    if request.method == "sam2":
        shapes.check_frame_index(request.frame or 0, info.count)
    shapes.check_inside(request.points, request.box, info.width, info.height)


def _compute(
    request: MaskRequest, info: FramesInfo, frames: np.ndarray, output: Output
) -> tuple[np.ndarray, dict[str, Any]]:
    """The masks and the params that say how they were made. Writes nothing."""
    size = (info.width, info.height)
    if request.method == "import":
        assert request.from_dir is not None
        folder = request.from_dir.expanduser().resolve()
        masks = importer.import_masks(folder, info.count, size)
        return masks, {"from_dir": str(folder)}
    if request.method == "shape":
        assert request.box is not None
        kind = request.shape or "box"
        masks = shapes.static_masks(info.count, (info.height, info.width), request.box, kind)
        return masks, {"box": request.box.as_list(), "shape": kind}
    choice = sam2_backend.choose(
        request.sam2_size, request.sam2_checkpoint, request.sam2_config, request.sam2_image_size
    )
    weights = sam2_backend.locate_weights(choice, info=output.info)
    device = sam2_backend.resolve_device(request.device)
    if choice.is_random:
        output.warn("SAM2 with random weights: the masks are meaningless (for tests only)")
    output.info(f"SAM2 {weights.label} on {device}")
    predictor = sam2_backend.build_predictor(weights, device, image_size=choice.image_size)
    frame = request.frame or 0
    with output.progress("SAM2 tracking", total=info.count) as bar:
        masks = sam2_backend.segment_video(
            predictor,
            frames,
            request.points,
            request.box,
            frame,
            device,
            on_frame=lambda _index: bar.advance(1),
        )
    params = {
        "points": [[p.x, p.y, p.label] for p in request.points],
        "box": request.box.as_list() if request.box is not None else None,
        "frame": frame,
        "sam2": choice.describe(),
        "device": device,
    }
    return masks, params


def _preview_fps(project: Project) -> float:
    source = project.manifest.source
    return (
        float(source.output_fps)
        if source is not None and source.output_fps > 0
        else DEFAULT_PREVIEW_FPS
    )


def _thumbnails(images: np.ndarray, width: int) -> np.ndarray:
    from PIL import Image

    _, height, full_width, _ = images.shape
    if full_width <= width:
        return images
    size = (width, max(1, round(height * width / full_width)))
    return np.stack(
        [np.asarray(Image.fromarray(im).resize(size, Image.Resampling.BILINEAR)) for im in images]
    )


def _write_set(staging: Path, masks: np.ndarray, frames: np.ndarray, fps: float) -> None:
    """Mask PNGs, contact sheet and overlay video, all in the staging folder."""
    from videodirector_cli.media.encode import write_mp4
    from videodirector_cli.media.frames import write_mask, write_png
    from videodirector_cli.media.sheet import contact_sheet, overlay_mask

    layout = ProjectPaths(staging.parent)
    for index, mask in enumerate(masks):
        write_mask(staging / layout.mask(index).name, mask)
    overlays = overlay_mask(frames, masks)
    write_png(
        staging / layout.mask_sheet.name, contact_sheet(_thumbnails(overlays, SHEET_THUMB_WIDTH))
    )
    write_mp4(staging / layout.mask_overlay_video.name, overlays, fps)


def _stale_dependents(project: Project, masks_hash: str) -> list[str]:
    stale = []
    for kind, records in (
        ("inversion", project.manifest.inversions),
        ("edit", project.manifest.edits),
    ):
        for name, record in records.items():
            used = record.inputs.get("masks")
            if used not in (None, NO_MASK) and used != masks_hash:
                stale.append(f"{kind} {name}")
    return stale


def run_mask(project: Project, request: MaskRequest, output: Output) -> StageOutcome:
    """Make, store and record the project's masks; return the command's result."""
    request.check()
    with project.writing("mask"):
        info = frames_info(project)
        _check_against_frames(request, info)
        from videodirector_cli.media.frames import read_frames

        frames = read_frames(info.files)
        masks, details = _compute(request, info, frames, output)
        if masks.shape != (info.count, info.height, info.width):
            raise InputError(
                f"masks have shape {masks.shape}, frames {(info.count, info.height, info.width)}"
            )
        if not masks.any():
            raise InputError(
                "the object was not found in any frame; the previous masks are unchanged",
                hint="try other points or a box, add negative points with X,Y,0, or use --from DIR",
            )
        empty = [int(i) for i in np.nonzero(~masks.reshape(info.count, -1).any(axis=1))[0]]
        if empty:
            output.warn(
                f"no mask on frame(s) {', '.join(map(str, empty))} (object not found there)"
            )
        ellipse = request.uses_ellipse
        if ellipse:
            masks = add_ellipse(masks)
        coverage = [round(float(m.mean()), 6) for m in masks]
        params = MaskParams(method=request.method, **details, ellipse=ellipse)

        recover_dir(project.paths.masks_dir)
        staging = staging_dir(project.paths.masks_dir)
        try:
            _write_set(staging, masks, frames, _preview_fps(project))
            inputs = lineage.inputs_for(project.manifest, ["frames"])
            with project.stage(
                ("masks", None), params=params, inputs=inputs, keep_previous=True
            ) as run:
                replace_dir(staging, project.paths.masks_dir)
                written = project.paths.mask_files(info.count)
                project.file_index.remember(written)
                masks_hash = project.file_index.combined(written)
                run.record.outputs["masks"] = masks_hash
                run.record.metrics.update(
                    coverage=coverage,
                    mean_coverage=round(float(np.mean(coverage)), 6),
                    empty_frames=empty,
                )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        stale = _stale_dependents(project, masks_hash)

    paths = project.paths
    mean_coverage = round(float(np.mean(coverage)), 6)
    result: dict[str, Any] = {
        "method": request.method,
        "frames": info.count,
        "size": [info.width, info.height],
        "ellipse": ellipse,
        "coverage": coverage,
        "mean_coverage": mean_coverage,
        "empty_frames": empty,
        "masks_dir": str(paths.masks_dir),
        "preview": str(paths.mask_sheet),
        "video": str(paths.mask_overlay_video),
        "masks_hash": short(masks_hash),
        "now_stale": stale,
        "params": params.model_dump(mode="json", exclude_none=True),
    }
    human = (
        f"masks: {info.count} frames ({request.method}{', ellipse' if ellipse else ''}), "
        f"mean coverage {100 * mean_coverage:.1f}% -> {paths.masks_dir}\n"
        f"preview: {paths.mask_sheet}, {paths.mask_overlay_video}"
    )
    if stale:
        human += f"\nnow stale (made with the previous masks): {', '.join(stale)}"
    return StageOutcome(result, human)

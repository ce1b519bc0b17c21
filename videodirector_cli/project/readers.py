"""Read a project's frames, masks and edits only as the manifest vouches for them.

Every stage reads these files through here: the files must all be present and hash to what the
stage that wrote them recorded, else one StaleError names what changed and which command makes
it again. Nothing is ever read "as it happens to be on disk".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from videodirector_cli.errors import MissingPrerequisiteError, StaleError
from videodirector_cli.project import lineage
from videodirector_cli.project.file_index import FileIndex
from videodirector_cli.project.manifest import EditRecord, stage_state

if TYPE_CHECKING:
    import numpy as np

    from videodirector_cli.project.store import Project

EDIT_LATENTS = "latents.safetensors"
"""The final latents of an edit, beside its frames in ``edits/<name>/``."""
MASKS_FIX = "run vdir mask again, or pass --mask none to work without masks"


def problem(
    files: list[Path], recorded: str | None, what: str, writer: str, index: FileIndex
) -> str | None:
    """Why ``files`` are not what ``vdir <writer>`` recorded (a missing file, changed content,
    naming the first file that differs), or None when they are. Cheap first: files whose size
    and mtime are what vdir saw are not hashed again (``index``)."""
    missing = [f for f in files if not f.is_file()]
    if missing:
        return f"{what}: {missing[0]} is missing"
    if recorded is not None and index.combined(files) == recorded:
        index.remember(files)
        return None
    folder = files[0].parent if files else "?"
    changed = index.changed(files)
    detail = ""
    if changed:
        first = changed[0]
        how = "is truncated" if index.shrunk(first) else "differs"
        detail = (
            f" ({first.name} {how}{f' and {len(changed) - 1} more' if len(changed) > 1 else ''})"
        )
    return f"{what} in {folder} changed after vdir {writer} wrote them{detail}"


def verified(
    files: list[Path], recorded: str | None, what: str, writer: str, hint: str, index: FileIndex
) -> list[Path]:
    """``files`` if they are exactly what the manifest recorded, else StaleError."""
    found = problem(files, recorded, what, writer, index)
    if found is not None:
        raise StaleError(found, hint=hint)
    return files


def frames_problem(project: Project) -> str | None:
    """What is wrong with the frame files of a done frames record (None: nothing)."""
    manifest = project.manifest
    if manifest.frames is None:
        return None
    files = project.paths.frame_files(manifest.frame_count)
    recorded = manifest.frames.outputs.get("frames")
    return problem(files, recorded, "the frames", "init", project.file_index)


def masks_problem(project: Project) -> str | None:
    """What is wrong with the mask files of a done masks record (None: nothing)."""
    record = project.manifest.masks
    if record is None:
        return None
    files = project.paths.mask_files(project.manifest.frame_count)
    return problem(files, record.outputs.get("masks"), "the masks", "mask", project.file_index)


# ----------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class FramesInfo:
    count: int
    width: int
    height: int
    files: list[Path]


def frames_info(project: Project) -> FramesInfo:
    """The project's verified frame files, their count and size (masks must match them)."""
    manifest = project.manifest
    state = stage_state(manifest.frames, lineage.current_inputs(manifest), locked=False)
    if state == "missing" or (state == "done" and manifest.frame_count == 0):
        raise MissingPrerequisiteError(
            "the project has no frames yet", hint="make them with: vdir init VIDEO DIR"
        )
    if state != "done" or manifest.frames is None:
        raise MissingPrerequisiteError(
            f"the project has no usable frames yet (frames stage: {state})",
            hint="run: vdir init VIDEO --force",
        )
    files = verified(
        project.paths.frame_files(manifest.frame_count),
        manifest.frames.outputs.get("frames"),
        "the frames",
        "init",
        "run vdir init again with --force to re-extract them",
        project.file_index,
    )
    from PIL import Image

    with Image.open(files[0]) as first:
        width, height = first.size
    return FramesInfo(len(files), width, height, files)


def read_project_frames(project: Project) -> np.ndarray:
    """(F, H, W, 3) uint8: the project's frames as vdir init wrote them."""
    from videodirector_cli.media.frames import read_frames

    return read_frames(frames_info(project).files)


# ----------------------------------------------------------------------------- masks


def read_project_masks(project: Project) -> np.ndarray | None:
    """(F, H, W) bool masks for inversion and editing; None when the project has none.

    Raises StaleError when they were made for other frames, when their count or size differs
    from the frames, or when the files changed after ``vdir mask`` wrote them (their recorded
    hash is what later stages record as their "masks" input).
    """
    from videodirector_cli.media.frames import read_masks

    record = project.manifest.masks
    if record is None:
        return None
    if record.status != "done":
        raise MissingPrerequisiteError(
            f"the last 'vdir mask' run is {record.status}", hint=MASKS_FIX
        )
    now = lineage.current_inputs(project.manifest)
    if record.inputs.get("frames") != now.get("frames"):
        raise StaleError("the masks were made for other frames", hint=MASKS_FIX)
    info = frames_info(project)
    present = sorted(p for p in project.paths.masks_dir.glob("*.png") if p.stem.isdigit())
    expected = project.paths.mask_files(info.count)
    if present != expected:
        raise StaleError(
            f"{project.paths.masks_dir} holds {len(present)} masks for {info.count} frames",
            hint=MASKS_FIX,
        )
    verified(
        expected,
        record.outputs.get("masks"),
        "the masks",
        "mask",
        "bring edited masks in with: vdir mask --from DIR",
        project.file_index,
    )
    masks = read_masks(expected)
    if masks.shape[1:] != (info.height, info.width):
        raise StaleError(
            f"the masks are {masks.shape[2]}x{masks.shape[1]}, the frames {info.width}x{info.height}",
            hint=MASKS_FIX,
        )
    return masks


# ----------------------------------------------------------------------------- edits


def edit_frame_files(project: Project, name: str, record: EditRecord) -> list[Path]:
    count = int(record.metrics.get("frames", project.manifest.frame_count))
    return [project.paths.edit_frame(name, i) for i in range(count)]


def edit_problem(project: Project, name: str, record: EditRecord) -> str | None:
    """What is wrong with an edit's frames and latents (None: exactly what vdir edit recorded)."""
    latents = project.paths.edit_dir(name) / EDIT_LATENTS
    frames = edit_frame_files(project, name, record)
    index = project.file_index
    what = f"the frames of edit {name!r}"
    found = problem(frames, record.outputs.get("edit"), what, "edit", index)
    if found is not None:
        return found
    recorded = record.outputs.get("latents")
    if recorded is None:
        return None  # an edit recorded before its latents were (schema 1)
    if not latents.is_file():
        return f"the latents of edit {name!r}: {latents} is missing"
    if index.digest(latents) != recorded:
        return f"the latents of edit {name!r} ({latents}) changed after vdir edit wrote them"
    index.remember([latents])
    return None


def edit_intact(project: Project, name: str, record: EditRecord) -> bool:
    """True when an edit's frames and latents are exactly what vdir edit recorded (an edit that
    recorded no latents is made again)."""
    return "latents" in record.outputs and edit_problem(project, name, record) is None


def read_edit_frames(project: Project, name: str, record: EditRecord) -> np.ndarray:
    """(F, H, W, 3) uint8: an edit's decoded frames as vdir edit wrote them."""
    from videodirector_cli.media.frames import read_frames

    files = verified(
        edit_frame_files(project, name, record),
        record.outputs.get("edit"),
        f"the frames of edit {name!r}",
        "edit",
        "run vdir edit again for it",
        project.file_index,
    )
    return read_frames(files)

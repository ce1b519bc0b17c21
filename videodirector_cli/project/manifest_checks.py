"""Rules a manifest.json must keep beyond its types: nothing read from it is trusted.

A hand-edited or crafted manifest could name an edit ``../../outside`` (and so make a command
write outside the project) or a frame count of ten million. Every name that becomes a path is
checked with the command line's rule (project/names.py) and every number read back is checked
for range; the first rule broken is reported as damage, as a syntax error is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from videodirector_cli.errors import UsageError
from videodirector_cli.project.manifest import Manifest, StageRecord
from videodirector_cli.project.names import NAME_RULE, SOURCE, is_edit_name, is_plain_name

MAX_FRAMES = 100_000
MAX_SIDE = 16_384
MAX_STEPS = 10_000
MAX_FPS = 10_000.0


def manifest_problems(manifest: Manifest) -> Iterator[tuple[str, str]]:
    """(where, what is wrong) for every rule ``manifest`` breaks, in reading order."""
    yield from _source(manifest)
    if manifest.frames is not None:
        params = manifest.frames.params
        yield from _count("frames.params.frames", params.frames, 0, MAX_FRAMES)
        yield from _size("frames.params.size", params.size)
        if params.stride is not None:
            yield from _count("frames.params.stride", params.stride, 1, MAX_FRAMES)
        if params.fps is not None:
            yield from _rate("frames.params.fps", params.fps)
        yield from _record("frames", manifest.frames)
    if manifest.masks is not None:
        yield from _record("masks", manifest.masks)
    for key, inversion in manifest.inversions.items():
        where = f"inversions.{key}"
        if not is_plain_name(key):
            yield where, f"the key is not a plain folder name ({NAME_RULE})"
            continue
        if inversion.params.key not in (None, key):
            yield f"{where}.params.key", f"{inversion.params.key!r} is not the record's key"
        yield from _settings(f"{where}.params.settings", inversion.params.settings)
        yield from _record(where, inversion)
    current = manifest.current_inversion
    if current is not None and not is_plain_name(current):
        yield "current_inversion", f"{current!r} is not a plain folder name ({NAME_RULE})"
    for name, edit in manifest.edits.items():
        where = f"edits.{name}"
        if not is_edit_name(name):
            yield where, f"the name is not usable as a folder name ({NAME_RULE}, not 'source')"
            continue
        if edit.params.inversion and not is_plain_name(edit.params.inversion):
            yield f"{where}.params.inversion", "not a plain inversion key"
        yield from _settings(f"{where}.params.settings", edit.params.settings)
        if "frames" in edit.metrics:
            yield from _count(f"{where}.metrics.frames", edit.metrics["frames"], 0, MAX_FRAMES)
        yield from _record(where, edit)
    for name, render in manifest.renders.items():
        where = f"renders.{name}"
        if name != SOURCE and not is_edit_name(name):
            yield where, f"the name is not usable as a file name ({NAME_RULE})"
            continue
        yield from _count(f"{where}.params.crf", render.params.crf, 0, 51)
        yield from _rate(f"{where}.params.fps", render.params.fps)
        yield from _record(where, render)


def _source(manifest: Manifest) -> Iterator[tuple[str, str]]:
    source = manifest.source
    if source is None:
        return
    yield from _rate("source.fps", source.fps)
    yield from _rate("source.output_fps", source.output_fps)
    yield from _count("source.width", source.width, 1, 1 << 20)
    yield from _count("source.height", source.height, 1, 1 << 20)
    yield from _size("source.size", source.size)
    if source.frame_count is not None:
        yield from _count("source.frame_count", source.frame_count, 0, 1 << 40)
    if any(not isinstance(i, int) or i < 0 for i in source.frame_indices):
        yield "source.frame_indices", "a frame index below 0"
    if any(not math.isfinite(t) for t in source.frame_times):
        yield "source.frame_times", "a time that is not a finite number"


def _record(where: str, record: StageRecord) -> Iterator[tuple[str, str]]:
    if record.progress is not None:
        yield from _count(f"{where}.progress.done", record.progress.done, 0, 1 << 31)
        yield from _count(f"{where}.progress.total", record.progress.total, 0, 1 << 31)


def _settings(where: str, settings: object) -> Iterator[tuple[str, str]]:
    """A stored settings model must pass the checks the command line applies to it."""
    steps = getattr(settings, "steps", None)
    if steps is not None:
        yield from _count(f"{where}.steps", steps, 1, MAX_STEPS)
    check = getattr(settings, "check", None)
    if check is None:
        return
    try:
        check()
    except UsageError as exc:
        yield where, exc.message


def _count(where: str, value: object, low: int, high: int) -> Iterator[tuple[str, str]]:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        yield where, f"{value!r} is not a whole number in {low}..{high}"


def _rate(where: str, value: float) -> Iterator[tuple[str, str]]:
    if not math.isfinite(value) or not 0 < value <= MAX_FPS:
        yield where, f"{value!r} is not a frame rate in (0, {MAX_FPS:g}]"


def _size(where: str, size: tuple[int, int]) -> Iterator[tuple[str, str]]:
    for side in size:
        yield from _count(where, side, 1, MAX_SIDE)

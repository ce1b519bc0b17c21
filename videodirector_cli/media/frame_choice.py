"""Which frames of a video to take: how many, from where (an index or a time), how spaced."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from videodirector_cli.errors import UsageError


@dataclass(frozen=True)
class Start:
    """Where the chosen frames begin: a frame index (``12``) or a time in seconds (``1.5s``)."""

    index: int | None = None
    seconds: float | None = None

    def describe(self) -> str:
        return f"{self.seconds:g}s" if self.seconds is not None else f"frame {self.index or 0}"


_START_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s)?\s*$")


def parse_start(text: str | int | None) -> Start:
    """``"12"`` is frame index 12; ``"1.5s"``, ``"2s"`` or ``"1.5"`` (a decimal point) are seconds."""
    if text is None:
        return Start(index=0)
    match = _START_PATTERN.match(str(text))
    if not match:
        raise UsageError(
            f"--start {text!r} is neither a frame index nor a time",
            hint="use a frame index (--start 12) or seconds (--start 1.5s)",
        )
    number, seconds_suffix = match.group(1), match.group(2)
    if seconds_suffix or "." in number:
        return Start(seconds=float(number))
    return Start(index=int(number))


@dataclass(frozen=True)
class FrameChoice:
    """Which frames to take: ``count`` of them from ``start``, every ``stride``-th or at ``fps``."""

    count: int = 16
    start: Start = field(default_factory=Start)
    stride: int = 1
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.count < 1:
            raise UsageError(f"--frames {self.count}: need at least one frame")
        if self.stride < 1:
            raise UsageError(f"--stride {self.stride}: must be 1 or more")
        if self.fps is not None and not (self.fps > 0 and math.isfinite(self.fps)):
            raise UsageError(f"--fps {self.fps}: must be a positive number")

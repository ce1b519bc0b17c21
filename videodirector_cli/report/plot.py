"""A small SVG line plot (the inversion's per-step loss), drawn here so the page needs no
plotting library and no network."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LinePlot:
    """What the template draws: the polyline's points in a width x height box and its labels."""

    points: str
    width: int
    height: int
    y_top: str
    y_bottom: str
    x_last: str
    log: bool


def line_plot(values: Sequence[float], width: int = 320, height: int = 120) -> LinePlot | None:
    """Values over steps; a log scale when they span more than a decade (losses do)."""
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if len(finite) < 2:
        return None
    log = min(finite) > 0 and max(finite) / min(finite) > 10
    scaled = [math.log10(v) if log else float(v) for v in finite]
    low, high = min(scaled), max(scaled)
    span = (high - low) or 1.0
    margin = 4
    points = []
    for index, value in enumerate(scaled):
        x = margin + index * (width - 2 * margin) / (len(scaled) - 1)
        y = margin + (high - value) * (height - 2 * margin) / span
        points.append(f"{x:.1f},{y:.1f}")
    return LinePlot(
        points=" ".join(points),
        width=width,
        height=height,
        y_top=f"{max(finite):.3g}",
        y_bottom=f"{min(finite):.3g}",
        x_last=str(len(finite)),
        log=log,
    )

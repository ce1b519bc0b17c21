"""Prompts in the project's frame pixels (--point, --box) and the masks drawn straight from a box.

Coordinates are continuous pixels of the project's frames (the PNGs under frames/, after
``vdir init`` resized them): x to the right, y down, origin at the top-left corner of the top-left
pixel, so a W x H frame spans [0, W] x [0, H] and pixel (row i, column j) has its centre at
(j + 0.5, i + 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from videodirector_cli.errors import UsageError
from videodirector_cli.masks.ellipse import Ellipse, ellipse_mask
from videodirector_cli.settings.mask import Box, Point

__all__ = ["Box", "Point", "parse_box", "parse_point", "static_masks"]


def _numbers(text: str, option: str, counts: tuple[int, ...], form: str) -> list[float]:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in counts:
        raise UsageError(
            f"{option} {text!r} is not {form}", hint=f"for example {option} {_example(option)}"
        )
    values: list[float] = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise UsageError(
                f"{option} {text!r}: {part!r} is not a number", hint=f"expected {form}"
            ) from None
        if not math.isfinite(value):
            raise UsageError(f"{option} {text!r}: {part!r} is not a finite number")
        values.append(value)
    return values


def _example(option: str) -> str:
    return "120,80" if option == "--point" else "40,30,200,180"


def parse_point(text: str) -> Point:
    """'X,Y' or 'X,Y,LABEL' with LABEL 1 (object, the default) or 0 (not the object)."""
    values = _numbers(text, "--point", (2, 3), "X,Y or X,Y,LABEL")
    label = 1
    if len(values) == 3:
        if values[2] not in (0.0, 1.0):
            raise UsageError(
                f"--point {text!r}: label must be 1 (on the object) or 0 (not on it)",
            )
        label = int(values[2])
    return Point(values[0], values[1], label)


def parse_box(text: str) -> Box:
    """'X0,Y0,X1,Y1': top-left and bottom-right corners."""
    x0, y0, x1, y1 = _numbers(text, "--box", (4,), "X0,Y0,X1,Y1")
    if x0 >= x1:
        raise UsageError(
            f"--box {text!r}: x0 ({x0:g}) must be less than x1 ({x1:g})",
            hint="give the top-left corner first, then the bottom-right one",
        )
    if y0 >= y1:
        raise UsageError(
            f"--box {text!r}: y0 ({y0:g}) must be less than y1 ({y1:g})",
            hint="give the top-left corner first, then the bottom-right one (y grows downwards)",
        )
    return Box(x0, y0, x1, y1)


def check_inside(points: Sequence[Point], box: Box | None, width: int, height: int) -> None:
    """Every prompt within [0, W] x [0, H] of the project's frames."""
    where = f"the frames are {width}x{height} pixels, so x must be in [0, {width}] and y in [0, {height}]"
    for point in points:
        if not (0 <= point.x <= width and 0 <= point.y <= height):
            raise UsageError(f"--point {point.x:g},{point.y:g} is outside the frame", hint=where)
    if box is not None and not (
        box.x0 >= 0 and box.x1 <= width and box.y0 >= 0 and box.y1 <= height
    ):
        raise UsageError(
            f"--box {box.x0:g},{box.y0:g},{box.x1:g},{box.y1:g} is outside the frame", hint=where
        )


def check_frame_index(frame: int, count: int) -> None:
    if not 0 <= frame < count:
        raise UsageError(
            f"--frame {frame} is out of range: the project has {count} frames",
            hint=f"use a 0-based index from 0 to {count - 1}",
        )


def box_mask(shape: tuple[int, int], box: Box) -> np.ndarray:
    """(H, W) bool: the pixels whose centres lie inside the box."""
    height, width = shape
    ys = np.arange(height, dtype=np.float64) + 0.5
    xs = np.arange(width, dtype=np.float64) + 0.5
    rows = (ys >= box.y0) & (ys <= box.y1)
    cols = (xs >= box.x0) & (xs <= box.x1)
    return rows[:, None] & cols[None, :]


def inscribed_ellipse_mask(shape: tuple[int, int], box: Box) -> np.ndarray:
    """(H, W) bool: the axis-aligned ellipse that touches the box's four sides."""
    width, height = box.x1 - box.x0, box.y1 - box.y0
    ellipse = Ellipse(
        cx=(box.x0 + box.x1) / 2,
        cy=(box.y0 + box.y1) / 2,
        major=max(width, height),
        minor=min(width, height),
        angle=0.0 if width >= height else 90.0,
    )
    return ellipse_mask(shape, ellipse)


def static_masks(count: int, shape: tuple[int, int], box: Box, kind: str) -> np.ndarray:
    """The same box or ellipse mask on every frame: the crude fallback without SAM2."""
    if kind == "box":
        one = box_mask(shape, box)
    elif kind == "ellipse":
        one = inscribed_ellipse_mask(shape, box)
    else:
        raise UsageError(f"--shape {kind!r} is not one of: box, ellipse")
    return np.repeat(one[None], count, axis=0)

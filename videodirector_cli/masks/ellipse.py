"""The ellipse trick (VideoDirector supplementary III): OR a coarse ellipse into each mask.

SAM2 masks follow fine structure (legs, fur, gaps), and those details make the masked guidance
fragile. The paper ORs each mask with an ellipse that has the same centroid, axes and orientation
as the mask's largest connected region; the union is smooth and still covers the object.

Coordinates: continuous pixels, x right, y down, pixel (row i, column j) covers [j, j+1) x [i, i+1)
so its centre is (j + 0.5, i + 0.5). ``angle`` is the major axis's direction in degrees from +x
towards +y (clockwise on screen), in (-90, 90]. ``major`` and ``minor`` are full axis lengths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_PIXEL_VARIANCE = 1.0 / 12.0
"""Variance of a uniform unit pixel: keeps thin regions from fitting a zero-width ellipse."""


@dataclass(frozen=True)
class Ellipse:
    cx: float
    cy: float
    major: float
    minor: float
    angle: float

    @property
    def area(self) -> float:
        return math.pi * self.major * self.minor / 4.0


def _row_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every horizontal run of foreground: (row, first column, last column), row-major order."""
    height, width = mask.shape
    padded = np.zeros((height, width + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    start_rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)
    return start_rows, starts, ends - 1


def _find(parent: list[int], node: int) -> int:
    root = node
    while parent[root] != root:
        root = parent[root]
    while parent[node] != root:
        parent[node], node = root, parent[node]
    return root


def largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected foreground region of an (H, W) mask (empty in, empty out).

    Works on row runs rather than pixels, so a 512x512 mask costs a few thousand Python steps.
    """
    mask = np.asarray(mask, dtype=bool)
    rows, starts, ends = _row_runs(mask)
    count = len(rows)
    if count == 0:
        return np.zeros_like(mask)
    parent = list(range(count))
    row_begin = np.searchsorted(rows, np.arange(mask.shape[0] + 1))
    for row in range(mask.shape[0] - 1):
        above = range(row_begin[row], row_begin[row + 1])
        below = range(row_begin[row + 1], row_begin[row + 2])
        if not above or not below:
            continue
        # Two runs in adjacent rows touch (8-connectivity) when their column spans, each widened
        # by one, overlap. Both lists are sorted by column: a merge-like sweep.
        j = below.start
        for i in above:
            while j < below.stop and ends[j] < starts[i] - 1:
                j += 1
            k = j
            while k < below.stop and starts[k] <= ends[i] + 1:
                root_i, root_k = _find(parent, i), _find(parent, k)
                if root_i != root_k:
                    parent[root_k] = root_i
                k += 1
    roots = np.array([_find(parent, i) for i in range(count)])
    lengths = ends - starts + 1
    sizes = np.bincount(roots, weights=lengths, minlength=count)
    best = int(np.argmax(sizes))
    out = np.zeros_like(mask)
    for run in np.nonzero(roots == best)[0]:
        out[rows[run], starts[run] : ends[run] + 1] = True
    return out


def fit_ellipse(mask: np.ndarray) -> Ellipse | None:
    """The ellipse with the same centroid and second moments as the largest region; None if empty.

    For a filled ellipse with semi-axes a >= b the central moments are a^2/4 and b^2/4 along its
    axes, so semi-axis = 2 * sqrt(eigenvalue): a fitted ellipse has exactly the area of an ellipse
    it was fitted to (and pi/3 ~ 1.047 times the area of a rectangle).
    """
    region = largest_region(mask)
    rows, cols = np.nonzero(region)
    if len(cols) == 0:
        return None
    xs = cols.astype(np.float64) + 0.5
    ys = rows.astype(np.float64) + 0.5
    cx, cy = float(xs.mean()), float(ys.mean())
    dx, dy = xs - cx, ys - cy
    var_x = float(np.mean(dx * dx)) + _PIXEL_VARIANCE
    var_y = float(np.mean(dy * dy)) + _PIXEL_VARIANCE
    cov_xy = float(np.mean(dx * dy))
    half_trace = (var_x + var_y) / 2.0
    spread = math.sqrt(((var_x - var_y) / 2.0) ** 2 + cov_xy**2)
    big, small = half_trace + spread, max(half_trace - spread, _PIXEL_VARIANCE)
    angle = math.degrees(0.5 * math.atan2(2.0 * cov_xy, var_x - var_y))
    if angle <= -90.0:
        angle += 180.0
    return Ellipse(cx, cy, 4.0 * math.sqrt(big), 4.0 * math.sqrt(small), angle)


def ellipse_mask(shape: tuple[int, int], ellipse: Ellipse) -> np.ndarray:
    """(H, W) bool: the pixels whose centres lie inside the ellipse (clipped to the frame)."""
    height, width = shape
    ys = np.arange(height, dtype=np.float64)[:, None] + 0.5 - ellipse.cy
    xs = np.arange(width, dtype=np.float64)[None, :] + 0.5 - ellipse.cx
    theta = math.radians(ellipse.angle)
    cos, sin = math.cos(theta), math.sin(theta)
    along = xs * cos + ys * sin
    across = -xs * sin + ys * cos
    semi_major = max(ellipse.major / 2.0, 1e-6)
    semi_minor = max(ellipse.minor / 2.0, 1e-6)
    return (along / semi_major) ** 2 + (across / semi_minor) ** 2 <= 1.0


def add_ellipse(masks: np.ndarray) -> np.ndarray:
    """OR each (H, W) mask of an (F, H, W) stack with its fitted ellipse; empty frames stay empty."""
    masks = np.asarray(masks, dtype=bool)
    out = masks.copy()
    for index, mask in enumerate(masks):
        ellipse = fit_ellipse(mask)
        if ellipse is not None:
            out[index] |= ellipse_mask(mask.shape, ellipse)
    return out

"""Ellipse fitting (supplementary III) on synthetic masks whose true geometry is known."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest

from videodirector_cli.masks.ellipse import (
    Ellipse,
    add_ellipse,
    ellipse_mask,
    fit_ellipse,
    largest_region,
)


def _angle_error(a: float, b: float) -> float:
    """Difference of two axis directions (defined modulo 180 degrees)."""
    diff = (a - b) % 180.0
    return min(diff, 180.0 - diff)


@pytest.mark.parametrize("angle", [30.0, -50.0, 75.0])
def test_rotated_ellipse_is_recovered(angle: float) -> None:
    truth = Ellipse(cx=120.3, cy=90.7, major=140.0, minor=56.0, angle=angle)
    mask = ellipse_mask((200, 256), truth)
    fitted = fit_ellipse(mask)
    assert fitted is not None
    assert abs(fitted.cx - truth.cx) < 0.5 and abs(fitted.cy - truth.cy) < 0.5
    assert _angle_error(fitted.angle, truth.angle) < 2.0
    assert abs(fitted.area - mask.sum()) / mask.sum() < 0.05
    assert abs(fitted.major - truth.major) / truth.major < 0.03
    assert abs(fitted.minor - truth.minor) / truth.minor < 0.03
    # Drawing the fit gives back (nearly) the same pixels.
    redrawn = ellipse_mask(mask.shape, fitted)
    iou = (redrawn & mask).sum() / (redrawn | mask).sum()
    assert iou > 0.97


@pytest.mark.parametrize(
    ("rows", "cols", "expected_angle"), [((50, 90), (30, 190), 0.0), ((20, 180), (100, 140), 90.0)]
)
def test_rectangle_fit(rows: tuple[int, int], cols: tuple[int, int], expected_angle: float) -> None:
    mask = np.zeros((200, 256), dtype=bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    fitted = fit_ellipse(mask)
    assert fitted is not None
    assert fitted.cx == pytest.approx((cols[0] + cols[1]) / 2, abs=1e-6)
    assert fitted.cy == pytest.approx((rows[0] + rows[1]) / 2, abs=1e-6)
    assert _angle_error(fitted.angle, expected_angle) < 2.0
    # Same second moments as a rectangle: pi/3 of its area (4.7 % more), within 5 %.
    assert abs(fitted.area - mask.sum()) / mask.sum() < 0.05
    ored = add_ellipse(mask[None])[0]
    assert ored[mask].all(), "the OR must keep every original pixel"
    assert ored.sum() > mask.sum(), "the ellipse rounds the corners outwards"


def test_rotated_rectangle_orientation() -> None:
    ys, xs = np.mgrid[0:256, 0:256] + 0.5
    theta = math.radians(35.0)
    along = (xs - 128) * math.cos(theta) + (ys - 128) * math.sin(theta)
    across = -(xs - 128) * math.sin(theta) + (ys - 128) * math.cos(theta)
    mask = (np.abs(along) <= 80) & (np.abs(across) <= 25)
    fitted = fit_ellipse(mask)
    assert fitted is not None
    assert _angle_error(fitted.angle, 35.0) < 2.0
    assert abs(fitted.cx - 128) < 0.5 and abs(fitted.cy - 128) < 0.5


def test_only_the_largest_region_is_fitted() -> None:
    mask = np.zeros((120, 160), dtype=bool)
    mask[10:60, 10:70] = True  # big: 3000 px, centre (40, 35)
    mask[80:110, 120:150] = True  # small: 900 px
    fitted = fit_ellipse(mask)
    assert fitted is not None
    assert (fitted.cx, fitted.cy) == pytest.approx((40.0, 35.0))


def test_diagonal_neighbours_are_one_region() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:6, 2:6] = True
    mask[6:12, 6:12] = True  # touches the first square only at a corner
    assert largest_region(mask).sum() == 16 + 36


def _flood_fill_largest(mask: np.ndarray) -> int:
    """Reference: size of the largest 8-connected region by breadth-first search."""
    seen = np.zeros_like(mask)
    best = 0
    height, width = mask.shape
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        queue, size = deque([start]), 0
        while queue:
            y, x = queue.popleft()
            size += 1
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        best = max(best, size)
    return best


@pytest.mark.parametrize("density", [0.3, 0.45, 0.6])
def test_labelling_matches_flood_fill(density: float) -> None:
    mask = np.random.default_rng(7).random((48, 64)) < density
    region = largest_region(mask)
    assert region.sum() == _flood_fill_largest(mask)
    assert not (region & ~mask).any()


def test_empty_masks_stay_empty() -> None:
    masks = np.zeros((3, 32, 32), dtype=bool)
    masks[1, 10:20, 5:25] = True
    assert fit_ellipse(masks[0]) is None
    out = add_ellipse(masks)
    assert not out[0].any() and not out[2].any()
    assert out[1].sum() > masks[1].sum()


def test_thin_line_gets_a_nonzero_ellipse() -> None:
    mask = np.zeros((32, 64), dtype=bool)
    mask[16, 4:60] = True
    fitted = fit_ellipse(mask)
    assert fitted is not None and fitted.minor > 0
    assert ellipse_mask(mask.shape, fitted)[16, 10:54].all()

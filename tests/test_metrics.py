"""metrics.py: PSNR (masked), mask morphology, centroid trajectories, temporal smoothness."""

from __future__ import annotations

import math

import numpy as np
import pytest

from videodirector_cli import metrics


def clip(frames: int = 4, size: int = 8, value: int = 0) -> np.ndarray:
    return np.full((frames, size, size, 3), value, dtype=np.uint8)


def test_psnr_of_a_known_error():
    a, b = clip(value=100), clip(value=110)  # MSE 100
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))


def test_masked_psnr_only_sees_the_masked_pixels():
    a, b = clip(), clip()
    b[:, :4] = 200  # top half differs
    top = np.zeros((4, 8, 8), dtype=bool)
    top[:, :4] = True
    assert metrics.psnr(a, b, ~top) == metrics.PSNR_CAP
    assert metrics.psnr(a, b, top) == pytest.approx(10 * math.log10(255**2 / 200**2))
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (200**2 / 2)))


def test_psnr_edge_cases():
    a = clip()
    assert metrics.psnr(a, a) == metrics.PSNR_CAP
    assert math.isnan(metrics.psnr(a, a, np.zeros((4, 8, 8), dtype=bool)))
    with pytest.raises(ValueError):
        metrics.psnr(a, clip(frames=3))
    with pytest.raises(ValueError):
        metrics.psnr(a, a, np.ones((4, 7, 8), dtype=bool))


def test_dilate_and_erode():
    mask = np.zeros((1, 7, 7), dtype=bool)
    mask[0, 3, 3] = True
    grown = metrics.dilate(mask, 1)
    assert grown.sum() == 9 and grown[0, 2:5, 2:5].all()
    assert metrics.erode(grown, 1).sum() == 1 and metrics.erode(grown, 1)[0, 3, 3]
    full = np.ones((1, 5, 5), dtype=bool)
    assert metrics.erode(full, 1).sum() == 9  # beyond the border counts as outside
    assert metrics.dilate(mask, 0) is not None and metrics.dilate(mask, 0).sum() == 1


def test_resize_masks_nearest():
    mask = np.zeros((1, 4, 4), dtype=bool)
    mask[0, :2, :2] = True
    big = metrics.resize_masks(mask, 8, 8)
    assert big.shape == (1, 8, 8) and big[0, :4, :4].all() and big.sum() == 16


def square_masks(xs: list[int], size: int = 20, half: int = 2) -> np.ndarray:
    masks = np.zeros((len(xs), size, size), dtype=bool)
    for f, x in enumerate(xs):
        masks[f, 8 - half : 8 + half, x - half : x + half] = True
    return masks


def test_trajectory_error_of_a_shifted_path():
    ref = metrics.centroids(square_masks([5, 7, 9, 11]))
    shifted = metrics.centroids(square_masks([8, 10, 12, 14]))
    error = metrics.trajectory_error(ref, shifted)
    assert error["mean_px"] == pytest.approx(3.0) and error["max_px"] == pytest.approx(3.0)
    assert error["found"] == 1.0


def test_trajectory_error_counts_missing_frames():
    masks = square_masks([5, 7, 9, 11])
    partial = masks.copy()
    partial[1] = False
    error = metrics.trajectory_error(metrics.centroids(masks), metrics.centroids(partial))
    assert error["found"] == 0.75 and error["mean_px"] == pytest.approx(0.0)
    none = metrics.trajectory_error(metrics.centroids(masks), metrics.centroids(masks & False))
    assert none["found"] == 0.0 and math.isnan(none["mean_px"])


def test_centroid_is_the_pixel_centre_mean():
    mask = np.zeros((1, 5, 5), dtype=bool)
    mask[0, 1, 1] = mask[0, 1, 3] = True
    assert metrics.centroids(mask)[0].tolist() == [2.5, 1.5]
    assert np.isnan(metrics.centroids(mask, min_area=3)).all()


def test_smoothness_of_static_linear_and_flickering_clips():
    static = clip(frames=6, value=90)
    assert metrics.interpolation_smoothness(static) == 1.0
    assert metrics.frame_difference(static) == 0.0
    ramp = np.stack([np.full((8, 8, 3), 10 * f, dtype=np.uint8) for f in range(6)])
    assert metrics.interpolation_smoothness(ramp) == pytest.approx(1.0)  # linear: exact
    assert metrics.frame_difference(ramp) == pytest.approx(10 / 255)
    flicker = np.stack([np.full((8, 8, 3), 100 * (f % 2), dtype=np.uint8) for f in range(6)])
    assert metrics.interpolation_smoothness(flicker) == pytest.approx(1 - 100 / 255)
    report = metrics.smoothness(flicker)
    assert set(report) == {"interpolation_smoothness", "frame_difference"}


def test_smoothness_needs_enough_frames():
    with pytest.raises(ValueError):
        metrics.interpolation_smoothness(clip(frames=2))
    with pytest.raises(ValueError):
        metrics.frame_difference(clip(frames=1))

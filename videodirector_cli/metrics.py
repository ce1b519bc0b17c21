"""Quality numbers for inversions and edits that need no learned metric model.

Everything works on uint8 clips (F, H, W, 3) and bool masks (F, H, W), in numpy, so `vdir eval`
and the quality benchmark (benchmarks/quality.py) compute the same numbers the same way. The
learned metrics of the paper (PickScore, LPIPS, VBench's AMT interpolator) need weights from
model hubs; these are their weight-free stand-ins:

* ``psnr``: peak signal-to-noise ratio in dB, optionally over the pixels of a mask (masked PSNR,
  the paper's background-fidelity number when the mask is the region the edit must not touch).
  Identical inputs give ``PSNR_CAP`` instead of infinity so every number stays finite in JSON.
* ``trajectory_error``: how far (pixels) an object's per-frame centroid moved away from a
  reference trajectory: motion fidelity of an edit, given object masks of both clips.
* ``interpolation_smoothness``: VBench's motion-smoothness idea with linear interpolation in
  place of its learned interpolator: every odd frame is predicted as the mean of its neighbours,
  score = 1 - mean absolute error / 255 (1.0 for a static clip; lower means jumpier).
* ``frame_difference``: mean absolute change between consecutive frames / 255 (flicker plus
  motion); compare an edit with its source, not with a fixed threshold.
* ``seam_score``: for clips made through temporal windows, the mean frame-to-frame change at the
  window boundaries over the mean change elsewhere (1.0: no visible seam).
"""

from __future__ import annotations

import math

import numpy as np

PSNR_CAP = 100.0
"""PSNR reported for identical inputs (the true value is infinite)."""


def _as_float(frames: np.ndarray) -> np.ndarray:
    return np.asarray(frames, dtype=np.float64)


def _check_clip(frames: np.ndarray, what: str) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{what}: expected (F, H, W, 3) frames, got shape {frames.shape}")


def psnr(
    a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, peak: float = 255.0
) -> float:
    """PSNR (dB) between clips ``a`` and ``b`` (same shape, 0..peak), over ``mask`` pixels if given.

    ``mask``: (F, H, W) bool selecting the pixels compared (all channels of each). An empty mask
    has no PSNR: NaN. Identical pixels give ``PSNR_CAP``.
    """
    if a.shape != b.shape:
        raise ValueError(f"cannot compare clips of shapes {a.shape} and {b.shape}")
    diff = (_as_float(a) - _as_float(b)) ** 2
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != a.shape[: mask.ndim] or mask.ndim != a.ndim - 1:
            raise ValueError(f"mask of shape {mask.shape} does not match clips of shape {a.shape}")
        if not mask.any():
            return float("nan")
        diff = diff[mask]
    mse = float(diff.mean())
    if mse <= 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(peak * peak / mse))


# --------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------


def _shift_or(mask: np.ndarray, radius: int, combine) -> np.ndarray:
    """Combine ``mask`` with its shifts by up to ``radius`` pixels (square neighbourhood)."""
    out = mask.copy()
    h, w = mask.shape[-2:]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy == 0 and dx == 0:
                continue
            shifted = np.zeros_like(mask)  # beyond the border: outside
            ys = slice(max(0, dy), h + min(0, dy))
            yd = slice(max(0, -dy), h + min(0, -dy))
            xs = slice(max(0, dx), w + min(0, dx))
            xd = slice(max(0, -dx), w + min(0, -dx))
            shifted[..., ys, xs] = mask[..., yd, xd]
            out = combine(out, shifted)
    return out


def dilate(masks: np.ndarray, pixels: int) -> np.ndarray:
    """Grow bool masks (..., H, W) by ``pixels`` (square neighbourhood)."""
    masks = np.asarray(masks, dtype=bool)
    return masks if pixels <= 0 else _shift_or(masks, pixels, np.logical_or)


def erode(masks: np.ndarray, pixels: int) -> np.ndarray:
    """Shrink bool masks (..., H, W) by ``pixels``; pixels beyond the border count as outside."""
    masks = np.asarray(masks, dtype=bool)
    return masks if pixels <= 0 else _shift_or(masks, pixels, np.logical_and)


def resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of (F, h, w) bool masks to (F, height, width)."""
    masks = np.asarray(masks, dtype=bool)
    if masks.shape[1:] == (height, width):
        return masks
    ys = (np.arange(height) * masks.shape[1] / height).astype(int)
    xs = (np.arange(width) * masks.shape[2] / width).astype(int)
    return masks[:, ys][:, :, xs]


# --------------------------------------------------------------------------------------------
# motion
# --------------------------------------------------------------------------------------------


def centroids(masks: np.ndarray, min_area: int = 1) -> np.ndarray:
    """(F, 2) float (x, y) pixel-centre centroid of each frame's mask; NaN where it has fewer
    than ``min_area`` pixels."""
    masks = np.asarray(masks, dtype=bool)
    out = np.full((masks.shape[0], 2), np.nan)
    for index, mask in enumerate(masks):
        if int(mask.sum()) >= min_area:
            ys, xs = np.nonzero(mask)
            out[index] = (xs.mean() + 0.5, ys.mean() + 0.5)
    return out


def trajectory_error(reference: np.ndarray, found: np.ndarray) -> dict[str, float]:
    """Centroid trajectories (F, 2) with NaN rows for missing frames -> error summary.

    ``mean_px``: mean Euclidean distance over frames where both have a centroid (NaN if none);
    ``max_px``: the largest such distance; ``found``: share of the reference's frames where
    ``found`` has a centroid (1.0: the object is there in every frame).
    """
    reference = np.asarray(reference, dtype=np.float64)
    found = np.asarray(found, dtype=np.float64)
    if reference.shape != found.shape:
        raise ValueError(f"trajectories of shapes {reference.shape} and {found.shape}")
    have_ref = ~np.isnan(reference).any(axis=1)
    both = have_ref & ~np.isnan(found).any(axis=1)
    if not have_ref.any():
        return {"mean_px": float("nan"), "max_px": float("nan"), "found": float("nan")}
    share = float(both.sum() / have_ref.sum())
    if not both.any():
        return {"mean_px": float("nan"), "max_px": float("nan"), "found": share}
    dist = np.linalg.norm(reference[both] - found[both], axis=1)
    return {"mean_px": float(dist.mean()), "max_px": float(dist.max()), "found": share}


# --------------------------------------------------------------------------------------------
# temporal smoothness
# --------------------------------------------------------------------------------------------


def interpolation_smoothness(frames: np.ndarray) -> float:
    """1 - MAE/255 of each odd frame against the mean of its two neighbours (VBench-style).

    Needs at least 3 frames. A static clip scores 1.0; constant-speed motion of a sharp object
    scores a little below 1 (linear blending ghosts it); flicker and jumps score lower.
    """
    _check_clip(frames, "interpolation_smoothness")
    if frames.shape[0] < 3:
        raise ValueError("interpolation_smoothness needs at least 3 frames")
    clip = _as_float(frames)
    odd = np.arange(1, clip.shape[0] - 1, 2)
    predicted = 0.5 * (clip[odd - 1] + clip[odd + 1])
    return float(1.0 - np.abs(clip[odd] - predicted).mean() / 255.0)


def frame_difference(frames: np.ndarray) -> float:
    """Mean absolute difference between consecutive frames, / 255 (0 for a static clip)."""
    _check_clip(frames, "frame_difference")
    if frames.shape[0] < 2:
        raise ValueError("frame_difference needs at least 2 frames")
    clip = _as_float(frames)
    return float(np.abs(np.diff(clip, axis=0)).mean() / 255.0)


def smoothness(frames: np.ndarray) -> dict[str, float | None]:
    """Both temporal statistics of a clip; None where the clip is too short for one (the
    interpolation needs 3 frames, the difference 2)."""
    count = frames.shape[0]
    return {
        "interpolation_smoothness": interpolation_smoothness(frames) if count >= 3 else None,
        "frame_difference": frame_difference(frames) if count >= 2 else None,
    }


def seam_score(frames: np.ndarray, boundaries: list[int]) -> float | None:
    """Mean absolute change of the transitions f-1 -> f for f in ``boundaries`` over the mean
    of every other transition. 1.0 means a seam changes the picture no more than an ordinary
    frame step; above 1 a seam shows. None when there is no boundary or nothing else to compare
    with, or the clip does not change between frames away from the seams."""
    _check_clip(frames, "seam_score")
    clip = _as_float(frames)
    change = np.abs(np.diff(clip, axis=0)).mean(axis=(1, 2, 3))  # change[f - 1]: f-1 -> f
    at = np.zeros(change.shape[0], dtype=bool)
    for frame in boundaries:
        if 0 < frame < clip.shape[0]:
            at[frame - 1] = True
    if not at.any() or at.all():
        return None
    elsewhere = float(change[~at].mean())
    if elsewhere == 0.0:
        return None
    return float(change[at].mean()) / elsewhere

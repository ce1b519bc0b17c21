"""Bring decoded frames to the project's working size: parse ``--size`` and apply ``--fit``.

The diffusion model works on a latent grid 8 times smaller than the image, so both sides must be
multiples of 8. Frames that already have the target size are passed through untouched, so a
clip prepared at the right size stays bit-exact.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
from PIL import Image

from videodirector_cli.errors import UsageError

FitMode = Literal["crop", "pad", "stretch"]
FIT_MODES: tuple[str, ...] = ("crop", "pad", "stretch")

SIDE_MULTIPLE = 8
"""The latent grid is 1/8 of the image: any other side would be cropped by the VAE."""
MIN_SIDE = 64
"""Below 64 px the latent is 8x8 or smaller and nothing recognisable survives the model."""
MAX_SIDE = 2048
"""Above 2048 px a 16-frame SD1.5 video needs far more memory than any single GPU has."""

_SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """``"512"`` -> (512, 512); ``"768x432"`` -> (768, 432) as (width, height)."""
    match = _SIZE_PATTERN.match(str(text))
    if not match:
        raise UsageError(
            f"--size {text!r} is not a size",
            hint="use one number for a square (512) or WIDTHxHEIGHT (768x432)",
        )
    width = int(match.group(1))
    height = int(match.group(2)) if match.group(2) else width
    for side in (width, height):
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise UsageError(
                f"--size {text}: {side} px is outside {MIN_SIDE}..{MAX_SIDE}",
                hint=f"smaller than {MIN_SIDE} leaves the model nothing to work with; larger than "
                f"{MAX_SIDE} does not fit in GPU memory; 512 is what the model was trained on",
            )
        if side % SIDE_MULTIPLE:
            lower = side // SIDE_MULTIPLE * SIDE_MULTIPLE
            raise UsageError(
                f"--size {text}: {side} is not a multiple of {SIDE_MULTIPLE}",
                hint=f"the latent grid is 1/{SIDE_MULTIPLE} of the image; try {max(lower, MIN_SIDE)} "
                f"or {lower + SIDE_MULTIPLE}",
            )
    return width, height


def check_fit(mode: str) -> FitMode:
    if mode not in FIT_MODES:
        raise UsageError(f"--fit {mode!r} is not one of {', '.join(FIT_MODES)}")
    return mode  # type: ignore[return-value]


def crop_box(width: int, height: int, target: tuple[int, int]) -> tuple[float, float, float, float]:
    """The centred region of a width x height image that has the target's aspect ratio."""
    target_w, target_h = target
    if width * target_h > height * target_w:  # source is wider: trim left and right
        kept = height * target_w / target_h
        left = (width - kept) / 2
        return (left, 0.0, left + kept, float(height))
    kept = width * target_h / target_w  # source is taller (or equal): trim top and bottom
    top = (height - kept) / 2
    return (0.0, top, float(width), top + kept)


def pad_placement(width: int, height: int, target: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, scaled_width, scaled_height) of the whole image centred inside the target."""
    target_w, target_h = target
    scale = min(target_w / width, target_h / height)
    scaled_w = min(target_w, max(1, round(width * scale)))
    scaled_h = min(target_h, max(1, round(height * scale)))
    return (target_w - scaled_w) // 2, (target_h - scaled_h) // 2, scaled_w, scaled_h


def fit_frame(frame: np.ndarray, target: tuple[int, int], mode: FitMode) -> np.ndarray:
    """(H, W, 3) uint8 -> (target_h, target_w, 3) uint8 by centre crop, black bars, or stretch."""
    height, width = frame.shape[:2]
    target_w, target_h = target
    if (width, height) == (target_w, target_h):
        return frame
    image = Image.fromarray(frame)
    resample = Image.Resampling.LANCZOS
    if mode == "stretch":
        return np.asarray(image.resize((target_w, target_h), resample))
    if mode == "crop":
        box = crop_box(width, height, target)
        return np.asarray(image.resize((target_w, target_h), resample, box=box))
    left, top, scaled_w, scaled_h = pad_placement(width, height, target)
    canvas = np.zeros((target_h, target_w, 3), dtype=np.uint8)
    canvas[top : top + scaled_h, left : left + scaled_w] = np.asarray(
        image.resize((scaled_w, scaled_h), resample)
    )
    return canvas

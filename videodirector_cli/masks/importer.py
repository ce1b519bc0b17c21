"""Masks the user already has (from another tool, a DAVIS annotation, a paint program).

One image per frame, PNG or JPEG, any size: taken in natural name order (2.png before 10.png),
binarised, then resized to the project's frames with nearest-neighbour sampling.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from videodirector_cli.errors import InputError

MASK_SUFFIXES = (".png", ".jpg", ".jpeg")


def _natural_key(path: Path) -> list[object]:
    parts = re.split(r"(\d+)", path.name.lower())
    return [int(part) if part.isdigit() else part for part in parts]


def list_mask_files(folder: Path) -> list[Path]:
    """The PNG/JPEG files of ``folder`` in natural order (hidden files and others ignored)."""
    if not folder.exists():
        raise InputError(f"mask folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder", hint="--from takes a folder of mask images")
    files = [
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in MASK_SUFFIXES
    ]
    if not files:
        raise InputError(
            f"{folder} holds no PNG or JPEG masks",
            hint="one image per frame, named so that they sort in frame order",
        )
    return sorted(files, key=_natural_key)


def binarise(image: Image.Image) -> np.ndarray:
    """(H, W) bool foreground of one mask image.

    Palette images (DAVIS annotations): any non-zero index, so every object counts. Others: grey
    level above half the image's maximum, so 0/1, 0/255 and noisy JPEG masks all work.
    """
    if image.mode == "P":
        return np.asarray(image) != 0
    if image.mode == "1":
        return np.asarray(image, dtype=bool)
    if image.mode in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image).astype(np.float64)
    else:
        values = np.asarray(image.convert("L")).astype(np.float64)
    peak = float(values.max()) if values.size else 0.0
    if peak <= 0:
        return np.zeros(values.shape, dtype=bool)
    return values > peak / 2.0


def read_mask_file(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One mask, binarised and resized to ``size`` = (width, height)."""
    try:
        with Image.open(path) as image:
            image.load()
            mask = binarise(image)
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise InputError(
            f"cannot read mask {path}: {exc}", hint="every file must be a readable PNG or JPEG"
        ) from None
    if mask.ndim != 2:
        raise InputError(f"cannot read mask {path}: not a single-channel image")
    if (mask.shape[1], mask.shape[0]) != size:
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(
            size, Image.Resampling.NEAREST
        )
        mask = np.asarray(resized) >= 128
    return mask


def import_masks(folder: Path, count: int, size: tuple[int, int]) -> np.ndarray:
    """(count, H, W) bool from a folder holding exactly ``count`` mask images."""
    files = list_mask_files(folder)
    if len(files) != count:
        raise InputError(
            f"{folder} holds {len(files)} mask images but the project has {count} frames",
            hint="give exactly one PNG or JPEG mask per frame",
        )
    return np.stack([read_mask_file(path, size) for path in files])

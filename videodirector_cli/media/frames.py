"""Frame and mask files: lossless PNG, written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from videodirector_cli.errors import InputError, from_os_error
from videodirector_cli.project.atomic import atomic_path


def write_png(path: Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB or (H, W) uint8/bool image."""
    array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def _reraise_fixable(exc: Exception) -> None:
    """Too many open files is not a bad image: it is reported as what it is (errors.py)."""
    if isinstance(exc, OSError) and from_os_error(exc) is not None:
        raise exc


def read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        _reraise_fixable(exc)
        raise InputError(f"cannot read image {path}: {exc}") from None


def read_frames(paths: Sequence[Path]) -> np.ndarray:
    """Stack frame files into (F, H, W, 3) uint8."""
    return np.stack([read_rgb(p) for p in paths])


def write_mask(path: Path, mask: np.ndarray) -> None:
    write_png(path, np.asarray(mask, dtype=bool))


def read_mask(path: Path) -> np.ndarray:
    """(H, W) bool: any pixel above half grey is foreground."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L")) >= 128
    except (OSError, ValueError) as exc:
        _reraise_fixable(exc)
        raise InputError(f"cannot read mask {path}: {exc}") from None


def read_masks(paths: Sequence[Path]) -> np.ndarray:
    return np.stack([read_mask(p) for p in paths])

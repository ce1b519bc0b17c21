"""Contact sheets of toy clips: one row per clip (every few frames) under its label."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_grid(
    rows: list[tuple[str, np.ndarray]], path: str | Path, every: int = 2, scale: int = 2
) -> None:
    """PNG with one row per (label, (F, H, W, 3) uint8 clip), every ``every``-th frame."""
    from PIL import Image, ImageDraw

    label_h = 14
    n_frames, height, width, _ = rows[0][1].shape
    cols = list(range(0, n_frames, every))
    cw, ch = width * scale, height * scale
    img = Image.new(
        "RGB", (cw * len(cols) + (len(cols) - 1) * 2, len(rows) * (ch + label_h + 4)), "white"
    )
    d = ImageDraw.Draw(img)
    for r, (label, clip) in enumerate(rows):
        y0 = r * (ch + label_h + 4)
        d.text((2, y0 + 1), label, fill="black")
        for c, f in enumerate(cols):
            tile = Image.fromarray(clip[f]).resize((cw, ch), Image.Resampling.NEAREST)
            img.paste(tile, (c * (cw + 2), y0 + label_h))
    img.save(path, optimize=True)

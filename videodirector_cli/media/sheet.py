"""Quick-look images: contact sheets, mask overlays, side-by-side panels."""

from __future__ import annotations

import numpy as np


def contact_sheet(frames: np.ndarray, columns: int = 8, gap: int = 2) -> np.ndarray:
    """Tile (F, H, W, 3) uint8 frames into one image, row-major, with a dark gap."""
    count, height, width, channels = frames.shape
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    sheet = np.full(
        (rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap, channels),
        24,
        dtype=np.uint8,
    )
    for index, frame in enumerate(frames):
        row, col = divmod(index, columns)
        top, left = row * (height + gap), col * (width + gap)
        sheet[top : top + height, left : left + width] = frame
    return sheet


def overlay_mask(
    frames: np.ndarray,
    masks: np.ndarray,
    color: tuple[int, int, int] = (255, 40, 40),
    alpha: float = 0.35,
    dim: float = 0.35,
) -> np.ndarray:
    """Show the masked pixels of (F, H, W, 3) frames: tinted inside, dimmed outside.

    Dimming the outside keeps the mask visible whatever the object's colour (a red tint alone
    vanishes on a red object).
    """
    out = frames.astype(np.float32)
    tint = np.asarray(color, dtype=np.float32)
    selected = masks.astype(bool)
    out[~selected] *= dim
    out[selected] = (1 - alpha) * out[selected] + alpha * tint
    return out.round().clip(0, 255).astype(np.uint8)


def side_by_side(panels: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Join (F, H, W, 3) clips horizontally frame by frame (same F and H)."""
    count, height = panels[0].shape[:2]
    spacer = np.full((count, height, gap, 3), 24, dtype=np.uint8)
    pieces: list[np.ndarray] = []
    for index, panel in enumerate(panels):
        if index:
            pieces.append(spacer)
        pieces.append(panel)
    return np.concatenate(pieces, axis=2)

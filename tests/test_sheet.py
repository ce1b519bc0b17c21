"""Previews: the mask overlay stays visible whatever the object's colour."""

from __future__ import annotations

import numpy as np

from videodirector_cli.media.sheet import contact_sheet, overlay_mask, side_by_side


def test_overlay_changes_a_red_object_on_a_blue_background_visibly() -> None:
    frames = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    frames[:] = (30, 50, 140)
    frames[:, 2:5, 2:5] = (220, 40, 40)
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[:, 2:5, 2:5] = True
    shown = overlay_mask(frames, masks).astype(int)
    # outside the mask is dimmed, so inside and outside differ from the source in different ways
    assert (shown[~masks] < frames[~masks]).all()
    inside, outside = shown[masks].mean(), shown[~masks].mean()
    assert inside - outside > frames[masks].mean() - frames[~masks].mean()


def test_contact_sheet_and_side_by_side_layout() -> None:
    frames = np.full((5, 4, 6, 3), 200, dtype=np.uint8)
    sheet = contact_sheet(frames, columns=3, gap=2)
    assert sheet.shape == (2 * 4 + 2, 3 * 6 + 2 * 2, 3)
    joined = side_by_side([frames, frames], gap=4)
    assert joined.shape == (5, 4, 12 + 4, 3)

"""The benchmark's test cases and their scoring: no model needed here.

A case is one held-out toy clip (seed >= ``QUALITY_SEED_START``, never drawn in training) and one
edit of it, cycling through colour swaps, shape swaps and background edits. Because the world
is procedural, the *ideal* edit exists too: the same seed with the target attributes draws the
same object size and path (attributes do not consume random draws), so every case knows the
exact target clip and masks.

Scoring an edited clip (uint8 frames):

* edit accuracy: ``toy.scorer.score_clip`` against the target attributes: the edited attribute
  (colour, shape or background) is right (``target_ok``), and all of colour, shape, background and
  direction are (``all_ok``). The object is found by its distance to the target background.
* unedited-region PSNR (``keep_psnr``, "background fidelity"): for object edits, PSNR against
  the source outside the union of the source and target object masks, grown by ``KEEP_MARGIN``
  pixels (the VAE blurs edges for every method alike); for background edits, PSNR inside the
  object mask shrunk by ``KEEP_MARGIN`` (the object must stay).
* motion fidelity: per-frame centroid of the object found in the edit vs the centroid of the
  ideal edit's exact mask, i.e. the source's path drawn with the target shape (a triangle's
  centroid sits lower than a circle's on the same path) (``traj_px``), and the share of frames
  where an object was found (``found``).
* temporal smoothness: ``metrics.interpolation_smoothness`` and ``metrics.frame_difference``.
* ``target_psnr``: PSNR against the ideal edited clip (one number for "did it do the right thing
  everywhere").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videodirector_cli import metrics
from videodirector_cli.toy import scorer, world

QUALITY_SEED_START = world.HELDOUT_SEED_START + 200_000
"""Clip seeds of the benchmark; training draws seeds far below world.HELDOUT_SEED_START."""
KINDS = ("colour", "shape", "background")
KEEP_MARGIN = 2
"""Pixels (at 64x64) between an object's edge and the region whose fidelity is measured."""


@dataclass
class Case:
    index: int
    seed: int
    kind: str
    source: world.ToyClip
    target: world.ToyClip
    """The ideal edit: the source's geometry with the target attributes."""

    @property
    def source_prompt(self) -> str:
        return self.source.caption

    @property
    def target_prompt(self) -> str:
        return self.target.caption

    @property
    def changed(self) -> tuple[str, str]:
        """(source word, target word) of the edited attribute."""
        attr = {"colour": "colour", "shape": "shape", "background": "background"}[self.kind]
        return getattr(self.source, attr), getattr(self.target, attr)

    @property
    def edit_region(self) -> np.ndarray:
        """(F, H, W) bool: where the edit is meant to change pixels (what `vdir mask` would give
        as the edited region: the object, or everything but it for a background edit)."""
        if self.kind == "background":
            return ~self.source.masks
        return self.source.masks

    @property
    def keep_region(self) -> np.ndarray:
        """(F, H, W) bool: pixels the edit must leave as they were."""
        margin = max(1, round(KEEP_MARGIN * self.source.frames.shape[1] / 64))
        if self.kind == "background":
            return metrics.erode(self.source.masks, margin)
        return ~metrics.dilate(self.source.masks | self.target.masks, margin)


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def make_case(
    index: int, frames: int = 16, size: int = 64, seed0: int = QUALITY_SEED_START
) -> Case:
    """Case ``index``: clip seed ``seed0 + index``, edit kind cycling colour/shape/background."""
    seed = seed0 + index
    source = world.make_clip(seed, frames=frames, size=size)
    kind = KINDS[index % len(KINDS)]
    rng = np.random.default_rng([seed, 23])
    colour, shape, background = source.colour, source.shape, source.background
    if kind == "colour":
        colour = _pick(rng, [c for c in world.COLOURS if c not in (source.colour, background)])
    elif kind == "shape":
        shape = _pick(rng, [s for s in world.SHAPES if s != source.shape])
    else:
        background = _pick(rng, [b for b in world.BACKGROUNDS if b not in (background, colour)])
    target = world.make_clip_from(
        colour, shape, source.direction, background, seed=seed, frames=frames, size=size
    )
    if not np.array_equal(target.centers, source.centers):  # pragma: no cover - world invariant
        raise AssertionError("the ideal edit does not share the source's geometry")
    return Case(index=index, seed=seed, kind=kind, source=source, target=target)


def found_object_masks(frames: np.ndarray, background: str) -> np.ndarray:
    """(F, H, W) bool object pixels found by distance to ``background`` as the world paints it;
    frames where that region is too small or too large (no single object) are left empty."""
    masks, _ = scorer.object_masks(frames, background)
    height, width = frames.shape[1:3]
    areas = masks.reshape(masks.shape[0], -1).sum(axis=1)
    valid = (areas >= scorer.MIN_AREA) & (areas <= scorer.MAX_AREA_FRAC * height * width)
    masks[~valid] = False
    return masks


def score_edit(case: Case, frames: np.ndarray) -> dict[str, float]:
    """Every per-clip number for an edited clip (uint8 (F, H, W, 3))."""
    target = case.target
    scored = scorer.score_clip(
        frames, target.colour, target.shape, target.direction, target.background
    )
    target_ok = {
        "colour": scored.colour_ok,
        "shape": scored.shape_ok,
        "background": scored.bg_ok,
    }[case.kind]
    all_ok = scored.colour_ok and scored.shape_ok and scored.bg_ok and scored.direction_ok
    found = found_object_masks(frames, target.background)
    trajectory = metrics.trajectory_error(
        metrics.centroids(case.target.masks), metrics.centroids(found, min_area=scorer.MIN_AREA)
    )
    return {
        "target_ok": float(target_ok),
        "all_ok": float(all_ok),
        "keep_psnr": metrics.psnr(frames, case.source.frames, case.keep_region),
        "traj_px": trajectory["mean_px"],
        "found": trajectory["found"],
        "smoothness": metrics.interpolation_smoothness(frames),
        "frame_diff": metrics.frame_difference(frames),
        "target_psnr": metrics.psnr(frames, target.frames),
        "pred_colour": scored.pred_colour,
        "pred_shape": scored.pred_shape,
        "pred_direction": scored.pred_direction,
        "bg_error": scored.bg_error,
    }


def reference_scores(case: Case) -> dict[str, dict[str, float]]:
    """Calibration rows without a model: the source itself as the 'edit' (what doing nothing
    scores) and the ideal edit (what a perfect method scores; the scorer must get it right)."""
    return {
        "no edit (source)": score_edit(case, case.source.frames),
        "ideal edit": score_edit(case, case.target.frames),
    }

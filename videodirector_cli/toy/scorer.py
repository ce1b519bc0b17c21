"""Score a toy-world clip against the words of its prompt, without any model.

The toy check (``toy.check``), the quality benchmark and the demo's test use this scorer:

* background: the median (over all pixels and frames) of the max-channel distance between the
  clip and the prompt's background as the world paints it; correct when below ``BG_TOL``;
* object region: per frame, the largest connected region of pixels farther than ``FG_TOL``
  from that background; frames where those pixels cover less than ``MIN_AREA`` or more than
  ``MAX_AREA_FRAC`` of the frame hold no single object;
* colour: the median colour of the object region, nearest named colour of ``world.COLOURS``;
* motion: the region's centroid per frame, least-squares slope over the clip -> displacement;
  small displacement with a large vertical range is "bouncing", otherwise the nearest of the
  world's direction vectors;
* shape: per-frame fill ratio of the region in its bounding box (square ~1, circle ~0.79,
  triangle/diamond ~0.5; a triangle has its mass low), majority vote;
* smoothness: ``metrics.interpolation_smoothness``, the number ``vdir eval`` reports.

Validated on the world's own clips (``ground_truth_scores``): it must be 100 % there, otherwise
its numbers mean nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videodirector_cli import metrics

from . import world

BG_TOL = 40.0  # median distance to the named background, 0-255 scale
FG_TOL = 60.0  # a pixel this far from the background belongs to the object
MIN_AREA = 8  # pixels; fewer means "no object in this frame"
MAX_AREA_FRAC = 0.35  # more than this is "no single object" (wrong background, noise)
STILL_PX = 6.0  # net displacement below this is not a directional motion


@dataclass
class Score:
    prompt: str
    colour: str
    shape: str
    direction: str
    background: str
    pred_colour: str | None
    pred_shape: str | None
    pred_direction: str | None
    bg_error: float
    bg_ok: bool
    colour_ok: bool
    shape_ok: bool
    direction_ok: bool
    displacement: tuple[float, float] | None
    smoothness: float


def object_masks(frames: np.ndarray, background: str) -> tuple[np.ndarray, float]:
    """(F, H, W) bool pixels far from the background, and the background error of a
    (F, H, W, 3) uint8 clip."""
    bg = world._paint_background(background, frames.shape[1]).astype(np.float32)
    dist = np.abs(frames.astype(np.float32) - bg[None]).max(axis=-1)
    return dist > FG_TOL, float(np.median(dist))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a (H, W) bool mask (min-label propagation)."""
    if not mask.any():
        return mask
    height, width = mask.shape
    big = np.iinfo(np.int64).max
    labels = np.where(mask, np.arange(1, height * width + 1).reshape(height, width), big)
    while True:
        p = np.pad(labels, 1, constant_values=big)
        low = np.minimum.reduce([labels, p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])
        low = np.where(mask, low, big)
        if np.array_equal(low, labels):
            break
        labels = low
    ids, counts = np.unique(labels[mask], return_counts=True)
    return labels == ids[np.argmax(counts)]


def object_region(frames: np.ndarray, background: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(masks, valid, background error): per frame the largest connected region far from the
    background (a stray pixel, e.g. a decoder's corner artefact, is not part of the object);
    frames that hold no single object (too small or too large a region) are cleared and
    marked invalid."""
    masks, bg_err = object_masks(frames, background)
    height, width = frames.shape[1:3]
    areas = masks.reshape(masks.shape[0], -1).sum(axis=1)
    valid = (areas >= MIN_AREA) & (areas <= MAX_AREA_FRAC * height * width)
    masks[~valid] = False
    for f in np.nonzero(valid)[0]:
        masks[f] = largest_component(masks[f])
    return masks, valid, bg_err


def classify_motion(
    centers: np.ndarray, size: int
) -> tuple[str | None, tuple[float, float] | None]:
    """Direction name from per-frame centroids (NaN rows = object not found)."""
    ok = ~np.isnan(centers[:, 0])
    if ok.sum() < max(3, len(centers) // 2):
        return None, None
    t = np.arange(len(centers), dtype=np.float64)[ok]
    xs, ys = centers[ok, 0], centers[ok, 1]
    span = len(centers) - 1
    dx = float(np.polyfit(t, xs, 1)[0] * span)
    dy = float(np.polyfit(t, ys, 1)[0] * span)
    if np.hypot(dx, dy) < STILL_PX * size / 64:
        if ys.max() - ys.min() > 8.0 * size / 64:
            return "bouncing", (dx, dy)
        return "still", (dx, dy)
    best, best_cos = None, -2.0
    for name, (ux, uy) in world.DIRECTIONS.items():
        if name == "bouncing":
            continue
        c = (dx * ux + dy * uy) / (np.hypot(dx, dy) * np.hypot(ux, uy))
        if c > best_cos:
            best, best_cos = name, c
    return best, (dx, dy)


def classify_shape(masks: np.ndarray) -> str | None:
    votes: dict[str, int] = {}
    for m in masks:
        area = int(m.sum())
        if area < 20:
            continue
        ys, xs = np.nonzero(m)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        fill = area / float(h * w)
        if fill > 0.9:
            s = "square"
        elif fill > 0.66:
            s = "circle"
        else:
            rel = (ys.mean() - ys.min()) / max(1.0, h - 1)  # 0.5 symmetric, > 0.5 mass low
            s = "triangle" if rel > 0.56 else "diamond"
        votes[s] = votes.get(s, 0) + 1
    return max(votes, key=lambda name: votes[name]) if votes else None


def nearest_colour(rgb: np.ndarray) -> str:
    names = list(world.COLOURS)
    ref = np.array([world.COLOURS[n] for n in names], np.float32)
    return names[int(np.argmin(((ref - rgb[None]) ** 2).sum(-1)))]


def score_clip(
    frames: np.ndarray, colour: str, shape: str, direction: str, background: str
) -> Score:
    """Score one (F, H, W, 3) uint8 clip against the attributes of its prompt."""
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)
    n_frames, height = frames.shape[:2]
    masks, valid, bg_err = object_region(frames, background)
    centers = np.full((n_frames, 2), np.nan)
    for f in np.nonzero(valid)[0]:
        ys, xs = np.nonzero(masks[f])
        centers[f] = (xs.mean() + 0.5, ys.mean() + 0.5)
    pred_colour = pred_shape = None
    if valid.any():
        pix = frames[valid][masks[valid]].astype(np.float32)
        pred_colour = nearest_colour(np.median(pix, axis=0))
        pred_shape = classify_shape(masks[valid])
    pred_dir, disp = classify_motion(centers, height)
    return Score(
        prompt=world.caption_for(colour, shape, direction, background),
        colour=colour,
        shape=shape,
        direction=direction,
        background=background,
        pred_colour=pred_colour,
        pred_shape=pred_shape,
        pred_direction=pred_dir,
        bg_error=round(bg_err, 2),
        bg_ok=bg_err < BG_TOL,
        colour_ok=pred_colour == colour,
        shape_ok=pred_shape == shape,
        direction_ok=pred_dir == direction,
        displacement=None if disp is None else (round(disp[0], 2), round(disp[1], 2)),
        smoothness=round(metrics.interpolation_smoothness(frames), 5),
    )


def summarize(scores: list[Score]) -> dict:
    n = len(scores)
    if n == 0:
        return {"n": 0}

    def share(ok) -> float:
        return round(sum(bool(ok(s)) for s in scores) / n, 4)

    per_dir = {}
    for d in world.DIRECTIONS:
        sub = [s for s in scores if s.direction == d]
        if sub:
            per_dir[d] = round(sum(s.direction_ok for s in sub) / len(sub), 3)
    return {
        "n": n,
        "background": share(lambda s: s.bg_ok),
        "colour": share(lambda s: s.colour_ok),
        "direction": share(lambda s: s.direction_ok),
        "shape": share(lambda s: s.shape_ok),
        "all_four": share(lambda s: s.bg_ok and s.colour_ok and s.direction_ok and s.shape_ok),
        "smoothness": round(float(np.mean([s.smoothness for s in scores])), 5),
        "direction_by_class": per_dir,
        "chance": {
            "background": round(1 / len(world.BACKGROUNDS), 3),
            "colour": round(1 / len(world.COLOURS), 3),
            "direction": round(1 / len(world.DIRECTIONS), 3),
            "shape": round(1 / len(world.SHAPES), 3),
        },
    }


def eval_prompts(n: int, seed: int = 0) -> list[tuple[str, str, str, str]]:
    """``n`` held-out combinations (colour, shape, direction, background), balanced over the
    directions, a deterministic function of ``seed``."""
    combos = world.heldout_combos()
    if not 0 <= n <= len(combos):
        raise ValueError(f"n must be between 0 and {len(combos)} (the held-out combinations)")
    rng = np.random.default_rng(seed)
    by_dir: dict[str, list] = {d: [] for d in world.DIRECTIONS}
    for c in combos:
        by_dir[c[2]].append(c)
    for d in by_dir:
        rng.shuffle(by_dir[d])
    out: list = []
    i = 0
    while len(out) < n and any(by_dir.values()):
        d = list(world.DIRECTIONS)[i % len(world.DIRECTIONS)]
        if by_dir[d]:
            out.append(tuple(by_dir[d].pop()))
        i += 1
    return out


def ground_truth_scores(
    prompts, first_seed: int = world.HELDOUT_SEED_START, frames: int = 16
) -> list[Score]:
    """The world's own clips for ``prompts`` (clip ``i`` from seed ``first_seed + i``)."""
    return [
        score_clip(
            world.make_clip_from(c, s, d, b, seed=first_seed + i, frames=frames).frames, c, s, d, b
        )
        for i, (c, s, d, b) in enumerate(prompts)
    ]

"""A procedural world of short clips: one (or two) flat-coloured shapes moving on a background.

Every clip is a pure function of its seed (or of explicit attributes plus a seed), comes with the
exact caption that describes it and the exact per-frame mask of the (first) object. This is the
training data of the toy model (``videodirector_cli.toy.train``) and the ground truth of its
automatic check (``videodirector_cli.toy.check``).

Caption grammar (all words are single tokens of the toy vocabulary, see ``toy.vocab``)::

    a <colour> <shape> <motion> [and a <colour> <shape> <motion>] on a <background> background
    <motion> := moving left | moving right | moving up | moving down | moving diagonally | bouncing

"moving diagonally" means down and to the right (image coordinates: +x, +y); "bouncing" means
going up and down in place (one full bounce over the clip).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------------------------
# The world's vocabulary of attributes
# --------------------------------------------------------------------------------------------

#: Object colours and their exact RGB values (what the renderer paints).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (245, 225, 40),
    "purple": (150, 60, 205),
    "orange": (250, 140, 30),
    "white": (245, 245, 245),
}

#: Object shapes.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")

#: Motion paths. Unit displacement per clip (dx, dy) in image coordinates (y grows downwards);
#: "bouncing" has no net displacement (see :func:`_path`).
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "diagonally": (0.7071, 0.7071),
    "bouncing": (0.0, 0.0),
}

#: Background names and how they are painted: ("plain", rgb) or ("gradient"|"striped"|
#: "checkered", rgb_a, rgb_b).
BACKGROUNDS: dict[str, tuple] = {
    "black": ("plain", (18, 18, 22)),
    "gray": ("plain", (120, 120, 120)),
    "white": ("plain", (235, 235, 230)),
    "blue": ("plain", (30, 50, 140)),
    "green": ("plain", (30, 110, 50)),
    "gradient": ("gradient", (25, 25, 60), (150, 150, 170)),
    "striped": ("striped", (60, 60, 60), (100, 100, 100)),
    "checkered": ("checkered", (70, 70, 70), (130, 130, 130)),
}

#: Every word a caption can contain (besides the attribute names above).
GRAMMAR_WORDS: tuple[str, ...] = ("a", "moving", "on", "background", "and")

#: Seeds >= this are never used for training; the check draws its seeds from here.
HELDOUT_SEED_START = 1_000_000

#: Half-size (px on a 64-px frame) of the first object, drawn uniformly from this range. At the
#: VAE's factor 4 a radius of 10-14 px is 5-7 latent cells across: enough for a triangle and a
#: diamond to stay apart through the VAE (radius 7-10 px kept 58 % of shapes, docs/toy-model.md).
RADIUS = (10.0, 14.0)
#: The same for the second object, drawn behind the first.
RADIUS_SECOND = (7.0, 10.0)
#: Distance an object travels over a clip, as a fraction of the frame (bouncing: its height).
TRAVEL = (0.32, 0.45)


def motion_phrase(direction: str) -> str:
    """The words a caption uses for a motion path: "moving right", "bouncing", ..."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; choose from {sorted(DIRECTIONS)}")
    return "bouncing" if direction == "bouncing" else f"moving {direction}"


def caption_for(
    colour: str,
    shape: str,
    direction: str,
    background: str,
    second: tuple[str, str, str] | None = None,
) -> str:
    """The exact caption of a clip with these attributes."""
    text = f"a {colour} {shape} {motion_phrase(direction)}"
    if second is not None:
        c2, s2, d2 = second
        text += f" and a {c2} {s2} {motion_phrase(d2)}"
    return f"{text} on a {background} background"


def is_heldout_combo(colour: str, shape: str, direction: str, background: str) -> bool:
    """About 1 in 8 single-object attribute combinations is never shown in training.

    The check samples its prompts from these combinations, so it measures composition of
    attributes the model saw separately, not recall of a training caption.
    """
    key = f"{colour}|{shape}|{direction}|{background}".encode()
    return hashlib.sha256(key).digest()[0] % 8 == 0


# --------------------------------------------------------------------------------------------
# Clips
# --------------------------------------------------------------------------------------------


@dataclass
class ToyClip:
    """One clip of the toy world.

    ``frames``: (F, H, W, 3) uint8; ``masks``: (F, H, W) bool, exact pixels of the first object
    (it is drawn on top, so its mask is fully visible); ``masks2``: same for the second object's
    visible pixels, or None; ``centers``: (F, 2) float (x, y) of the first object's path.
    """

    frames: np.ndarray
    masks: np.ndarray
    caption: str
    colour: str
    shape: str
    direction: str
    background: str
    seed: int
    second: tuple[str, str, str] | None = None
    masks2: np.ndarray | None = None
    centers: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    radius: float = 0.0

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def _paint_background(name: str, size: int) -> np.ndarray:
    spec = BACKGROUNDS[name]
    kind = spec[0]
    img = np.empty((size, size, 3), dtype=np.float32)
    if kind == "plain":
        img[:] = spec[1]
    elif kind == "gradient":
        a, b = np.array(spec[1], np.float32), np.array(spec[2], np.float32)
        t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
        img[:] = a * (1 - t) + b * t
    elif kind == "striped":
        period = max(2, size // 8)
        yy = np.arange(size)[:, None]
        stripe = ((yy // (period // 2)) % 2).astype(bool)
        img[:] = spec[1]
        img[np.broadcast_to(stripe, (size, size))] = spec[2]
    elif kind == "checkered":
        cell = max(1, size // 8)
        yy, xx = np.mgrid[0:size, 0:size]
        check = ((yy // cell + xx // cell) % 2).astype(bool)
        img[:] = spec[1]
        img[check] = spec[2]
    else:  # pragma: no cover - table is static
        raise AssertionError(kind)
    return img.round().astype(np.uint8)


def _shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """Hard-edged mask of a shape centred on pixel coordinates (cx, cy), half-size r."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    x = xx + 0.5 - cx  # pixel centres
    y = yy + 0.5 - cy
    if shape == "circle":
        return x * x + y * y <= r * r
    if shape == "square":
        s = r * 0.85
        return (np.abs(x) <= s) & (np.abs(y) <= s)
    if shape == "diamond":
        return np.abs(x) + np.abs(y) <= r * 1.15
    if shape == "triangle":
        # upright isosceles triangle: apex at top (y = -r), base at y = +0.8 r
        top, base = -r, 0.8 * r
        t = (y - top) / (base - top)  # 0 at apex, 1 at base
        return (t >= 0) & (t <= 1) & (np.abs(x) <= t * r)
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


def _path(direction: str, frames: int, size: int, r: float, rng: np.random.Generator) -> np.ndarray:
    """Centres (F, 2) of an object following ``direction``, kept fully inside the frame."""
    margin = 1.15 * r + 1.0  # the diamond's half-width, the widest shape: every shape fits
    lo, hi = margin, size - margin
    t = np.linspace(0.0, 1.0, frames)
    if direction == "bouncing":
        amp = rng.uniform(*TRAVEL) * size
        amp = min(amp, hi - lo)
        cx = rng.uniform(lo, hi)
        floor = rng.uniform(lo + amp, hi)
        cy = floor - amp * np.abs(np.sin(np.pi * t))
        return np.stack([np.full(frames, cx), cy], axis=1)
    ux, uy = DIRECTIONS[direction]
    length = rng.uniform(*TRAVEL) * size  # travel over the whole clip, in pixels
    dx, dy = ux * length, uy * length
    # start so the whole path fits: start in [lo - min(0, d), hi - max(0, d)]
    sx = rng.uniform(lo - min(0.0, dx), hi - max(0.0, dx))
    sy = rng.uniform(lo - min(0.0, dy), hi - max(0.0, dy))
    return np.stack([sx + dx * t, sy + dy * t], axis=1)


def make_clip_from(
    colour: str,
    shape: str,
    direction: str,
    background: str,
    seed: int = 0,
    frames: int = 16,
    size: int = 64,
    second: tuple[str, str, str] | None = None,
) -> ToyClip:
    """A clip with explicit attributes; ``seed`` picks size, start position and speed.

    ``second`` = (colour, shape, direction) adds a second object drawn behind the first.
    """
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; choose from {sorted(COLOURS)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; choose from {sorted(DIRECTIONS)}")
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r}; choose from {sorted(BACKGROUNDS)}")
    if frames < 2 or size < 16:
        raise ValueError("need frames >= 2 and size >= 16")
    rng = np.random.default_rng([int(seed), 7])
    scale = size / 64.0
    r = rng.uniform(*RADIUS) * scale
    centers = _path(direction, frames, size, r, rng)
    bg = _paint_background(background, size)
    out = np.repeat(bg[None], frames, axis=0)
    masks = np.zeros((frames, size, size), dtype=bool)
    masks2 = None
    if second is not None:
        c2, s2, d2 = second
        r2 = rng.uniform(*RADIUS_SECOND) * scale
        centers2 = _path(d2, frames, size, r2, rng)
        masks2 = np.zeros((frames, size, size), dtype=bool)
        for f in range(frames):
            m2 = _shape_mask(s2, centers2[f, 0], centers2[f, 1], r2, size)
            out[f][m2] = COLOURS[c2]
            masks2[f] = m2
    rgb = COLOURS[colour]
    for f in range(frames):
        m = _shape_mask(shape, centers[f, 0], centers[f, 1], r, size)
        out[f][m] = rgb
        masks[f] = m
    if masks2 is not None:
        masks2 &= ~masks
    return ToyClip(
        frames=out,
        masks=masks,
        caption=caption_for(colour, shape, direction, background, second),
        colour=colour,
        shape=shape,
        direction=direction,
        background=background,
        seed=int(seed),
        second=second,
        masks2=masks2,
        centers=centers,
        radius=float(r),
    )


def sample_attributes(
    rng: np.random.Generator,
) -> tuple[str, str, str, str]:
    """Draw (colour, shape, direction, background) with the object colour != a plain
    background of the same name (a red square on a red background would be invisible)."""
    colours = sorted(COLOURS)
    while True:
        colour = colours[rng.integers(len(colours))]
        shape = SHAPES[rng.integers(len(SHAPES))]
        direction = list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
        background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
        if colour != background:
            return colour, shape, direction, background


def make_clip(
    seed: int,
    frames: int = 16,
    size: int = 64,
    p_second: float = 0.0,
    split: str = "any",
) -> ToyClip:
    """The clip named by ``seed``: attributes, geometry and all drawn from the seed.

    ``p_second``: probability of a second object. ``split``: "train" redraws attributes until
    the combination is not held out, "heldout" until it is, "any" keeps the first draw.
    """
    if split not in ("any", "train", "heldout"):
        raise ValueError("split must be 'any', 'train' or 'heldout'")
    rng = np.random.default_rng([int(seed), 11])
    while True:
        attrs = sample_attributes(rng)
        held = is_heldout_combo(*attrs)
        if split == "any" or (split == "heldout") == held:
            break
    second = None
    if p_second > 0 and rng.random() < p_second:
        colour, _, _, background = attrs
        others = [c for c in sorted(COLOURS) if c not in (colour, background)]
        second = (
            others[rng.integers(len(others))],
            SHAPES[rng.integers(len(SHAPES))],
            list(DIRECTIONS)[rng.integers(len(DIRECTIONS))],
        )
    return make_clip_from(*attrs, seed=seed, frames=frames, size=size, second=second)


def heldout_combos() -> list[tuple[str, str, str, str]]:
    """Every held-out single-object combination (colour, shape, direction, background)."""
    out = []
    for c in sorted(COLOURS):
        for s in SHAPES:
            for d in DIRECTIONS:
                for b in BACKGROUNDS:
                    if c != b and is_heldout_combo(c, s, d, b):
                        out.append((c, s, d, b))
    return out


def all_words() -> list[str]:
    """Every word that can appear in a caption."""
    words = list(GRAMMAR_WORDS)
    for group in (COLOURS, SHAPES, DIRECTIONS, BACKGROUNDS):
        for w in group:
            if w not in words:
                words.append(w)
    return words

"""Did the toy model learn? Generate clips for held-out prompts and score them automatically.

    python -m videodirector_cli.toy.check                      # the shipped model, 48 prompts
    python -m videodirector_cli.toy.check --model DIR --n 12 --json report.json --grid grid.png

Prompts: single-object attribute combinations that training never showed
(``world.heldout_combos()``), drawn deterministically; generation seeds start at
``world.HELDOUT_SEED_START``. Each clip is scored without a model:

* background: the median (over all pixels and frames) of the max-channel distance between the
  clip and the prompt's background as the world paints it; correct when below ``BG_TOL``;
* object region: per frame, the pixels farther than ``FG_TOL`` from that background;
* colour: the median colour of the object region, nearest named colour of ``world.COLOURS``;
* motion: the region's centroid per frame, least-squares slope over the clip -> displacement;
  small displacement with a large vertical range is "bouncing", otherwise the nearest of the
  world's direction vectors;
* shape: per-frame fill ratio of the region in its bounding box (square ~1, circle ~0.79,
  triangle/diamond ~0.5; triangle has its mass low), majority vote.

The scorer is validated on the world's own clips for the same prompts (``--n`` clips, reported as
``ground_truth``): it must be (close to) 100 % there, otherwise its numbers mean nothing. The same
clips passed through the model's VAE (encode, decode) are reported as ``vae_roundtrip``: the
ceiling of what generation can reach through this decoder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

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


def _bg_image(background: str, size: int) -> np.ndarray:
    return world._paint_background(background, size).astype(np.float32)


def object_masks(frames: np.ndarray, background: str) -> tuple[np.ndarray, float]:
    """(F, H, W) bool object pixels and the background error of a (F, H, W, 3) uint8 clip."""
    f = frames.astype(np.float32)
    bg = _bg_image(background, frames.shape[1])
    dist = np.abs(f - bg[None]).max(axis=-1)
    return dist > FG_TOL, float(np.median(dist))


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
    F_, H, _, _ = frames.shape
    masks, bg_err = object_masks(frames, background)
    areas = masks.reshape(F_, -1).sum(1)
    valid = (areas >= MIN_AREA) & (areas <= MAX_AREA_FRAC * H * H)
    centers = np.full((F_, 2), np.nan)
    for f in np.nonzero(valid)[0]:
        ys, xs = np.nonzero(masks[f])
        centers[f] = (xs.mean() + 0.5, ys.mean() + 0.5)
    pred_colour = pred_shape = None
    if valid.any():
        pix = frames[valid][masks[valid]].astype(np.float32)
        pred_colour = nearest_colour(np.median(pix, axis=0))
        pred_shape = classify_shape(masks[valid])
    pred_dir, disp = classify_motion(centers, H)
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
    )


def summarize(scores: list[Score]) -> dict:
    n = len(scores)
    if n == 0:
        return {"n": 0}
    acc = lambda k: round(sum(getattr(s, k) for s in scores) / n, 4)  # noqa: E731
    all_ok = sum(s.bg_ok and s.colour_ok and s.direction_ok for s in scores) / n
    per_dir = {}
    for d in world.DIRECTIONS:
        sub = [s for s in scores if s.direction == d]
        if sub:
            per_dir[d] = round(sum(s.direction_ok for s in sub) / len(sub), 3)
    return {
        "n": n,
        "background": acc("bg_ok"),
        "colour": acc("colour_ok"),
        "direction": acc("direction_ok"),
        "shape": acc("shape_ok"),
        "colour+direction+background": round(all_ok, 4),
        "direction_by_class": per_dir,
        "chance": {
            "colour": round(1 / len(world.COLOURS), 3),
            "direction": round(1 / len(world.DIRECTIONS), 3),
            "shape": round(1 / len(world.SHAPES), 3),
        },
    }


def eval_prompts(n: int, seed: int = 0) -> list[tuple[str, str, str, str]]:
    """``n`` held-out combinations, balanced over directions, deterministic."""
    combos = world.heldout_combos()
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


# --------------------------------------------------------------------------------------------
# generation with the model
# --------------------------------------------------------------------------------------------


def load_pipeline(model: str | Path | None = None):
    """The toy AnimateDiff pipeline (CPU, float32) from a diffusers folder (default: shipped)."""
    import torch
    from diffusers import AnimateDiffPipeline

    from . import WEIGHTS_DIR

    path = Path(model) if model else WEIGHTS_DIR
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"no diffusers pipeline at {path} (model_index.json missing)")
    pipe = AnimateDiffPipeline.from_pretrained(str(path), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(
    pipe, prompt: str, seed: int, steps: int = 25, guidance: float = 7.5, frames: int = 16
):
    """(F, H, W, 3) uint8 clip generated from ``prompt`` with DDIM."""
    import torch

    size = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
    out = pipe(
        prompt,
        num_frames=frames,
        height=size,
        width=size,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    ).frames[0]
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def save_grid(
    rows: list[tuple[str, np.ndarray]], path: str | Path, every: int = 2, scale: int = 2
) -> None:
    """PNG with one row per clip (every ``every``-th frame) under its caption."""
    from PIL import Image, ImageDraw

    label_h = 14
    F_, H, W, _ = rows[0][1].shape
    cols = list(range(0, F_, every))
    cw, ch = W * scale, H * scale
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


def run_check(
    pipe,
    prompts,
    steps: int = 25,
    guidance: float = 7.5,
    seed0: int = world.HELDOUT_SEED_START,
    frames: int = 16,
    progress: bool = True,
):
    """Generate and score one clip per prompt; returns (scores, clips)."""
    scores, clips = [], []
    t0 = time.time()
    for i, (c, s, d, b) in enumerate(prompts):
        prompt = world.caption_for(c, s, d, b)
        clip = generate(pipe, prompt, seed0 + i, steps=steps, guidance=guidance, frames=frames)
        sc = score_clip(clip, c, s, d, b)
        scores.append(sc)
        clips.append(clip)
        if progress:
            print(
                f"[{i + 1}/{len(prompts)} {time.time() - t0:.0f}s] {prompt}: colour {sc.pred_colour} "
                f"dir {sc.pred_direction} shape {sc.pred_shape} bg_err {sc.bg_error}",
                file=sys.stderr,
                flush=True,
            )
    return scores, clips


def ground_truth_scores(
    prompts, frames: int = 16, seed0: int = world.HELDOUT_SEED_START
) -> list[Score]:
    return [
        score_clip(
            world.make_clip_from(c, s, d, b, seed=seed0 + i, frames=frames).frames, c, s, d, b
        )
        for i, (c, s, d, b) in enumerate(prompts)
    ]


DOC_COLOUR_PROMPTS = [
    (c, "circle", "right", "black") for c in ("red", "green", "blue", "yellow", "purple", "white")
]
DOC_MOTION_PROMPTS = [("orange", "square", d, "gray") for d in world.DIRECTIONS]


def doc_grids(
    pipe,
    folder: Path,
    steps: int = 25,
    guidance: float = 7.5,
    seed: int = world.HELDOUT_SEED_START + 500,
):
    """Sample grids for the docs: one prompt family per grid, the same seed on every row, each
    row labelled with its prompt and what the scorer read from the generated clip."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, prompts in (("colours", DOC_COLOUR_PROMPTS), ("motion", DOC_MOTION_PROMPTS)):
        rows = []
        for c, s, d, b in prompts:
            clip = generate(
                pipe, world.caption_for(c, s, d, b), seed, steps=steps, guidance=guidance
            )
            sc = score_clip(clip, c, s, d, b)
            rows.append((f"{sc.prompt}  -> read: {sc.pred_colour}, {sc.pred_direction}", clip))
            print(rows[-1][0], file=sys.stderr, flush=True)
        save_grid(rows, folder / f"toy_samples_{name}.png")


def vae_roundtrip_scores(
    pipe, prompts, frames: int = 16, seed0: int = world.HELDOUT_SEED_START
) -> list[Score]:
    """Score the world's clips after a VAE encode/decode: the ceiling the generator can reach
    through this decoder (it separates the VAE's errors from the UNet's)."""
    import torch

    out = []
    for i, (c, s, d, b) in enumerate(prompts):
        clip = world.make_clip_from(c, s, d, b, seed=seed0 + i, frames=frames)
        x = torch.from_numpy(clip.frames).float().permute(0, 3, 1, 2) / 127.5 - 1
        with torch.no_grad():
            rec = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mean).sample
        rec = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        out.append(score_clip(rec, c, s, d, b))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m videodirector_cli.toy.check", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--model", default=None, help="diffusers folder (default: the shipped toy weights)"
    )
    p.add_argument("--n", type=int, default=48, help="number of held-out prompts")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="write the full report here")
    p.add_argument("--grid", default=None, help="PNG of the first 8 generated clips")
    p.add_argument(
        "--doc-grids",
        default=None,
        help="also write toy_samples_colours.png and "
        "toy_samples_motion.png (fixed prompts, one seed) into this folder",
    )
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.doc_grids:
        doc_grids(
            load_pipeline(args.model),
            Path(args.doc_grids),
            steps=args.steps,
            guidance=args.guidance,
        )
        if args.n == 0:
            return 0
    prompts = eval_prompts(args.n)
    gt = summarize(ground_truth_scores(prompts))
    pipe = load_pipeline(args.model)
    vae_rt = summarize(vae_roundtrip_scores(pipe, prompts))
    t0 = time.time()
    scores, clips = run_check(pipe, prompts, steps=args.steps, guidance=args.guidance)
    report = {
        "model": str(args.model or "shipped toy weights"),
        "steps": args.steps,
        "guidance": args.guidance,
        "seconds": round(time.time() - t0, 1),
        "generated": summarize(scores),
        "ground_truth": gt,
        "vae_roundtrip": vae_rt,
        "samples": [asdict(s) for s in scores],
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.grid:
        save_grid([(sc.prompt, c) for sc, c in zip(scores[:8], clips[:8])], args.grid)
    print(
        json.dumps(
            {k: report[k] for k in ("generated", "vae_roundtrip", "ground_truth", "seconds")},
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

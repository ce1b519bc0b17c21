"""Did the toy model learn? Generate clips for held-out prompts and score them automatically.

    python -m videodirector_cli.toy.check                      # the shipped model, 48 prompts
    python -m videodirector_cli.toy.check --model DIR --n 24 --first-seed 1010000 --json r.json

Prompts: single-object attribute combinations that training never showed
(``world.heldout_combos()``), balanced over the motions and drawn as a function of
``--first-seed``; clip ``i`` is generated from seed ``first_seed + i`` (25 DDIM steps, guidance
7.5) and scored by ``toy.scorer``. The report also scores the world's own clips for the same
prompts and seeds (``ground_truth``: the scorer's sanity, and the smoothness of training clips)
and the same clips through the model's VAE (``vae_roundtrip``: the ceiling generation can reach
through this decoder), and the word sensitivity of each word group (``word_sensitivity``). The
last line on stdout is a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import world
from .grid import save_grid
from .scorer import Score, eval_prompts, ground_truth_scores, score_clip, summarize


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
) -> np.ndarray:
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


def run_check(
    pipe,
    prompts,
    steps: int = 25,
    guidance: float = 7.5,
    first_seed: int = world.HELDOUT_SEED_START,
    frames: int = 16,
    progress: bool = True,
) -> tuple[list[Score], list[np.ndarray]]:
    """Generate and score one clip per prompt (clip ``i`` from seed ``first_seed + i``)."""
    scores, clips = [], []
    t0 = time.time()
    for i, (c, s, d, b) in enumerate(prompts):
        prompt = world.caption_for(c, s, d, b)
        clip = generate(pipe, prompt, first_seed + i, steps=steps, guidance=guidance, frames=frames)
        sc = score_clip(clip, c, s, d, b)
        scores.append(sc)
        clips.append(clip)
        if progress:
            print(
                f"[{i + 1}/{len(prompts)} {time.time() - t0:.0f}s] {prompt}: colour "
                f"{sc.pred_colour} dir {sc.pred_direction} shape {sc.pred_shape} "
                f"bg_err {sc.bg_error}",
                file=sys.stderr,
                flush=True,
            )
    return scores, clips


def vae_roundtrip_scores(
    pipe, prompts, first_seed: int = world.HELDOUT_SEED_START, frames: int = 16
) -> list[Score]:
    """Score the world's clips after a VAE encode/decode: the ceiling the generator can reach
    through this decoder (it separates the VAE's errors from the UNet's)."""
    import torch

    out = []
    for i, (c, s, d, b) in enumerate(prompts):
        clip = world.make_clip_from(c, s, d, b, seed=first_seed + i, frames=frames)
        x = torch.from_numpy(clip.frames).float().permute(0, 3, 1, 2) / 127.5 - 1
        with torch.no_grad():
            rec = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mean).sample
        rec = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        out.append(score_clip(rec, c, s, d, b))
    return out


def word_sensitivity(
    pipe, prompts, seed: int = world.HELDOUT_SEED_START, steps: int = 25, frames: int = 16
) -> dict[str, float]:
    """How far the first DDIM step's noise prediction moves when one word of the prompt is
    swapped for another of its group, relative to its norm (mean over ``prompts``, one swap
    each). A group the model ignores reads about 0 however good its samples look otherwise;
    it is how the motion words were found to be erased by the text encoder."""
    import torch

    groups = {
        "colour": sorted(world.COLOURS),
        "shape": list(world.SHAPES),
        "motion": list(world.DIRECTIONS),
        "background": list(world.BACKGROUNDS),
    }
    pipe.scheduler.set_timesteps(steps)
    t = pipe.scheduler.timesteps[:1]
    size = int(pipe.unet.config.sample_size)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, pipe.unet.config.in_channels, frames, size, size, generator=generator)

    def eps(words) -> torch.Tensor:
        emb = pipe.encode_prompt(world.caption_for(*words), "cpu", 1, False)[0]
        return pipe.unet(latents, t, encoder_hidden_states=emb.repeat_interleave(frames, 0)).sample

    totals = {g: 0.0 for g in groups}
    with torch.no_grad():
        for words in prompts:
            base = eps(words)
            for i, (group, values) in enumerate(groups.items()):
                swapped = list(words)
                options = [v for v in values if v != words[i]]
                options = [v for v in options if group != "colour" or v != words[3]]
                options = [v for v in options if group != "background" or v != words[0]]
                swapped[i] = options[0]
                totals[group] += float((eps(swapped) - base).norm() / base.norm())
    return {g: round(v / len(prompts), 5) for g, v in totals.items()}


#: The docs' sample grids: one prompt family per grid (not necessarily held out).
DOC_PROMPTS = {
    "colours": [
        (c, "circle", "right", "black")
        for c in ("red", "green", "blue", "yellow", "purple", "white")
    ],
    "shapes": [
        (c, s, "down", "blue") for c, s in zip(("orange", "white", "yellow", "red"), world.SHAPES)
    ],
    "motion": [("orange", "square", d, "gray") for d in world.DIRECTIONS],
}


def doc_grids(
    pipe,
    folder: Path,
    steps: int = 25,
    guidance: float = 7.5,
    seed: int = world.HELDOUT_SEED_START + 500,
) -> None:
    """Sample grids for the docs: the same seed on every row, so rows differ by their prompt
    alone; each row's label ends with what the scorer read from the generated clip."""
    folder.mkdir(parents=True, exist_ok=True)
    world_rows = [
        (c.caption, c.frames) for c in (world.make_clip(s, split="train") for s in range(6))
    ]
    save_grid(world_rows, folder / "toy_world.png")  # the training world itself
    for name, prompts in DOC_PROMPTS.items():
        rows = []
        for c, s, d, b in prompts:
            clip = generate(
                pipe, world.caption_for(c, s, d, b), seed, steps=steps, guidance=guidance
            )
            sc = score_clip(clip, c, s, d, b)
            read = f"{sc.pred_colour} {sc.pred_shape} {sc.pred_direction}"
            rows.append((f"{sc.prompt}  -> read: {read}", clip))
            print(rows[-1][0], file=sys.stderr, flush=True)
        save_grid(rows, folder / f"toy_samples_{name}.png")


def build_report(pipe, args, prompts) -> tuple[dict, list[np.ndarray]]:
    gt_scores = ground_truth_scores(prompts, args.first_seed)
    vae_rt = summarize(vae_roundtrip_scores(pipe, prompts, args.first_seed))
    sensitivity = word_sensitivity(pipe, prompts[:6], args.first_seed, steps=args.steps)
    t0 = time.time()
    scores, clips = run_check(
        pipe, prompts, steps=args.steps, guidance=args.guidance, first_seed=args.first_seed
    )
    generated = summarize(scores)
    ground_truth = summarize(gt_scores)
    report = {
        "model": str(args.model or "shipped toy weights"),
        "n": len(prompts),
        "first_seed": args.first_seed,
        "steps": args.steps,
        "guidance": args.guidance,
        "seconds": round(time.time() - t0, 1),
        "generated": generated,
        "smoothness_gap": round(generated["smoothness"] - ground_truth["smoothness"], 5),
        "ground_truth": ground_truth,
        "vae_roundtrip": vae_rt,
        "word_sensitivity": sensitivity,
        "samples": [asdict(s) for s in scores],
    }
    return report, clips


def summary_line(report: dict) -> str:
    g, v = report["generated"], report["vae_roundtrip"]
    return (
        f"toy check, {report['n']} held-out prompts from seed {report['first_seed']}, "
        f"{report['steps']} steps: background {g['background']:.0%}, colour {g['colour']:.0%}, "
        f"shape {g['shape']:.0%}, motion {g['direction']:.0%}, smoothness {g['smoothness']:.4f} "
        f"(training clips {report['ground_truth']['smoothness']:.4f}, gap "
        f"{report['smoothness_gap']:+.4f}); VAE round trip: colour {v['colour']:.0%}, "
        f"shape {v['shape']:.0%}; word sensitivity "
        + " ".join(f"{k} {x:.4f}" for k, x in report["word_sensitivity"].items())
        + f"; {report['seconds']:.0f} s"
    )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m videodirector_cli.toy.check", description=(__doc__ or "").split("\n")[0]
    )
    p.add_argument("--model", default=None, help="diffusers folder (default: the shipped weights)")
    p.add_argument("--n", type=int, default=48, help="number of held-out prompts (1-164)")
    p.add_argument(
        "--first-seed",
        type=int,
        default=world.HELDOUT_SEED_START,
        help=f"seed of the first clip (>= {world.HELDOUT_SEED_START}, the held-out seeds)",
    )
    p.add_argument("--steps", type=int, default=25, help="DDIM steps")
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="write the full report here")
    p.add_argument("--grid", default=None, help="PNG of the first 8 generated clips")
    p.add_argument(
        "--doc-grids",
        default=None,
        help="also write toy_world.png and toy_samples_{colours,shapes,motion}.png here",
    )
    args = p.parse_args(argv)
    n_max = len(world.heldout_combos())
    if not 1 <= args.n <= n_max and not (args.n == 0 and args.doc_grids):
        raise SystemExit(f"--n must be between 1 and {n_max} (the held-out combinations)")
    if args.first_seed < world.HELDOUT_SEED_START:
        raise SystemExit(f"--first-seed must be at least {world.HELDOUT_SEED_START}")
    if args.steps < 1 or args.threads < 1:
        raise SystemExit("--steps and --threads must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    try:
        pipe = load_pipeline(args.model)
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None
    if args.doc_grids:
        doc_grids(pipe, Path(args.doc_grids), steps=args.steps, guidance=args.guidance)
        if args.n == 0:
            return 0
    prompts = eval_prompts(args.n, seed=args.first_seed - world.HELDOUT_SEED_START)
    report, clips = build_report(pipe, args, prompts)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.grid:
        scores = report["samples"]
        save_grid([(s["prompt"], c) for s, c in zip(scores[:8], clips[:8])], args.grid)
    print(summary_line(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

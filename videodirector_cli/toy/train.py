"""Train the toy AnimateDiff-architecture model on the procedural world.

    python -m videodirector_cli.toy.train --out DIR --work W --threads 1

Stages, in order (``--stages``): ``vae`` trains the ``AutoencoderKL`` (``toy.train_vae``);
``latents`` encodes the training pool with it once (``toy.latents``); ``image`` and ``video``
train the ``CLIPTextModel`` and the UNet on those cached latents (``toy.train_denoiser``);
``export`` writes the diffusers pipeline folder from the EMA weights (``toy.export``). Clips come
from seeds below ``--train-seeds`` (far below ``world.HELDOUT_SEED_START``) with the held-out
attribute combinations excluded.

Every draw is seeded from ``--seed`` and the step, so a resumed run sees the data and noise an
uninterrupted one would. Each stage checkpoints atomically to its own file in ``--work`` every
``--ckpt-minutes``, on Ctrl-C / SIGTERM and at ``--max-minutes``; running the same command again
resumes without redoing a step. ``--device cuda`` runs the same stages on a GPU (bf16 autocast).
``progress.json`` and ``loss.png`` in the work folder say where each stage stands (steps, CPU
and wall seconds, losses).
"""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import configs, vocab, world
from .latents import PoolSettings, load_or_build
from .train_denoiser import DenoiserSettings, DenoiserTrainer, describe
from .train_vae import VaeSettings, VaeTrainer
from .training import (
    RunSettings,
    Runtime,
    add_options,
    load_checkpoint,
    log,
    plot_losses,
    settings_from,
)

STAGES = ("vae", "latents", "image", "video", "export")
SETTINGS = (RunSettings, PoolSettings, VaeSettings, DenoiserSettings)
INIT_RECORD = "init_from.json"
PAUSED = 3  # exit code: --max-minutes reached, run the same command again to continue
INTERRUPTED = 130


def default_work_dir() -> Path:
    """Training state lives in the user's cache unless --work names a folder."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vdir")) / "toy-train"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m videodirector_cli.toy.train",
        description=(__doc__ or "").split("\n")[0],
    )
    p.add_argument("--out", default=None, help="pipeline folder the export stage writes")
    p.add_argument(
        "--work",
        default=str(default_work_dir()),
        help="checkpoints, latent cache, progress.json, loss.png (default: %(default)s)",
    )
    p.add_argument(
        "--stages",
        default=",".join(STAGES),
        help="comma list of " + ",".join(STAGES) + " (default: all)",
    )
    p.add_argument("--loss-png", default=None, help="also write the loss-curve PNG here")
    p.add_argument(
        "--init-from",
        default=None,
        help="start a new work folder from a pipeline folder (e.g. the shipped weights): its "
        "VAE counts as trained and the video stage fine-tunes its UNet and text encoder",
    )
    for cls in SETTINGS:
        add_options(p, cls)
    return p.parse_args(argv)


def validate(args: argparse.Namespace) -> list[str]:
    """The stages to run; stops with one line, before anything is written, on a bad option."""
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise SystemExit(f"unknown stage(s): {', '.join(unknown)}; choose from {','.join(STAGES)}")
    if "export" in stages and not args.out:
        raise SystemExit("the export stage needs --out DIR")
    for name in ("vae_batch", "image_batch", "video_batch", "threads", "train_seeds", "log_every"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    if args.vae_batch % 4:
        raise SystemExit("--vae-batch must be a multiple of 4 (4 frames per clip)")
    if args.train_seeds >= world.HELDOUT_SEED_START:
        raise SystemExit("--train-seeds must stay below the held-out seed range")
    for name in ("p_uncond", "p_second", "vae_p_second", "video_noisy_frac"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise SystemExit(f"--{name.replace('_', '-')} must be between 0 and 1")
    for name in ("vae_steps", "image_steps", "video_steps", "video_text_lr", "word_id_weight"):
        if getattr(args, name) < 0:
            raise SystemExit(f"--{name.replace('_', '-')} must not be negative")
    work = Path(args.work)
    if args.init_from:
        if not (Path(args.init_from) / "model_index.json").is_file():
            raise SystemExit(f"--init-from {args.init_from}: not a diffusers pipeline folder")
        mismatch = architecture_mismatch(Path(args.init_from))
        if mismatch:
            raise SystemExit(f"--init-from {args.init_from}: its UNet has another {mismatch}")
        seeded = (work / INIT_RECORD).is_file()
        if not seeded and any((work / f"{s}.pt").exists() for s in ("vae", "image", "video")):
            raise SystemExit(f"--init-from needs a new work folder; {work} has checkpoints")
    elif "video" in stages and "image" not in stages and not (work / "video.pt").exists():
        image = load_checkpoint(work / "image.pt", mmap=True)
        done = image["step"] if image else 0
        if done < args.image_steps:
            raise SystemExit(
                f"the image stage has not finished ({done}/{args.image_steps} steps): "
                "run --stages image first"
            )
    return stages


def main(argv=None) -> int:
    args = parse_args(argv)
    run = settings_from(args, RunSettings)
    runtime = Runtime(run)  # stops here on --device cuda without a GPU
    stages = validate(args)
    torch.set_num_threads(run.threads)

    def _term(signum, frame):  # a plain `kill` saves a checkpoint too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background
        signal.signal(signal.SIGINT, _term)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run_stages(args, stages, runtime, work)
    except KeyboardInterrupt:
        log("interrupted: checkpoint saved; run the same command to resume")
        return INTERRUPTED


def _run_stages(args, stages: list[str], runtime: Runtime, work: Path) -> int:
    from transformers import CLIPTokenizer

    seed = runtime.settings.seed
    pool_settings = settings_from(args, PoolSettings)
    tok_dir = work / "tokenizer"
    vocab.save_tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    vae_tr = VaeTrainer(
        settings_from(args, VaeSettings), runtime, seed, pool_settings.train_seeds, work
    )
    den = DenoiserTrainer(settings_from(args, DenoiserSettings), runtime, seed, tokenizer, work)
    record: dict = {}
    if args.init_from and not (work / INIT_RECORD).is_file():
        seed_from_pipeline(Path(args.init_from), work, vae_tr, den)

    def finish(code: int) -> int:
        _write_progress(work, vae_tr, den, record, args)
        return code

    if "vae" in stages:
        vae_tr.train()
        if not vae_tr.done():
            return finish(_paused("vae", vae_tr.step, args.vae_steps))
    if set(stages) - {"vae"} and not vae_tr.done():
        raise SystemExit(
            f"the VAE stage has not finished ({vae_tr.step}/{args.vae_steps} steps): "
            "run --stages vae first"
        )
    vae = vae_tr.final_vae()
    pool = None
    if set(stages) & {"latents", "image", "video"}:
        pool, record["latents"] = load_or_build(
            work / "latents.pt", vae.to(runtime.device), tokenizer, pool_settings
        )
        vae.cpu()
    if "image" in stages:
        assert pool is not None
        den.train_image(pool)
        if not den.done("image"):
            return finish(_paused("image", den.state["image"].step, args.image_steps))
    if "video" in stages:
        if not den.video_may_start():
            raise SystemExit("the image stage has not finished: run --stages image first")
        assert pool is not None
        den.train_video(pool)
        if not den.done("video"):
            return finish(_paused("video", den.state["video"].step, args.video_steps))
    if "export" in stages:
        from .export import export_pipeline

        unet, text_encoder = den.exported_models()
        export_pipeline(vae, text_encoder, tok_dir, unet, Path(args.out))
        log(f"wrote {args.out}")
    return finish(0)


def architecture_mismatch(folder: Path) -> str | None:
    """What differs between the UNet in ``folder`` and ``configs``' one (None: nothing)."""
    found = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    expected = {
        **{k: configs.UNET_CONFIG[k] for k in _SAME_KEYS},
        "num_attention_heads": configs.UNET_CONFIG["attention_head_dim"],  # diffusers' renaming
        "motion_num_attention_heads": configs.MOTION_CONFIG["motion_num_attention_heads"],
    }
    for key, value in expected.items():
        want = list(value) if isinstance(value, tuple) else value
        if found.get(key) != want:
            return f"{key} {found.get(key)} (this model: {want})"
    return None


_SAME_KEYS = (
    "block_out_channels",
    "cross_attention_dim",
    "in_channels",
    "out_channels",
    "layers_per_block",
    "norm_num_groups",
    "sample_size",
)


def seed_from_pipeline(folder: Path, work: Path, vae_tr: VaeTrainer, den) -> None:
    """``--init-from``: the folder's VAE becomes the VAE stage's result and its UNet and text
    encoder the video stage's starting point (the architecture must be this one)."""
    from diffusers import AutoencoderKL, UNetMotionModel
    from transformers import CLIPTextModel

    unet: Any = UNetMotionModel.from_pretrained(folder, subfolder="unet", torch_dtype=torch.float32)
    vae: Any = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=torch.float32)
    text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder")
    vae_tr.adopt(vae)
    own, _ = den.video_models(None)  # no image.pt here: the architecture, freshly built
    own.load_state_dict(unet.state_dict())
    den.seed_video(own, text_encoder)
    (work / INIT_RECORD).write_text(json.dumps({"init_from": str(folder)}) + "\n")
    log(f"work folder {work} starts from {folder}")


def _paused(stage: str, step: int, total: int) -> int:
    log(
        f"--max-minutes reached in the {stage} stage at step {step}/{total}: checkpoint saved; "
        "run the same command to continue"
    )
    return PAUSED


def _write_progress(work: Path, vae_tr: VaeTrainer, den: DenoiserTrainer, record, args) -> None:
    losses = {**vae_tr.losses, **{f"{k}_eps": st.losses for k, st in den.state.items()}}
    summary = {
        "vae": {"steps": vae_tr.step, **vae_tr.clock.as_dict()},
        **({"latents": record["latents"]} if "latents" in record else {}),
        **describe(den),
        "final_losses_avg50": {
            k: round(float(np.mean(v[-50:])), 5) for k, v in losses.items() if v
        },
    }
    tmp = work / "progress.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(work / "progress.json")
    plot_losses(losses, work / "loss.png")
    if args.loss_png:
        plot_losses(losses, Path(args.loss_png))
    log(json.dumps(summary))


if __name__ == "__main__":
    raise SystemExit(main())

"""Train the toy AnimateDiff-architecture model on the procedural world (CPU, about 90 minutes).

    python -m videodirector_cli.toy.train --out videodirector_cli/toy/weights --work toy-train

Stages, in order (``--stages``): ``vae`` trains the ``AutoencoderKL`` on random 32x32 crops
(L1 + MSE, small KL) and sets its ``scaling_factor`` to 1 / std of the latents; ``decoder``
fine-tunes the decoder on full frames; ``vae2`` fine-tunes the whole VAE with object pixels
weighted up (exact masks from the world); ``image`` and ``video`` train the ``CLIPTextModel``
and the UNet (see ``train_denoiser``); ``export`` writes the diffusers pipeline folder. Clips
are generated on the fly from seeds < ``--train-seeds`` (far below
``world.HELDOUT_SEED_START``) with the held-out attribute combinations excluded.

Everything is seeded from ``--seed`` and the step index, so a resumed run draws the same data and
noise as an uninterrupted one. Each stage checkpoints atomically to its own file in ``--work``
every ``--ckpt-minutes`` and on Ctrl-C / SIGTERM; running the same command again resumes. The
loss curves go to ``--work``/loss.png (and ``--loss-png`` if given).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import configs, vocab, world
from .train_denoiser import DenoiserSettings, DenoiserTrainer


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def clip_tensor(clip: world.ToyClip) -> torch.Tensor:
    """(F, 3, H, W) float in [-1, 1]."""
    x = torch.from_numpy(clip.frames).float().permute(0, 3, 1, 2)
    return x / 127.5 - 1.0


def step_rng(seed: int, stage: str, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, {"vae": 1, "unet": 2}[stage], step])


def vae_batch(seed: int, step: int, args) -> torch.Tensor:
    rng = step_rng(seed, "vae", step)
    frames = []
    per_clip = 4
    for _ in range(args.vae_batch // per_clip):
        s = int(rng.integers(args.train_seeds))
        clip = world.make_clip(s, frames=configs.NUM_FRAMES, p_second=0.3, split="train")
        idx = rng.choice(clip.num_frames, size=per_clip, replace=False)
        x = clip_tensor(clip)[idx]
        c = args.vae_crop
        if c and c < x.shape[-1]:  # random crops: the VAE is convolutional, crops are cheaper
            crops = []
            for k in range(per_clip):
                oy, ox = rng.integers(0, x.shape[-1] - c + 1, size=2)
                crops.append(x[k, :, oy : oy + c, ox : ox + c])
            x = torch.stack(crops)
        frames.append(x)
    return torch.cat(frames)


# ---------------------------------------------------------------------------------------------
# plotting (PIL only: no matplotlib here)
# ---------------------------------------------------------------------------------------------


def plot_losses(
    series: dict[str, list[float]], path: Path, title: str = "toy model training"
) -> None:
    """Log-scale loss curves (smoothed) side by side, one panel per series, as a PNG."""
    from PIL import Image, ImageDraw

    names = [k for k, v in series.items() if v]
    if not names:
        return
    pw, ph, pad = 360, 240, 44
    img = Image.new("RGB", (pw * len(names), ph + 30), "white")
    d = ImageDraw.Draw(img)
    d.text((8, 6), title, fill="black")
    for k, name in enumerate(names):
        y = np.asarray(series[name], dtype=np.float64)
        y = np.clip(y, 1e-8, None)
        win = max(1, len(y) // 50)
        sm = np.convolve(y, np.ones(win) / win, mode="valid") if len(y) > win else y
        ly = np.log10(sm)
        lo, hi = float(ly.min()), float(ly.max())
        if hi - lo < 1e-6:
            hi = lo + 1
        x0, y0 = k * pw + pad, 30
        w, h = pw - pad - 10, ph - 40
        d.rectangle([x0, y0, x0 + w, y0 + h], outline="black")
        for dec in range(math.floor(lo), math.ceil(hi) + 1):
            for m in (1, 2, 5):
                v = math.log10(m) + dec
                if lo <= v <= hi:
                    yy = y0 + h - (v - lo) / (hi - lo) * h
                    d.line([x0 - 4, yy, x0, yy], fill="black")
                    d.text((x0 - pad + 2, yy - 6), f"{m * 10.0**dec:.0e}", fill="black")
                    d.line([x0, yy, x0 + w, yy], fill=(225, 225, 225))
        pts = [
            (x0 + i / max(1, len(ly) - 1) * w, y0 + h - (v - lo) / (hi - lo) * h)
            for i, v in enumerate(ly)
        ]
        if len(pts) > 1:
            d.line(pts, fill=(200, 40, 40), width=2)
        d.text((x0 + 4, y0 + h + 4), f"{name}: {len(y)} steps, last {sm[-1]:.4f}", fill="black")
    tmp = path.with_suffix(".tmp.png")
    img.save(tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# checkpointing
# ---------------------------------------------------------------------------------------------


def atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Trainer:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(args.seed)
        self.tok_dir = self.work / "tokenizer"
        vocab.save_tokenizer_files(self.tok_dir)
        from transformers import CLIPTokenizer

        self.tokenizer = CLIPTokenizer.from_pretrained(str(self.tok_dir))
        self.vae = configs.build_vae()
        tk = self.tokenizer
        text_encoder = configs.build_text_encoder(
            len(tk), tk.bos_token_id, tk.eos_token_id, tk.pad_token_id
        )
        self.opt_vae = torch.optim.AdamW(self.vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
        self.vae_step = 0
        self.seconds = {"vae": 0.0}
        self.losses: dict[str, list[float]] = {"vae_rec": [], "vae_kl": []}
        self.denoiser = DenoiserTrainer(
            denoiser_settings(args), self.vae, self.tokenizer, text_encoder, self.work
        )
        self.denoiser.load_progress()
        self.dec_step = 0
        self.dec_state: dict | None = None
        self.vae2_step = 0
        self.vae2_state: dict | None = None
        self.seconds["vae_finetune"] = 0.0
        self.losses["vae_finetune"] = []
        self.seconds["decoder"] = 0.0
        self.losses["vae_decoder"] = []
        self.state_path = self.work / "state.pt"
        if self.state_path.exists():
            self.load()

    # -- state ------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "args": vars(self.args),
            "vae": self.vae.state_dict(),
            "vae_scaling": self.vae.config.scaling_factor,
            "opt_vae": self.opt_vae.state_dict(),
            "vae_step": self.vae_step,
            "seconds": {
                k: v for k, v in self.seconds.items() if k not in ("decoder", "vae_finetune")
            },
            "losses": {
                k: v for k, v in self.losses.items() if k not in ("vae_decoder", "vae_finetune")
            },
        }

    def save(self) -> None:
        atomic_torch_save(self.state(), self.state_path)
        self.save_progress()

    def save_progress(self) -> None:
        (self.work / "progress.json").write_text(
            json.dumps(
                {
                    "vae_step": self.vae_step,
                    "steps": self.denoiser.steps,
                    "seconds": {**self.seconds, **self.denoiser.seconds},
                },
                indent=1,
            )
        )
        plot_losses(self.all_losses(), self.work / "loss.png")

    def all_losses(self) -> dict[str, list[float]]:
        return {**self.losses, **self.denoiser.losses}

    def load(self) -> None:
        st = torch.load(self.state_path, map_location="cpu", weights_only=False)
        self.vae.load_state_dict(st["vae"])
        self.vae.register_to_config(scaling_factor=st["vae_scaling"])
        self.opt_vae.load_state_dict(st["opt_vae"])
        self.vae_step = st["vae_step"]
        self.seconds["vae"] = st["seconds"]["vae"]
        for k in ("vae_rec", "vae_kl"):
            self.losses[k] = st["losses"][k]
        _log(f"resumed from {self.state_path}: vae step {self.vae_step}")

    # -- helpers ----------------------------------------------------------------------------
    def lr_at(
        self, step: int, total: int, base: float, warmup: int = 100, time_frac: float = 0.0
    ) -> float:
        """Linear warm-up, then cosine decay to 10 %. ``time_frac`` (share of the wall-clock
        budget spent) makes the decay finish in time when the budget, not the step count, ends
        the run."""
        if step < warmup:
            return base * (step + 1) / warmup
        p = min(1.0, max((step - warmup) / max(1, total - warmup), time_frac))
        return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    def plain_log(self, stage: str, step: int, text: str) -> None:
        """One line every 100 steps when stderr is not a terminal (the bar is not drawn then)."""
        if step % 100 == 0 and not sys.stderr.isatty():
            _log(f"[{stage} {step}] {text}")

    # -- stage A ----------------------------------------------------------------------------
    def train_vae(self, progress, task) -> None:
        a = self.args
        self.vae.train()
        last_ckpt = time.time()
        while self.vae_step < a.vae_steps:
            t0 = time.time()
            x = vae_batch(a.seed, self.vae_step, a)
            for g in self.opt_vae.param_groups:
                g["lr"] = self.lr_at(self.vae_step, a.vae_steps, a.vae_lr, warmup=50)
            torch.manual_seed(a.seed * 7919 + self.vae_step)
            post = self.vae.encode(x).latent_dist
            z = post.sample()
            rec = self.vae.decode(z).sample
            l_rec = F.l1_loss(rec, x) + F.mse_loss(rec, x)
            kl = 0.5 * (post.mean.pow(2) + post.var - 1.0 - post.logvar).mean()
            loss = l_rec + a.kl_weight * kl
            self.opt_vae.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.vae.parameters(), 1.0)
            self.opt_vae.step()
            self.vae_step += 1
            self.losses["vae_rec"].append(l_rec.item())
            self.losses["vae_kl"].append(kl.item())
            self.seconds["vae"] += time.time() - t0
            progress.update(task, completed=self.vae_step, info=f"rec {l_rec.item():.4f}")
            self.plain_log("vae", self.vae_step, f"rec {l_rec.item():.4f} kl {kl.item():.3f}")
            if time.time() - last_ckpt > a.ckpt_minutes * 60:
                self.save()
                last_ckpt = time.time()
        if self.vae_step >= a.vae_steps and self.vae.config.scaling_factor == 1.0:
            self.set_scaling()
        self.save()

    @torch.no_grad()
    def set_scaling(self) -> None:
        self.vae.eval()
        zs = []
        for s in range(64):
            clip = world.make_clip(10_000_000 + s, p_second=0.3, split="train")
            zs.append(self.vae.encode(clip_tensor(clip)).latent_dist.mean)
        std = float(torch.cat(zs).std())
        self.vae.register_to_config(scaling_factor=1.0 / std)
        _log(f"VAE latent std {std:.4f} -> scaling_factor {1.0 / std:.4f}")

    # -- stage C: decoder fine-tuning ---------------------------------------------------------
    # The UNet only sees the encoder's latents, so the decoder (and post_quant_conv) can be
    # trained further at any time without invalidating the UNet. It runs on full 64x64 frames
    # and keeps its own checkpoint (decoder.pt), so it can run beside stage B.
    def decoder_params(self):
        return list(self.vae.decoder.parameters()) + list(self.vae.post_quant_conv.parameters())

    def load_decoder(self) -> None:
        path = self.work / "decoder.pt"
        if path.exists():
            st = torch.load(path, map_location="cpu", weights_only=False)
            self.vae.decoder.load_state_dict(st["decoder"])
            self.vae.post_quant_conv.load_state_dict(st["post_quant_conv"])
            self.dec_step = st["step"]
            self.dec_state = st
            self.losses["vae_decoder"] = st["losses"]
            self.seconds["decoder"] = st["seconds"]

    def save_decoder(self, opt) -> None:
        atomic_torch_save(
            {
                "decoder": self.vae.decoder.state_dict(),
                "post_quant_conv": self.vae.post_quant_conv.state_dict(),
                "opt": opt.state_dict(),
                "step": self.dec_step,
                "losses": self.losses["vae_decoder"],
                "seconds": self.seconds["decoder"],
            },
            self.work / "decoder.pt",
        )

    def train_decoder(self, progress, task) -> None:
        a = self.args
        opt = torch.optim.AdamW(self.decoder_params(), lr=a.dec_lr, weight_decay=0.0)
        if self.dec_state is not None:
            opt.load_state_dict(self.dec_state["opt"])
        self.vae.eval()
        self.vae.decoder.train()
        start, last_ckpt = time.time(), time.time()
        try:
            self._decoder_loop(opt, start, last_ckpt, progress, task)
        finally:
            self.save_decoder(opt)

    def _decoder_loop(self, opt, start: float, last_ckpt: float, progress, task) -> None:
        a = self.args
        while self.dec_step < a.dec_steps and time.time() - start < a.dec_minutes * 60:
            t0 = time.time()
            rng = np.random.default_rng([a.seed, 3, self.dec_step])
            xs = []
            for _ in range(a.dec_batch // 4):
                clip = world.make_clip(
                    int(rng.integers(a.train_seeds)), p_second=0.3, split="train"
                )
                xs.append(clip_tensor(clip)[rng.choice(clip.num_frames, size=4, replace=False)])
            x = torch.cat(xs)
            torch.manual_seed(a.seed * 7919 + 1_000_000 + self.dec_step)
            with torch.no_grad():
                post = self.vae.encode(x).latent_dist
                z = post.sample()
            for g in opt.param_groups:
                g["lr"] = self.lr_at(self.dec_step, a.dec_steps, a.dec_lr, warmup=20)
            rec = self.vae.decode(z).sample
            loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.decoder_params(), 1.0)
            opt.step()
            self.dec_step += 1
            self.losses["vae_decoder"].append(loss.item())
            self.seconds["decoder"] += time.time() - t0
            progress.update(task, completed=self.dec_step, info=f"rec {loss.item():.4f}")
            self.plain_log("decoder", self.dec_step, f"rec {loss.item():.4f}")
            if time.time() - last_ckpt > a.ckpt_minutes * 60:
                self.save_decoder(opt)
                last_ckpt = time.time()

    # -- stage D: whole-VAE fine-tuning with object-weighted loss --------------------------------
    # Objects cover ~5 % of a frame, so a plain reconstruction loss learns backgrounds first and
    # object colours last; here pixels of the objects (exact masks from the world) weigh
    # 1 + --obj-weight. Encoder and decoder both train, so the latent space moves: the UNet stage
    # must run after this one (its latents are encoded with the final encoder).
    def load_vae2(self) -> bool:
        path = self.work / "vae2.pt"
        if not path.exists():
            return False
        st = torch.load(path, map_location="cpu", weights_only=False)
        self.vae.load_state_dict(st["vae"])
        self.vae.register_to_config(scaling_factor=st["scaling"])
        self.vae2_step = st["step"]
        self.vae2_state = st
        self.losses["vae_finetune"] = st["losses"]
        self.seconds["vae_finetune"] = st["seconds"]
        return True

    def save_vae2(self, opt) -> None:
        atomic_torch_save(
            {
                "vae": self.vae.state_dict(),
                "scaling": self.vae.config.scaling_factor,
                "opt": opt.state_dict(),
                "step": self.vae2_step,
                "decoder_only": self.args.vae2_decoder_only,
                "losses": self.losses["vae_finetune"],
                "seconds": self.seconds["vae_finetune"],
            },
            self.work / "vae2.pt",
        )

    def train_vae2(self, progress, task) -> None:
        a = self.args
        params = self.decoder_params() if a.vae2_decoder_only else list(self.vae.parameters())
        opt = torch.optim.AdamW(params, lr=a.vae2_lr, weight_decay=0.0)
        st = self.vae2_state
        if st is not None and st.get("decoder_only", False) == a.vae2_decoder_only:
            opt.load_state_dict(st["opt"])
        self.vae.train()
        start, last_ckpt = time.time(), time.time()
        try:
            while self.vae2_step < a.vae2_steps and time.time() - start < a.vae2_minutes * 60:
                t0 = time.time()
                rng = np.random.default_rng([a.seed, 4, self.vae2_step])
                xs, ws = [], []
                for _ in range(a.dec_batch // 4):
                    clip = world.make_clip(
                        int(rng.integers(a.train_seeds)), p_second=0.3, split="train"
                    )
                    idx = rng.choice(clip.num_frames, size=4, replace=False)
                    xs.append(clip_tensor(clip)[idx])
                    m = clip.masks[idx] | (clip.masks2[idx] if clip.masks2 is not None else False)
                    m = torch.from_numpy(m).float()[:, None]
                    if a.edge_px:  # the object plus a ring around it: sharp edges, not halos
                        k = 2 * a.edge_px + 1
                        m = F.max_pool2d(m, k, stride=1, padding=a.edge_px)
                    ws.append(1.0 + a.obj_weight * m)
                x, w = torch.cat(xs), torch.cat(ws)
                torch.manual_seed(a.seed * 7919 + 2_000_000 + self.vae2_step)
                for g in opt.param_groups:
                    g["lr"] = self.lr_at(self.vae2_step, a.vae2_steps, a.vae2_lr, warmup=20)
                if (
                    a.vae2_decoder_only
                ):  # the latent space stays fixed (a UNet trained on it stays valid)
                    with torch.no_grad():
                        post = self.vae.encode(x).latent_dist
                else:
                    post = self.vae.encode(x).latent_dist
                rec = self.vae.decode(post.sample()).sample
                err = (rec - x).abs() + (rec - x).pow(2)
                l_rec = (err * w).sum() / (w.sum() * 3)
                kl = 0.5 * (post.mean.pow(2) + post.var - 1.0 - post.logvar).mean()
                loss = l_rec + a.kl_weight * kl
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                self.vae2_step += 1
                self.losses["vae_finetune"].append(l_rec.item())
                self.seconds["vae_finetune"] += time.time() - t0
                progress.update(task, completed=self.vae2_step, info=f"rec {l_rec.item():.4f}")
                self.plain_log("vae2", self.vae2_step, f"weighted rec {l_rec.item():.4f}")
                if time.time() - last_ckpt > a.ckpt_minutes * 60:
                    self.save_vae2(opt)
                    last_ckpt = time.time()
            self.set_scaling()
        finally:
            self.save_vae2(opt)

    # -- export -----------------------------------------------------------------------------
    def export(self, out: Path) -> None:
        unet = self.denoiser.load_video_model()
        export_pipeline(self.vae, self.denoiser.text_encoder, self.tok_dir, unet, out)


def export_pipeline(vae, text_encoder, tok_dir: Path, unet, out: Path) -> None:
    """Write the standard diffusers AnimateDiff folder (fp16 safetensors) atomically."""
    import copy

    from diffusers import AnimateDiffPipeline, MotionAdapter
    from transformers import CLIPTokenizer

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    unet = copy.deepcopy(unet).eval()
    adapter_dir = tmp.with_name(tmp.name + "-adapter")
    unet.save_motion_modules(str(adapter_dir))
    adapter = MotionAdapter.from_pretrained(str(adapter_dir))
    shutil.rmtree(adapter_dir)
    pipe = AnimateDiffPipeline(
        vae=copy.deepcopy(vae).eval(),
        text_encoder=copy.deepcopy(text_encoder).eval(),
        tokenizer=CLIPTokenizer.from_pretrained(str(tok_dir)),
        unet=unet,
        motion_adapter=adapter,
        scheduler=configs.build_scheduler(),
    )
    # fp16 on disk for the diffusers models (they load as float32 unless a torch_dtype is
    # given); the text encoder stays float32 because transformers loads weights in their saved
    # dtype, and a float16 prompt embedding would make the pipeline run its UNet in float16.
    parts: Any = pipe  # diffusers registers components as attributes at run time
    for m in (parts.vae, parts.unet, parts.motion_adapter):
        m.to(torch.float16)
    parts.save_pretrained(str(tmp), safe_serialization=True)
    _drop_machine_paths(tmp)
    # the slow-tokenizer files too (vocab.json + merges.txt), next to tokenizer.json
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(Path(tok_dir) / name, tmp / "tokenizer" / name)
    for f in tmp.rglob("*"):
        if f.is_file():
            f.chmod(0o644)
    if out.exists():
        old = out.with_name(out.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def _drop_machine_paths(folder: Path) -> None:
    """diffusers writes the folder it loaded from as ``_name_or_path``: a path of this machine."""
    for config in folder.rglob("config.json"):
        data = json.loads(config.read_text(encoding="utf-8"))
        if data.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def default_work_dir() -> Path:
    """Training state lives in the user's cache unless --work names a folder."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vdir")) / "toy-train"


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m videodirector_cli.toy.train", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", required=True, help="diffusers pipeline folder to write at the end")
    p.add_argument(
        "--work",
        default=str(default_work_dir()),
        help="checkpoints, logs, loss.png (default: the user's cache, vdir/toy-train)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vae-steps", type=int, default=700)
    p.add_argument("--vae-batch", type=int, default=32, help="frames (crops) per VAE step")
    p.add_argument(
        "--vae-crop",
        type=int,
        default=32,
        help="train the VAE on random crops of this size (0: full frames)",
    )
    p.add_argument("--vae-lr", type=float, default=2e-3)
    p.add_argument("--kl-weight", type=float, default=1e-4)
    d = DenoiserSettings()
    p.add_argument("--image-steps", type=int, default=d.image_steps, help="image-model steps")
    p.add_argument(
        "--image-batch", type=int, default=d.image_batch, help="frames (one per clip) per step"
    )
    p.add_argument("--image-lr", type=float, default=d.image_lr)
    p.add_argument("--image-minutes", type=float, default=d.image_minutes, help="time cap")
    p.add_argument("--video-steps", type=int, default=d.video_steps, help="video-model steps")
    p.add_argument("--video-batch", type=int, default=d.video_batch, help="16-frame clips per step")
    p.add_argument("--video-lr", type=float, default=d.video_lr, help="motion modules")
    p.add_argument(
        "--video-spatial-lr",
        type=float,
        default=d.video_spatial_lr,
        help="spatial UNet and text encoder in the video stage",
    )
    p.add_argument("--video-minutes", type=float, default=d.video_minutes, help="time cap")
    p.add_argument(
        "--p-uncond", type=float, default=0.1, help="caption dropout to the empty prompt"
    )
    p.add_argument("--p-second", type=float, default=0.15, help="probability of a second object")
    p.add_argument(
        "--train-seeds", type=int, default=4000, help="clip seeds 0..N-1 are the training set"
    )
    p.add_argument("--ckpt-minutes", type=float, default=3.0)
    p.add_argument(
        "--threads",
        type=int,
        default=max(1, min(4, os.cpu_count() or 1)),
        help="torch threads (use 1 on a CPU shared with other jobs)",
    )
    p.add_argument("--loss-png", default=None, help="also copy the loss-curve PNG here")
    p.add_argument("--no-export", action="store_true")
    p.add_argument(
        "--stages",
        default="vae,decoder,vae2,image,video,export",
        help="comma list of vae,decoder,vae2,image,video,export",
    )
    p.add_argument("--dec-steps", type=int, default=600, help="decoder fine-tuning steps (stage C)")
    p.add_argument("--dec-batch", type=int, default=8, help="full 64x64 frames per decoder step")
    p.add_argument("--dec-lr", type=float, default=5e-4)
    p.add_argument("--dec-minutes", type=float, default=20.0, help="wall-clock cap of stage C")
    p.add_argument(
        "--vae2-steps", type=int, default=400, help="whole-VAE object-weighted fine-tuning steps"
    )
    p.add_argument("--vae2-lr", type=float, default=3e-4)
    p.add_argument("--vae2-minutes", type=float, default=10.0)
    p.add_argument(
        "--obj-weight", type=float, default=8.0, help="extra loss weight of object pixels"
    )
    p.add_argument(
        "--edge-px",
        type=int,
        default=0,
        help="stage D also weighs this many pixels around each object like the object",
    )
    p.add_argument(
        "--vae2-decoder-only",
        action="store_true",
        help="continue stage D on the decoder only (keeps the latent space)",
    )
    return p.parse_args(argv)


def denoiser_settings(args) -> DenoiserSettings:
    """The denoiser stages' settings: every field has a command-line option of the same name."""
    return DenoiserSettings(**{f.name: getattr(args, f.name) for f in fields(DenoiserSettings)})


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.train_seeds >= world.HELDOUT_SEED_START:
        raise SystemExit("--train-seeds must stay below the held-out seed range")
    for name in ("vae_batch", "dec_batch", "image_batch", "video_batch", "threads", "train_seeds"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    if args.dec_batch % 4 or args.vae_batch % 4:
        raise SystemExit("--vae-batch and --dec-batch must be multiples of 4 (4 frames per clip)")
    stages = args.stages.split(",")
    unknown = set(stages) - {"vae", "decoder", "vae2", "image", "video", "export"}
    if unknown:
        raise SystemExit(f"unknown stage(s): {', '.join(sorted(unknown))}")
    torch.set_num_threads(args.threads)
    import signal

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    def _term(signum, frame):  # a plain `kill` saves a checkpoint too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background
        signal.signal(signal.SIGINT, _term)
    tr = Trainer(args)
    console = Console(stderr=True)
    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    start = time.time()
    den = tr.denoiser
    try:
        with Progress(*cols, console=console, refresh_per_second=1) as progress:
            if "vae" in stages:
                ta = progress.add_task("VAE", total=args.vae_steps, completed=tr.vae_step, info="")
                try:
                    tr.train_vae(progress, ta)
                except KeyboardInterrupt:
                    tr.save()
                    raise
            vae_ready = tr.vae_step >= args.vae_steps
            if not vae_ready:
                raise SystemExit("the VAE stage has not finished: run --stages vae first")
            tr.load_decoder()
            tr.load_vae2()  # the UNet stages read the final encoder's latents
            if "decoder" in stages:
                tc = progress.add_task(
                    "VAE decoder", total=args.dec_steps, completed=tr.dec_step, info=""
                )
                tr.train_decoder(progress, tc)
            if "vae2" in stages:
                td = progress.add_task(
                    "VAE fine-tune", total=args.vae2_steps, completed=tr.vae2_step, info=""
                )
                tr.train_vae2(progress, td)
            if "image" in stages:
                ti = progress.add_task("image model", total=args.image_steps, info="")
                den.train_image(progress, ti)
            if "video" in stages:
                if not den.image_done():
                    raise SystemExit("the image stage has not finished: run --stages image first")
                tv = progress.add_task("video model", total=args.video_steps, info="")
                den.train_video(progress, tv)
    except KeyboardInterrupt:
        _log("interrupted: checkpoint saved; run the same command to resume")
        return 130
    _log(
        f"session {time.time() - start:.0f}s; VAE {tr.vae_step} steps, "
        f"image {den.steps['image']} steps {den.seconds['image'] / 60:.1f} min, "
        f"video {den.steps['video']} steps {den.seconds['video'] / 60:.1f} min"
    )
    tr.save_progress()
    if not args.no_export and "export" in stages:
        tr.export(Path(args.out))
        _log(f"wrote {args.out}")
    if args.loss_png:
        plot_losses(tr.all_losses(), Path(args.loss_png))
    summary = {
        "vae_steps": tr.vae_step,
        "decoder_steps": tr.dec_step,
        "vae2_steps": tr.vae2_step,
        "image_steps": den.steps["image"],
        "video_steps": den.steps["video"],
        "seconds": {k: round(v) for k, v in {**tr.seconds, **den.seconds}.items()},
        "final_losses_avg50": {
            k: round(float(np.mean(v[-50:])), 4) for k, v in tr.all_losses().items() if v
        },
    }
    _log(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

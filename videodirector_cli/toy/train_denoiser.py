"""Stages "image" and "video" of the toy training: the text encoder and the denoising UNet.

AnimateDiff's own recipe, scaled down: first an image model (``UNet2DConditionModel`` + the
``CLIPTextModel``) learns colours, shapes and backgrounds from many captions per step, one frame
of each clip; then a ``MotionAdapter`` is added (``UNetMotionModel.from_unet2d``) and the whole
model trains on 16-frame clips. The motion modules start as the identity (their output
projections are zeroed, as AnimateDiff does), so the video stage begins with the image model's
samples instead of noise.

A first model trained the UNet only on 16-frame clips, one clip per step: after 3 600 steps it
ignored its prompt (the text had seen 3 600 captions). The image stage sees 32 captions per step.

Both stages read frozen VAE latents (posterior means times ``scaling_factor``), drop 10 % of the
captions to "" for classifier-free guidance, draw data and noise from ``(seed, stage, step)``
so a resumed run sees what an uninterrupted one would, and checkpoint to their own file in the
work folder (``image.pt``, ``video.pt``).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import configs, vocab, world

#: stage -> stream id of its random draws (VAE stages use 1, 3 and 4)
_STREAM = {"image": 5, "video": 6}


@dataclass
class DenoiserSettings:
    seed: int = 0
    train_seeds: int = 4000
    p_second: float = 0.15
    p_uncond: float = 0.1
    image_steps: int = 1500
    image_batch: int = 32  # frames, each from a different clip
    image_lr: float = 1e-3
    image_minutes: float = 30.0
    video_steps: int = 800
    video_batch: int = 4  # 16-frame clips
    video_lr: float = 1e-3  # motion modules
    video_spatial_lr: float = 2e-4  # spatial UNet and text encoder
    video_minutes: float = 35.0
    ckpt_minutes: float = 3.0


def cosine_lr(step: int, total: int, base: float, warmup: int, spent_frac: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 10 %, following whichever of the step budget or the
    wall-clock budget (``spent_frac``) is further along, so a time-capped run still decays."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, max((step - warmup) / max(1, total - warmup), spent_frac))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def zero_motion_outputs(adapter: torch.nn.Module) -> int:
    """Zero every motion module's output projection so the module starts as the identity."""
    n = 0
    for name, mod in adapter.named_modules():
        if name.endswith("proj_out") and isinstance(mod, torch.nn.Linear):
            torch.nn.init.zeros_(mod.weight)
            if mod.bias is not None:
                torch.nn.init.zeros_(mod.bias)
            n += 1
    return n


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class DenoiserTrainer:
    """Trains text encoder + UNet on frozen VAE latents; holds both stages' checkpoints."""

    def __init__(self, settings: DenoiserSettings, vae, tokenizer, text_encoder, work: Path):
        self.s = settings
        self.vae = vae  # frozen once a denoiser stage starts (the VAE stages train it first)
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.work = Path(work)
        self.noise_scheduler = configs.build_train_scheduler()
        self.unet2d: Any = None
        self.unet: Any = None  # UNetMotionModel once the video stage has begun
        self.steps = {"image": 0, "video": 0}
        self.seconds = {"image": 0.0, "video": 0.0}
        self.losses: dict[str, list[float]] = {"image_eps": [], "video_eps": []}

    # -- data ------------------------------------------------------------------------------
    def _rng(self, stage: str, step: int) -> np.random.Generator:
        return np.random.default_rng([self.s.seed, _STREAM[stage], step])

    def _clip(self, rng: np.random.Generator) -> world.ToyClip:
        seed = int(rng.integers(self.s.train_seeds))
        return world.make_clip(
            seed, frames=configs.NUM_FRAMES, p_second=self.s.p_second, split="train"
        )

    def _caption(self, rng: np.random.Generator, caption: str) -> str:
        return "" if rng.random() < self.s.p_uncond else caption

    @torch.no_grad()
    def _encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(frames).float().permute(0, 3, 1, 2) / 127.5 - 1.0
        return self.vae.encode(x).latent_dist.mean * self.vae.config.scaling_factor

    def image_batch(self, step: int) -> tuple[torch.Tensor, list[str]]:
        """(B, 4, h, w) latents of one random frame from each of B clips, and their captions."""
        rng = self._rng("image", step)
        frames, caps = [], []
        for _ in range(self.s.image_batch):
            clip = self._clip(rng)
            frames.append(clip.frames[int(rng.integers(clip.num_frames))])
            caps.append(self._caption(rng, clip.caption))
        return self._encode_frames(np.stack(frames)), caps

    def video_batch(self, step: int) -> tuple[torch.Tensor, list[str]]:
        """(B, 4, F, h, w) latents of B clips, and their captions."""
        rng = self._rng("video", step)
        lat, caps = [], []
        for _ in range(self.s.video_batch):
            clip = self._clip(rng)
            lat.append(self._encode_frames(clip.frames).permute(1, 0, 2, 3))
            caps.append(self._caption(rng, clip.caption))
        return torch.stack(lat), caps

    def encode_text(self, captions: list[str]) -> torch.Tensor:
        ids = self.tokenizer(
            captions,
            padding="max_length",
            max_length=vocab.MAX_LENGTH,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids)[0]

    def _noised(self, stage: str, z0: torch.Tensor, step: int):
        g = torch.Generator().manual_seed(self.s.seed * 1_000_003 + _STREAM[stage] * 7919 + step)
        noise = torch.randn(z0.shape, generator=g)
        t = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (z0.shape[0],), generator=g
        )
        return self.noise_scheduler.add_noise(z0, noise, t), noise, t

    # -- models and checkpoints ---------------------------------------------------------------
    def _ckpt(self, stage: str) -> Path:
        return self.work / f"{stage}.pt"

    def _save(self, stage: str, model, opt) -> None:
        _atomic_save(
            {
                "model": model.state_dict(),
                "text_encoder": self.text_encoder.state_dict(),
                "opt": opt.state_dict(),
                "step": self.steps[stage],
                "seconds": self.seconds[stage],
                "losses": self.losses[f"{stage}_eps"],
            },
            self._ckpt(stage),
        )

    def _load(self, stage: str, model) -> bool:
        path = self._ckpt(stage)
        if not path.exists():
            return False
        st = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(st["model"])
        self.text_encoder.load_state_dict(st["text_encoder"])
        self.steps[stage] = st["step"]
        self.seconds[stage] = st["seconds"]
        self.losses[f"{stage}_eps"] = st["losses"]
        return True

    def _load_optimizer(self, stage: str, opt) -> None:
        """The optimiser's state, once its parameters exist (the model is loaded first)."""
        path = self._ckpt(stage)
        if path.exists():
            opt.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["opt"])

    def load_image_model(self):
        from diffusers import UNet2DConditionModel

        torch.manual_seed(self.s.seed)
        self.unet2d = UNet2DConditionModel(**configs.UNET_CONFIG)
        self._load("image", self.unet2d)
        return self.unet2d

    def load_video_model(self):
        """The motion UNet: from ``video.pt`` if the stage has begun, else the image model plus a
        fresh adapter whose modules start as the identity."""
        from diffusers import MotionAdapter, UNetMotionModel

        if self._ckpt("video").exists():  # video.pt holds every weight: skip image.pt
            from diffusers import UNet2DConditionModel

            self.unet2d = UNet2DConditionModel(**configs.UNET_CONFIG)
        elif self.unet2d is None:
            self.load_image_model()
        torch.manual_seed(self.s.seed + 1)
        adapter = MotionAdapter(**configs.MOTION_CONFIG)
        zero_motion_outputs(adapter)
        self.unet = UNetMotionModel.from_unet2d(self.unet2d, adapter)
        self._load("video", self.unet)
        return self.unet

    # -- training loops --------------------------------------------------------------------
    def _loop(
        self,
        stage: str,
        model,
        opt,
        groups_lr: list[float],
        total: int,
        minutes: float,
        batch_fn,
        progress,
        task,
    ) -> None:
        s = self.s
        model.train()
        self.text_encoder.train()
        params = [p for g in opt.param_groups for p in g["params"]]
        last_ckpt = time.time()
        losses = self.losses[f"{stage}_eps"]
        try:
            while self.steps[stage] < total and self.seconds[stage] < minutes * 60:
                t0 = time.time()
                step = self.steps[stage]
                z0, caps = batch_fn(step)
                zt, noise, t = self._noised(stage, z0, step)
                frac = self.seconds[stage] / max(1.0, minutes * 60)
                for grp, base in zip(opt.param_groups, groups_lr):
                    grp["lr"] = cosine_lr(
                        step, total, base, warmup=min(100, total // 10 + 1), spent_frac=frac
                    )
                emb = self.encode_text(caps)
                if z0.ndim == 5:  # (B, C, F, h, w): one embedding per frame, as the pipeline does
                    emb = emb.repeat_interleave(z0.shape[2], dim=0)
                pred = model(zt, t, encoder_hidden_states=emb).sample
                loss = F.mse_loss(pred, noise)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                self.steps[stage] += 1
                losses.append(loss.item())
                self.seconds[stage] += time.time() - t0
                recent = float(np.mean(losses[-50:]))
                progress.update(task, completed=self.steps[stage], info=f"eps {recent:.4f}")
                if self.steps[stage] % 100 == 0 and not sys.stderr.isatty():
                    print(
                        f"[{stage} {self.steps[stage]}] eps(avg50) {recent:.4f} "
                        f"({self.seconds[stage] / 60:.1f} min)",
                        file=sys.stderr,
                        flush=True,
                    )
                if time.time() - last_ckpt > s.ckpt_minutes * 60:
                    self._save(stage, model, opt)
                    last_ckpt = time.time()
        finally:  # Ctrl-C / SIGTERM included: the next run resumes from here
            self._save(stage, model, opt)

    def train_image(self, progress, task) -> None:
        s = self.s
        self.vae.eval().requires_grad_(False)
        model = self.load_image_model()
        params = list(model.parameters()) + list(self.text_encoder.parameters())
        opt = torch.optim.AdamW(params, lr=s.image_lr, weight_decay=1e-2)
        self._load_optimizer("image", opt)
        progress.update(task, completed=self.steps["image"])
        self._loop(
            "image",
            model,
            opt,
            [s.image_lr],
            s.image_steps,
            s.image_minutes,
            self.image_batch,
            progress,
            task,
        )

    def image_done(self) -> bool:
        return (
            self.steps["image"] >= self.s.image_steps
            or self.seconds["image"] >= self.s.image_minutes * 60
        )

    def train_video(self, progress, task) -> None:
        s = self.s
        self.vae.eval().requires_grad_(False)
        model = self.load_video_model()
        motion = [p for n, p in model.named_parameters() if "motion_modules" in n]
        motion_ids = {id(p) for p in motion}
        spatial = [p for p in model.parameters() if id(p) not in motion_ids]
        spatial += list(self.text_encoder.parameters())
        opt = torch.optim.AdamW(
            [{"params": motion, "lr": s.video_lr}, {"params": spatial, "lr": s.video_spatial_lr}],
            weight_decay=1e-2,
        )
        self._load_optimizer("video", opt)
        progress.update(task, completed=self.steps["video"])
        self._loop(
            "video",
            model,
            opt,
            [s.video_lr, s.video_spatial_lr],
            s.video_steps,
            s.video_minutes,
            self.video_batch,
            progress,
            task,
        )

    def load_progress(self) -> None:
        """Step counts, seconds and losses of both stages, without building the models."""
        for stage in ("image", "video"):
            path = self._ckpt(stage)
            if path.exists():
                st = torch.load(path, map_location="cpu", weights_only=False)
                self.steps[stage] = st["step"]
                self.seconds[stage] = st["seconds"]
                self.losses[f"{stage}_eps"] = st["losses"]

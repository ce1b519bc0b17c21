"""Stage "vae" of the toy training: the ``AutoencoderKL``, on full 64x64 frames of the world.

The loss is L1 + MSE with the object's pixels (exact masks from the world) and a ring of
``vae_edge_px`` pixels around them weighted ``1 + vae_obj_weight``: an object is a small part of
a frame, and an unweighted VAE turned them into grey-blue blobs with rounded corners (the first
toy VAE, docs/toy-model.md), plus a small KL term. When the stage ends, ``scaling_factor`` is
set to 1 / std of the latents, as Stable Diffusion's VAE has it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import configs, world
from .training import (
    Checkpointer,
    Runtime,
    StageClock,
    atomic_save,
    cosine_lr,
    load_checkpoint,
    log,
    option,
    rng_for,
    torch_generator,
)

STREAM = 1  # random stream of this stage (latents: none, image: 5, video: 6)
FRAMES_PER_CLIP = 4


@dataclass
class VaeSettings:
    """The VAE stage."""

    vae_steps: int = option(3000, "VAE steps")
    vae_batch: int = option(16, "frames per VAE step, 4 from each clip (a multiple of 4)")
    vae_lr: float = option(1e-3, "peak learning rate (warm-up 50 steps, cosine to 10 %)")
    vae_obj_weight: float = option(8.0, "extra loss weight of object pixels")
    vae_edge_px: int = option(2, "pixels around each object weighted like the object")
    kl_weight: float = option(1e-4, "weight of the KL term")
    vae_p_second: float = option(0.3, "probability of a second object in a VAE clip")


def clip_tensor(frames) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (F, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(frames).float().permute(0, 3, 1, 2) / 127.5 - 1.0


class VaeTrainer:
    """Trains the VAE; ``vae.pt`` in the work folder holds its weights, optimiser and history."""

    def __init__(self, settings: VaeSettings, runtime: Runtime, seed: int, train_seeds: int, work):
        self.s = settings
        self.rt = runtime
        self.seed = seed
        self.train_seeds = train_seeds
        self.path = Path(work) / "vae.pt"
        torch.manual_seed(seed)
        self.vae = configs.build_vae()
        self.step = 0
        self.clock = StageClock()
        self.losses: dict[str, list[float]] = {"vae_rec": [], "vae_kl": []}
        self.scaled = False
        self._opt_state: dict | None = None
        st = load_checkpoint(self.path)
        if st is not None:
            self.vae.load_state_dict(st["vae"])
            self.vae.register_to_config(scaling_factor=st["scaling_factor"])
            self.step, self.scaled = st["step"], st["scaled"]
            self.clock = StageClock(st["cpu_seconds"], st["wall_seconds"])
            self.losses = st["losses"]
            self._opt_state = st["opt"]

    def adopt(self, vae) -> None:
        """Take a trained VAE as this stage's result (``--init-from``): the stage counts as done."""
        self.vae.load_state_dict(vae.state_dict())
        self.vae.register_to_config(scaling_factor=vae.config.scaling_factor)
        self.step, self.scaled = self.s.vae_steps, True
        self.save(torch.optim.AdamW(self.vae.parameters()))

    def done(self) -> bool:
        return self.step >= self.s.vae_steps and self.scaled

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, 64, 64) frames and their per-pixel loss weights."""
        rng = rng_for(self.seed, STREAM, step)
        xs, ws = [], []
        for _ in range(self.s.vae_batch // FRAMES_PER_CLIP):
            clip = world.make_clip(
                int(rng.integers(self.train_seeds)),
                frames=configs.NUM_FRAMES,
                p_second=self.s.vae_p_second,
                split="train",
            )
            idx = rng.choice(clip.num_frames, size=FRAMES_PER_CLIP, replace=False)
            xs.append(clip_tensor(clip.frames[idx]))
            m = clip.masks[idx] | (clip.masks2[idx] if clip.masks2 is not None else False)
            mt = torch.from_numpy(m).float()[:, None]
            if self.s.vae_edge_px:  # the object plus a ring around it: sharp edges, not halos
                px = self.s.vae_edge_px
                mt = F.max_pool2d(mt, 2 * px + 1, stride=1, padding=px)
            ws.append(1.0 + self.s.vae_obj_weight * mt)
        return torch.cat(xs), torch.cat(ws)

    def save(self, opt: torch.optim.Optimizer) -> None:
        atomic_save(
            {
                "vae": self.vae.state_dict(),
                "scaling_factor": self.vae.config.scaling_factor,
                "opt": opt.state_dict(),
                "step": self.step,
                "scaled": self.scaled,
                "cpu_seconds": self.clock.cpu,
                "wall_seconds": self.clock.wall,
                "losses": self.losses,
            },
            self.path,
        )

    def train(self) -> None:
        s, dev = self.s, self.rt.device
        vae = self.vae.to(dev).train()
        opt = torch.optim.AdamW(vae.parameters(), lr=s.vae_lr, weight_decay=0.0)
        if self._opt_state is not None:
            opt.load_state_dict(self._opt_state)
        ckpt = Checkpointer(self.rt.settings.ckpt_minutes)
        every = self.rt.settings.log_every
        try:
            with self.clock:
                while self.step < s.vae_steps:
                    x, w = (t.to(dev) for t in self.batch(self.step))
                    for g in opt.param_groups:
                        g["lr"] = cosine_lr(self.step, s.vae_steps, s.vae_lr, warmup=50)
                    gen = torch_generator(self.seed, STREAM, self.step)
                    with self.rt.autocast():
                        post = vae.encode(x).latent_dist
                        eps = torch.randn(post.mean.shape, generator=gen).to(dev)
                        rec = vae.decode(post.mean + post.std * eps).sample.float()
                    err = (rec - x).abs() + (rec - x).pow(2)
                    l_rec = (err * w).sum() / (w.sum() * 3)
                    mean, logvar = post.mean.float(), post.logvar.float()
                    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
                    loss = l_rec + s.kl_weight * kl
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
                    opt.step()
                    self.step += 1
                    self.losses["vae_rec"].append(l_rec.item())
                    self.losses["vae_kl"].append(kl.item())
                    if self.step % every == 0 or self.step == s.vae_steps:
                        recent = sum(self.losses["vae_rec"][-every:]) / min(every, self.step)
                        log(f"[vae {self.step}/{s.vae_steps}] weighted rec {recent:.4f}")
                    if ckpt.due():
                        self.save(opt)
                    if self.rt.out_of_time():
                        break
                if self.step >= s.vae_steps and not self.scaled:
                    self.set_scaling()
        finally:  # Ctrl-C / SIGTERM included: the next run resumes from here
            vae.cpu()
            self.save(opt)

    @torch.no_grad()
    def set_scaling(self) -> None:
        """``scaling_factor`` = 1 / std of the latent means of 64 training clips."""
        vae = self.vae.eval()
        dev = next(vae.parameters()).device
        zs = []
        for s in range(64):
            clip = world.make_clip(s, frames=configs.NUM_FRAMES, p_second=0.1, split="train")
            zs.append(vae.encode(clip_tensor(clip.frames).to(dev)).latent_dist.mean.cpu())
        std = float(torch.cat(zs).std())
        vae.register_to_config(scaling_factor=1.0 / std)
        self.scaled = True
        log(f"VAE latent std {std:.4f} -> scaling_factor {1.0 / std:.4f}")

    def final_vae(self):
        """The trained VAE, frozen, on the CPU."""
        return self.vae.cpu().eval().requires_grad_(False)

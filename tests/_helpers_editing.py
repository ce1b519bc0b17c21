"""Fixtures for the editing tests: the tiny model and a stored inversion made without optimising.

Any null sequence gives a valid "optimised trajectory" as long as each stored latent is the
previous one advanced with the inversion's formula (cfg.py) and that step's null and guidance;
that is all editing relies on.
"""

from __future__ import annotations

import functools

import torch

from videodirector_cli.diffusion.cfg import apply_guidance, classifier_free
from videodirector_cli.diffusion.prompts import encode_prompt
from videodirector_cli.diffusion.schedule import Schedule
from videodirector_cli.diffusion.tiny import build_tiny_model
from videodirector_cli.diffusion.unet_call import predict_noise
from videodirector_cli.stages.inversion_files import StoredInversion

SOURCE = "a brown bear walking on rocks"
FRAMES = 8
LATENT = 16
STEPS = 4
CFG = 7.5


@functools.lru_cache(maxsize=1)
def tiny_model():
    return build_tiny_model(seed=0)


def make_stored_inversion(
    model=None,
    prompt: str = SOURCE,
    steps: int = STEPS,
    frames: int = FRAMES,
    guidance: bool = True,
    shared_null: bool = False,
    seed: int = 1,
) -> StoredInversion:
    model = model or tiny_model()
    generator = torch.Generator().manual_seed(seed)
    schedule = Schedule.from_scheduler(model.scheduler, steps)
    cond = encode_prompt(model, prompt).float()
    empty = encode_prompt(model, "").float()
    latent = torch.randn(1, 4, frames, LATENT, LATENT, generator=generator)
    nulls, latents, guides, nexts = [], [], [], []
    with torch.no_grad():
        for index in range(steps):
            rows = 1 if shared_null else frames
            null = empty.expand(rows, -1, -1) + 0.05 * torch.randn(
                rows, *empty.shape[1:], generator=generator
            )
            guide = 0.1 * torch.randn(latent.shape, generator=generator) if guidance else None
            t = schedule.timesteps[index]
            eps_cond = predict_noise(model.unet, latent, t, cond)
            eps_uncond = predict_noise(model.unet, latent, t, null)
            eps = apply_guidance(
                classifier_free(eps_uncond, eps_cond, CFG), guide, schedule.noise_scale(index)
            )
            nxt = schedule.denoise_step(latent, eps, index)
            nulls.append(null)
            latents.append(latent)
            guides.append(guide)
            nexts.append(nxt)
            latent = nxt
    pivots = torch.stack([nexts[-1], *reversed(latents)])
    return StoredInversion(
        key="k" * 64,
        timesteps=list(schedule.timesteps),
        pivots=pivots,
        nulls=nulls,
        latents=latents,
        guidance=guides,
        params={"prompt": prompt, "guidance_scale": CFG},
        next_latents=nexts,
    )


def box_masks(frames: int = FRAMES, size: int = LATENT * 2) -> torch.Tensor:
    """(F, size, size) bool: a box in the middle of each frame, moving right one pixel a frame."""
    masks = torch.zeros(frames, size, size, dtype=torch.bool)
    for f in range(frames):
        masks[f, size // 4 : size // 2 + size // 8, size // 4 + f : size // 2 + f] = True
    return masks

"""The heavy passes of an inversion and an edit as bare workloads, runnable on any device.

Each function runs one pass the way the stages run it, through the same library pieces
(``predict_noise``, the STDG capture processors and partial forward, the edit processors,
the VAE's encode/decode), with placeholder inputs of the right shapes and dtypes and what the
pass keeps alive meanwhile (the step's conditional eps, the STDG reference features, the
pivots...). The values are zeros: memory and FLOPs do not depend on them, and zeros exist on
the meta device. On the meta device they feed the estimate (diffusion/estimate.py, under
memtrack.MemoryTracker); on the CPU they are what the estimate is checked against.

What they leave out on purpose: STDG's masked loss terms read mask values (impossible on
meta); ``flops.stdg_surrogate_loss`` stands in, over the same recorded features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from videodirector_cli.diffusion.flops import StdgPasses, stdg_features, stdg_surrogate_loss

if TYPE_CHECKING:
    import torch

TIMESTEP = 500
GUIDANCE = 7.5


@dataclass(frozen=True)
class Shape:
    """One video: frames, latent size, text embedding size."""

    frames: int
    latent_hw: tuple[int, int]
    channels: int = 4
    tokens: int = 77
    context_dim: int = 768

    def latent(self, rows: int = 1) -> tuple[int, ...]:
        return (rows, self.channels, self.frames, *self.latent_hw)

    @property
    def context(self) -> tuple[int, int, int]:
        return (self.frames, self.tokens, self.context_dim)


def _zeros(shape: tuple[int, ...], device: Any, grad: bool = False) -> torch.Tensor:
    import torch

    return torch.zeros(shape, device=device, dtype=torch.float32).requires_grad_(grad)


def _schedule():
    from videodirector_cli.diffusion.schedule import Schedule, make_ddim_scheduler

    return Schedule.from_scheduler(make_ddim_scheduler(), 50)


def pivots(shape: Shape, steps: int, device: Any) -> torch.Tensor:
    """The pivot trajectory the optimisation keeps on the device, (steps + 1) latents."""
    return _zeros((steps + 1, *shape.latent()), device)


def null_text_update(unet: Any, shape: Shape, device: Any, stdg: bool = True) -> None:
    """One inner update: unconditional forward with gradient w.r.t. the null, its backward,
    one Adam step; the step's conditional eps, guidance and target stay alive throughout."""
    import torch

    from videodirector_cli.diffusion.cfg import apply_guidance, classifier_free
    from videodirector_cli.diffusion.unet_call import predict_noise

    schedule = _schedule()
    current = _zeros(shape.latent(), device)
    target = _zeros(shape.latent(), device)
    eps_cond = _zeros(shape.latent(), device)
    guidance = _zeros(shape.latent(), device) if stdg else None
    null = _zeros(shape.context, device, grad=True)
    optimiser = torch.optim.Adam([null], lr=1e-2)
    eps_uncond = predict_noise(unet, current, TIMESTEP, null)
    eps = apply_guidance(classifier_free(eps_uncond, eps_cond, GUIDANCE), guidance, 0.5)
    loss = torch.nn.functional.mse_loss(schedule.denoise_step(current, eps, 1), target)
    loss.backward()
    optimiser.step()


def stdg_guidance(unet: Any, shape: Shape, device: Any, passes: StdgPasses) -> None:
    """STDG at one step: reference features at the pivot (no gradient, kept), the partial
    forward with gradient at z_t and its backward w.r.t. z_t."""
    import torch

    cond = _zeros((1, shape.tokens, shape.context_dim), device)
    with torch.no_grad():
        reference = stdg_features(unet, _zeros(shape.latent(), device), cond, passes)
    current = _zeros(shape.latent(), device, grad=True)
    features = stdg_features(unet, current, cond, passes)
    loss = stdg_surrogate_loss(features) + stdg_surrogate_loss(reference)
    loss.backward()


def forward(unet: Any, shape: Shape, device: Any, rows: int = 1) -> None:
    """A no-grad forward of ``rows`` rows (DDIM inversion, conditional eps, the report)."""
    import torch

    from videodirector_cli.diffusion.unet_call import predict_noise

    with torch.no_grad():
        predict_noise(
            unet, _zeros(shape.latent(rows), device), TIMESTEP, _zeros(shape.context, device)
        )


def edit_call(unet: Any, shape: Shape, device: Any, phase: str = "sa2") -> None:
    """One editing step: the 4-row call with the edit processors, in its SA-I or SA-II phase
    (cross-attention control on, a foreground mask for SA-II's key mask)."""
    import torch

    from videodirector_cli.diffusion.attention.controller import EditController, edit_attention
    from videodirector_cli.diffusion.attention.seq_align import TokenMapping
    from videodirector_cli.diffusion.unet_call import batch_embeddings, predict_noise
    from videodirector_cli.settings.edit import EditSettings

    h, w = shape.latent_hw
    masks = torch.zeros((shape.frames, h, w), dtype=torch.bool)
    masks[:, : h // 2] = True
    mapping = TokenMapping(torch.eye(shape.tokens), torch.ones(shape.tokens), "refine")
    controller = EditController(
        settings=EditSettings(),
        frames=shape.frames,
        latent_hw=shape.latent_hw,
        masks=masks,
        mapping=mapping,
    )
    steps = 50
    controller.set_step(0 if phase == "sa1" else int(steps * 0.4), steps)
    rows = [_zeros((1, shape.tokens, shape.context_dim), device) for _ in range(4)]
    with torch.no_grad(), edit_attention(unet, controller):
        sample = _zeros(shape.latent(4), device)
        predict_noise(unet, sample, TIMESTEP, batch_embeddings(rows, shape.frames))


def vae_decode(vae: Any, shape: Shape, device: Any, frames_per_call: int) -> None:
    """Decode the video in calls of ``frames_per_call`` frames, as latents.decode_latents."""
    import torch

    dtype = next(vae.parameters()).dtype
    latents = _zeros(shape.latent(), device)[0].permute(1, 0, 2, 3)
    with torch.no_grad():
        for start in range(0, shape.frames, frames_per_call):
            part = latents[start : start + frames_per_call].to(dtype)
            images = vae.decode(part).sample
            del images  # latents.py moves each chunk's frames to the CPU at once


def vae_encode(vae: Any, shape: Shape, device: Any, frames_per_call: int) -> None:
    """Encode the video in calls of ``frames_per_call`` frames, as latents.encode_frames."""
    import torch

    dtype = next(vae.parameters()).dtype
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    h, w = shape.latent_hw
    with torch.no_grad():
        parts = []
        for start in range(0, shape.frames, frames_per_call):
            count = min(frames_per_call, shape.frames - start)
            pixels = torch.zeros((count, 3, h * factor, w * factor), device=device, dtype=dtype)
            parts.append(vae.encode(pixels).latent_dist.mean.float())
        torch.cat(parts)

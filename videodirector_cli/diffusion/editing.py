"""The dual-path editing loop (paper 3.3, Algorithm I lines 18-33).

Per step, ONE batched UNet call over four rows (see attention/controller.py):

    [edit latent + optimised null, edit latent + edit prompt,
     stored latent + optimised null, stored latent + source prompt]

The reconstruction rows are not denoised here: they read the latent the inversion's optimised
trajectory had at this step (``StoredInversion.latents[i]``). They exist for the attention
features the controls read: SA-I and cross-attention read the conditional reconstruction row,
SA-II reads both (the edit's unconditional row attends to the unconditional reconstruction row,
as in the reference), so all four rows are needed.

The edit path advances with exactly the inversion's formula (cfg.py: same null, same guidance
scale, same stored STDG guidance), so editing with the source prompt retraces the stored
trajectory: every control is then an identity and the result equals the reconstruction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from videodirector_cli.diffusion.attention.controller import ControlSettings, EditController
from videodirector_cli.diffusion.passes import PassCounter
from videodirector_cli.errors import StaleError, UsageError

if TYPE_CHECKING:
    import torch

    from videodirector_cli.diffusion.components import DiffusionModel
    from videodirector_cli.stages.inversion_files import StoredInversion

StepCallback = Callable[[int, "torch.Tensor"], None]


@dataclass
class EditSettings:
    """Everything that shapes an edit besides the prompts and the inversion."""

    control: ControlSettings = field(default_factory=ControlSettings)
    mode: str = "auto"
    """Cross-attention mapping: 'auto', 'replace' (word swap) or 'refine'."""
    reweight: dict[str, float] = field(default_factory=dict)
    """Edit-prompt word -> attention scale, applied with the cross-attention control."""
    guidance_scale: float = 7.5
    """Must be the inversion's: the stored nulls were optimised for it."""
    blend: bool = False
    """Keep the reconstruction's latents outside the (dilated) mask after every step."""
    blend_dilate: int = 0
    """Dilation of the blend mask, in latent cells."""


def build_controller(
    model: DiffusionModel,
    source_prompt: str,
    edit_prompt: str,
    settings: EditSettings,
    frames: int,
    latent_hw: tuple[int, int],
    masks: torch.Tensor | None,
) -> EditController:
    """Token mapping and reweighting through the model's tokenizer, masks, settings."""
    from videodirector_cli.diffusion.attention import seq_align

    settings.control.check()
    mapping = seq_align.token_mapping(model.tokenizer, source_prompt, edit_prompt, settings.mode)
    reweight = None
    if settings.reweight:
        target = seq_align.tokenize_prompt(model.tokenizer, edit_prompt)
        reweight = seq_align.reweight_vector(target, settings.reweight)
    return EditController(
        settings=settings.control,
        frames=frames,
        latent_hw=latent_hw,
        masks=masks,
        mapping=mapping,
        reweight=reweight,
    )


def blend_mask(masks: torch.Tensor, latent_hw: tuple[int, int], dilate: int) -> torch.Tensor:
    """(F, H, W) bool -> (1, 1, F, h, w) float: 1 where the edit may change the latent.

    A latent cell counts as edited when any pixel under it is foreground; then the region grows
    by ``dilate`` cells (max pooling).
    """
    import torch
    import torch.nn.functional as F

    soft = F.adaptive_avg_pool2d(masks.to(torch.float32)[:, None], latent_hw)
    hard = (soft > 0).to(torch.float32)
    if dilate > 0:
        hard = F.max_pool2d(hard, kernel_size=2 * dilate + 1, stride=1, padding=dilate)
    return hard[:, 0][None, None]


def dilation_cells(pixels: int, vae_factor: int) -> int:
    """Frame pixels -> latent cells, rounded up."""
    return math.ceil(max(0, pixels) / vae_factor)


def _reconstruction_after(stored: StoredInversion, index: int) -> torch.Tensor:
    """The stored trajectory's latent after step ``index``."""
    if stored.next_latents:
        return stored.next_latents[index]
    if index + 1 < stored.steps:
        return stored.latents[index + 1]
    raise ValueError("the stored inversion lacks the final reconstructed latent")


@dataclass
class EditRun:
    latents: torch.Tensor
    """Final edit latents (1, C, F, h, w), float32, on the model's device."""
    applied: dict[str, int]
    """Layer calls each control touched ('sa1', 'sa2', 'cross'), over all steps."""


def run_edit_path(
    model: DiffusionModel,
    stored: StoredInversion,
    edit_prompt: str,
    settings: EditSettings,
    masks: torch.Tensor | None = None,
    counter: PassCounter | None = None,
    callback: StepCallback | None = None,
    source_prompt: str | None = None,
) -> EditRun:
    """The editing loop. ``masks``: (F, H, W) bool foreground at frame (or any) resolution."""
    import torch

    from videodirector_cli.diffusion.attention.controller import edit_attention
    from videodirector_cli.diffusion.cfg import apply_guidance, classifier_free
    from videodirector_cli.diffusion.prompts import encode_prompts
    from videodirector_cli.diffusion.schedule import Schedule
    from videodirector_cli.diffusion.unet_call import batch_embeddings, predict_noise

    source_prompt = source_prompt if source_prompt is not None else stored.params.get("prompt")
    if not source_prompt:
        raise StaleError("the inversion does not record its source prompt", hint="invert again")
    schedule = Schedule.from_scheduler(model.scheduler, stored.steps)
    if list(schedule.timesteps) != [int(t) for t in stored.timesteps]:
        raise StaleError(
            "the inversion ran on another timestep grid than this model's scheduler gives",
            hint="edit with the model and scheduler the inversion used, or invert again",
        )
    device = model.device
    start = stored.latents[0].to(device=device, dtype=torch.float32)
    frames, latent_hw = start.shape[2], (start.shape[3], start.shape[4])
    if masks is not None and masks.shape[0] != frames:
        raise UsageError(f"{masks.shape[0]} mask frames for a {frames}-frame inversion")
    if settings.blend and masks is None:
        raise UsageError("--blend needs a mask", hint="run vdir mask first, or drop --blend")
    controller = build_controller(
        model, source_prompt, edit_prompt, settings, frames, latent_hw, masks
    )
    source_emb, edit_emb = encode_prompts(model, [source_prompt, edit_prompt]).to(torch.float32)
    keep = None
    if settings.blend and masks is not None:
        keep = blend_mask(masks, latent_hw, settings.blend_dilate).to(device)
    latent = start
    steps = stored.steps
    with torch.no_grad(), edit_attention(model.unet, controller):
        for index in range(steps):
            controller.set_step(index, steps)
            reconstruction = stored.latents[index].to(device=device, dtype=torch.float32)
            null = stored.nulls[index].to(device=device, dtype=torch.float32)
            sample = torch.cat([latent, latent, reconstruction, reconstruction])
            context = batch_embeddings([null, edit_emb[None], null, source_emb[None]], frames)
            eps = predict_noise(
                model.unet,
                sample,
                schedule.timesteps[index],
                context,
                counter=counter,
                purpose="edit",
            )
            assert eps is not None  # a full forward always returns eps
            guidance = stored.guidance[index]
            guided = apply_guidance(
                classifier_free(eps[0:1], eps[1:2], settings.guidance_scale),
                None if guidance is None else guidance.to(device),
                schedule.noise_scale(index),
            )
            latent = schedule.denoise_step(latent, guided, index)
            if keep is not None:
                target = _reconstruction_after(stored, index).to(device, torch.float32)
                latent = keep * latent + (1 - keep) * target
            if not bool(torch.isfinite(latent).all()):
                from videodirector_cli.errors import NumericalError

                raise NumericalError(
                    f"the edit latent became NaN or infinite at step {index}",
                    hint="try --dtype fp32",
                )
            if callback is not None:
                callback(index, latent)
    return EditRun(latent, dict(controller.applied))

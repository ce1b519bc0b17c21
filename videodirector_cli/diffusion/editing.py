"""The dual-path editing loop (paper 3.3, Algorithm I lines 18-33).

Per step, ONE batched UNet call over four rows (see attention/controller.py):

    [edit latent + optimised null, edit latent + edit prompt,
     stored latent + optimised null, stored latent + source prompt]

The reconstruction rows are not denoised here: they read the latent the inversion's optimised
trajectory had at this step (``StoredInversion.trajectory[i].latent``). They exist for the attention
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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from videodirector_cli.diffusion.attention.controller import EditController
from videodirector_cli.diffusion.passes import PassCounter
from videodirector_cli.errors import StaleError, UsageError

if TYPE_CHECKING:
    import torch

    from videodirector_cli.diffusion.attention.seq_align import TokenMapping
    from videodirector_cli.diffusion.components import DiffusionModel
    from videodirector_cli.diffusion.trajectory import StoredInversion
    from videodirector_cli.diffusion.windows import WindowPlan
    from videodirector_cli.settings.edit import EditSettings

StepCallback = Callable[[int, "torch.Tensor"], None]


@dataclass(frozen=True)
class EditPlan:
    """An edit worked out against the model's tokenizer, once, before any UNet call."""

    source_prompt: str
    edit_prompt: str
    settings: EditSettings
    guidance_scale: float
    """Must be the inversion's: the stored nulls were optimised for it."""
    mapping: TokenMapping
    """Source-to-edit token mapping of the cross-attention maps (settings.mode)."""
    reweight: torch.Tensor | None
    """(L,) attention scale per edit-prompt token, or None without --reweight."""
    blend_dilate: int
    """Dilation of the --blend mask in latent cells (0 without --blend)."""


def plan_edit(
    model: DiffusionModel,
    source_prompt: str,
    edit_prompt: str,
    settings: EditSettings,
    guidance_scale: float,
) -> EditPlan:
    """Prompt length, SA-II layers, token mapping and reweighting through the model's own
    tokenizer and UNet; a UsageError names what does not fit."""
    from videodirector_cli.diffusion.attention import seq_align
    from videodirector_cli.diffusion.attention.controller import parse_layer_spec
    from videodirector_cli.diffusion.attention.layers import layers_of
    from videodirector_cli.diffusion.prompts import check_prompt

    settings.check()
    check_prompt(model.tokenizer, edit_prompt, "the edit prompt")
    parse_layer_spec(layers_of(model.unet, "spatial_self"), settings.sa2_layers)
    mapping = seq_align.token_mapping(model.tokenizer, source_prompt, edit_prompt, settings.mode)
    reweight = None
    if settings.reweight:
        target = seq_align.tokenize_prompt(model.tokenizer, edit_prompt)
        reweight = seq_align.reweight_vector(target, settings.reweight)
    dilate = dilation_cells(settings.blend_dilate, model.vae_scale_factor) if settings.blend else 0
    return EditPlan(source_prompt, edit_prompt, settings, guidance_scale, mapping, reweight, dilate)


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


@dataclass
class EditRun:
    latents: torch.Tensor
    """Final edit latents (1, C, F, h, w), float32, on the model's device."""
    applied: dict[str, int]
    """Layer calls each control touched ('sa1', 'sa2', 'cross'), over all steps."""


def run_edit_path(
    model: DiffusionModel,
    stored: StoredInversion,
    plan: EditPlan,
    masks: torch.Tensor | None = None,
    counter: PassCounter | None = None,
    callback: StepCallback | None = None,
    windows: WindowPlan | None = None,
) -> EditRun:
    """The editing loop. ``masks``: (F, H, W) bool foreground at frame (or any) resolution.
    ``windows``: the inversion's temporal windows (each window's four rows in one call; the
    controls see the window's frames and masks)."""
    import torch

    from videodirector_cli.diffusion.attention.controller import edit_attention
    from videodirector_cli.diffusion.cfg import apply_guidance, classifier_free
    from videodirector_cli.diffusion.prompts import encode_prompts
    from videodirector_cli.diffusion.schedule import Schedule
    from videodirector_cli.diffusion.unet_call import batch_embeddings
    from videodirector_cli.diffusion.windows import windowed_noise

    schedule = Schedule.from_scheduler(model.scheduler, stored.steps)
    if list(schedule.timesteps) != [int(t) for t in stored.timesteps]:
        raise StaleError(
            "the inversion ran on another timestep grid than this model's scheduler gives",
            hint="edit with the model and scheduler the inversion used, or invert again",
        )
    device = model.device
    start = stored.trajectory[0].latent.to(device=device, dtype=torch.float32)
    frames, latent_hw = start.shape[2], (start.shape[3], start.shape[4])
    if masks is not None and masks.shape[0] != frames:
        raise UsageError(f"{masks.shape[0]} mask frames for a {frames}-frame inversion")
    if plan.settings.blend and masks is None:
        raise UsageError("--blend needs a mask", hint="run vdir mask first, or drop --blend")
    controller = EditController(
        settings=plan.settings,
        frames=frames,
        latent_hw=latent_hw,
        masks=masks,
        mapping=plan.mapping,
        reweight=plan.reweight,
    )
    prompts = [plan.source_prompt, plan.edit_prompt]
    source_emb, edit_emb = encode_prompts(model, prompts).to(torch.float32)
    keep = None
    if plan.settings.blend and masks is not None:
        keep = blend_mask(masks, latent_hw, plan.blend_dilate).to(device)
    latent = start
    steps = stored.steps
    with torch.no_grad(), edit_attention(model.unet, controller):
        for index in range(steps):
            controller.set_step(index, steps)
            step = stored.trajectory[index]
            reconstruction = step.latent.to(device=device, dtype=torch.float32)
            null = step.null.to(device=device, dtype=torch.float32)
            sample = torch.cat([latent, latent, reconstruction, reconstruction])
            context = batch_embeddings([null, edit_emb[None], null, source_emb[None]], frames)
            eps = windowed_noise(
                model.unet,
                sample,
                schedule.timesteps[index],
                context,
                windows,
                counter=counter,
                purpose="edit",
                before_window=controller.set_window,
            )
            assert eps is not None  # a full forward always returns eps
            guidance = step.guidance
            guided = apply_guidance(
                classifier_free(eps[0:1], eps[1:2], plan.guidance_scale),
                None if guidance is None else guidance.to(device),
                schedule.noise_scale(index),
            )
            latent = schedule.denoise_step(latent, guided, index)
            if keep is not None:
                target = step.next_latent.to(device, torch.float32)
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

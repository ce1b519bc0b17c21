"""The STDG term as applied: scaled, and bounded per frame against the noise prediction.

The applied term is a = scale * sqrt(1 - alpha_bar_t) * G. Its size relative to the noise
prediction decides what it does: at the reference's setting (SD1.5, 64x64 latents, 50 steps, 10
null-text updates) it is a small correction; on other models, sizes or step counts the same
weights can make it several times the noise prediction, and the step then leaves the pivot
trajectory. So per frame f, with r_f = RMS(a_f) / RMS(eps_ref_f), a_f is multiplied by
min(1, max_ratio / r_f).

``eps_ref`` is the step's conditional noise prediction at z_t (computed once per step, without
gradient): the CFG prediction changes with every null-text update, while the guidance must be
fixed for the step so that `vdir edit` can replay it; the conditional prediction is the fixed
part of it, of the same magnitude.

The result is stored as an effective G (a / sqrt(1 - alpha_bar_t)) so that inversion and edit
both apply it with cfg.apply_guidance, operation for operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class BoundedGuidance:
    guidance: torch.Tensor
    """The effective G to apply (sqrt(1 - alpha_bar_t) * guidance is the applied term)."""
    ratio_max: float
    """max over frames of RMS(scale * sqrt(1 - alpha_bar_t) * G) / RMS(eps_ref), before the bound."""
    ratio_mean: float
    """The same ratio, mean over frames, before the bound."""
    applied_mean: float
    """The ratio after the bound, mean over frames: 0 means STDG did nothing this step."""
    bounded: bool
    """Whether the bound shrank any frame."""


def bound_guidance(
    grad: torch.Tensor,
    eps_ref: torch.Tensor,
    noise_scale: float,
    scale: float,
    max_ratio: float,
) -> BoundedGuidance:
    """``grad`` and ``eps_ref``: (B, C, F, h, w); frames are dimension 2."""
    import torch

    grad = grad.to(torch.float32)
    applied = (scale * noise_scale) * grad
    dims = (0, 1, 3, 4)
    rms_a = applied.pow(2).mean(dim=dims).sqrt()
    rms_eps = eps_ref.to(torch.float32).pow(2).mean(dim=dims).sqrt().clamp_min(1e-12)
    ratio = rms_a / rms_eps
    factor = torch.where(
        ratio > max_ratio, max_ratio / ratio.clamp_min(1e-30), torch.ones_like(ratio)
    )
    effective = (scale * grad) * factor.view(1, 1, -1, 1, 1)
    return BoundedGuidance(
        guidance=effective,
        ratio_max=float(ratio.max()),
        ratio_mean=float(ratio.mean()),
        applied_mean=float((ratio * factor).mean()),
        bounded=bool((factor < 1).any()),
    )

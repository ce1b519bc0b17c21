"""The guided noise prediction: the one place its formula lives.

Inversion (null-text optimisation) and editing both call these two functions, so editing with the
source prompt, the stored nulls and the stored guidance retraces the inversion's trajectory
exactly, operation for operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

GUIDANCE_SIGN = 1.0
"""eps <- eps + sqrt(1 - alpha_bar_t) * G with G = dL/dz_t.

A DDIM step's output moves against eps (d z_prev / d eps < 0 whenever alpha_bar grows), so adding
the loss gradient to eps moves z_prev down the gradient: the classifier-guidance form with
grad log p = -dL/dz. tests/test_stdg.py proves a guided step lowers the STDG loss.
"""


def classifier_free(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """eps_u + w (eps_c - eps_u), the form the reference uses (w = 1 equals eps_c up to rounding)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def apply_guidance(
    eps: torch.Tensor, guidance: torch.Tensor | None, noise_scale: float
) -> torch.Tensor:
    """Add STDG guidance like classifier guidance; ``noise_scale`` is sqrt(1 - alpha_bar_t)."""
    if guidance is None:
        return eps
    return eps + (GUIDANCE_SIGN * noise_scale) * guidance.to(eps.dtype)

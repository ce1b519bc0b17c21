"""DDIM inversion (pivots) and DDIM sampling with classifier-free guidance, on one Schedule.

Step ``index`` of the schedule runs at timestep t = timesteps[index] and links z_t with
z_{t_prev}. Inversion walks the steps backwards from the clean latent, evaluating the noise at t
on the latent it starts from (z_{t_prev}), as null-text inversion does; sampling walks forwards,
evaluating at t on z_t. The two agree exactly when the noise does not depend on the latent, and to
first order otherwise: that mismatch is what null-text optimisation corrects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from videodirector_cli.diffusion.cfg import apply_guidance, classifier_free
from videodirector_cli.diffusion.passes import PassCounter
from videodirector_cli.diffusion.schedule import Schedule
from videodirector_cli.diffusion.windows import WindowPlan, windowed_noise

if TYPE_CHECKING:
    import torch

NoiseFn = Callable[["torch.Tensor", int], "torch.Tensor"]
"""(latent, timestep) -> eps."""


def invert(noise: NoiseFn, schedule: Schedule, clean: torch.Tensor) -> torch.Tensor:
    """Pivots z*_0 .. z*_T stacked (T+1, *clean.shape), float32; index 0 is ``clean``."""
    import torch

    latent = clean.to(torch.float32)
    pivots = [latent]
    with torch.no_grad():
        for index in reversed(range(schedule.steps)):
            eps = noise(latent, schedule.timesteps[index])
            latent = schedule.invert_step(latent, eps, index)
            pivots.append(latent)
    return torch.stack(pivots)


def denoise(
    noise: Callable[[torch.Tensor, int, int], torch.Tensor],
    schedule: Schedule,
    start: torch.Tensor,
    first_step: int = 0,
) -> torch.Tensor:
    """DDIM sampling from ``start`` (at timesteps[first_step]) to the clean end.

    ``noise(latent, timestep, index)`` returns the (already guided) eps for that step.
    """
    import torch

    latent = start.to(torch.float32)
    with torch.no_grad():
        for index in range(first_step, schedule.steps):
            eps = noise(latent, schedule.timesteps[index], index)
            latent = schedule.denoise_step(latent, eps, index)
    return latent


def ddim_invert(
    unet,
    schedule: Schedule,
    clean: torch.Tensor,
    cond: torch.Tensor,
    counter: PassCounter | None = None,
    windows: WindowPlan | None = None,
) -> torch.Tensor:
    """DDIM inversion with the source prompt, conditional branch only (guidance 1)."""

    def noise(latent: torch.Tensor, timestep: int) -> torch.Tensor:
        return windowed_noise(
            unet, latent, timestep, cond, windows, counter=counter, purpose="ddim-inversion"
        )

    return invert(noise, schedule, clean)


def sample_cfg(
    unet,
    schedule: Schedule,
    start: torch.Tensor,
    cond: torch.Tensor,
    nulls: torch.Tensor | Sequence[torch.Tensor],
    scale: float,
    guidance: Sequence[torch.Tensor | None] | None = None,
    counter: PassCounter | None = None,
    purpose: str = "sample",
    windows: WindowPlan | None = None,
) -> torch.Tensor:
    """Denoise with CFG: one null for every step or one per step, plus optional stored STDG
    guidance per step. With the stored nulls and guidance of an inversion this retraces it."""

    def noise(latent: torch.Tensor, timestep: int, index: int) -> torch.Tensor:
        null: torch.Tensor = nulls[index] if isinstance(nulls, (list, tuple)) else nulls  # type: ignore[assignment]
        eps_u = windowed_noise(
            unet, latent, timestep, null, windows, counter=counter, purpose=purpose
        )
        eps_c = windowed_noise(
            unet, latent, timestep, cond, windows, counter=counter, purpose=purpose
        )
        eps = classifier_free(eps_u, eps_c, scale)
        step_guidance = guidance[index] if guidance is not None else None
        return apply_guidance(eps, step_guidance, schedule.noise_scale(index))

    return denoise(noise, schedule, start)

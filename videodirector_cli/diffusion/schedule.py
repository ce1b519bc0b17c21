"""DDIM on one timestep grid, shared by inversion and editing.

The reference inverts on one grid and edits on another; here both stages call ``Schedule`` built
from the same scheduler config and step count, so z*_t of the inversion is exactly the latent the
editing loop expects at t.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

ANIMATEDIFF_DDIM: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "prediction_type": "epsilon",
}
"""AnimateDiff's DDIM settings: every model vdir loads is sampled and inverted with these."""


def make_ddim_scheduler() -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(**ANIMATEDIFF_DDIM)


@dataclass(frozen=True)
class Schedule:
    timesteps: tuple[int, ...]
    """Denoising order, high to low (e.g. 981, 961, ..., 1 for 50 steps with steps_offset 1)."""
    alphas_cumprod: torch.Tensor
    final_alpha_cumprod: float

    @classmethod
    def from_scheduler(cls, scheduler, steps: int) -> Schedule:
        scheduler.set_timesteps(steps)
        timesteps = tuple(int(t) for t in scheduler.timesteps)
        return cls(
            timesteps=timesteps,
            alphas_cumprod=scheduler.alphas_cumprod.detach().to(torch.float64).cpu(),
            final_alpha_cumprod=float(scheduler.final_alpha_cumprod),
        )

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def alpha_bar(self, t: int) -> float:
        """alpha_bar at timestep t; t < 0 means 'before the first step' (the clean end)."""
        return float(self.alphas_cumprod[t]) if t >= 0 else self.final_alpha_cumprod

    def previous(self, index: int) -> int:
        """The timestep the denoising step ``index`` lands on (-1 after the last)."""
        return self.timesteps[index + 1] if index + 1 < self.steps else -1

    def denoise_step(self, latents: torch.Tensor, eps: torch.Tensor, index: int) -> torch.Tensor:
        """Deterministic DDIM (eta 0): z_t -> z_{t_prev} for step ``index`` of ``timesteps``."""
        t = self.timesteps[index]
        return _ddim(latents, eps, self.alpha_bar(t), self.alpha_bar(self.previous(index)))

    def invert_step(self, latents: torch.Tensor, eps: torch.Tensor, index: int) -> torch.Tensor:
        """The inverse of ``denoise_step(index)``: z_{t_prev} -> z_t, with eps taken at t_prev."""
        t = self.timesteps[index]
        return _ddim(latents, eps, self.alpha_bar(self.previous(index)), self.alpha_bar(t))

    def noise_scale(self, index: int) -> float:
        """sqrt(1 - alpha_bar_t): the factor that turns a score-like guidance into eps units."""
        return (1.0 - self.alpha_bar(self.timesteps[index])) ** 0.5


def _ddim(
    latents: torch.Tensor, eps: torch.Tensor, alpha_from: float, alpha_to: float
) -> torch.Tensor:
    dtype = latents.dtype
    work = torch.promote_types(dtype, torch.float32)  # half inputs are stepped in fp32
    z = latents.to(work)
    e = eps.to(work)
    x0 = (z - (1.0 - alpha_from) ** 0.5 * e) / alpha_from**0.5
    return (alpha_to**0.5 * x0 + (1.0 - alpha_to) ** 0.5 * e).to(dtype)

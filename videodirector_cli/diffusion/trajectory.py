"""The inversion in memory: DDIM pivots, then per step the optimised null and the trajectory.

``TrajectoryStep`` is what one step of the null-text optimisation produces (and what the
on-disk format stores per step); ``StoredInversion`` is a whole inversion as editing reads it:
the pivots z*_0..z*_T and, for every denoising step i (i = 0 at t = T), the null it used, the
latent it started from, the latent it ended at and its STDG guidance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class TrajectoryStep:
    """One denoising step of the optimised trajectory."""

    step: int
    timestep: int
    null: torch.Tensor
    """The optimised null used for this step, float32, (F, L, D) or (1, L, D)."""
    latent: torch.Tensor
    """z_t, where the step starts (the pivot z*_T for step 0)."""
    next_latent: torch.Tensor
    """z_{t_prev}, the step's result with the optimised null."""
    guidance: torch.Tensor | None = None
    """The STDG guidance of this step as applied: scaled and bounded (stdg_bound.py), so that
    sqrt(1 - alpha_bar_t) * guidance is the term added to eps (None when STDG is off)."""
    loss: float = 0.0
    """MSE(next_latent, pivot z*_{t_prev})."""
    iterations: int = 0
    """Adam updates used."""
    guidance_loss: float = 0.0
    """The STDG loss at the step's start latent (0 when STDG is off)."""
    guidance_ratio: float = 0.0
    """Before the bound: max over frames of RMS(applied term) / RMS(conditional eps)."""
    guidance_ratio_mean: float = 0.0
    """The same, mean over frames."""
    applied_ratio: float = 0.0
    """After the bound, mean over frames (0: STDG did nothing this step)."""
    bounded: bool = False
    """Whether the bound acted on any frame."""


@dataclass
class StoredInversion:
    """A complete inversion as editing needs it."""

    key: str
    timesteps: list[int]
    pivots: torch.Tensor
    """(T+1, 1, C, F, h, w): index 0 is z*_0 (clean), index T is z*_T."""
    trajectory: list[TrajectoryStep]
    """One per denoising step, in denoising order."""

    @classmethod
    def from_steps(
        cls, key: str, timesteps: list[int], pivots: torch.Tensor, steps: list[TrajectoryStep]
    ) -> StoredInversion:
        """The one way to assemble an inversion: checks that the pieces belong together."""
        if pivots.shape[0] != len(timesteps) + 1:
            raise ValueError(f"{pivots.shape[0]} pivots for {len(timesteps)} steps")
        if len(steps) != len(timesteps):
            raise ValueError(f"{len(steps)} trajectory steps for {len(timesteps)} timesteps")
        return cls(key=key, timesteps=list(timesteps), pivots=pivots, trajectory=list(steps))

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @property
    def nulls(self) -> list[torch.Tensor]:
        return [s.null for s in self.trajectory]

    @property
    def latents(self) -> list[torch.Tensor]:
        """Per step, the latent the step starts from (z_T for step 0)."""
        return [s.latent for s in self.trajectory]

    @property
    def guidance(self) -> list[torch.Tensor | None]:
        return [s.guidance for s in self.trajectory]

    @property
    def next_latents(self) -> list[torch.Tensor]:
        return [s.next_latent for s in self.trajectory]

    @property
    def reconstruction(self) -> torch.Tensor:
        """The trajectory's end: what editing with the source prompt returns."""
        return self.trajectory[-1].next_latent

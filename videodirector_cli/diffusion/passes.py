"""Counting UNet work, so performance claims are numbers, not impressions.

Unit: one forward-equivalent (fe) = the FLOPs of one full UNet forward over one batch row (one
video of F frames). Everything is charged in that unit by FLOPs:

- a forward that stops early, after the blocks a loss needs, counts as the fraction of the
  forward's FLOPs it ran (measured on the meta device, unet_call.forward_fraction);
- a backward counts as its own FLOPs over a full forward's, looked up by ``purpose`` in the
  counter's ``CostModel``, which ``diffusion/flops.py`` measures for the model and shape at hand
  (SD1.5 + AnimateDiff v3 at 16 x 512 x 512: null-text backward about 1.06 fe, STDG's backward
  about 0.78 fe: the weights are frozen, so a backward computes no weight gradients).

Without a measured cost model a backward counts as ``DEFAULT_BACKWARD`` = 1 x the forward it
reverses: a round figure (gradients w.r.t. the inputs only cost about one matching forward),
not a measurement; the measured ratio replaces it wherever the stages know the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OPTIMISATION_PURPOSES = ("conditional", "null-text", "stdg", "stdg-reference")
"""The passes of a null-text optimisation step (not DDIM inversion, not the report)."""

DEFAULT_BACKWARD = 1.0
"""Backward FLOPs per FLOP of the forward it reverses, when nothing was measured (rounded)."""


@dataclass(frozen=True)
class CostModel:
    """Measured backward costs in forward-equivalents, by pass purpose."""

    backward: dict[str, float] = field(default_factory=dict)
    """purpose -> FLOPs of that backward (one row) / FLOPs of a full forward (one row)."""
    source: str = "default"
    """What was measured: architecture, frames and latent size, or 'default'."""
    forward_flop: float | None = None
    """FLOPs of one full forward of one row, when measured."""

    def backward_cost(self, purpose: str, fraction: float) -> float:
        """Forward-equivalents of one row's backward of a ``purpose`` pass whose forward ran
        ``fraction`` of the UNet."""
        measured = self.backward.get(purpose)
        return measured if measured is not None else DEFAULT_BACKWARD * fraction

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "backward": {k: round(v, 4) for k, v in sorted(self.backward.items())},
            "default_backward": DEFAULT_BACKWARD,
            "forward_tflop": None if self.forward_flop is None else self.forward_flop / 1e12,
        }


UNMEASURED = CostModel()


@dataclass
class PassCounter:
    forwards: int = 0
    """Number of UNet calls (any batch size, full or partial)."""
    backwards: int = 0
    forward_equivalents: float = 0.0
    by_purpose: dict[str, float] = field(default_factory=dict)
    costs: CostModel = UNMEASURED
    """Where backward costs come from; replace with diffusion.flops.cost_model(...)."""

    def add_forward(self, rows: int = 1, fraction: float = 1.0, purpose: str = "forward") -> None:
        self.forwards += 1
        self._add(rows * fraction, purpose)

    def add_backward(self, rows: int = 1, fraction: float = 1.0, purpose: str = "backward") -> None:
        """A backward through a forward of ``rows`` rows that ran ``fraction`` of the UNet."""
        self.backwards += 1
        self._add(rows * self.costs.backward_cost(purpose, fraction), purpose)

    def _add(self, amount: float, purpose: str) -> None:
        self.forward_equivalents += amount
        self.by_purpose[purpose] = self.by_purpose.get(purpose, 0.0) + amount

    def as_dict(self) -> dict[str, object]:
        return {
            "unet_calls": self.forwards,
            "backwards": self.backwards,
            "forward_equivalents": round(self.forward_equivalents, 3),
            "by_purpose": {k: round(v, 3) for k, v in sorted(self.by_purpose.items())},
            "unit": "forward-equivalents: FLOPs / FLOPs of one full UNet forward of one video",
            "backward_costs": self.costs.as_dict(),
        }

    def inversion_report(self, steps_run: int) -> dict[str, Any]:
        """``as_dict`` plus the optimisation's forward-equivalents per step it ran."""
        data: dict[str, Any] = self.as_dict()
        optimisation = sum(self.by_purpose.get(p, 0.0) for p in OPTIMISATION_PURPOSES)
        data["optimisation_per_step"] = round(optimisation / steps_run, 3) if steps_run else None
        data["steps_run"] = steps_run
        return data

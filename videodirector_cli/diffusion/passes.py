"""Counting UNet work, so performance claims are numbers, not impressions.

Unit: one forward-equivalent = one UNet forward over one batch row (one video of F frames).
A backward pass counts as two forward-equivalents (the usual cost ratio). A forward that stops
early, after the blocks a loss needs, counts as the fraction of the UNet it ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OPTIMISATION_PURPOSES = ("conditional", "null-text", "stdg", "stdg-reference")
"""The passes of a null-text optimisation step (not DDIM inversion, not the report)."""


@dataclass
class PassCounter:
    forwards: int = 0
    """Number of UNet calls (any batch size, full or partial)."""
    backwards: int = 0
    forward_equivalents: float = 0.0
    by_purpose: dict[str, float] = field(default_factory=dict)

    def add_forward(self, rows: int = 1, fraction: float = 1.0, purpose: str = "forward") -> None:
        self.forwards += 1
        self._add(rows * fraction, purpose)

    def add_backward(self, rows: int = 1, fraction: float = 1.0, purpose: str = "backward") -> None:
        self.backwards += 1
        self._add(2.0 * rows * fraction, purpose)

    def _add(self, amount: float, purpose: str) -> None:
        self.forward_equivalents += amount
        self.by_purpose[purpose] = self.by_purpose.get(purpose, 0.0) + amount

    def as_dict(self) -> dict[str, object]:
        return {
            "unet_calls": self.forwards,
            "backwards": self.backwards,
            "forward_equivalents": round(self.forward_equivalents, 3),
            "by_purpose": {k: round(v, 3) for k, v in sorted(self.by_purpose.items())},
        }

    def inversion_report(self, steps_run: int) -> dict[str, Any]:
        """``as_dict`` plus the optimisation's forward-equivalents per step it ran."""
        data: dict[str, Any] = self.as_dict()
        optimisation = sum(self.by_purpose.get(p, 0.0) for p in OPTIMISATION_PURPOSES)
        data["optimisation_per_step"] = round(optimisation / steps_run, 3) if steps_run else None
        data["steps_run"] = steps_run
        return data

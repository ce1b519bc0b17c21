"""A run's UNet work in forward-equivalents, counted before it runs (flops.py's unit).

The same purposes as the PassCounter names them, so the estimate, `--json` pass counts and the
benchmarks can be compared purpose by purpose (tests/test_flops.py)."""

from __future__ import annotations

from typing import Any

from videodirector_cli.diffusion.flops import UNetCosts

EDIT_ROWS = 4
"""Rows of one edit call: [edit + null, edit + edit prompt, stored + null, stored + source]."""


def invert_work(
    costs: UNetCosts,
    steps: int,
    inner_steps: int,
    stdg: bool,
    report: bool,
    null_text: bool = True,
) -> dict[str, Any]:
    """Forward-equivalents of an inversion, by purpose as the PassCounter names them; the
    null-text updates at their maximum (each step may stop early). ``null_text`` False: the
    negative-prompt method, no unconditional pass at all."""
    backward = costs.null_text_backward
    by_purpose = {
        "ddim-inversion": float(steps),
        "conditional": float(steps),
        "null-text": steps * (inner_steps * (1.0 + backward) + 1.0) if null_text else 0.0,
    }
    if stdg and costs.stdg_forward is not None and costs.stdg_backward is not None:
        guided = max(0, steps - 1)  # step 0 starts at the pivot z*_T: G = 0, no passes
        by_purpose["stdg-reference"] = guided * costs.stdg_forward
        by_purpose["stdg"] = guided * (costs.stdg_forward + costs.stdg_backward)
    if report:
        by_purpose["report"] = 2.0 * steps
    optimisation = ("conditional", "null-text", "stdg-reference", "stdg")
    per_step = sum(by_purpose.get(p, 0.0) for p in optimisation) / max(1, steps)
    return {
        "unit": "forward-equivalents (FLOPs of one full UNet forward of one video)",
        "per_step": round(per_step, 3),
        "total": round(sum(by_purpose.values()), 3),
        "by_purpose": {k: round(v, 3) for k, v in by_purpose.items()},
        "upper_bound": null_text and inner_steps > 0,
        "backward_costs": costs.cost_model().as_dict(),
    }


def edit_work(steps: int) -> dict[str, Any]:
    return {
        "unit": "forward-equivalents (FLOPs of one full UNet forward of one video)",
        "per_step": float(EDIT_ROWS),
        "total": float(EDIT_ROWS * steps),
        "by_purpose": {"edit": float(EDIT_ROWS * steps)},
        "upper_bound": False,
    }

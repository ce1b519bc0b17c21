"""What a run through temporal windows costs, from the estimate of one window (estimate.py).

Every UNet call of a windowed run holds one window, so its peak memory is one window's plus the
pivots of the whole clip (the only per-clip tensors that stay on the device), and its UNet work
is the window's work times the number of windows: forward-equivalents per step grow linearly
with the windows. ``python -m videodirector_cli.diffusion.window_costs`` prints the table of
docs/long-clips.md for the real SD1.5 + AnimateDiff v3 shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from videodirector_cli.diffusion import gpus
from videodirector_cli.diffusion.windows import WindowPlan

if TYPE_CHECKING:
    from videodirector_cli.diffusion.estimate import Estimate

PIVOT_BYTES = 4
"""The pivots are stored in float32."""


def windowed_totals(one: Estimate, windows: WindowPlan, latent_elements: int) -> dict[str, Any]:
    """Peak, UNet work and time of a run through ``windows`` from ``one`` window's estimate;
    ``latent_elements``: channels x h x w of one frame's latent."""
    extra_frames = max(0, windows.frames - one.frames)
    pivots = 0
    if one.stage == "invert":
        pivots = (one.steps + 1) * PIVOT_BYTES * extra_frames * latent_elements
    times = {}
    for key, gpu in gpus.GPUS.items():
        fast, slow = one.seconds(gpu)
        times[key] = [round(fast * windows.count, 1), round(slow * windows.count, 1)]
    return {
        "frames": windows.frames,
        "windows": windows.count,
        "window": one.frames,
        "peak_bytes": one.peak_bytes + pivots,
        "per_step": round(float(one.work["per_step"]) * windows.count, 3),
        "total": round(float(one.work["total"]) * windows.count, 3),
        "seconds": times,
    }


def table(frames: tuple[int, ...] = (16, 64, 128), size: int = 512) -> list[dict[str, Any]]:
    """Invert and edit at ``frames`` on SD1.5 + AnimateDiff v3 (bf16, --memory fast, the
    defaults: 50 steps, 10 inner updates, STDG, report), windows of 16 with the default overlap (8)."""
    import torch

    from videodirector_cli.diffusion import estimate, memory
    from videodirector_cli.diffusion.architecture import SD15_ANIMATEDIFF, named
    from videodirector_cli.diffusion.windows import limits_from_config, resolve_plan

    arch = named(SD15_ANIMATEDIFF)
    limits = limits_from_config(arch.unet)
    _, channels, _, h, w = arch.latent_shape(1, size, size)
    rows = []
    for stage in ("invert", "edit"):
        one = estimate.estimate(
            stage, arch, limits.default_window, size, size, torch.bfloat16, memory.PLANS["fast"]
        )
        for count in frames:
            plan = resolve_plan(limits, count, limits.default_window, None)
            rows.append({"stage": stage, **windowed_totals(one, plan, channels * h * w)})
    return rows


def main() -> None:
    for row in table():
        seconds = row["seconds"]
        print(
            f"{row['stage']:<6} {row['frames']:>4} frames  {row['windows']:>2} windows  "
            f"peak {row['peak_bytes'] / 2**30:6.2f} GiB  {row['per_step']:8.1f} fe/step  "
            f"{row['total']:8.0f} fe  "
            + "  ".join(f"{k} {v[0]:.0f}-{v[1]:.0f} s" for k, v in seconds.items())
        )


if __name__ == "__main__":
    main()

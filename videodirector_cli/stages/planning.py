"""GPU memory for a stage: the plan a run applies (``--memory``), its out-of-memory advice, and
``--plan``, the estimate printed before anything is loaded.

The numbers come from diffusion/estimate.py (the model's components on the meta device); this
module only decides which plan a run gets and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from videodirector_cli.errors import UsageError
from videodirector_cli.stages.outcome import StageOutcome

if TYPE_CHECKING:
    from videodirector_cli.diffusion.components import DiffusionModel
    from videodirector_cli.diffusion.memory import MemoryPlan
    from videodirector_cli.output import Output
    from videodirector_cli.settings.invert import InvertSettings
    from videodirector_cli.settings.model import ModelChoice, RunChoice


@dataclass(frozen=True)
class Frames:
    """What the estimate needs of the project's clip."""

    count: int
    height: int
    width: int


def invert_work(settings: InvertSettings, masks: Any) -> dict[str, Any]:
    """What the estimate needs of an inversion's settings (``masks``: the project's, or None)."""
    from videodirector_cli.diffusion.flops import StdgPasses

    enabled, has_mask = settings.stdg.enabled, masks is not None
    null_text = settings.method == "null-text"
    return {
        "steps": settings.steps,
        "inner_steps": settings.null_text.inner_steps if null_text else 0,
        "null_text": null_text,
        "stdg": StdgPasses.from_config(settings.stdg, has_mask) if enabled else None,
        "report": settings.report,
    }


def _check_gpu(name: str | None) -> None:
    if name is None:
        return
    from videodirector_cli.diffusion.gpus import GPUS, gpu_class

    try:
        gpu_class(name)
    except KeyError:
        raise UsageError(f"unknown GPU class {name!r}", hint="known: " + ", ".join(GPUS)) from None


def plan_outcome(
    stage: str,
    choice: ModelChoice,
    run: RunChoice,
    frames: Frames,
    windows: tuple[int | None, int | None] = (None, None),
    **work: Any,
) -> StageOutcome:
    """``vdir invert --plan`` / ``vdir edit --plan``: every memory plan's estimate for this clip,
    the one ``--memory`` would pick, and nothing loaded or written. ``windows``: the
    ``--window`` and ``--window-overlap`` asked for; a clip seen through several windows is
    estimated for one window (its peak), its UNet work and time are the window's x windows."""
    from videodirector_cli.diffusion import estimate, memory
    from videodirector_cli.diffusion.architecture import architecture_for
    from videodirector_cli.diffusion.devices import resolve_device, resolve_dtype
    from videodirector_cli.diffusion.windows import limits_from_config, resolve_plan

    _check_gpu(run.gpu)
    device = resolve_device(choice.device)
    dtype = resolve_dtype(choice.dtype, device)
    arch = architecture_for(choice.model, choice.motion_adapter)
    window_plan = resolve_plan(limits_from_config(arch.unet), frames.count, *windows)
    if not window_plan.single:
        frames = Frames(window_plan.window, frames.height, frames.width)
    plans = estimate.estimate_plans(
        stage, arch, frames.count, frames.height, frames.width, dtype, **work
    )
    if run.memory.strip().lower() == "auto":
        chosen = memory.choose(
            {k: v.peak_bytes for k, v in plans.items()}, memory.free_memory(device)
        )
        plan, why = chosen.plan, chosen.reason
    else:
        plan = memory.plan_named(run.memory)
        why = f"{plan.name}: asked for"
    picked = plans[plan.name]
    others = [
        f"  --memory {name:<7} peak about {memory.gib(item.peak_bytes)}, "
        f"{item.work['total']:.0f} forward-equivalents ({item.plan.describe()})"
        for name, item in plans.items()
    ]
    lines = [picked.table(run.gpu), f"  on {device}: --memory {run.memory} -> {why}", *others]
    if not window_plan.single:
        lines.append(
            f"  the clip goes through {window_plan.describe()}: the numbers above are one "
            f"window's; UNet work and time x {window_plan.count}, peak memory as shown"
        )
    human = "\n".join(lines)
    return StageOutcome(
        data={
            "plan": True,
            "stage": stage,
            "device": str(device),
            "memory": run.memory,
            "chosen": plan.name,
            "why": why,
            "estimate": picked.as_dict(),
            "plans": {name: item.as_dict() for name, item in plans.items()},
            "windows": window_plan.as_dict(),
        },
        human=human,
    )


def run_plan(
    stage: str,
    model: DiffusionModel,
    run: RunChoice,
    frames: Frames,
    output: Output,
    **work: Any,
) -> tuple[MemoryPlan, str]:
    """The plan a run applies and the advice its out-of-memory error gives. On an accelerator
    every plan is estimated (seconds, nothing loaded) so that ``auto`` picks the fastest that
    fits and the advice names the next plan's peak; on the CPU nothing is estimated."""
    from videodirector_cli.diffusion import estimate, memory
    from videodirector_cli.diffusion.architecture import Architecture

    asked = run.memory.strip().lower()
    if model.device.type == "cpu":
        plan = memory.PLANS["fast"] if asked == "auto" else memory.plan_named(asked)
        if asked != "auto":
            output.info(f"memory plan {plan.name} ({plan.describe()})")
        return plan, estimate.oom_advice(plan)
    arch = Architecture.from_model(model)
    plans = estimate.estimate_plans(
        stage, arch, frames.count, frames.height, frames.width, model.dtype, **work
    )
    if asked == "auto":
        chosen = memory.choose(
            {k: v.peak_bytes for k, v in plans.items()}, memory.free_memory(model.device)
        )
        plan, why = chosen.plan, chosen.reason
    else:
        plan = memory.plan_named(asked)
        why = f"{plan.name}: asked for, estimated peak {memory.gib(plans[plan.name].peak_bytes)}"
    output.info(f"memory plan {why}")
    return plan, estimate.oom_advice(plan, plans)

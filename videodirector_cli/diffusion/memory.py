"""Memory options: trade time for accelerator memory without changing any result.

Three options, each a context manager that leaves the model as it found it:

- ``gradient_checkpointing(unet)``: the backward passes (null-text, STDG) keep only block
  boundaries and recompute the inside of each block when the gradient gets there (diffusers'
  own checkpointing of the UNet's resnets, transformer blocks and motion modules, non-reentrant,
  so it applies although only the input requires a gradient and the weights are frozen);
- ``model_offload(model)``: the text encoder and the VAE live in CPU memory and come to the
  device only while they run (a forward pre-hook brings one in; the UNet's pre-hook sends them
  back); ``sequential_offload(unet)`` does the same for each of the UNet's layers, for cards
  that cannot hold its weights next to the activations. The weights are frozen, so a module
  goes back to the CPU by dropping its device copy (no copy back);
- VAE slices: frames per VAE encode/decode call (``DiffusionModel.vae_frames``, used by
  latents.py): one frame at a time instead of four.

``MemoryPlan`` names a combination: ``fast`` (none), ``low`` (checkpointing, model offload,
VAE one frame per call), ``lowest`` (low + sequential offload). ``use_plan(model, plan)``
applies one for a ``with`` block; ``choose`` picks one for ``--memory auto`` from estimated
peaks (diffusion/estimate.py) and the device's free memory (``free_memory``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from videodirector_cli.diffusion.offload import (
    gradient_checkpointing,
    model_device,
    model_offload,
    sequential_offload,
    vae_slices,
)
from videodirector_cli.errors import UsageError

if TYPE_CHECKING:
    import torch

    from videodirector_cli.diffusion.components import DiffusionModel

Offload = Literal["none", "model", "sequential"]
CHOICES = ("auto", "fast", "low", "lowest")


@dataclass(frozen=True)
class MemoryPlan:
    name: str
    checkpointing: bool = False
    """Activation checkpointing of the UNet in the passes that run a backward."""
    offload: Offload = "none"
    """'model': text encoder and VAE on the CPU while the UNet runs; 'sequential': also each
    UNet layer's weights, brought to the device for its own forward only."""
    vae_frames: int = 4
    """Frames per VAE encode/decode call."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        parts = []
        if self.checkpointing:
            parts.append("activation checkpointing")
        if self.offload == "model":
            parts.append("text encoder and VAE offloaded to the CPU")
        if self.offload == "sequential":
            parts.append("text encoder, VAE and each UNet layer offloaded to the CPU")
        parts.append(f"VAE {self.vae_frames} frame{'s' if self.vae_frames > 1 else ''} per call")
        return ", ".join(parts)


PLANS: dict[str, MemoryPlan] = {
    "fast": MemoryPlan("fast"),
    "low": MemoryPlan("low", checkpointing=True, offload="model", vae_frames=1),
    "lowest": MemoryPlan("lowest", checkpointing=True, offload="sequential", vae_frames=1),
}
ORDER = ("fast", "low", "lowest")
"""From fastest to leanest; ``next_plan`` walks it (the out-of-memory advice)."""


def plan_named(name: str) -> MemoryPlan:
    """The plan for ``--memory NAME`` (not 'auto': see ``choose``)."""
    key = (name or "").strip().lower()
    if key not in PLANS:
        raise UsageError(
            f"--memory {name!r} is not a memory option", hint=f"use one of {', '.join(CHOICES)}"
        )
    return PLANS[key]


def next_plan(plan: MemoryPlan) -> MemoryPlan | None:
    """The next leaner plan, or None after ``lowest``."""
    index = ORDER.index(plan.name) if plan.name in ORDER else len(ORDER)
    return PLANS[ORDER[index + 1]] if index + 1 < len(ORDER) else None


# ------------------------------------------------------------------------------- auto

SAFETY = 0.9
"""Use at most this share of the free memory: the estimate leaves out kernel workspaces and
the allocator's fragmentation (diffusion/memtrack.py)."""


def free_memory(device: torch.device) -> int | None:
    """Bytes the accelerator can still hand out: CUDA's free memory (torch.cuda.mem_get_info),
    MPS's recommended working set minus what the process holds; None on the CPU."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        mps = getattr(torch, "mps", None)
        recommended = getattr(mps, "recommended_max_memory", None)
        allocated = getattr(mps, "driver_allocated_memory", None)
        if recommended is None or allocated is None:
            return None
        return int(recommended()) - int(allocated())
    return None


@dataclass(frozen=True)
class Choice:
    plan: MemoryPlan
    reason: str


def choose(peaks: Mapping[str, int], free: int | None) -> Choice:
    """``--memory auto``: the fastest plan whose estimated peak fits in ``SAFETY`` x ``free``.

    ``peaks``: plan name -> estimated peak bytes. Without a free-memory figure (the CPU) it
    is ``fast``: offloading to the CPU from the CPU saves nothing and checkpointing only
    trades time for RAM the operating system manages. When nothing fits it is ``lowest``, and
    the reason says by how much it is expected to fall short.
    """
    if free is None:
        return Choice(PLANS["fast"], "no accelerator memory to fit (CPU): fast")
    budget = int(SAFETY * free)
    for name in ORDER:
        if name in peaks and peaks[name] <= budget:
            return Choice(
                PLANS[name],
                f"{name}: estimated peak {gib(peaks[name])} fits in {gib(budget)} "
                f"({SAFETY:.0%} of {gib(free)} free)",
            )
    lowest = peaks.get("lowest")
    return Choice(
        PLANS["lowest"],
        "lowest: nothing fits"
        + ("" if lowest is None else f" (lowest needs about {gib(lowest)}, {gib(budget)} usable)"),
    )


def gib(nbytes: float) -> str:
    value = nbytes / 2**30
    return f"{value:.1f} GiB" if value >= 10 else f"{value:.2f} GiB"


@contextmanager
def use_plan(model: DiffusionModel, plan: MemoryPlan) -> Iterator[MemoryPlan]:
    """Apply ``plan`` to ``model`` for a ``with`` block; the model is as before afterwards."""
    with ExitStack() as stack:
        if plan.checkpointing:
            stack.enter_context(gradient_checkpointing(model.unet))
        if plan.offload in ("model", "sequential"):
            stack.enter_context(model_offload(model))
        if plan.offload == "sequential":
            stack.enter_context(sequential_offload(model.unet, model_device(model)))
        stack.enter_context(vae_slices(model, plan.vae_frames))
        yield plan

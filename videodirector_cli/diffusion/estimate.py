"""What a run will need, said before it runs: peak accelerator memory, UNet work, time.

Nothing is loaded: the model's components are built on the meta device from their configs
(architecture.py) and each heavy pass of the run (workloads.py) is played there under
``memtrack.MemoryTracker``, with the memory plan's options applied for real (diffusers'
activation checkpointing, vdir's sequential offload hooks, the VAE's frames per call). The
peak of a phase is its tracked peak plus the weights the plan keeps on the device during it
plus the stage data it holds (the pivots); the run's peak is the largest phase.

What is left out (see memtrack.py): the CUDA context (about 0.3-1 GB, outside
``torch.cuda.max_memory_allocated`` too), kernel workspaces and the caching allocator's
fragmentation; ``memory.choose`` keeps a margin for them. Checked against measured peak memory
on the CPU (tests/test_estimate.py, within 25 %); on a GPU by benchmarks/gpu.py.

UNet work comes from the same FLOP counts as the PassCounter (flops.py): forward-equivalents
per step and in all, an upper bound because the null-text inner loop may stop early; time is
that work at ``gpus.UTILISATION`` of a GPU class's dense bf16 peak, plus the time to copy
offloaded weights over the host link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videodirector_cli.diffusion import gpus, memory, workloads
from videodirector_cli.diffusion.architecture import Architecture
from videodirector_cli.diffusion.flops import StdgPasses, cached_costs
from videodirector_cli.diffusion.memory import MemoryPlan, gib
from videodirector_cli.diffusion.peaks import phase_peak, weight_bytes
from videodirector_cli.diffusion.run_work import edit_work, invert_work

if TYPE_CHECKING:
    import torch

STAGES = ("invert", "edit")


@dataclass(frozen=True)
class PhasePeak:
    name: str
    activations: int
    """Peak bytes of the tensors the pass creates (with sequential offload: its weight copies)."""
    weights: int
    """Weights the plan keeps on the device during the pass."""
    held: int = 0
    """Stage data alive across the pass (the inversion's pivots)."""

    @property
    def peak(self) -> int:
        return self.activations + self.weights + self.held

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.name,
            "peak_bytes": self.peak,
            "activations_bytes": self.activations,
            "weights_bytes": self.weights,
            "held_bytes": self.held,
        }


@dataclass
class Estimate:
    stage: str
    architecture: str
    frames: int
    height: int
    width: int
    dtype: str
    plan: MemoryPlan
    steps: int
    inner_steps: int
    stdg: bool
    report: bool
    phases: list[PhasePeak]
    weights: dict[str, int]
    work: dict[str, Any]
    forward_flop: float
    transfer_bytes: float
    notes: list[str] = field(default_factory=list)

    @property
    def peak(self) -> PhasePeak:
        return max(self.phases, key=lambda phase: phase.peak)

    @property
    def peak_bytes(self) -> int:
        return self.peak.peak

    @property
    def total_flop(self) -> float:
        return float(self.work["total"]) * self.forward_flop

    def seconds(self, gpu: gpus.GpuClass) -> tuple[float, float]:
        """(fastest, slowest) wall time of the UNet work on ``gpu``, plus offload copies."""
        fast, slow = gpus.seconds(self.total_flop, gpu)
        copies = self.transfer_bytes / (gpu.host_gbps * 1e9)
        return fast + copies, slow + copies

    def fits(self, gpu: gpus.GpuClass) -> bool:
        return self.peak_bytes <= memory.SAFETY * gpu.memory_gib * 2**30

    def as_dict(self) -> dict[str, Any]:
        times = {}
        for key, gpu in gpus.GPUS.items():
            fast, slow = self.seconds(gpu)
            times[key] = {
                "name": gpu.name,
                "seconds": [round(fast, 1), round(slow, 1)],
                "fits": self.fits(gpu),
            }
        return {
            "stage": self.stage,
            "architecture": self.architecture,
            "frames": self.frames,
            "size": [self.width, self.height],
            "dtype": self.dtype,
            "memory": self.plan.as_dict(),
            "steps": self.steps,
            "inner_steps": self.inner_steps if self.stage == "invert" else None,
            "stdg": self.stdg if self.stage == "invert" else None,
            "report": self.report if self.stage == "invert" else None,
            "peak_bytes": self.peak_bytes,
            "peak_phase": self.peak.name,
            "phases": [phase.as_dict() for phase in self.phases],
            "weights_bytes": dict(self.weights),
            "work": self.work,
            "forward_tflop": self.forward_flop / 1e12,
            "total_tflop": self.total_flop / 1e12,
            "offload_copy_bytes": self.transfer_bytes,
            "time": {
                "utilisation": list(gpus.UTILISATION),
                "basis": "dense bf16 peak from the vendors' data sheets",
                "gpus": times,
            },
            "excludes": "CUDA context, kernel workspaces, allocator fragmentation",
            "notes": list(self.notes),
        }

    def table(self, gpu: str | None = None) -> str:
        """A short human summary (what `--plan` prints)."""
        low, high = gpus.UTILISATION
        lines = [
            f"vdir {self.stage} --plan: {self.architecture}, {self.frames} frames x "
            f"{self.width}x{self.height}, {self.dtype}, --memory {self.plan.name} "
            f"({self.plan.describe()})",
            f"  {'phase':<22} {'peak':>10} {'weights':>10} {'activations':>12} {'held':>9}",
        ]
        for phase in self.phases:
            lines.append(
                f"  {phase.name:<22} {gib(phase.peak):>10} {gib(phase.weights):>10} "
                f"{gib(phase.activations):>12} {gib(phase.held):>9}"
            )
        lines.append(
            f"  peak accelerator memory about {gib(self.peak_bytes)} ({self.peak.name}; "
            "plus the CUDA context and allocator slack)"
        )
        work = self.work
        lines.append(
            f"  UNet work: {'at most ' if work['upper_bound'] else ''}"
            f"{work['per_step']:.1f} forward-equivalents per step, {work['total']:.0f} in all "
            f"({self.forward_flop / 1e12:.2f} TFLOP each)"
            + ("; inner updates may stop early" if work["upper_bound"] else "")
        )
        chosen = [gpus.gpu_class(gpu)] if gpu else list(gpus.GPUS.values())
        for item in chosen:
            fast, slow = self.seconds(item)
            lines.append(
                f"  {item.name:<24} {_duration(fast)} - {_duration(slow)}"
                f"  ({low:.0%}-{high:.0%} of {item.bf16_tflops:g} TFLOP/s bf16)"
                + ("" if self.fits(item) else f"  does not fit in {item.memory_gib:g} GB")
            )
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _resident(plan: MemoryPlan, weights: dict[str, int], active: str) -> int:
    """Weights on the device while ``active`` ('unet', 'vae', 'text_encoder') runs."""
    if plan.offload == "none":
        return sum(weights.values())
    unet = weights["unet"] if plan.offload == "model" else 0
    if active == "unet":
        return unet
    return unet + weights[active]


# ------------------------------------------------------------------------------- estimates


def estimate(
    stage: str,
    arch: Architecture,
    frames: int,
    height: int,
    width: int,
    dtype: torch.dtype,
    plan: MemoryPlan,
    *,
    steps: int = 50,
    inner_steps: int = 10,
    stdg: StdgPasses | None = StdgPasses(),
    report: bool = True,
    null_text: bool = True,
    cache_dir: Path | None = None,
) -> Estimate:
    """The estimate of ``vdir invert`` (``stage='invert'``) or ``vdir edit`` for frames of
    ``height`` x ``width`` pixels; ``stdg`` None without STDG, ``report`` False for
    --no-report, ``null_text`` False for --method negative-prompt (no unconditional pass).
    Edits ignore ``inner_steps``, ``stdg``, ``report`` and ``null_text``. ``cache_dir``: where
    measured phase peaks are kept between runs (e.g. platformdirs.user_cache_dir('vdir'))."""
    from videodirector_cli.diffusion.devices import dtype_name

    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    factor = arch.vae_factor
    latent_hw = (height // factor, width // factor)
    shape = workloads.Shape(
        frames, latent_hw, arch.latent_channels, arch.max_tokens, _context_dim(arch)
    )
    weights = weight_bytes(arch, dtype)
    ck, seq = plan.checkpointing, plan.offload == "sequential"
    costs = cached_costs(arch, frames, latent_hw, stdg, ck)
    notes: list[str] = []

    def unet_phase(name: str, workload: str, held: int = 0, grad: bool = False) -> PhasePeak:
        peak = phase_peak(
            arch,
            workload,
            shape,
            dtype,
            checkpointing=ck and grad,
            sequential=seq,
            passes=stdg,
            cache_dir=cache_dir,
        )
        return PhasePeak(name, peak, _resident(plan, weights, "unet"), held)

    def vae_phase(name: str, workload: str, held: int = 0) -> PhasePeak:
        peak = phase_peak(
            arch, workload, shape, dtype, vae_frames=plan.vae_frames, cache_dir=cache_dir
        )
        return PhasePeak(name, peak, _resident(plan, weights, "vae"), held)

    text = PhasePeak("text encoder", 0, _resident(plan, weights, "text_encoder"))
    if stage == "invert":
        pivots = (steps + 1) * 4 * frames * latent_hw[0] * latent_hw[1] * shape.channels
        phases = [
            text,
            vae_phase("VAE encode", "vae-encode"),
            unet_phase("UNet forward", "forward", pivots),
        ]
        if stdg is not None and steps > 1:
            phases.append(unet_phase("STDG fwd+bwd", "stdg", pivots, grad=True))
        if inner_steps > 0:
            phases.append(unet_phase("null-text fwd+bwd", "null-text", pivots, grad=True))
        if report:
            phases.append(vae_phase("VAE decode (report)", "vae-decode", pivots))
        work = invert_work(costs, steps, inner_steps, stdg is not None, report, null_text)
    else:
        sa1 = unet_phase("edit call (SA-I)", "edit-sa1")
        sa2 = unet_phase("edit call (SA-II)", "edit-sa2")
        phases = [text, sa1, sa2, vae_phase("VAE decode", "vae-decode")]
        work = edit_work(steps)
    transfer = 0.0
    if plan.offload != "none":
        transfer += weights["text_encoder"] + 2 * weights["vae"]
    if seq:
        transfer += work["total"] * weights["unet"]
        notes.append(
            "sequential offload streams the UNet's weights over the host link for every "
            "forward-equivalent (counted in the time)"
        )
    if arch.max_frames is not None and frames > arch.max_frames:
        notes.append(f"the motion modules take at most {arch.max_frames} frames")
    return Estimate(
        stage=stage,
        architecture=arch.name,
        frames=frames,
        height=height,
        width=width,
        dtype=dtype_name(dtype),
        plan=plan,
        steps=steps,
        inner_steps=inner_steps,
        stdg=stdg is not None,
        report=report,
        phases=phases,
        weights=weights,
        work=work,
        forward_flop=costs.forward_flop,
        transfer_bytes=transfer,
        notes=notes,
    )


def _context_dim(arch: Architecture) -> int:
    dim = arch.unet.get("cross_attention_dim")
    return int(dim) if isinstance(dim, int) else arch.context_dim


def estimate_plans(
    stage: str,
    arch: Architecture,
    frames: int,
    height: int,
    width: int,
    dtype: torch.dtype,
    **options: Any,
) -> dict[str, Estimate]:
    """``estimate`` for each of fast, low and lowest."""
    return {
        name: estimate(stage, arch, frames, height, width, dtype, memory.PLANS[name], **options)
        for name in memory.ORDER
    }


def choose_plan(
    name: str,
    stage: str,
    arch: Architecture,
    frames: int,
    height: int,
    width: int,
    dtype: torch.dtype,
    device: torch.device,
    **options: Any,
) -> tuple[MemoryPlan, str]:
    """``--memory NAME`` -> (plan, why). ``auto`` estimates every plan and takes the fastest
    that fits the device's free memory (memory.choose); on the CPU it is ``fast``."""
    if name.strip().lower() != "auto":
        plan = memory.plan_named(name)
        return plan, f"{plan.name}: asked for"
    free = memory.free_memory(device)
    if free is None:
        choice = memory.choose({}, None)
        return choice.plan, choice.reason
    plans = estimate_plans(stage, arch, frames, height, width, dtype, **options)
    choice = memory.choose({k: v.peak_bytes for k, v in plans.items()}, free)
    return choice.plan, choice.reason


def oom_advice(plan: MemoryPlan, plans: dict[str, Estimate] | None = None) -> str:
    """The hint of an out-of-memory message: the next leaner plan and, when ``plans`` has it,
    its estimated peak; after ``lowest``, what else lowers memory."""
    leaner = memory.next_plan(plan)
    if leaner is None:
        return (
            "use fewer frames (vdir init --frames), a smaller --size, --stdg-blocks "
            "up_blocks.1 or --no-stdg"
        )
    known = plans.get(leaner.name) if plans else None
    need = f" (estimated peak {gib(known.peak_bytes)})" if known is not None else ""
    return f"try --memory {leaner.name}{need}: {leaner.describe()}"

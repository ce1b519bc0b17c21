"""GPU check: time, peak memory and throughput of vdir's inversion and edit steps (issue 14).

    python -m benchmarks.gpu --out DIR                # SD1.5 + AnimateDiff v3 shape, 16 x 512 x 512, bf16
    python -m benchmarks.gpu --tiny --out DIR         # the tiny model on any device (a test runs it)
    python -m benchmarks.gpu --configs fast,low --inversion-steps 2 --out DIR

The model has the real SD1.5 + AnimateDiff v3 architecture (vdir's shipped configs) with random
weights: nothing is downloaded, and speed and memory do not depend on the weights' values. For
each memory configuration (``CONFIGS``: the default, each option alone, ``low``, ``lowest``) it
times, through vdir's own library code, a few null-text optimisation steps with STDG
(``null_text.optimise_nulls`` + ``stdg.STDG``: the conditional forward, STDG's reference and
guided forward + backward, the inner updates, early stopping off so every update runs), a few
edit steps (``editing.run_edit_path``: the 4-row call with the edit attention processors) and
one VAE decode of the clip, and records ``torch.cuda.max_memory_allocated`` of each (beside the
estimate of diffusion/estimate.py for the same configuration), the steady-state step times and
the achieved TFLOP/s against the device's dense bf16 peak.

Writes ``DIR/gpu.json`` (every number) and ``DIR/gpu.md`` (the table). Progress goes to stderr.
Sized to finish in a few minutes on one H100/H200 (each configuration runs 1 + ``--inversion-
steps`` optimisation steps and 1 + ``--edit-steps`` edit steps; the first of each is a warm-up);
``--budget`` stops starting new configurations when time runs short.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from videodirector_cli.settings.invert import InvertSettings

DEFAULT_OUT = Path("benchmarks/results/gpu")
PROMPT, EDIT_PROMPT = "a bear walking in the forest", "a tiger walking in the forest"
GUIDANCE_SCALE = InvertSettings().guidance_scale


@dataclass(frozen=True)
class Config:
    tiny: bool = False
    device: str = "auto"
    frames: int = 16
    size: int = 512
    inversion_steps: int = 3
    """Timed optimisation steps per configuration (after one warm-up step)."""
    inner_steps: int = 4
    edit_steps: int = 4
    """Timed edit steps per configuration (after one warm-up step)."""
    configs: tuple[str, ...] = ("fast", "checkpointing", "model-offload", "vae-slices")
    budget_s: float = 420.0
    estimate: bool = True

    def __post_init__(self) -> None:
        unknown = [c for c in self.configs if c not in _plans()]
        if unknown:
            raise SystemExit(f"unknown --configs {unknown}; known: {', '.join(_plans())}")


TINY = {"frames": 2, "size": 16, "inversion_steps": 1, "inner_steps": 1, "edit_steps": 1}


def _plans() -> dict[str, Any]:
    from videodirector_cli.diffusion.memory import PLANS, MemoryPlan

    fast = PLANS["fast"]
    return {
        "fast": fast,
        "checkpointing": replace(fast, name="checkpointing", checkpointing=True),
        "model-offload": replace(fast, name="model-offload", offload="model"),
        "vae-slices": replace(fast, name="vae-slices", vae_frames=1),
        "low": PLANS["low"],
        "lowest": PLANS["lowest"],
        "sequential-offload": MemoryPlan("sequential-offload", offload="sequential"),
    }


CONFIG_ORDER = ("fast", "checkpointing", "model-offload", "vae-slices", "low", "lowest")


def log(message: str) -> None:
    print(f"[gpu {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the model


def build_model(config: Config):
    """Random weights with the real architecture (or the tiny model), on the device."""
    import torch

    from videodirector_cli.diffusion.architecture import SD15_ANIMATEDIFF, named
    from videodirector_cli.diffusion.components import DiffusionModel
    from videodirector_cli.diffusion.devices import resolve_device, resolve_dtype
    from videodirector_cli.diffusion.schedule import make_ddim_scheduler
    from videodirector_cli.diffusion.tiny import build_tiny_model, build_tiny_tokenizer

    device = resolve_device(config.device)
    dtype = resolve_dtype("auto", device)
    if config.tiny:
        return build_tiny_model(device=device, dtype=dtype), named("tiny")
    arch = named(SD15_ANIMATEDIFF)
    torch.manual_seed(0)
    model = DiffusionModel(
        unet=arch.build_unet(dtype, device=str(device)),
        vae=arch.build_vae(dtype, device=str(device)),
        text_encoder=arch.build_text_encoder(dtype, device=str(device)),
        tokenizer=build_tiny_tokenizer(),  # byte-level ids < 514 fit CLIP's 49408-token table
        scheduler=make_ddim_scheduler(),
        device=device,
        dtype=dtype,
        identity={"model": "random:sd15-animatediff-v3"},
        meaningless=True,
    )
    return model, arch


# ----------------------------------------------------------------------------- measuring


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device) -> int:
    import torch

    _sync(device)
    if device.type != "cuda":
        return 0
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    return int(torch.cuda.memory_allocated(device))


def _peak(device) -> int | None:
    import torch

    _sync(device)
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def _masks(frames: int, size: int):
    import torch

    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = []
    for index in range(frames):
        cx = size * (0.3 + 0.4 * index / max(1, frames - 1))
        masks.append(((x - cx) / (0.2 * size)) ** 2 + ((y - size / 2) / (0.3 * size)) ** 2 <= 1)
    return torch.stack(masks)


def run_inversion(model, plan, config: Config) -> dict[str, Any]:
    """1 + inversion_steps optimisation steps with STDG; every inner update runs."""
    import torch

    from videodirector_cli.diffusion import flops, memory
    from videodirector_cli.diffusion.null_text import initial_null, optimise_nulls
    from videodirector_cli.diffusion.passes import PassCounter
    from videodirector_cli.diffusion.prompts import encode_prompt
    from videodirector_cli.diffusion.schedule import Schedule
    from videodirector_cli.diffusion.stdg import STDG
    from videodirector_cli.diffusion.trajectory import StoredInversion
    from videodirector_cli.settings.invert import NullTextSettings, STDGSettings

    device, frames = model.device, config.frames
    steps = 1 + config.inversion_steps
    latent_hw = (config.size // model.vae_scale_factor,) * 2
    g = torch.Generator().manual_seed(0)
    shape = (1, model.latent_channels, frames, *latent_hw)
    pivots = torch.stack([torch.randn(shape, generator=g) for _ in range(steps + 1)])
    start = pivots[steps] + 0.05 * torch.randn(shape, generator=g)  # off the pivot: STDG runs
    with memory.use_plan(model, plan):
        cond, empty = encode_prompt(model, PROMPT), encode_prompt(model, "")
        schedule = Schedule.from_scheduler(model.scheduler, steps)
        masks = _masks(frames, config.size).to(device)
        stdg = STDG(model.unet, STDGSettings(), masks, latent_hw)
        counter = PassCounter(
            costs=flops.cost_model(model.unet, frames, latent_hw, stdg, plan.checkpointing)
        )
        stdg.counter = counter
        nulls_config = NullTextSettings(
            inner_steps=config.inner_steps, early_stop=0.0, early_stop_slope=0.0
        )
        stamps: list[float] = []
        work: list[float] = []

        def on_step(result) -> None:
            _sync(device)
            stamps.append(time.perf_counter())
            work.append(counter.forward_equivalents)
            log(
                f"  {plan.name}: inversion step {result.step + 1}/{steps} ({result.iterations} updates)"
            )

        base = _reset_peak(device)
        _sync(device)
        began = time.perf_counter()
        results = optimise_nulls(
            model.unet,
            schedule,
            pivots.to(device),
            cond,
            nulls_config,
            GUIDANCE_SCALE,
            null=initial_null(empty, frames, "per-frame").to(device),
            latent=start.to(device),
            stdg=stdg,
            counter=counter,
            on_step=on_step,
        )
        peak = _peak(device)
    times = [b - a for a, b in zip([began, *stamps[:-1]], stamps, strict=True)]
    fe = [b - a for a, b in zip([0.0, *work[:-1]], work, strict=True)]
    timed = times[1:] or times
    timed_fe = fe[1:] or fe
    stored = StoredInversion.from_steps(
        "benchmark", list(schedule.timesteps), pivots, [_on_cpu(r) for r in results]
    )
    return {
        "step_seconds": [round(t, 4) for t in times],
        "seconds_per_step": statistics.median(timed),
        "fe_per_step": statistics.mean(timed_fe),
        "updates_per_step": config.inner_steps,
        "peak_bytes": peak,
        "base_bytes": base,
        "passes": counter.as_dict(),
        "forward_flop": counter.costs.forward_flop,
        "_stored": stored,
    }


def _on_cpu(step):
    """A trajectory step with its tensors in CPU memory (what a stored inversion holds)."""
    from dataclasses import replace as replaced

    return replaced(
        step,
        null=step.null.cpu(),
        latent=step.latent.cpu(),
        next_latent=step.next_latent.cpu(),
        guidance=None if step.guidance is None else step.guidance.cpu(),
    )


def _edit_inversion(stored, steps: int, scheduler):
    """``stored`` stretched or cut to ``steps`` steps: the edit may run a longer schedule than
    the (short) benchmark inversion; its latents, nulls and guidance are reused in turn."""
    from dataclasses import replace as replaced

    import torch

    from videodirector_cli.diffusion.schedule import Schedule
    from videodirector_cli.diffusion.trajectory import StoredInversion

    schedule = Schedule.from_scheduler(scheduler, steps)
    known = stored.trajectory
    trajectory = [
        replaced(known[min(i, len(known) - 1)], step=i, timestep=int(t))
        for i, t in enumerate(schedule.timesteps)
    ]
    pivots = list(stored.pivots)
    pivots += [pivots[-1]] * (steps + 1 - len(pivots))
    return StoredInversion.from_steps(
        stored.key, list(schedule.timesteps), torch.stack(pivots[: steps + 1]), trajectory
    )


def run_edit(model, plan, config: Config, stored) -> dict[str, Any]:
    import torch

    from videodirector_cli.diffusion import memory
    from videodirector_cli.diffusion.editing import plan_edit, run_edit_path
    from videodirector_cli.diffusion.passes import PassCounter
    from videodirector_cli.settings.edit import EditSettings

    device = model.device
    steps = 1 + config.edit_steps
    inversion = _edit_inversion(stored, steps, model.scheduler)
    edit = plan_edit(model, PROMPT, EDIT_PROMPT, EditSettings(), GUIDANCE_SCALE)
    masks = _masks(config.frames, config.size)
    stamps: list[float] = []

    def on_step(index: int, latent: torch.Tensor) -> None:
        _sync(device)
        stamps.append(time.perf_counter())
        log(f"  {plan.name}: edit step {index + 1}/{steps}")

    counter = PassCounter()
    with memory.use_plan(model, plan):
        base = _reset_peak(device)
        began = time.perf_counter()
        run = run_edit_path(
            model,
            inversion,
            edit,
            masks=masks,
            counter=counter,
            callback=on_step,
        )
        peak = _peak(device)
        decode = run_decode(model, run.latents)
    times = [b - a for a, b in zip([began, *stamps[:-1]], stamps, strict=True)]
    return {
        "step_seconds": [round(t, 4) for t in times],
        "seconds_per_step": statistics.median(times[1:] or times),
        "fe_per_step": counter.forward_equivalents / steps,
        "peak_bytes": peak,
        "base_bytes": base,
        "applied": run.applied,
        "decode": decode,
    }


def run_decode(model, latents) -> dict[str, Any]:
    from videodirector_cli.diffusion.latents import decode_latents

    device = model.device
    _reset_peak(device)
    began = time.perf_counter()
    frames = decode_latents(model, latents)
    _sync(device)
    return {
        "seconds": time.perf_counter() - began,
        "peak_bytes": _peak(device),
        "frames": int(frames.shape[0]),
    }


def estimates(arch, config: Config, plan, dtype) -> dict[str, Any]:
    from videodirector_cli.diffusion import estimate

    out = {}
    for stage in ("invert", "edit"):
        found = estimate.estimate(
            stage,
            arch,
            config.frames,
            config.size,
            config.size,
            dtype,
            plan,
            steps=1 + (config.inversion_steps if stage == "invert" else config.edit_steps),
            inner_steps=config.inner_steps,
        )
        out[stage] = {
            "peak_bytes": found.peak_bytes,
            "peak_phase": found.peak.name,
            "phases": {p.name: p.peak for p in found.phases},
        }
    return out


# ----------------------------------------------------------------------------- the run


def run(config: Config, out_dir: Path) -> dict[str, Any]:
    import torch

    from videodirector_cli.diffusion import gpus

    began = time.perf_counter()
    log("building the model (random weights)...")
    model, arch = build_model(config)
    device = model.device
    if device.type == "cpu" and not config.tiny and config.frames * config.size**2 > 4 * 64**2:
        raise SystemExit("the real shape needs a CUDA GPU; use --tiny (or small --frames/--size)")
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()})"
    )
    try:
        gpu = gpus.gpu_class(name) if device.type == "cuda" else None
    except KeyError:
        gpu = None
    log(f"model on {device} ({name}) in {model.dtype}; {time.perf_counter() - began:.0f} s")
    plans = _plans()
    rows: list[dict[str, Any]] = []
    for key in config.configs:
        elapsed = time.perf_counter() - began
        if rows and elapsed > config.budget_s:
            log(f"budget of {config.budget_s:.0f} s reached: {key} and later skipped")
            break
        plan = plans[key]
        log(f"{key}: {plan.describe()}")
        row: dict[str, Any] = {"config": key, "plan": plan.as_dict()}
        try:
            inversion = run_inversion(model, plan, config)
            trajectory = inversion.pop("_stored")
            row["inversion"] = inversion
            row["edit"] = run_edit(model, plan, config, trajectory)
        except Exception as exc:  # an out-of-memory configuration is a result, not a crash
            from videodirector_cli.diffusion.devices import is_out_of_memory

            if not is_out_of_memory(exc):
                raise
            row["error"] = f"out of memory: {str(exc).splitlines()[0][:200]}"
            torch.cuda.empty_cache()
        if config.estimate:
            started = time.perf_counter()
            row["estimate"] = estimates(arch, config, plan, model.dtype)
            log(f"  {key}: estimated on the meta device in {time.perf_counter() - started:.0f} s")
        _throughput(row, gpu)
        rows.append(row)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": name,
        "device_type": device.type,
        "gpu_class": None if gpu is None else gpu.as_dict(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "dtype": str(model.dtype).removeprefix("torch."),
        "architecture": arch.name,
        "frames": config.frames,
        "size": config.size,
        "config": {k: v for k, v in config.__dict__.items()},
        "rows": rows,
        "seconds": round(time.perf_counter() - began, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out_dir / "gpu.md").write_text(markdown(result))
    log(f"done in {result['seconds']:.0f} s: {out_dir / 'gpu.json'}, {out_dir / 'gpu.md'}")
    return result


def _throughput(row: dict[str, Any], gpu) -> None:
    for stage in ("inversion", "edit"):
        data = row.get(stage)
        if not data:
            continue
        flop = row["inversion"]["forward_flop"] * data["fe_per_step"]
        tflops = flop / data["seconds_per_step"] / 1e12
        data["tflops"] = tflops
        data["utilisation"] = None if gpu is None else tflops / gpu.bf16_tflops


def _gb(value) -> str:
    return "–" if value is None else f"{value / 2**30:.2f}"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# vdir GPU check: {result['device']} ({result['date']})",
        "",
        f"{result['architecture']} with random weights, {result['frames']} frames x "
        f"{result['size']} x {result['size']}, {result['dtype']}, torch {result['torch']}. "
        "Peak = torch.cuda.max_memory_allocated during the steps (GiB); estimate = "
        "diffusion/estimate.py for the same configuration. TFLOP/s counts executed FLOPs "
        "(activation checkpointing's recompute included).",
        "",
        "| config | inversion s/step | fe/step | TFLOP/s | util. | peak | estimate "
        "| edit s/step | TFLOP/s | peak | estimate | decode s | decode peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if "error" in row:
            lines.append(f"| {row['config']} | {row['error']} |" + " |" * 11)
            continue
        inv, edit = row["inversion"], row["edit"]
        est = row.get("estimate", {})
        util = inv.get("utilisation")
        lines.append(
            f"| {row['config']} | {inv['seconds_per_step']:.2f} | {inv['fe_per_step']:.1f} "
            f"| {inv['tflops']:.3g} | {'–' if util is None else f'{util:.0%}'} "
            f"| {_gb(inv['peak_bytes'])} | {_gb(est.get('invert', {}).get('peak_bytes'))} "
            f"| {edit['seconds_per_step']:.2f} | {edit['tflops']:.3g} | {_gb(edit['peak_bytes'])} "
            f"| {_gb(est.get('edit', {}).get('peak_bytes'))} | {edit['decode']['seconds']:.2f} "
            f"| {_gb(edit['decode']['peak_bytes'])} |"
        )
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None = None) -> tuple[Config, Path]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tiny", action="store_true", help="the tiny model at a tiny size")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--size", type=int, help="frame side in pixels")
    parser.add_argument("--inversion-steps", type=int)
    parser.add_argument("--inner-steps", type=int)
    parser.add_argument("--edit-steps", type=int)
    parser.add_argument(
        "--configs", help=f"comma list of {', '.join(CONFIG_ORDER)}, sequential-offload"
    )
    parser.add_argument("--budget", type=float, help="seconds after which no config starts")
    parser.add_argument("--no-estimate", action="store_true")
    args = parser.parse_args(argv)
    values: dict[str, Any] = dict(TINY) if args.tiny else {}
    for name in ("frames", "size", "inversion_steps", "inner_steps", "edit_steps"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.configs:
        values["configs"] = tuple(c.strip() for c in args.configs.split(",") if c.strip())
    else:
        values["configs"] = CONFIG_ORDER
    if args.budget is not None:
        values["budget_s"] = args.budget
    config = Config(tiny=args.tiny, device=args.device, estimate=not args.no_estimate, **values)
    return config, args.out


def main(argv: list[str] | None = None) -> int:
    config, out = parse(argv)
    run(config, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

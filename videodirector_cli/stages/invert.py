"""`vdir invert`: stage 1, pivotal inversion (DDIM inversion, null-text optimisation, STDG).

Every check a user can fail runs before anything is written: project and frames present, a source
prompt that fits the text encoder, masks that match the frames, a model that loads. The inversion
lives in ``inversions/<key>/`` (format: stages/inversion_files.py); ``key`` hashes everything that
determines the result, so a change makes a new inversion and never overwrites one. Each step is
checkpointed as it finishes; running the same command again continues after the last complete
step, and when everything is there it says so and does nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videodirector_cli.errors import MissingPrerequisiteError, UsageError
from videodirector_cli.output import Output
from videodirector_cli.project import lineage
from videodirector_cli.project.atomic import remove_temp_files
from videodirector_cli.project.fingerprint import hash_params, short
from videodirector_cli.project.manifest import stage_state
from videodirector_cli.project.store import Project
from videodirector_cli.stages.inversion_files import InversionFiles, StepResult
from videodirector_cli.stages.outcome import StageOutcome

if TYPE_CHECKING:
    import numpy as np
    import torch

    from videodirector_cli.diffusion.components import DiffusionModel
    from videodirector_cli.diffusion.null_text import OptimisedStep
    from videodirector_cli.diffusion.passes import PassCounter

ALGORITHM_VERSION = 1
"""Bump when the math changes: old inversions then no longer count as up to date."""

DEFAULT_BLOCKS = ("up_blocks.1", "up_blocks.2")
DEFAULT_BLOCK_WEIGHT = {"up_blocks.1": 20000.0}
OTHER_BLOCK_WEIGHT = 10000.0
NULL_MODES = ("per-frame", "shared")
TARGETS = ("foreground", "background")
MASK_CHOICES = ("auto", "none")
OOM_ADVICE = (
    "use --dtype bf16 or fp16, fewer frames (vdir init --frames) or a smaller --size; "
    "--stdg-blocks up_blocks.1 or --no-stdg lowers the memory of the guidance pass"
)


@dataclass
class InvertRequest:
    """What the user asked for (CLI options, or a test's arguments)."""

    prompt: str | None = None
    steps: int = 50
    guidance_scale: float = 7.5
    null_mode: str = "per-frame"
    inner_steps: int = 10
    learning_rate: float = 1e-2
    early_stop: float = 1e-5
    early_stop_slope: float = 2e-5
    stdg: bool = True
    stdg_blocks: tuple[str, ...] = DEFAULT_BLOCKS
    block_weights: tuple[float, ...] | None = None
    eta_f: float = 0.5
    eta_b: float = 0.5
    zeta_f: float = 0.0
    zeta_b: float = 0.5
    target: str = "foreground"
    top_k: int = 1
    mask: str = "auto"
    seed: int = 0
    report: bool = True
    model: str | None = None
    motion_adapter: str | None = None
    vae: str | None = None
    device: str = "auto"
    dtype: str = "auto"

    def weights(self) -> tuple[float, ...]:
        if self.block_weights is not None:
            return tuple(self.block_weights)
        return tuple(DEFAULT_BLOCK_WEIGHT.get(b, OTHER_BLOCK_WEIGHT) for b in self.stdg_blocks)


@dataclass
class InvertOutcome(StageOutcome):
    key: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


def check_request(request: InvertRequest) -> None:
    """Option checks that need neither the project nor the model."""
    if request.steps < 1:
        raise UsageError(f"--steps must be at least 1, not {request.steps}")
    if request.guidance_scale < 1.0:
        raise UsageError(f"--cfg must be 1 or more, not {request.guidance_scale}")
    if request.null_mode not in NULL_MODES:
        raise UsageError(f"--null {request.null_mode!r} is not one of: {', '.join(NULL_MODES)}")
    if request.inner_steps < 0:
        raise UsageError("--inner-steps must be 0 or more")
    if request.learning_rate <= 0:
        raise UsageError("--lr must be positive")
    if request.early_stop < 0 or request.early_stop_slope < 0:
        raise UsageError("--early-stop and --early-stop-slope must be 0 or more")
    if request.target not in TARGETS:
        raise UsageError(f"--target {request.target!r} is not one of: {', '.join(TARGETS)}")
    if request.mask not in MASK_CHOICES:
        raise UsageError(f"--mask {request.mask!r} is not one of: {', '.join(MASK_CHOICES)}")
    if request.top_k < 1:
        raise UsageError("--top-k must be at least 1")
    if not request.stdg_blocks:
        raise UsageError("--stdg-blocks needs at least one block, e.g. up_blocks.1,up_blocks.2")
    if len(request.weights()) != len(request.stdg_blocks):
        raise UsageError(
            f"--block-weights gives {len(request.weights())} weights for "
            f"{len(request.stdg_blocks)} blocks"
        )


# ----------------------------------------------------------------------------- parameters


def stdg_config(request: InvertRequest):
    from videodirector_cli.diffusion.stdg import STDGConfig

    return STDGConfig(
        blocks=tuple(request.stdg_blocks),
        block_weights=request.weights(),
        eta_f=request.eta_f,
        eta_b=request.eta_b,
        zeta_f=request.zeta_f,
        zeta_b=request.zeta_b,
        target=request.target,  # type: ignore[arg-type]
        top_k=request.top_k,
    )


def null_config(request: InvertRequest):
    from videodirector_cli.diffusion.null_text import NullTextConfig

    return NullTextConfig(
        guidance_scale=request.guidance_scale,
        null_mode=request.null_mode,  # type: ignore[arg-type]
        inner_steps=request.inner_steps,
        learning_rate=request.learning_rate,
        early_stop=request.early_stop,
        early_stop_slope=request.early_stop_slope,
    )


def request_params(request: InvertRequest, prompt: str, has_mask: bool) -> dict[str, Any]:
    """Everything of the request that shapes the result (model given as the user's spec)."""
    stdg = stdg_config(request).as_params() if request.stdg else None
    return {
        "prompt": prompt,
        "steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "null_text": null_config(request).as_params(),
        "stdg": stdg,
        "mask": has_mask,
        "seed": request.seed,
        "model_spec": {
            "model": request.model,
            "motion_adapter": request.motion_adapter,
            "vae": request.vae,
        },
        "device": request.device,
        "dtype": request.dtype,
        "algorithm_version": ALGORITHM_VERSION,
    }


def inversion_key(params: dict[str, Any], inputs: dict[str, str], model: DiffusionModel) -> str:
    """Hash of everything that determines the inversion (the model by its identity)."""
    from videodirector_cli.diffusion.devices import dtype_name

    keyed = {k: v for k, v in params.items() if k not in ("model_spec", "device", "dtype")}
    return hash_params(
        {
            **keyed,
            "frames": inputs.get("frames"),
            "masks": inputs.get("masks"),
            "model_identity": dict(model.identity),
            "scheduler": {  # diffusers' private keys (a set in random order) left out
                k: v
                for k, v in model.scheduler.config.items()  # type: ignore[attr-defined]
                if not k.startswith("_")
            },
            "device_type": model.device.type,
            "dtype": dtype_name(model.dtype),
        }
    )[:32]


# ----------------------------------------------------------------------------- the stage


def run_invert(
    project_dir: Path | None,
    request: InvertRequest,
    output: Output,
    model: DiffusionModel | None = None,
    on_step: Any = None,
) -> InvertOutcome:
    """`vdir invert`. ``model`` and ``on_step(step_result)`` are for tests."""
    check_request(request)
    project = Project.find(project_dir)
    frames_count = _check_frames(project)
    prompt = request.prompt if request.prompt is not None else project.manifest.prompt
    if prompt is None or not prompt.strip():
        raise MissingPrerequisiteError(
            "no source prompt", hint='pass --prompt "a bear walking" or vdir init --prompt'
        )
    masks = _masks(project, request)
    params = request_params(request, prompt, masks is not None)
    inputs = _inputs(project, prompt, masks is not None)
    same = _up_to_date(project, params, inputs)
    if same is not None:
        return _already_done(project, same)

    from videodirector_cli.diffusion.devices import oom_guard
    from videodirector_cli.diffusion.prompts import check_prompt

    if model is None:
        from videodirector_cli.diffusion.loading import ModelSpec, load_model

        spec = ModelSpec(request.model, request.motion_adapter, request.vae)
        spec.device, spec.dtype = request.device, request.dtype
        model = load_model(spec, output)
    check_prompt(model.tokenizer, prompt, "the source prompt")
    if request.stdg:
        _check_blocks(model, request.stdg_blocks)
    frames = _read_frames(project, frames_count)
    from videodirector_cli.diffusion.latents import check_frame_size

    check_frame_size(model, frames.shape[1], frames.shape[2])
    key = inversion_key(params, inputs, model)
    params = {**params, "model_identity": dict(model.identity), "key": key}
    if masks is None:
        output.info(
            "no mask: the whole frame counts as foreground, so the background STDG terms are off"
            + (" (vdir mask makes one)" if request.mask == "auto" else "")
        )
    with project.writing("invert"), oom_guard(OOM_ADVICE):
        if request.prompt is not None and project.manifest.prompt != prompt:
            project.manifest.prompt = prompt
            project.save()
        inputs = _inputs(project, prompt, masks is not None)
        record = project.manifest.inversions.get(key)
        files = InversionFiles(project.paths.inversion_dir(key))
        if record is not None and record.status == "done" and files.info_path.is_file():
            project.manifest.current_inversion = key
            project.save()
            return _already_done(project, key)
        return _run_locked(
            project, request, output, model, frames, masks, params, inputs, key, on_step
        )


def _check_blocks(model: DiffusionModel, blocks: tuple[str, ...]) -> None:
    from videodirector_cli.diffusion.attention.layers import layers_of

    have = sorted({layer.block for layer in layers_of(model.unet, "temporal")})
    missing = [b for b in blocks if b not in have]
    if missing:
        raise UsageError(
            f"--stdg-blocks: {', '.join(missing)} has no motion modules in this model",
            hint=f"choose from {', '.join(have)}",
        )


def _check_frames(project: Project) -> int:
    record = project.manifest.frames
    if record is None or record.status != "done" or project.manifest.frame_count == 0:
        raise MissingPrerequisiteError(
            "the project has no frames yet", hint="make them with: vdir init VIDEO DIR"
        )
    return project.manifest.frame_count


def _masks(project: Project, request: InvertRequest) -> np.ndarray | None:
    if request.mask == "none":
        return None
    from videodirector_cli.stages.mask import load_project_masks

    return load_project_masks(project)


def _inputs(project: Project, prompt: str, use_masks: bool) -> dict[str, str]:
    inputs = lineage.inputs_for(project.manifest, ["frames", "masks", "prompt"], use_masks)
    inputs["prompt"] = hash_params(prompt)
    return inputs


def _up_to_date(project: Project, params: dict[str, Any], inputs: dict[str, str]) -> str | None:
    """A finished inversion of exactly this request and these inputs, found without the model."""
    manifest = project.manifest
    now = lineage.current_inputs(manifest)
    now["prompt"] = inputs["prompt"]
    for key, record in manifest.inversions.items():
        if record.status != "done" or record.inputs != inputs:
            continue
        if stage_state(record, now, False) != "done":
            continue
        recorded = {k: v for k, v in record.params.items() if k not in ("model_identity", "key")}
        if (
            recorded == params
            and InversionFiles(project.paths.inversion_dir(key)).info_path.is_file()
        ):
            return key
    return None


def _already_done(project: Project, key: str) -> InvertOutcome:
    record = project.manifest.inversions[key]
    report = record.metrics.get("report")
    return InvertOutcome(
        data={
            "inversion": key,
            "up_to_date": True,
            "report": report,
            "current": project.manifest.current_inversion == key,
        },
        human=f"inversion {short(key)} is up to date; nothing to do",
        key=key,
        metrics=dict(record.metrics),
    )


def _read_frames(project: Project, count: int) -> np.ndarray:
    from videodirector_cli.media.frames import read_frames

    return read_frames(project.paths.frame_files(count))


def _run_locked(
    project: Project,
    request: InvertRequest,
    output: Output,
    model: DiffusionModel,
    frames: np.ndarray,
    masks: np.ndarray | None,
    params: dict[str, Any],
    inputs: dict[str, str],
    key: str,
    on_step: Any,
) -> InvertOutcome:
    import torch

    from videodirector_cli.diffusion.null_text import initial_null, optimise_nulls
    from videodirector_cli.diffusion.passes import PassCounter
    from videodirector_cli.diffusion.prompts import encode_prompt
    from videodirector_cli.diffusion.schedule import Schedule
    from videodirector_cli.diffusion.stdg import STDG

    torch.manual_seed(request.seed)
    files = InversionFiles(project.paths.inversion_dir(key))
    files.folder.mkdir(parents=True, exist_ok=True)
    remove_temp_files(files.folder)
    schedule = Schedule.from_scheduler(model.scheduler, request.steps)
    steps = schedule.steps
    counter = PassCounter()
    previous = project.manifest.inversions.get(key)
    resumed_from = files.completed_steps(key) if files.has_pivots() else 0
    if previous is not None and resumed_from:
        output.info(f"resuming inversion {short(key)} after step {resumed_from} of {steps}")
    with project.stage(("inversions", key), params, inputs, total=steps) as run:
        project.manifest.current_inversion = key
        cond = encode_prompt(model, params["prompt"])
        empty = encode_prompt(model, "")
        pivots = _pivots(files, key, schedule, model, frames, cond, counter, output)
        done = files.completed_steps(key)
        files.remove_steps_from(done)
        stored = [files.load_step(i) for i in range(done)]
        losses = [s.loss for s in stored]
        iterations = [s.iterations for s in stored]
        guidance_losses = [s.guidance_loss for s in stored]
        if stored:
            null, latent = stored[-1].null, stored[-1].next_latent
        else:
            null, latent = (
                initial_null(empty, frames.shape[0], null_config(request).null_mode),
                None,
            )
        device = model.device
        null = null.to(device)
        latent = latent.to(device) if latent is not None else None
        stdg = None
        if request.stdg:
            mask_tensor = None if masks is None else torch.from_numpy(masks).to(device)
            stdg = STDG(
                model.unet, stdg_config(request), mask_tensor, tuple(pivots.shape[-2:]), counter
            )
        run.checkpoint(done, **_step_metrics(losses, iterations, guidance_losses))
        with output.progress("inverting", total=steps) as bar:
            bar.update(completed=done)

            def save(result: OptimisedStep) -> None:
                files.save_step(key, _as_step_result(result))
                losses.append(result.loss)
                iterations.append(result.iterations)
                guidance_losses.append(result.guidance_loss)
                run.checkpoint(
                    result.step + 1, **_step_metrics(losses, iterations, guidance_losses)
                )
                bar.advance(1, loss=result.loss, iters=result.iterations)
                if on_step is not None:
                    on_step(result)

            optimise_nulls(
                model.unet,
                schedule,
                pivots.to(device),
                cond,
                null_config(request),
                null=null,
                latent=latent,
                start_step=done,
                stdg=stdg,
                counter=counter,
                on_step=save,
            )
        optimised = files.load_step(steps - 1).next_latent
        report = None
        if request.report:
            output.info("measuring reconstruction (optimised vs plain DDIM inversion)...")
            report = reconstruction_report(
                model,
                schedule,
                pivots,
                optimised,
                cond,
                empty,
                request.guidance_scale,
                frames,
                counter,
            )
        passes = _pass_report(counter, steps - done)
        metrics = {
            **_step_metrics(losses, iterations, guidance_losses),
            "report": report,
            "passes": passes,
            "resumed_from": done if done else None,
            "mask": masks is not None,
        }
        run.record.outputs["inversion"] = files.content_hash(steps)
        files.save_info(
            {
                "key": key,
                "params": params,
                "report": report,
                "passes": passes,
                "losses": losses,
                "iterations": iterations,
                "timesteps": list(schedule.timesteps),
            }
        )
        run.checkpoint(steps, **metrics)
    result = {
        "inversion": key,
        "up_to_date": False,
        "steps": steps,
        "losses": losses,
        "iterations": iterations,
        "guidance_losses": guidance_losses,
        "report": report,
        "passes": passes,
        "mask": masks is not None,
        "resumed_from": done,
    }
    return InvertOutcome(
        result, _human(key, steps, losses, iterations, report, passes, done), key, metrics
    )


def _pivots(files, key, schedule, model, frames, cond, counter, output) -> torch.Tensor:
    from videodirector_cli.diffusion.inversion import ddim_invert
    from videodirector_cli.diffusion.latents import encode_frames

    if files.has_pivots():
        pivots, timesteps, stored_key = files.load_pivots()
        if stored_key == key and list(timesteps) == list(schedule.timesteps):
            return pivots
    output.info(f"DDIM inversion ({schedule.steps} steps)...")
    clean = encode_frames(model, frames)
    pivots = ddim_invert(model.unet, schedule, clean, cond, counter).cpu()
    files.remove_steps_from(0)
    files.save_pivots(key, pivots, list(schedule.timesteps))
    return pivots


def _as_step_result(result: OptimisedStep) -> StepResult:
    return StepResult(
        step=result.step,
        timestep=result.timestep,
        null=result.null,
        latent=result.latent,
        next_latent=result.next_latent,
        guidance=result.guidance,
        loss=result.loss,
        iterations=result.iterations,
        guidance_loss=result.guidance_loss,
    )


def _step_metrics(losses, iterations, guidance_losses) -> dict[str, Any]:
    return {
        "losses": [float(x) for x in losses],
        "iterations": [int(x) for x in iterations],
        "guidance_losses": [float(x) for x in guidance_losses],
        "last_loss": float(losses[-1]) if losses else None,
    }


def _pass_report(counter: PassCounter, steps_run: int) -> dict[str, Any]:
    data = counter.as_dict()
    by = counter.by_purpose
    per_step_purposes = ("conditional", "null-text", "stdg", "stdg-reference")
    optimisation = sum(by.get(p, 0.0) for p in per_step_purposes)
    data["optimisation_per_step"] = round(optimisation / steps_run, 3) if steps_run else None
    data["steps_run"] = steps_run
    return data


# ----------------------------------------------------------------------------- report


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def reconstruction_report(
    model: DiffusionModel,
    schedule,
    pivots: torch.Tensor,
    optimised: torch.Tensor,
    cond: torch.Tensor,
    empty: torch.Tensor,
    guidance_scale: float,
    frames: np.ndarray,
    counter: PassCounter,
) -> dict[str, Any]:
    """Latent MSE against z*_0 and decoded PSNR against the frames: the optimised inversion's
    end latent vs plain DDIM inversion sampled back with the same CFG and the "" null."""
    from videodirector_cli.diffusion.inversion import sample_cfg
    from videodirector_cli.diffusion.latents import decode_latents

    device = model.device
    clean = pivots[0].to(device)
    plain = sample_cfg(
        model.unet,
        schedule,
        pivots[-1].to(device),
        cond,
        empty,
        guidance_scale,
        counter=counter,
        purpose="report",
    )
    optimised = optimised.to(device)
    ceiling = decode_latents(model, clean)
    report: dict[str, Any] = {
        "optimised": {
            "latent_mse": float(((optimised - clean) ** 2).mean()),
            "psnr": psnr(decode_latents(model, optimised), frames),
        },
        "plain_ddim": {
            "latent_mse": float(((plain - clean) ** 2).mean()),
            "psnr": psnr(decode_latents(model, plain), frames),
        },
        "vae_psnr": psnr(ceiling, frames),
        "guidance_scale": guidance_scale,
    }
    opt_mse, plain_mse = report["optimised"]["latent_mse"], report["plain_ddim"]["latent_mse"]
    report["improvement"] = plain_mse / opt_mse if opt_mse else None
    return report


def _human(key, steps, losses, iterations, report, passes, done) -> str:
    lines = [
        f"inversion {short(key)} done: {steps} steps"
        + (f" (resumed after step {done})" if done else "")
    ]
    if losses:
        lines.append(
            f"  null-text loss: last {losses[-1]:.3g}, max {max(losses):.3g}; "
            f"inner iterations {sum(iterations)} in all (mean {sum(iterations) / len(iterations):.1f})"
        )
    if report:
        o, p = report["optimised"], report["plain_ddim"]
        lines.append(
            f"  reconstruction: optimised latent MSE {o['latent_mse']:.3g}, PSNR {o['psnr']:.2f} dB; "
            f"plain DDIM (cfg {report['guidance_scale']:g}) {p['latent_mse']:.3g}, "
            f"{p['psnr']:.2f} dB; VAE alone {report['vae_psnr']:.2f} dB"
        )
    if passes.get("optimisation_per_step") is not None:
        lines.append(
            f"  UNet work: {passes['optimisation_per_step']:g} forward-equivalents per step, "
            f"{passes['forward_equivalents']:g} in all"
        )
    return "\n".join(lines)

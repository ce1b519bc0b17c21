"""`vdir invert`: stage 1, pivotal inversion (DDIM inversion, null-text optimisation, STDG).

Every check a user can fail runs before anything is written: the request's settings, project
and frames present, a source prompt that fits the text encoder, masks that match the frames, a
model that loads. The inversion lives in ``inversions/<key>/`` (format: inversion_files.py);
``key`` hashes everything that determines the result, so a change makes a new inversion and
never overwrites one. Each step is checkpointed as it finishes; running the same command again
continues after the last complete step, and when everything is there it says so and does
nothing. The math is in diffusion/ (inversion, null_text, stdg, reconstruction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from videodirector_cli.errors import MissingPrerequisiteError
from videodirector_cli.output import Output
from videodirector_cli.project import lineage
from videodirector_cli.project.atomic import remove_temp_files
from videodirector_cli.project.fingerprint import hash_params, short
from videodirector_cli.project.manifest import InversionRecord, stage_state
from videodirector_cli.project.params import InversionParams
from videodirector_cli.project.readers import frames_info, read_project_masks
from videodirector_cli.project.store import Project
from videodirector_cli.settings.invert import InvertRequest
from videodirector_cli.stages.common import inversion_problem
from videodirector_cli.stages.inversion_files import InversionFiles
from videodirector_cli.stages.invert_history import History, human_summary, progress_fields
from videodirector_cli.stages.outcome import StageOutcome
from videodirector_cli.stages.planning import Frames, invert_work, plan_outcome, run_plan

if TYPE_CHECKING:
    import numpy as np
    import torch

    from videodirector_cli.diffusion.components import DiffusionModel
    from videodirector_cli.diffusion.memory import MemoryPlan
    from videodirector_cli.diffusion.passes import PassCounter
    from videodirector_cli.diffusion.schedule import Schedule
    from videodirector_cli.diffusion.trajectory import TrajectoryStep
    from videodirector_cli.diffusion.windows import WindowPlan

ALGORITHM_VERSION = 2
"""Bump when the math changes: old inversions then no longer count as up to date."""


@dataclass
class InvertOutcome(StageOutcome):
    key: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


def inversion_key(params: InversionParams, inputs: dict[str, str], model: DiffusionModel) -> str:
    """Hash of everything that determines the inversion (the model by its identity)."""
    from videodirector_cli.diffusion.devices import dtype_name

    shaping = {k: v for k, v in params.shaping().items() if k != "model"}
    return hash_params(
        {
            **shaping,
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
    project: Project,
    request: InvertRequest,
    output: Output,
    model: DiffusionModel | None = None,
    on_step: Any = None,
) -> InvertOutcome:
    """`vdir invert`. ``model`` and ``on_step(trajectory_step)`` are for tests."""
    request.check()
    settings = request.settings
    info = frames_info(project)
    prompt = request.prompt if request.prompt is not None else project.manifest.prompt
    if prompt is None or not prompt.strip():
        raise MissingPrerequisiteError(
            "no source prompt", hint='pass --prompt "a bear walking" or vdir init --prompt'
        )
    masks = read_project_masks(project) if settings.mask != "none" else None
    params = InversionParams(
        prompt=prompt,
        settings=settings,
        uses_mask=masks is not None,
        model=request.model,
        algorithm_version=ALGORITHM_VERSION,
    )
    shape, work = Frames(info.count, info.height, info.width), invert_work(settings, masks)
    if request.run.plan:
        asked = (settings.window, settings.window_overlap)
        planned = plan_outcome("invert", request.model, request.run, shape, asked, **work)
        return InvertOutcome(planned.data, planned.human)
    inputs = _inputs(project, prompt, masks is not None)
    same = _up_to_date(project, params, inputs)
    if same is not None:
        return _already_done(project, same)

    from videodirector_cli.diffusion.devices import oom_guard
    from videodirector_cli.diffusion.latents import check_frame_size
    from videodirector_cli.diffusion.memory import use_plan
    from videodirector_cli.diffusion.prompts import check_prompt
    from videodirector_cli.diffusion.stdg import check_blocks
    from videodirector_cli.diffusion.windows import motion_limits, resolve_plan
    from videodirector_cli.media.frames import read_frames

    if model is None:
        from videodirector_cli.diffusion.loading import ModelSpec, load_model

        choice = request.model
        spec = ModelSpec(choice.model, choice.motion_adapter, choice.vae)
        spec.device, spec.dtype = choice.device, choice.dtype
        model = load_model(spec, output)
    check_prompt(model.tokenizer, prompt, "the source prompt")
    check_prompt(model.tokenizer, settings.negative_prompt, "--negative-prompt")
    if settings.stdg.enabled:
        check_blocks(model.unet, settings.stdg.blocks)
    frames = read_frames(info.files)
    check_frame_size(model, frames.shape[1], frames.shape[2])
    windows = resolve_plan(
        motion_limits(model.unet), info.count, settings.window, settings.window_overlap
    )
    key = inversion_key(params, inputs, model)
    params = params.model_copy(update={"model_identity": dict(model.identity), "key": key})
    if masks is None:
        output.info(
            "no mask: the whole frame counts as foreground, so the background STDG terms are off"
            + (" (vdir mask makes one)" if settings.mask == "auto" else "")
        )
    if not windows.single:
        output.info(f"temporal windows: {windows.describe()}")
        shape = Frames(windows.window, info.height, info.width)
    plan, advice = run_plan("invert", model, request.run, shape, output, **work)
    with project.writing("invert"), oom_guard(advice), use_plan(model, plan):
        if request.prompt is not None and project.manifest.prompt != prompt:
            project.manifest.prompt = prompt
            project.save()
        inputs = _inputs(project, prompt, masks is not None)
        record = project.manifest.inversions.get(key)
        if record is not None and record.status == "done" and _intact(project, key, record):
            project.manifest.current_inversion = key
            project.save()
            return _already_done(project, key)
        return _run_locked(
            project, output, model, frames, masks, params, inputs, on_step, plan, windows
        )


def _inputs(project: Project, prompt: str, use_masks: bool) -> dict[str, str]:
    inputs = lineage.inputs_for(project.manifest, ["frames", "masks", "prompt"], use_masks)
    inputs["prompt"] = hash_params(prompt)
    return inputs


def _up_to_date(project: Project, params: InversionParams, inputs: dict[str, str]) -> str | None:
    """A finished inversion of exactly this request and these inputs, found without the model."""
    manifest = project.manifest
    now = lineage.current_inputs(manifest)
    now["prompt"] = inputs["prompt"]
    wanted = params.shaping()
    for key, record in manifest.inversions.items():
        if record.status != "done" or record.inputs != inputs:
            continue
        if stage_state(record, now, False) != "done":
            continue
        if record.params.shaping() == wanted and _intact(project, key, record):
            return key
    return None


def _intact(project: Project, key: str, record: InversionRecord) -> bool:
    """A finished inversion's files are all there and unchanged (else it is made again: the
    steps that still hold what was written are kept, the others redone)."""
    return inversion_problem(project, key, record) is None


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


def _run_locked(
    project: Project,
    output: Output,
    model: DiffusionModel,
    frames: np.ndarray,
    masks: np.ndarray | None,
    params: InversionParams,
    inputs: dict[str, str],
    on_step: Any,
    plan: MemoryPlan,
    windows: WindowPlan,
) -> InvertOutcome:
    import torch

    from videodirector_cli.diffusion import flops
    from videodirector_cli.diffusion.null_text import optimise_nulls, starting_null
    from videodirector_cli.diffusion.passes import PassCounter
    from videodirector_cli.diffusion.prompts import encode_prompt
    from videodirector_cli.diffusion.reconstruction import reconstruction_report
    from videodirector_cli.diffusion.schedule import Schedule
    from videodirector_cli.diffusion.stdg import STDG

    settings = params.settings
    key = str(params.key)
    torch.manual_seed(settings.seed)
    files = InversionFiles(project.paths.inversion_dir(key), project.file_index)
    files.folder.mkdir(parents=True, exist_ok=True)
    remove_temp_files(files.folder)
    schedule = Schedule.from_scheduler(model.scheduler, settings.steps)
    steps = schedule.steps
    counter = PassCounter()
    previous = project.manifest.inversions.get(key)
    resumed_from = files.completed_steps(key) if files.has_pivots() else 0
    if previous is not None and resumed_from:
        output.info(f"resuming inversion {short(key)} after step {resumed_from} of {steps}")
    with project.stage(("inversions", key), params, inputs, total=steps) as run:
        project.manifest.current_inversion = key
        cond = encode_prompt(model, params.prompt)
        negative = encode_prompt(model, settings.negative_prompt)
        null_is_prompt = settings.method == "negative-prompt"
        pivots = _pivots(files, key, schedule, model, frames, cond, counter, output, windows)
        done = files.completed_steps(key)
        files.remove_steps_from(done)
        stored = [files.load_step(i) for i in range(done)]
        history = History(stored)
        if stored:
            null, latent = stored[-1].null, stored[-1].next_latent
        else:
            null = starting_null(
                negative, cond, frames.shape[0], settings.null_text.mode, null_is_prompt
            )
            latent = None
        device = model.device
        null = null.to(device)
        latent = latent.to(device) if latent is not None else None
        stdg = None
        if settings.stdg.enabled:
            mask_tensor = None if masks is None else torch.from_numpy(masks).to(device)
            stdg = STDG(model.unet, settings.stdg, mask_tensor, tuple(pivots.shape[-2:]), counter)
        latent_hw = (int(pivots.shape[-2]), int(pivots.shape[-1]))
        counter.costs = flops.cost_model(
            model.unet, windows.window, latent_hw, stdg, plan.checkpointing
        )
        run.checkpoint(done, **history.metrics())
        with output.progress("inverting", total=steps) as bar:
            bar.update(completed=done)

            def save(result: TrajectoryStep) -> None:
                files.save_step(key, result)
                history.add(result)
                run.checkpoint(result.step + 1, **history.metrics())
                bar.advance(1, **progress_fields(result, stdg is not None and stdg.active))
                if on_step is not None:
                    on_step(result)

            optimise_nulls(
                model.unet,
                schedule,
                pivots.to(device),
                cond,
                settings.null_text,
                settings.guidance_scale,
                null=null,
                latent=latent,
                start_step=done,
                stdg=stdg,
                counter=counter,
                on_step=save,
                null_is_prompt=null_is_prompt,
                windows=windows,
            )
        optimised = files.load_step(steps - 1).next_latent
        report = None
        if settings.report:
            output.info("measuring reconstruction (optimised vs plain DDIM inversion)...")
            report = reconstruction_report(
                model,
                schedule,
                pivots,
                optimised,
                cond,
                negative,
                settings.guidance_scale,
                frames,
                counter,
                windows,
            )
        passes = counter.inversion_report(steps - done)
        metrics = {
            **history.metrics(),
            "report": report,
            "passes": passes,
            "resumed_from": done if done else None,
            "mask": masks is not None,
            "windows": windows.as_dict(),
        }
        run.record.outputs["inversion"] = files.content_hash(steps)
        files.save_info(
            {
                "key": key,
                "params": params.model_dump(mode="json"),
                "report": report,
                "passes": passes,
                "losses": history.losses,
                "iterations": history.iterations,
                "stdg": {
                    "ratios": history.ratios,
                    "ratios_mean": history.ratios_mean,
                    "applied": history.applied,
                    "bounded": history.bounded,
                    **history.stdg_summary(),
                },
                "timesteps": list(schedule.timesteps),
                "windows": windows.as_dict(),
            }
        )
        run.checkpoint(steps, **metrics)
    warning = history.bound_warning(settings.stdg.max_ratio) if settings.stdg.enabled else None
    if warning is not None:
        output.warn(warning)
    result = {
        "inversion": key,
        "up_to_date": False,
        "memory": plan.name,
        "steps": steps,
        "losses": history.losses,
        "iterations": history.iterations,
        "guidance_losses": history.guidance_losses,
        "stdg_ratios": history.ratios,
        "stdg_ratios_mean": history.ratios_mean,
        "stdg_applied": history.applied,
        "stdg_bounded": history.bounded,
        **history.stdg_summary(),
        "stdg_warning": warning,
        "report": report,
        "passes": passes,
        "mask": masks is not None,
        "windows": windows.as_dict(),
        "resumed_from": done,
    }
    human = human_summary(key, steps, history, report, passes, done)
    return InvertOutcome(result, human, key, metrics)


def _pivots(
    files: InversionFiles,
    key: str,
    schedule: Schedule,
    model: DiffusionModel,
    frames: np.ndarray,
    cond: torch.Tensor,
    counter: PassCounter,
    output: Output,
    windows: WindowPlan,
) -> torch.Tensor:
    from videodirector_cli.diffusion.inversion import ddim_invert
    from videodirector_cli.diffusion.latents import encode_frames

    if files.has_usable_pivots():
        pivots, timesteps, stored_key = files.load_pivots()
        if stored_key == key and list(timesteps) == list(schedule.timesteps):
            return pivots
    output.info(f"DDIM inversion ({schedule.steps} steps)...")
    clean = encode_frames(model, frames)
    pivots = ddim_invert(model.unet, schedule, clean, cond, counter, windows).cpu()
    files.remove_steps_from(0)
    files.save_pivots(key, pivots, list(schedule.timesteps))
    return pivots

"""`vdir edit PROMPT`: stage 2, an edit of a stored inversion, in ``edits/<name>/``.

Every check a user can fail runs before anything is written (settings, inversion present and
current, prompts, reweight words, name, model identity), so bad input leaves the project as it
was. The edit's files are written into a staging folder and swapped in at the end: a failed or
interrupted run leaves the previous files of that name whole.

``edits/<name>/``: ``latents.safetensors`` (the final latents, float32), ``frames/00000.png``...
(decoded RGB), ``edit.json`` (params, metrics). ``manifest.edits[name]`` records the params (the
settings as applied, project/params.py), the inversion and mask hashes it read, and the frames'
hash (``outputs["edit"]``, what `vdir render` verifies) plus the latents' (``outputs["latents"]``).
The math is diffusion/editing.py's; names are edit_names.py's.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from videodirector_cli.errors import LockedError, UsageError
from videodirector_cli.output import Output
from videodirector_cli.project import lineage
from videodirector_cli.project.atomic import (
    atomic_path,
    atomic_write_json,
    recover_dir,
    replace_dir,
    staging_dir,
)
from videodirector_cli.project.canonical import canonical_header
from videodirector_cli.project.manifest import stage_state
from videodirector_cli.project.params import EditParams, InversionParams
from videodirector_cli.project.readers import (
    EDIT_LATENTS,
    edit_intact,
    frames_info,
    read_project_masks,
)
from videodirector_cli.project.store import Project, read_manifest
from videodirector_cli.settings.edit import EditRequest
from videodirector_cli.settings.model import ModelChoice
from videodirector_cli.stages.common import load_inversion, load_inversion_model, resolve_inversion
from videodirector_cli.stages.edit_names import check_name, derive_name
from videodirector_cli.stages.outcome import StageOutcome
from videodirector_cli.stages.planning import Frames, plan_outcome, run_plan

if TYPE_CHECKING:
    import numpy as np

    from videodirector_cli.diffusion.components import DiffusionModel
    from videodirector_cli.diffusion.editing import EditPlan
    from videodirector_cli.diffusion.trajectory import StoredInversion
    from videodirector_cli.diffusion.windows import WindowPlan

INFO_NAME = "edit.json"


def inversion_target(inversion: InversionParams) -> str:
    """What the inversion's STDG treated as the edited region (foreground without STDG)."""
    stdg = inversion.settings.stdg
    return stdg.target if stdg.enabled else "foreground"


def check_prompts(request: EditRequest, source_prompt: str) -> None:
    """Checks of the edit prompt against the source prompt that need no model."""
    from videodirector_cli.diffusion.attention import seq_align

    if request.settings.mode == "replace":
        problem = seq_align.word_count_mismatch(source_prompt, request.prompt)
        if problem:
            raise UsageError(
                f"{problem}; a swap needs the same number of words ('a bear walking' -> "
                "'a tiger walking')",
                hint="use --mode refine (or auto), which aligns inserted and removed words",
            )
    have = {seq_align.normalise_word(w) for w in request.prompt.split()}
    for word in request.settings.reweight:
        if not all(seq_align.normalise_word(w) in have for w in word.split()):
            raise UsageError(
                f"--reweight {word!r}: '{word}' is not a word of the edit prompt "
                f"'{request.prompt}'",
                hint="reweighting scales the attention to words of the edit prompt",
            )


def edit_params(
    request: EditRequest, inversion: InversionParams, key: str, uses_masks: bool
) -> EditParams:
    """What the edit's result depends on besides the inversion's and masks' content, known
    without the model: an up-to-date edit is recognised before any weights are loaded."""
    from videodirector_cli.diffusion.attention.seq_align import choose_mode

    settings = request.settings
    applied = settings.model_copy(
        update={
            "mode": choose_mode(settings.mode, inversion.prompt, request.prompt),
            "blend_dilate": settings.blend_dilate if settings.blend else 0,
            "mask": "auto" if uses_masks else "none",
            "target": (settings.target or inversion_target(inversion)) if uses_masks else None,
        }
    )
    return EditParams(
        prompt=request.prompt, source_prompt=inversion.prompt, inversion=key, settings=applied
    )


# ----------------------------------------------------------------------------- names


def choose_name(
    project: Project, request: EditRequest, params: EditParams, busy: set[str] | None = None
) -> tuple[str, bool]:
    """(name, up_to_date). An explicit name with other params needs --force; a derived one
    takes the first free suffix (tiger, tiger-2, ...; not one in ``busy``, being made by
    another process) unless one already holds these params."""
    busy = busy or set()
    edits = project.manifest.edits
    if request.name is not None:
        name = check_name(request.name)
        record = edits.get(name)
        if record is not None and record.params != params and not request.force:
            raise UsageError(
                f"edit {name!r} exists with other settings ({', '.join(params.changed(record.params))})",
                hint="use --force to replace it, or another --name",
            )
        return name, _up_to_date(project, name, params) and not request.force
    base = derive_name(params.source_prompt, request.prompt)
    for number in range(1, 1000):
        name = base if number == 1 else f"{base}-{number}"
        record = edits.get(name)
        if name in busy:
            continue
        if record is None or record.params == params:
            return name, record is not None and _up_to_date(project, name, params)
    raise UsageError("too many edits with the same name", hint="pass --name")


def _up_to_date(project: Project, name: str, params: EditParams) -> bool:
    record = project.manifest.edits.get(name)
    if record is None or record.params != params:
        return False
    now = lineage.current_inputs(project.manifest)
    if stage_state(record, now, project.record_running("edits", name)) != "done":
        return False
    return edit_intact(project, name, record)


def _up_to_date_result(name: str, key: str) -> StageOutcome:
    return StageOutcome(
        {"name": name, "up_to_date": True, "inversion": key},
        f"edit {name} is up to date; nothing to do",
    )


# ----------------------------------------------------------------------------- run


def run_edit(project: Project, request: EditRequest, output: Output) -> StageOutcome:
    """Validate, then edit."""
    request.check()
    key, record = resolve_inversion(project, request.inversion)
    inversion = record.params
    check_prompts(request, inversion.prompt)
    settings = request.settings
    masks = read_project_masks(project) if settings.uses_masks else None
    params = edit_params(request, inversion, key, masks is not None)
    if masks is not None and params.settings.target == "background":
        masks = ~masks  # the edited region is everything but the object
    if settings.blend and masks is None:
        raise UsageError(
            "--blend keeps the background outside the mask, but there is no mask",
            hint="run vdir mask first (or drop --blend)",
        )
    if not request.model.names_weights:  # a named model is checked against the inversion's first
        name, up_to_date = choose_name(project, request, params)
        if up_to_date:
            return _up_to_date_result(name, key)
    info = frames_info(project)
    frames_shape = Frames(info.count, info.height, info.width)
    if request.run.plan:
        return plan_outcome(
            "edit",
            _planned_model(request, inversion),
            request.run,
            frames_shape,
            (inversion.settings.window, inversion.settings.window_overlap),
            steps=inversion.settings.steps,
        )
    model = load_inversion_model(record, request.model, output)
    from videodirector_cli.diffusion.devices import oom_guard
    from videodirector_cli.diffusion.editing import plan_edit
    from videodirector_cli.diffusion.memory import use_plan
    from videodirector_cli.diffusion.windows import motion_limits, resolve_plan

    windows = resolve_plan(
        motion_limits(model.unet),
        info.count,
        inversion.settings.window,
        inversion.settings.window_overlap,
    )
    if not windows.single:
        frames_shape = Frames(windows.window, info.height, info.width)
    plan = plan_edit(
        model, inversion.prompt, request.prompt, params.settings, inversion.settings.guidance_scale
    )
    name, up_to_date = choose_name(project, request, params)
    if up_to_date:
        return _up_to_date_result(name, key)
    stored = load_inversion(project, key, record)
    if masks is None and settings.sa2:
        output.info(
            "no mask: SA-II has nothing to mask out, so the edit attends to every "
            "reconstruction key (run vdir mask to keep source content out of the edited object)"
        )
    memory_plan, advice = run_plan(
        "edit", model, request.run, frames_shape, output, steps=stored.steps
    )
    with (
        oom_guard(advice),
        use_plan(model, memory_plan),
        _claim_name(project, request, params) as claimed,
    ):
        if claimed is None:  # finished by another process meanwhile
            return _up_to_date_result(choose_name(project, request, params)[0], key)
        outcome = _run_locked(project, output, model, stored, plan, masks, claimed, params, windows)
        outcome.data["memory"] = memory_plan.name
        return outcome


@contextmanager
def _claim_name(project: Project, request: EditRequest, params: EditParams) -> Iterator[str | None]:
    """Hold the lock of the edit's name (not the project's: edits of other names run at the
    same time) and yield the name, chosen again on the manifest as it is now; None when that
    edit is up to date. A derived name another process is making moves on to the next free
    suffix; an explicit one is refused (exit 7)."""
    busy: set[str] = set()
    while True:
        project.manifest = read_manifest(project.paths.manifest)
        resolve_inversion(project, params.inversion)
        name, up_to_date = choose_name(project, request, params, busy)
        if up_to_date:
            yield None
            return
        lock = project.record_lock("edits", name, "edit")
        try:
            lock.acquire()
        except LockedError:
            if request.name is not None:
                raise
            busy.add(name)
            continue
        try:
            project.manifest = read_manifest(project.paths.manifest)
            again, up_to_date = choose_name(project, request, params, busy)
            if again == name:
                yield None if up_to_date else name
                return
            busy.add(name)
        finally:
            lock.release()


def _planned_model(request: EditRequest, inversion: InversionParams) -> ModelChoice:
    """The model --plan estimates: the user's if named, else the inversion's, on this device."""
    if request.model.names_weights:
        return request.model
    return inversion.model.model_copy(
        update={"device": request.model.device, "dtype": request.model.dtype}
    )


def _run_locked(
    project: Project,
    output: Output,
    model: DiffusionModel,
    stored: StoredInversion,
    plan: EditPlan,
    masks_np: np.ndarray | None,
    name: str,
    params: EditParams,
    windows: WindowPlan,
) -> StageOutcome:
    import torch

    from videodirector_cli.diffusion.editing import run_edit_path
    from videodirector_cli.diffusion.passes import PassCounter

    masks = None if masks_np is None else torch.from_numpy(masks_np)
    key = params.inversion
    inputs = lineage.inputs_for(
        project.manifest, [f"inversion:{key}", "masks"], use_masks=masks is not None
    )
    paths = project.paths
    recover_dir(paths.edit_dir(name))
    counter = PassCounter()
    steps = stored.steps
    started = time.perf_counter()
    staging = staging_dir(paths.edit_dir(name))
    try:
        with (
            project.stage(
                ("edits", name), params, inputs, total=steps, shared=True, keep_previous=True
            ) as run,
            output.progress(f"edit {name}", total=steps) as bar,
        ):

            def on_step(index: int, latent: torch.Tensor) -> None:
                bar.advance(1)
                run.checkpoint(index + 1)

            outcome = run_edit_path(
                model, stored, plan, masks=masks, counter=counter, callback=on_step, windows=windows
            )
            edit_seconds = time.perf_counter() - started
            frames = _write_edit(staging, project, name, model, outcome.latents)
            metrics = {
                "passes": counter.as_dict(),
                "controls_applied": outcome.applied,
                "edit_seconds": round(edit_seconds, 3),
                "seconds": round(time.perf_counter() - started, 3),
                "frames": frames,
                "windows": windows.as_dict(),
            }
            atomic_write_json(
                staging / INFO_NAME,
                {"name": name, "params": params.model_dump(mode="json"), "metrics": metrics},
            )
            replace_dir(staging, paths.edit_dir(name))
            written = [paths.edit_frame(name, i) for i in range(frames)]
            latents_file = paths.edit_dir(name) / EDIT_LATENTS
            project.file_index.remember([*written, latents_file])
            run.record.outputs = {
                "edit": project.file_index.combined(written),
                "latents": project.file_index.digest(latents_file),
            }
            run.record.metrics.update(metrics)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    mode, mask = params.settings.mode, "project" if masks is not None else "none"
    result = {
        "name": name,
        "up_to_date": False,
        "inversion": key,
        "prompt": params.prompt,
        "mode": mode,
        "mask": mask,
        "folder": str(paths.edit_dir(name)),
        "frames": frames,
        **metrics,
    }
    human = (
        f"edit {name}: {frames} frames in {paths.edit_dir(name)} "
        f"({mode}, {counter.forwards} UNet calls, {metrics['seconds']:.1f} s); "
        f"next: vdir render {name} --compare"
    )
    return StageOutcome(result, human)


def _write_edit(folder: Path, project: Project, name: str, model: DiffusionModel, latents) -> int:
    """latents.safetensors + the decoded frames into the staging ``folder``; the frame count."""
    from safetensors.torch import save_file

    from videodirector_cli.diffusion.latents import decode_latents
    from videodirector_cli.media.frames import write_png

    cpu = latents.detach().to("cpu").float().contiguous()
    with atomic_path(folder / EDIT_LATENTS) as tmp:
        save_file({"latents": cpu}, str(tmp))
        canonical_header(tmp)
    images = decode_latents(model, latents)
    final = project.paths.edit_dir(name)
    for index, image in enumerate(images):
        write_png(folder / project.paths.edit_frame(name, index).relative_to(final), image)
    return len(images)

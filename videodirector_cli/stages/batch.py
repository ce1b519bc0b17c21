"""`vdir batch PLAN`: init -> mask -> invert -> edits -> render -> report for every clip of a
plan, one project per clip under the output folder, then an index page of them all.

Each step is the real stage function (like the demo), and each stage already knows what it has
done: a finished inversion or edit is found up to date, an interrupted one resumes. The batch
adds only the checks that make a rerun cheap (a clip's project with its frames and masks is not
made again). With ``--devices`` one worker process per device runs clips (`vdir batch --only
CLIP --devices DEV`), so a 4-GPU box edits four clips at once; the parent writes the index.
The one other stage module, beside the demo and the report, that runs stages.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from videodirector_cli.errors import InputError, UsageError, VdirError
from videodirector_cli.output import Output
from videodirector_cli.project import lineage
from videodirector_cli.project.atomic import atomic_write_text
from videodirector_cli.project.manifest import stage_state
from videodirector_cli.project.store import Project, is_project_dir
from videodirector_cli.settings.batch import (
    BatchRequest,
    ResolvedClip,
    load_plan,
    resolve,
)
from videodirector_cli.settings.model import ModelChoice
from videodirector_cli.stages.batch_tasks import (
    WORKER_ENV,
    LocalExecutor,
    RayExecutor,
    Task,
    run_tasks,
)
from videodirector_cli.stages.outcome import StageOutcome

STAGES = ("init", "mask", "invert", "edits", "render", "report")
SUMMARY_NAME = "batch.json"


def _done(record: Any, project: Project) -> bool:
    return stage_state(record, lineage.current_inputs(project.manifest), False) == "done"


def _init(folder: Path, clip: ResolvedClip, output: Output) -> str:
    from videodirector_cli.project.fingerprint import hash_file
    from videodirector_cli.stages.init import run_init

    if is_project_dir(folder):
        project = Project.open(folder)
        source = project.manifest.source
        if source is not None and _done(project.manifest.frames, project):
            if source.sha256 != hash_file(clip.init.video):
                raise InputError(
                    f"clip {clip.name}: {folder} was made from another video than "
                    f"{clip.init.video}",
                    hint="remove that folder or give the clip another name",
                )
            return "reused"
    run_init(folder, clip.init.model_copy(update={"force": is_project_dir(folder)}), output)
    return "made"


def _mask(project: Project, clip: ResolvedClip, base: Path, device: str, output: Output) -> str:
    from videodirector_cli.stages.mask import run_mask

    if clip.mask is None:
        return "none"
    if _done(project.manifest.masks, project):
        return "reused"
    run_mask(project, clip.mask.request(base, device), output)
    return "made"


def clip_steps(clip: ResolvedClip) -> dict[str, tuple[str, ...]]:
    """A clip's steps and what each waits for: the edits only for the inversion (so they can
    run at the same time, on different devices), the render and report for every edit."""
    edits = tuple(f"edit:{name}" for name, _, _ in clip.edits)
    steps: dict[str, tuple[str, ...]] = {"init": (), "mask": ("init",), "invert": ("mask",)}
    steps.update({edit: ("invert",) for edit in edits})
    steps["render"] = edits or ("invert",)
    steps["report"] = ("render",)
    return steps


def run_step(
    clip: ResolvedClip, step: str, folder: Path, base: Path, model: ModelChoice, output: Output
) -> str:
    """One step of one clip, in this process: 'made', 'reused' or 'none'."""
    from videodirector_cli.settings.edit import EditRequest
    from videodirector_cli.settings.invert import InvertRequest
    from videodirector_cli.settings.render import RenderRequest
    from videodirector_cli.settings.report import ReportRequest
    from videodirector_cli.stages.edit import run_edit
    from videodirector_cli.stages.invert import run_invert
    from videodirector_cli.stages.render import run_render
    from videodirector_cli.stages.report import run_report

    if step == "init":
        return _init(folder, clip, output)
    project = Project.open(folder)
    if step == "mask":
        return _mask(project, clip, base, model.device, output)
    if step == "invert":
        inverting = InvertRequest(settings=clip.invert, model=model)
        return "reused" if run_invert(project, inverting, output).data.get("up_to_date") else "made"
    if step.startswith("edit:"):
        name = step.removeprefix("edit:")
        prompt, settings = next((p, s) for n, p, s in clip.edits if n == name)
        editing = EditRequest(prompt=prompt, name=name, settings=settings, model=model)
        return "reused" if run_edit(project, editing, output).data.get("up_to_date") else "made"
    if step == "render":
        if not clip.edits:
            return "none"
        run_render(project, RenderRequest(compare=True), output)
        return "made"
    if step == "report":
        run_report(project, ReportRequest(), output)
        return "made"
    raise UsageError(f"unknown batch step {step!r}")


def run_clip(
    clip: ResolvedClip,
    folder: Path,
    base: Path,
    model: ModelChoice,
    output: Output,
    steps: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The clip's steps (``steps``, or all) in order, in this process; what each did."""
    ran: dict[str, Any] = {}
    for step in clip_steps(clip):
        if steps and step not in steps:
            continue
        output.info(f"clip {clip.name}: {step}")
        ran[step] = run_step(clip, step, folder, base, model, output)
    edits = {k.removeprefix("edit:"): v for k, v in ran.items() if k.startswith("edit:")}
    stages = {k: v for k, v in ran.items() if not k.startswith("edit:")}
    if edits or not steps:
        stages["edits"] = edits
    return {"stages": stages}


def _summary(name: str, folder: Path, ran: dict[str, Any] | None, error: str | None):
    """The index's row of one clip, read back from its project (so a worker's clips count)."""
    row: dict[str, Any] = {
        "name": name,
        "project": str(folder),
        "error": error,
        "prompt": None,
        "reconstruction_psnr": None,
        "edits": {},
        "report": None,
        "ran": None,
    }
    if not is_project_dir(folder):
        return {**row, "state": "failed" if error else "not started"}
    project = Project.open(folder)
    manifest = project.manifest
    inversion = manifest.inversions.get(manifest.current_inversion or "")
    psnr = None
    if inversion is not None:
        report = inversion.metrics.get("report") or {}
        psnr = (report.get("optimised") or {}).get("psnr")
    report_path = project.paths.report_dir / "index.html"
    row.update(
        {
            "state": "failed" if error else ("done" if report_path.is_file() else "unfinished"),
            "prompt": manifest.prompt,
            "reconstruction_psnr": round(float(psnr), 2)
            if isinstance(psnr, (int, float))
            else None,
            "edits": {edit: record.status for edit, record in sorted(manifest.edits.items())},
            "report": str(report_path.relative_to(folder.parent))
            if report_path.is_file()
            else None,
            "ran": (ran or {}).get("stages"),
        }
    )
    return row


def _check_devices(devices: tuple[str, ...]) -> None:
    from videodirector_cli.diffusion.devices import resolve_device

    for device in devices:
        resolve_device(device)  # a missing GPU: UsageError naming it


def _worker(request: BatchRequest, out: Path, task: Task, device: str) -> list[str]:
    return [sys.executable, "-m", "videodirector_cli", "batch", str(request.plan.resolve()),
            "--out", str(out), "--only", task.clip, "--step", task.step, "--devices", device,
            "--quiet"]  # fmt: skip


def _task_graph(clips: list[ResolvedClip]) -> dict[Task, tuple[Task, ...]]:
    graph = {}
    for clip in clips:
        for step, before in clip_steps(clip).items():
            graph[Task(clip.name, step)] = tuple(Task(clip.name, b) for b in before)
    return graph


def _run_distributed(
    request: BatchRequest,
    out: Path,
    clips: list[ResolvedClip],
    executor: LocalExecutor | RayExecutor,
    output: Output,
) -> dict[str, str | None]:
    """Every step as a task: local worker processes per device, or Ray tasks."""
    try:
        outcome = run_tasks(
            _task_graph(clips),
            executor,
            lambda task, device: _worker(request, out, task, device),
            output,
        )
    finally:
        if isinstance(executor, RayExecutor):
            executor.close()
    errors: dict[str, str | None] = {clip.name: None for clip in clips}
    for task, error in outcome.items():
        if error is not None and not error.startswith("skipped"):
            errors[task.clip] = errors[task.clip] or f"{task.step}: {error}"
    return errors


def run_batch(request: BatchRequest, output: Output) -> StageOutcome:
    """Like init, the batch makes its projects, so it takes no project."""
    from videodirector_cli.report.page import render_index

    request.check()
    plan_path = request.plan.resolve()
    plan = load_plan(plan_path)
    base = plan_path.parent
    clips = resolve(plan, base)
    names = [c.name for c in clips]
    unknown = [n for n in request.only if n not in names]
    if unknown:
        raise UsageError(f"--only names clips the plan lacks: {', '.join(unknown)}")
    chosen = [c for c in clips if not request.only or c.name in request.only]
    for clip in chosen:
        wrong = [step for step in request.steps if step not in clip_steps(clip)]
        if wrong:
            raise UsageError(f"--step {', '.join(wrong)}: clip {clip.name} has no such step")
    _check_devices(request.devices)
    executor: LocalExecutor | RayExecutor | None = None
    if request.ray is not None:
        executor = RayExecutor(request.ray)  # joined (or refused) before anything is made
    elif len(request.devices) > 1:
        executor = LocalExecutor(request.devices)
    out = request.out_dir().resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ran: dict[str, dict[str, Any]] = {}
    errors: dict[str, str | None] = {}
    worker = bool(os.environ.get(WORKER_ENV))
    if executor is not None:
        errors = _run_distributed(request, out, chosen, executor, output)
    else:
        model = plan.defaults.model
        if request.devices:
            model = model.model_copy(update={"device": request.devices[0]})
        for clip in chosen:
            output.info(f"clip {clip.name}: {clip.init.video.name}")
            try:
                ran[clip.name] = run_clip(clip, out / clip.name, base, model, output, request.steps)
                errors[clip.name] = None
            except VdirError as exc:
                if worker:
                    raise
                errors[clip.name] = str(exc)
                output.warn(f"clip {clip.name} failed: {exc}")
    rows = [_summary(name, out / name, ran.get(name), errors.get(name)) for name in names]
    failed = sorted(n for n, e in errors.items() if e)
    summary: dict[str, Any] = {
        "plan": str(plan_path),
        "out": str(out),
        "clips": rows,
        "seconds": round(time.perf_counter() - started, 1),
        "failed": failed,
    }
    if worker:
        return StageOutcome({"clips": request.only, "steps": request.steps}, "")
    atomic_write_text(out / SUMMARY_NAME, json.dumps(summary, indent=1) + "\n")
    atomic_write_text(out / "index.html", render_index({"title": plan_path.stem, **summary}))
    if failed:
        raise InputError(
            f"{len(failed)} of {len(chosen)} clips failed: "
            + "; ".join(f"{n}: {errors[n]}" for n in failed),
            hint=f"the others are done; fix and rerun (index: {out / 'index.html'})",
        )
    human = "\n".join(
        [
            f"batch {plan_path.name}: {len(chosen)} clips in {summary['seconds']} s; index: {out / 'index.html'}"
        ]
        + [
            f"  {r['name']}: {r['state']}, recon {r.get('reconstruction_psnr')} dB, "
            f"edits {', '.join(f'{k} {v}' for k, v in (r.get('edits') or {}).items()) or 'none'}"
            for r in rows
        ]
    )
    return StageOutcome(summary, human)

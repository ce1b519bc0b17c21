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
import subprocess
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


def run_clip(
    clip: ResolvedClip,
    folder: Path,
    base: Path,
    model: ModelChoice,
    output: Output,
    on_stage: Any = None,
) -> dict[str, Any]:
    """Every stage of one clip, in-process; what each stage did and the main numbers."""
    from videodirector_cli.settings.edit import EditRequest
    from videodirector_cli.settings.invert import InvertRequest
    from videodirector_cli.settings.render import RenderRequest
    from videodirector_cli.settings.report import ReportRequest
    from videodirector_cli.stages.edit import run_edit
    from videodirector_cli.stages.invert import run_invert
    from videodirector_cli.stages.render import run_render
    from videodirector_cli.stages.report import run_report

    def stage(name: str) -> None:
        if on_stage is not None:
            on_stage(clip.name, name)

    done: dict[str, Any] = {}
    stage("init")
    done["init"] = _init(folder, clip, output)
    stage("mask")
    done["mask"] = _mask(Project.open(folder), clip, base, model.device, output)
    stage("invert")
    inverted = run_invert(
        Project.open(folder), InvertRequest(settings=clip.invert, model=model), output
    )
    done["invert"] = "reused" if inverted.data.get("up_to_date") else "made"
    stage("edits")
    edits = {}
    for name, prompt, settings in clip.edits:
        result = run_edit(
            Project.open(folder),
            EditRequest(prompt=prompt, name=name, settings=settings, model=model),
            output,
        )
        edits[name] = "reused" if result.data.get("up_to_date") else "made"
    done["edits"] = edits
    stage("render")
    if clip.edits:
        run_render(Project.open(folder), RenderRequest(compare=True), output)
    stage("report")
    report = run_report(Project.open(folder), ReportRequest(), output)
    stage("done")
    return {"stages": done, "report": report.data, "inversion": inverted.data.get("inversion")}


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


def _worker_command(request: BatchRequest, out: Path, clip: str, device: str) -> list[str]:
    return [sys.executable, "-m", "videodirector_cli", "batch", str(request.plan), "--out",
            str(out), "--only", clip, "--devices", device, "--quiet"]  # fmt: skip


def _run_workers(
    request: BatchRequest, out: Path, names: list[str], output: Output
) -> dict[str, str | None]:
    """One worker process per device, each taking the next clip when it is free."""
    queue = list(names)
    running: dict[str, tuple[subprocess.Popen, str]] = {}
    errors: dict[str, str | None] = {}
    env = {**os.environ, "VDIR_BATCH_WORKER": "1"}
    while queue or running:
        for device in request.devices:
            if device not in running and queue:
                clip = queue.pop(0)
                output.info(f"clip {clip}: on {device}")
                process = subprocess.Popen(
                    _worker_command(request, out, clip, device),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
                running[device] = (process, clip)
        for device, (process, clip) in list(running.items()):
            if process.poll() is not None:
                stderr = process.stderr.read() if process.stderr else ""
                last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
                errors[clip] = None if process.returncode == 0 else last or "worker failed"
                output.info(f"clip {clip}: {'done' if process.returncode == 0 else 'failed'}")
                del running[device]
        time.sleep(0.2)
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
    _check_devices(request.devices)
    out = request.out_dir().resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ran: dict[str, dict[str, Any]] = {}
    errors: dict[str, str | None] = {}
    if len(request.devices) > 1:
        errors = _run_workers(request, out, [c.name for c in chosen], output)
    else:
        model = plan.defaults.model
        if request.devices:
            model = model.model_copy(update={"device": request.devices[0]})
        for clip in chosen:
            output.info(f"clip {clip.name}: {clip.init.video.name}")
            try:
                ran[clip.name] = run_clip(
                    clip,
                    out / clip.name,
                    base,
                    model,
                    output,
                    on_stage=lambda c, s: output.info(f"clip {c}: {s}"),
                )
                errors[clip.name] = None
            except VdirError as exc:
                if os.environ.get("VDIR_BATCH_WORKER"):
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
    if not os.environ.get("VDIR_BATCH_WORKER"):
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

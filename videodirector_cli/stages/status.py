"""`vdir status`: what each stage holds, what is out of date, and what to run next.

Read-only by design: no lock is taken and nothing is written, so it works while another vdir
process runs and right after one was killed (its 'running' record then reads 'interrupted').
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from videodirector_cli.project import lineage
from videodirector_cli.project.fingerprint import short
from videodirector_cli.project.manifest import StageRecord, changed_inputs, stage_state
from videodirector_cli.project.readers import edit_problem, frames_problem, masks_problem
from videodirector_cli.project.store import Project
from videodirector_cli.stages.common import inversion_problem


@dataclass
class StageRow:
    stage: str
    """frames, masks, inversion, edit or render."""
    key: str | None
    state: str
    record: StageRecord | None
    changed: list[str]
    """For a stale record: the inputs that changed since it ran (lineage names)."""
    damage: str | None = None
    """For a damaged record: which of its files is missing or changed."""

    def as_dict(self) -> dict[str, Any]:
        record = self.record
        progress = None
        if record is not None and record.progress is not None:
            progress = {"done": record.progress.done, "total": record.progress.total}
        return {
            "stage": self.stage,
            "key": self.key,
            "state": self.state,
            "progress": progress,
            "metrics": dict(record.metrics) if record is not None else {},
            "message": self.damage or (record.message if record is not None else None),
            "changed": self.changed,
            "started_at": record.started_at.isoformat() if record is not None else None,
            "finished_at": (
                record.finished_at.isoformat() if record and record.finished_at else None
            ),
        }


def stage_rows(project: Project) -> list[StageRow]:
    manifest = project.manifest
    now = lineage.current_inputs(manifest)
    locked = project.locked_by_someone

    def row(
        stage: str, key: str | None, record: StageRecord | None, check: Callable[[], str | None]
    ) -> StageRow:
        running = locked or (
            stage == "edit" and key is not None and project.record_running("edits", key)
        )
        state = stage_state(record, now, running)
        changed = changed_inputs(record, now) if record is not None and state == "stale" else []
        damage = check() if state in ("done", "stale") else None
        if damage is not None:
            state = "damaged"
        return StageRow(stage, key, state, record, changed, damage)

    rows = [
        row("frames", None, manifest.frames, lambda: frames_problem(project)),
        row("masks", None, manifest.masks, lambda: masks_problem(project)),
    ]
    for key, inversion in manifest.inversions.items():
        rows.append(
            row("inversion", key, inversion, partial(inversion_problem, project, key, inversion))
        )
    for name, edit in manifest.edits.items():
        rows.append(row("edit", name, edit, partial(edit_problem, project, name, edit)))
    rows += [row("render", name, rec, lambda: None) for name, rec in manifest.renders.items()]
    return rows


def next_step(project: Project, rows: list[StageRow]) -> tuple[str | None, str]:
    """(command to run next or None, a sentence saying why)."""
    by_stage: dict[str, list[StageRow]] = {}
    for item in rows:
        by_stage.setdefault(item.stage, []).append(item)
    manifest = project.manifest
    frames = by_stage["frames"][0]
    masks = by_stage["masks"][0]

    running = [r for r in rows if r.state == "running"]
    if running:
        what = ", ".join(_label(r) for r in running)
        return None, f"{what} is running in another vdir process; wait for it to finish"
    if frames.state != "done":
        if frames.state == "damaged":
            video = manifest.source.path if manifest.source is not None else "VIDEO"
            folder = shlex.quote(str(project.paths.root))
            return (
                f"vdir init {shlex.quote(video)} {folder} --force",
                f"{frames.damage}: extract them again (the project starts over)",
            )
        video = manifest.source.path if manifest.source is not None else "VIDEO"
        folder = shlex.quote(str(project.paths.root))
        return (
            f"vdir init {shlex.quote(video)} {folder} --force",
            f"the frames are {frames.state}: start the project over",
        )
    if masks.state in ("interrupted", "failed", "stale", "damaged"):
        return "vdir mask", f"the masks are {masks.state}: make them again (same options as before)"

    inversions = by_stage.get("inversion", [])
    current = manifest.current_inversion
    chosen = [r for r in inversions if r.key == current] or inversions
    if not any(r.state == "done" for r in chosen):
        if any(r.state == "interrupted" for r in chosen):
            return "vdir invert", "the inversion was interrupted: the same command resumes it"
        why = "no usable inversion yet" if not chosen else f"the inversion is {chosen[0].state}"
        if chosen and chosen[0].damage:
            why = f"{chosen[0].damage}: the same command makes the changed steps again"
        if masks.state == "missing":
            why += "; optionally run 'vdir mask' first to confine the edit to an object"
        return "vdir invert", why

    edits = by_stage.get("edit", [])
    redo = [r for r in edits if r.state in ("interrupted", "failed", "stale", "damaged")]
    if redo:
        return (
            "vdir edit",
            f"edit {_names(redo)} is {redo[0].state}: run it again with the same prompt and options",
        )
    done_edits = [r for r in edits if r.state == "done"]
    if not done_edits:
        return 'vdir edit "TARGET PROMPT"', "the inversion is ready: describe the edited video"

    renders = {r.key: r for r in by_stage.get("render", [])}
    unrendered = [r for r in done_edits if r.key not in renders or renders[r.key].state != "done"]
    if unrendered:
        names = " ".join(shlex.quote(str(r.key)) for r in unrendered)
        return f"vdir render {names}", f"edit {_names(unrendered)} has no up-to-date video yet"
    return None, "everything is up to date"


def _label(row: StageRow) -> str:
    return row.stage if row.key is None else f"{row.stage} {row.key}"


def _names(rows: list[StageRow]) -> str:
    return ", ".join(str(r.key) for r in rows)


def project_status(project: Project) -> dict[str, Any]:
    rows = stage_rows(project)
    command, reason = next_step(project, rows)
    manifest = project.manifest
    source = manifest.source
    return {
        "project": str(project.paths.root.resolve()),
        "manifest_schema_version": manifest.schema_version,
        "prompt": manifest.prompt,
        "source": None
        if source is None
        else {
            "path": source.path,
            "sha256": source.sha256,
            "frames": len(source.frame_indices),
            "size": list(source.size),
            "fps": source.output_fps,
        },
        "current_inversion": manifest.current_inversion,
        "locked": project.locked_by_someone,
        "stages": [r.as_dict() for r in rows],
        "next": command,
        "reason": reason,
    }


def render_table(status: dict[str, Any]) -> Any:
    """A rich renderable for the human view."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    source = status["source"]
    header = Text(f"project {status['project']}")
    if source is not None:
        width, height = source["size"]
        header.append(
            f"\n{source['frames']} frames {width}x{height} at {source['fps']:.4g} fps "
            f"from {Path(source['path']).name}"
        )
    if status["prompt"]:
        header.append(f"\nprompt: {status['prompt']}")
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for column in ("stage", "state", "progress", "details"):
        table.add_column(column)
    styles = {
        "done": "green",
        "stale": "yellow",
        "damaged": "red",
        "interrupted": "red",
        "failed": "red",
    }
    for row in status["stages"]:
        label = row["stage"] if row["key"] is None else f"{row['stage']} {_short_key(row)}"
        progress = row["progress"]
        shown = f"{progress['done']}/{progress['total']}" if progress else ""
        details = _details(row["metrics"])
        if row["changed"]:
            what = ", ".join(lineage.describe(name) for name in row["changed"])
            details = f"changed: {what}; {details}".rstrip("; ")
        if row["message"] and row["state"] != "done":
            details = f"{details} {row['message']}".strip()
        table.add_row(label, Text(row["state"], style=styles.get(row["state"], "")), shown, details)
    footer = Text(f"next: {status['next']}" if status["next"] else "next: nothing to do")
    footer.append(f"  ({status['reason']})", style="dim")
    return Group(header, Text(""), table, Text(""), footer)


def _short_key(row: dict[str, Any]) -> str:
    key = str(row["key"])
    return short(key, 10) if row["stage"] == "inversion" else key


def _details(metrics: dict[str, Any]) -> str:
    """Scalars as they are; per-step or per-frame lists by their latest or mean value.

    The full lists stay in --json; a terminal row should stay one or two lines.
    """
    parts = []
    for name, value in metrics.items():
        if isinstance(value, bool) or value is None:
            continue
        if name == "windows" and isinstance(value, dict):
            if value.get("windows", 1) > 1:
                parts.append(
                    f"windows={value['windows']}x{value['window']} (overlap {value['overlap']})"
                )
        elif isinstance(value, (int, float, str)):
            parts.append(f"{name}={_fmt(value)}")
        elif (
            isinstance(value, list)
            and value
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            parts.append(f"{name}[-1]={_fmt(value[-1])}")
    return " ".join(parts)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

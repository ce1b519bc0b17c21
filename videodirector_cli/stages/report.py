"""`vdir report`: one HTML page to look at a project: source | mask | every edit playing in sync,
each edit's prompt, settings and `vdir eval` numbers, each inversion's reconstruction PSNR and
per-step loss, and what is stale.

Like `vdir status` it takes no lock and changes no record, so it runs beside edits and shows
only what is finished; like `vdir render` it reads frames and edits only as the manifest vouches
for them (an edit whose files changed is listed as damaged, not shown). It is a view over two
other stages' answers, so it is allowed to use `status` (the stage rows) and `evaluate` (the
numbers), as the demo is allowed to run the stages (tests/test_architecture.py).
"""

from __future__ import annotations

import webbrowser
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from videodirector_cli import __version__, metrics
from videodirector_cli.errors import StaleError
from videodirector_cli.media.encode import write_mp4
from videodirector_cli.media.sheet import overlay_mask
from videodirector_cli.output import Output
from videodirector_cli.project.atomic import atomic_write_text
from videodirector_cli.project.fingerprint import short
from videodirector_cli.project.manifest import EditRecord, InversionRecord
from videodirector_cli.project.readers import frames_info, read_edit_frames, read_project_masks
from videodirector_cli.project.store import Project
from videodirector_cli.settings.report import ReportRequest
from videodirector_cli.stages.evaluate import edit_numbers, pair, recorded_reconstruction
from videodirector_cli.stages.outcome import StageOutcome
from videodirector_cli.stages.status import StageRow, stage_rows

UNFINISHED = ("stale", "interrupted", "failed", "running", "damaged")
"""States the page lists under "what is stale"."""


def page_paths(project: Project, request: ReportRequest) -> tuple[Path, Path]:
    """(the page, the folder of its videos): report/index.html + report/media by default,
    else FILE + FILE-stem_media beside it."""
    if request.out is None:
        folder = project.paths.report_dir
        return folder / "index.html", folder / "media"
    out = request.out
    return out, out.parent / f"{out.stem}_media"


def _db(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.2f} dB"


def _number_rows(numbers: dict[str, Any]) -> list[tuple[str, str]]:
    smooth = numbers["smoothness"]
    rows = [
        ("background PSNR vs source", _db(numbers["background_psnr"])),
        ("object PSNR vs source", _db(numbers["object_psnr"])),
        ("whole-frame PSNR", _db(numbers["psnr"])),
        ("smoothness (edit / source)", pair(smooth, "interpolation_smoothness")),
        ("frame difference (edit / source)", pair(smooth, "frame_difference")),
    ]
    if numbers["mask"] == "none":
        rows[0] = ("background PSNR vs source", "needs a mask (vdir mask)")
        rows[1] = ("object PSNR vs source", "needs a mask (vdir mask)")
    return rows


def _setting_rows(record: EditRecord) -> list[tuple[str, str]]:
    values = record.params.settings.model_dump(mode="json")
    return [(key, str(value)) for key, value in values.items() if value not in (None, [], {})]


def _edit_entry(
    project: Project,
    name: str,
    record: EditRecord,
    row: StageRow,
    source: np.ndarray,
    masks: np.ndarray | None,
    request: ReportRequest,
) -> tuple[dict[str, Any], np.ndarray | None]:
    entry: dict[str, Any] = {
        "name": name,
        "prompt": record.params.prompt,
        "inversion": short(record.params.inversion),
        "state": row.state,
        "changed": row.changed,
        "settings": _setting_rows(record),
        "numbers": None,
        "eval": None,
    }
    if row.state != "done":
        return entry, None
    try:
        frames = read_edit_frames(project, name, record)
        numbers = edit_numbers(source, frames, masks, request.dilate)
    except StaleError as error:
        entry["state"], entry["changed"] = "damaged", [error.message]
        return entry, None
    entry["numbers"], entry["eval"] = _number_rows(numbers), numbers
    return entry, frames


def _inversion_entry(key: str, record: InversionRecord, row: StageRow, current: bool):
    recorded = recorded_reconstruction(record.metrics) or {}
    losses = record.metrics.get("losses")
    return {
        "key": short(key),
        "full_key": key,
        "current": current,
        "state": row.state,
        "prompt": record.params.prompt,
        "steps": record.params.settings.steps,
        "method": record.params.settings.method,
        "psnr": _db(recorded.get("reconstruction_psnr")) if recorded else "not measured",
        "plain_psnr": _db(recorded["plain_ddim_psnr"]) if recorded.get("plain_ddim_psnr") else "",
        "vae_psnr": _db(recorded["vae_psnr"]) if recorded.get("vae_psnr") else "",
        "losses": [float(v) for v in losses] if isinstance(losses, list) else [],
    }


def _masks_shown(project: Project, rows: list[StageRow], source: np.ndarray, notes: list[str]):
    state = next(r.state for r in rows if r.stage == "masks")
    if state == "missing":
        return None
    if state != "done":
        notes.append(f"the masks are {state}: the mask video is left out")
        return None
    masks = read_project_masks(project)
    if masks is None:
        return None
    return metrics.resize_masks(masks, source.shape[1], source.shape[2])


def run_report(project: Project, request: ReportRequest, output: Output) -> StageOutcome:
    """Write the page and its videos; records nothing (a view, like `vdir status`)."""
    request.check()
    from videodirector_cli.media.frames import read_frames
    from videodirector_cli.report.page import render_page

    manifest = project.manifest
    page, media = page_paths(project, request)
    info = frames_info(project)
    source = read_frames(info.files)
    fps = manifest.source.output_fps if manifest.source is not None else 8.0
    rows = stage_rows(project)
    by_key = {(r.stage, r.key): r for r in rows}
    notes: list[str] = []
    masks = _masks_shown(project, rows, source, notes)
    clips: list[tuple[str, str, str, np.ndarray]] = [("source.mp4", "source", "", source)]
    if masks is not None:
        clips.append(("mask.mp4", "mask", "the edited region", overlay_mask(source, masks)))
    edits = []
    for name, record in manifest.edits.items():
        entry, frames = _edit_entry(
            project, name, record, by_key[("edit", name)], source, masks, request
        )
        edits.append(entry)
        if frames is not None:
            clips.append((f"edit-{name}.mp4", name, record.params.prompt, frames))
    inversions = [
        _inversion_entry(key, rec, by_key[("inversion", key)], key == manifest.current_inversion)
        for key, rec in manifest.inversions.items()
    ]
    stale = [
        {"stage": r.stage, "key": _row_key(r), **_state(r)} for r in rows if r.state in UNFINISHED
    ]
    stale += [
        {"stage": "edit", "key": e["name"], "state": "damaged", "changed": e["changed"]}
        for e in edits
        if e["state"] == "damaged"
    ]
    media.mkdir(parents=True, exist_ok=True)
    with output.progress("writing the report's videos", total=len(clips)) as bar:
        for file_name, _, _, frames in clips:
            write_mp4(media / file_name, frames, fps)
            bar.advance(1)
    context = {
        "title": project.paths.root.resolve().name,
        "prompt": manifest.prompt,
        "version": __version__,
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "fps": round(float(fps), 3),
        "frame_count": info.count,
        "size": f"{info.width}x{info.height}",
        "display_width": 256 if info.width < 256 else min(info.width, 384),
        "clips": [
            {"src": f"{media.name}/{file}", "label": label, "caption": caption}
            for file, label, caption, _ in clips
        ],
        "edits": edits,
        "inversions": inversions,
        "stale": stale,
        "notes": notes,
    }
    page.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(page, render_page(context))
    if request.open:
        webbrowser.open(page.resolve().as_uri())
    data = {
        "report": str(page),
        "media": str(media),
        "videos": [file for file, _, _, _ in clips],
        "edits": {e["name"]: {"state": e["state"], "eval": e["eval"]} for e in edits},
        "inversions": {i["full_key"]: {"state": i["state"]} for i in inversions},
        "stale": stale,
    }
    human = (
        f"wrote {page} ({len(clips)} videos in {media.name}/, {len(edits)} edits, "
        f"{len(stale)} stale)\nopen it: {page.resolve().as_uri()}"
    )
    return StageOutcome(data, human)


def _state(row: StageRow) -> dict[str, Any]:
    return {"state": row.state, "changed": row.changed}


def _row_key(row: StageRow) -> str | None:
    return short(row.key) if row.stage == "inversion" and row.key else row.key

"""`vdir eval [NAME]`: quality numbers for your own edit that need no ground truth.

For an edit (read from ``edits/<name>/frames``, verified against the manifest like `vdir render`):

* background PSNR: PSNR against the source frames outside the project's mask (optionally grown
  by ``--dilate`` pixels so a changed silhouette's edge band is left out). Needs `vdir mask`;
  without masks it is skipped with a note. High is good for an object edit.
* object PSNR: the same inside the mask. Low is expected for an object edit; for a background
  edit this is the number that should stay high.
* whole-frame PSNR against the source.
* temporal smoothness of the edit and of the source (``metrics.interpolation_smoothness`` and
  ``metrics.frame_difference``): an edit should be about as smooth as its source.

For the inversion an edit was made from (or the current one): reconstruction PSNR, the decoded
end of the optimised trajectory (what editing with the source prompt returns) against the source
frames. Taken from the reconstruction report `vdir invert` records (with plain DDIM inversion's
PSNR and the VAE's own ceiling beside it), else, after ``vdir invert --no-report``, decoded with
the inversion's model (``--no-inversion`` skips it and the model load).

Nothing is written: eval only reads the project.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from videodirector_cli import metrics
from videodirector_cli.errors import MissingPrerequisiteError, StaleError
from videodirector_cli.output import Output
from videodirector_cli.project.readers import (
    read_edit_frames,
    read_project_frames,
    read_project_masks,
)
from videodirector_cli.project.store import Project
from videodirector_cli.settings.evaluate import EvalRequest
from videodirector_cli.stages.common import (
    done_edit,
    done_edits,
    load_inversion,
    load_inversion_model,
)
from videodirector_cli.stages.outcome import StageOutcome


def _capped(value: Any) -> float | None:
    if not isinstance(value, (int, float)) or value != value:
        return None
    return round(min(float(value), metrics.PSNR_CAP), 3)


def recorded_reconstruction(record_metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The reconstruction PSNR `vdir invert` recorded (its report: optimised, plain DDIM, VAE
    alone), or None when it recorded none (``vdir invert --no-report``)."""
    report = record_metrics.get("report")
    if isinstance(report, dict) and isinstance(report.get("optimised"), dict):
        found = _capped(report["optimised"].get("psnr"))
        if found is not None:
            plain = report.get("plain_ddim")
            found_numbers: dict[str, Any] = {
                "reconstruction_psnr": found,
                "plain_ddim_psnr": _capped(plain.get("psnr")) if isinstance(plain, dict) else None,
                "vae_psnr": _capped(report.get("vae_psnr")),
            }
            if isinstance(report.get("seam_score"), dict):
                found_numbers["seam_score"] = dict(report["seam_score"])
            return found_numbers
    return None


# ----------------------------------------------------------------------------- numbers


def _round(value: float | None, digits: int = 3) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


def edit_numbers(
    source: np.ndarray, edited: np.ndarray, masks: np.ndarray | None, dilate: int
) -> dict[str, Any]:
    """The no-ground-truth numbers of one edited clip against its source."""
    if edited.shape != source.shape:
        raise StaleError(
            f"the edit's frames are {edited.shape[1:3]} x {edited.shape[0]}, the source's "
            f"{source.shape[1:3]} x {source.shape[0]}",
            hint="run vdir edit again for it",
        )
    numbers: dict[str, Any] = {
        "psnr": _round(metrics.psnr(edited, source)),
        "background_psnr": None,
        "object_psnr": None,
        "mask": "none",
        "smoothness": {
            "edit": {k: _round(v, 5) for k, v in metrics.smoothness(edited).items()},
            "source": {k: _round(v, 5) for k, v in metrics.smoothness(source).items()},
        },
    }
    if masks is not None:
        fitted = metrics.resize_masks(masks, source.shape[1], source.shape[2])
        grown = metrics.dilate(fitted, dilate)
        numbers["mask"] = "project"
        numbers["dilate_px"] = dilate
        numbers["background_psnr"] = _round(metrics.psnr(edited, source, ~grown))
        numbers["object_psnr"] = _round(metrics.psnr(edited, source, fitted))
        numbers["background_share"] = _round(float((~grown).mean()), 4)
    return numbers


def window_boundaries(record_metrics: dict[str, Any]) -> list[int]:
    """The frames where the inversion's temporal windows begin or end (none for one window)."""
    windows = record_metrics.get("windows")
    if isinstance(windows, dict) and isinstance(windows.get("boundaries"), list):
        return [int(f) for f in windows["boundaries"]]
    return []


def seam_numbers(
    clip: np.ndarray, source: np.ndarray, boundaries: list[int], what: str
) -> dict[str, float | None]:
    """The seam score of ``clip`` and, for comparison, of the source at the same frames."""
    return {
        what: _round(metrics.seam_score(clip, boundaries), 4),
        "source": _round(metrics.seam_score(source, boundaries), 4),
    }


def reconstruction_psnr(
    project: Project, key: str, source: np.ndarray, request: EvalRequest, output: Output
) -> dict[str, Any]:
    """{"key", "reconstruction_psnr", "from": "manifest" | "decoded"} for one inversion."""
    record = project.manifest.inversions.get(key)
    if record is None or record.status != "done":
        raise MissingPrerequisiteError(
            f"inversion {key[:12]} is not finished", hint="run vdir invert to finish it"
        )
    recorded_psnr = recorded_reconstruction(record.metrics)
    if recorded_psnr is not None:
        return {"key": key, **recorded_psnr, "from": "manifest"}
    import torch

    from videodirector_cli.diffusion.latents import decode_latents

    stored = load_inversion(project, key, record)
    model = load_inversion_model(record, request.model, output)
    final = stored.reconstruction.to(device=model.device, dtype=torch.float32)
    frames = decode_latents(model, final)
    if frames.shape != source.shape:
        raise StaleError(
            f"inversion {key[:12]} decodes to frames of another size than the project's",
            hint="run vdir invert again",
        )
    found: dict[str, Any] = {
        "key": key,
        "reconstruction_psnr": _round(metrics.psnr(frames, source)),
        "from": "decoded",
    }
    boundaries = window_boundaries(record.metrics)
    if boundaries:
        found["seam_score"] = seam_numbers(frames, source, boundaries, "reconstruction")
    return found


# ----------------------------------------------------------------------------- run


def _chosen_edits(project: Project, request: EvalRequest, output: Output) -> list[str]:
    if request.name is not None:
        done_edit(project, request.name)
        return [request.name]
    return done_edits(project, output)


def run_eval(project: Project, request: EvalRequest, output: Output) -> StageOutcome:
    """Every number. Reads only."""
    request.check()
    names = _chosen_edits(project, request, output)
    current = project.manifest.current_inversion
    if not names and (current is None or current not in project.manifest.inversions):
        raise MissingPrerequisiteError(
            "there is nothing to evaluate yet: no finished edit or inversion",
            hint='run vdir invert, then vdir edit "TARGET PROMPT"',
        )
    source = read_project_frames(project)
    masks = read_project_masks(project)
    edits = []
    for name in names:
        record = done_edit(project, name)
        edited = read_edit_frames(project, name, record)
        numbers = edit_numbers(source, edited, masks, request.dilate)
        inversion = project.manifest.inversions.get(record.params.inversion)
        boundaries = window_boundaries(inversion.metrics) if inversion is not None else []
        if boundaries:
            numbers["seam_score"] = seam_numbers(edited, source, boundaries, "edit")
        edits.append({"name": name, "inversion": record.params.inversion, **numbers})
    keys = [e["inversion"] for e in edits if e["inversion"]] or ([current] if current else [])
    inversions = []
    if request.inversion:
        for key in dict.fromkeys(keys):
            if key in project.manifest.inversions:
                inversions.append(reconstruction_psnr(project, key, source, request, output))
    notes = []
    if masks is None and edits:
        notes.append("no masks: background and object PSNR need a mask (run vdir mask)")
    result = {"edits": edits, "inversions": inversions, "notes": notes}
    return StageOutcome(result, human_report(result))


def _db(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} dB"


def pair(smooth: dict[str, Any], key: str) -> str:
    """'edit / source' of one temporal statistic ('n/a' where the clip is too short)."""
    values = [smooth[side][key] for side in ("edit", "source")]
    return " / ".join("n/a" if v is None else f"{v:.4f}" for v in values)


def human_report(result: dict[str, Any]) -> str:
    lines = []
    for edit in result["edits"]:
        smooth = edit["smoothness"]
        lines.append(f"edit {edit['name']}:")
        if edit["mask"] == "none":
            lines.append("  background PSNR: needs a mask (run vdir mask)")
        else:
            margin = f", mask grown {edit['dilate_px']} px" if edit.get("dilate_px") else ""
            lines.append(
                f"  background PSNR vs source: {_db(edit['background_psnr'])} "
                f"(outside the mask{margin}; higher keeps more)"
            )
            lines.append(
                f"  object PSNR vs source:     {_db(edit['object_psnr'])} "
                "(inside the mask; low for an object edit)"
            )
        lines.append(f"  whole-frame PSNR:          {_db(edit['psnr'])}")
        lines.append(
            "  smoothness (edit / source): "
            f"{pair(smooth, 'interpolation_smoothness')}; frame difference "
            f"{pair(smooth, 'frame_difference')}"
        )
        if edit.get("seam_score"):
            lines.append(_seam_line(edit["seam_score"], "edit"))
    for inversion in result["inversions"]:
        extra = ""
        if inversion.get("plain_ddim_psnr") is not None:
            extra += f"; plain DDIM inversion {_db(inversion['plain_ddim_psnr'])}"
        if inversion.get("vae_psnr") is not None:
            extra += f"; VAE alone {_db(inversion['vae_psnr'])}"
        lines.append(
            f"inversion {inversion['key'][:12]}: reconstruction PSNR "
            f"{_db(inversion['reconstruction_psnr'])} ({inversion['from']}{extra})"
        )
        if inversion.get("seam_score"):
            lines.append(_seam_line(inversion["seam_score"], "reconstruction"))
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)


def _seam_line(seam: dict[str, Any], what: str) -> str:
    def show(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return (
        f"  seam score ({what} / source): {show(seam.get(what))} / {show(seam.get('source'))} "
        "(change at window boundaries over the change elsewhere; 1.0 = no seam)"
    )

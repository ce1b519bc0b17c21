"""Orchestration several stages share: finding an inversion or an edit the project vouches
for, loading the model an inversion was made with, reading the inversion back.

Stage modules import this (and outcome.py, inversion_files.py), never each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from videodirector_cli.errors import MissingPrerequisiteError, StaleError, UsageError
from videodirector_cli.output import Output
from videodirector_cli.project import lineage
from videodirector_cli.project.manifest import (
    EditRecord,
    InversionRecord,
    changed_inputs,
    stage_state,
)
from videodirector_cli.project.names import SOURCE
from videodirector_cli.project.store import Project

__all__ = [
    "EDIT_HINT",
    "SOURCE",
    "done_edit",
    "done_edits",
    "inversion_problem",
    "load_inversion",
    "load_inversion_model",
    "resolve_inversion",
]

if TYPE_CHECKING:
    from videodirector_cli.diffusion.components import DiffusionModel
    from videodirector_cli.diffusion.trajectory import StoredInversion
    from videodirector_cli.settings.model import ModelChoice

EDIT_HINT = 'make one with: vdir edit "TARGET PROMPT"'


# ----------------------------------------------------------------------------- inversions


def resolve_inversion(project: Project, wanted: str | None) -> tuple[str, InversionRecord]:
    """The inversion to edit (--inversion KEY or a unique prefix, else the current one), done
    and not stale."""
    manifest = project.manifest
    if not manifest.inversions:
        raise MissingPrerequisiteError(
            "there is no inversion to edit yet", hint="run vdir invert first"
        )
    if wanted is None:
        key = manifest.current_inversion
        if key is None or key not in manifest.inversions:
            raise MissingPrerequisiteError(
                "the project has no current inversion",
                hint="pass --inversion KEY (vdir status lists them), or run vdir invert",
            )
    else:
        matches = [k for k in manifest.inversions if k.startswith(wanted)] if wanted else []
        if len(matches) != 1:
            known = ", ".join(k[:12] for k in manifest.inversions)
            what = (
                "matches several inversions" if matches else "is not an inversion of this project"
            )
            raise UsageError(f"--inversion {wanted!r} {what} (inversions: {known})")
        key = matches[0]
    record = manifest.inversions[key]
    now = lineage.current_inputs(manifest)
    state = stage_state(record, now, project.locked_by_someone)
    if state == "stale":
        changed = ", ".join(lineage.describe(item) for item in changed_inputs(record, now))
        raise StaleError(
            f"inversion {key[:12]} is stale: its {changed} changed since it ran",
            hint="run vdir invert again (or pick another with --inversion KEY)",
        )
    if state != "done":
        raise MissingPrerequisiteError(
            f"inversion {key[:12]} is {state}", hint="run vdir invert to finish it"
        )
    return key, record


def load_inversion(project: Project, key: str, record: InversionRecord) -> StoredInversion:
    """The inversion's tensors, as vdir invert wrote and recorded them."""
    from videodirector_cli.stages.inversion_files import InversionFiles

    files = InversionFiles(project.paths.inversion_dir(key), project.file_index)
    return files.load(recorded_hash=record.outputs.get("inversion"))


def inversion_problem(project: Project, key: str, record: InversionRecord) -> str | None:
    """What is wrong with a finished inversion's files (None: all there, as recorded)."""
    from videodirector_cli.stages.inversion_files import InversionFiles

    files = InversionFiles(project.paths.inversion_dir(key), project.file_index)
    steps = record.progress.total if record.progress else record.params.settings.steps
    if not files.info_path.is_file():
        return f"the files of inversion {key[:12]}: {files.info_path} is missing"
    return files.problem(record.outputs.get("inversion"), steps)


def load_inversion_model(
    record: InversionRecord, choice: ModelChoice, output: Output
) -> DiffusionModel:
    """The model an inversion was made with, on ``choice``'s device and dtype. Weights named in
    ``choice`` are loaded instead and must be the same model (by identity)."""
    from videodirector_cli.diffusion.loading import ModelSpec, describe_identity, load_model

    named = choice if choice.names_weights else record.params.model
    spec = ModelSpec(named.model, named.motion_adapter, named.vae)
    spec.device, spec.dtype = choice.device, choice.dtype
    model = load_model(spec, output)
    identity = record.params.model_identity
    if identity is not None and dict(model.identity) != dict(identity):
        raise StaleError(
            f"the inversion was made with another model ({describe_identity(identity)}); "
            f"this is {describe_identity(model.identity)}",
            hint="edit with the inversion's model (drop --model/--motion-adapter/--vae), "
            "or invert again with this one",
        )
    if identity is None:
        output.warn(
            "the inversion does not record its model; using " + str(spec.model or "the default")
        )
    return model


# ----------------------------------------------------------------------------- edits


def done_edit(project: Project, name: str, also: str = "") -> EditRecord:
    """An edit's record, when it is finished and what it was made from is unchanged. ``also``
    names what else the command would take instead of an edit name."""
    manifest = project.manifest
    record = manifest.edits.get(name)
    if record is None:
        known = ", ".join(sorted(manifest.edits)) or "none yet"
        raise MissingPrerequisiteError(
            f"there is no edit named {name!r} (edits: {known}{also})", hint=EDIT_HINT
        )
    running = project.record_running("edits", name)
    state = stage_state(record, lineage.current_inputs(manifest), running)
    if state == "stale":
        now = lineage.current_inputs(manifest)
        changed = ", ".join(lineage.describe(item) for item in changed_inputs(record, now))
        raise StaleError(
            f"edit {name!r} is stale: its {changed} changed since it was made",
            hint="run vdir edit again for it",
        )
    if state != "done":
        raise MissingPrerequisiteError(f"edit {name!r} is {state}", hint="run vdir edit again")
    return record


def done_edits(project: Project, output: Output) -> list[str]:
    """Every finished, up-to-date edit; the others are skipped with a warning saying why."""
    now = lineage.current_inputs(project.manifest)
    names = []
    for name, record in project.manifest.edits.items():
        state = stage_state(record, now, project.record_running("edits", name))
        if state == "done":
            names.append(name)
        else:
            output.warn(f"skipping edit {name!r}: it is {state} (run vdir edit again for it)")
    return names

"""`vdir edit PROMPT`: stage 2, an edit of a stored inversion, in ``edits/<name>/``.

Every check a user can fail runs before anything is written (inversion present and current,
prompts, reweight words, name, model identity), so bad input leaves the project as it was. The
edit's files are written into a staging folder and swapped in at the end: a failed or
interrupted run leaves the previous files of that name whole.

``edits/<name>/``: ``latents.safetensors`` (the final latents, float32), ``frames/00000.png``...
(decoded RGB), ``edit.json`` (params, prompts, metrics). ``manifest.edits[name]`` records the
params, the inversion and mask hashes it read, and the frames' hash (``outputs["edit"]``, what
`vdir render` verifies) plus the latents' (``outputs["latents"]``).
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videodirector_cli.errors import MissingPrerequisiteError, StaleError, UsageError
from videodirector_cli.output import Output
from videodirector_cli.project import lineage
from videodirector_cli.project.atomic import (
    atomic_path,
    atomic_write_json,
    recover_dir,
    replace_dir,
    staging_dir,
)
from videodirector_cli.project.fingerprint import hash_file, hash_files
from videodirector_cli.project.manifest import StageRecord, stage_state
from videodirector_cli.project.store import Project
from videodirector_cli.stages.outcome import StageOutcome

if TYPE_CHECKING:
    import numpy as np

    from videodirector_cli.diffusion.components import DiffusionModel
    from videodirector_cli.diffusion.editing import EditSettings
    from videodirector_cli.stages.inversion_files import StoredInversion

LATENTS_NAME = "latents.safetensors"
INFO_NAME = "edit.json"
RESERVED_NAMES = ("source",)
"""`vdir render source` renders the project's own frames: no edit may take that name."""
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MASK_CHOICES = ("auto", "none")


@dataclass
class EditRequest:
    prompt: str
    name: str | None = None
    inversion: str | None = None
    tau_s: float = 0.4
    tau_c: float = 0.8
    sa2_layers: str = "decoder"
    mode: str = "auto"
    reweight: list[str] = field(default_factory=list)
    """'WORD=VALUE' items as typed."""
    blend: bool = False
    blend_dilate: int = 0
    """Frame pixels."""
    mask: str = "auto"
    target: str | None = None
    """'foreground' (the mask is what changes) or 'background'; None: the inversion's target."""
    sa1: bool = True
    sa2: bool = True
    cross: bool = True
    seed: int | None = None
    model: str | None = None
    motion_adapter: str | None = None
    vae: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    force: bool = False


# ----------------------------------------------------------------------------- parsing


def parse_reweight(items: list[str]) -> dict[str, float]:
    """['tiger=2', 'white=0.5'] -> {'tiger': 2.0, 'white': 0.5}."""
    weights: dict[str, float] = {}
    for item in items:
        word, sep, value = item.rpartition("=")
        word = word.strip()
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or not word or number != number or number < 0:
            raise UsageError(
                f"--reweight {item!r} is not WORD=VALUE with a non-negative number",
                hint="e.g. --reweight tiger=2 (repeat the option for several words)",
            )
        weights[word] = number
    return weights


def check_name(name: str) -> str:
    """An explicit --name: a plain folder name, or UsageError saying what would do."""
    if NAME_RE.match(name) and ".." not in name and name.lower() not in RESERVED_NAMES:
        return name
    suggestion = slug(name) or "my-edit"
    raise UsageError(
        f"--name {name!r} is not usable as a folder name",
        hint=f"use letters, digits, '.', '_' and '-' (no '/', no '..', not 'source'), "
        f"e.g. --name {suggestion}",
    )


def slug(text: str, limit: int = 40) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > limit:
            break
        out = candidate
    return out if out.lower() not in RESERVED_NAMES else f"{out}-edit"


def derive_name(source_prompt: str, edit_prompt: str) -> str:
    """A readable name: the edit prompt's words that the source lacks ('tiger'), else its words."""
    from videodirector_cli.diffusion.attention.seq_align import normalise_word

    have = {normalise_word(w) for w in source_prompt.split()}
    new = [w for w in edit_prompt.split() if normalise_word(w) not in have]
    return slug(" ".join(new)) or slug(edit_prompt) or "edit"


# ----------------------------------------------------------------------------- inversion


def resolve_inversion(project: Project, wanted: str | None) -> tuple[str, StageRecord]:
    """The inversion to edit (--inversion KEY or a unique prefix, else the current one)."""
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
    state = stage_state(record, lineage.current_inputs(manifest), project.locked_by_someone)
    if state == "stale":
        raise StaleError(
            f"inversion {key[:12]} is stale: its frames, masks or prompt changed since it ran",
            hint="run vdir invert again (or pick another with --inversion KEY)",
        )
    if state != "done":
        raise MissingPrerequisiteError(
            f"inversion {key[:12]} is {state}", hint="run vdir invert to finish it"
        )
    return key, record


def _param(sources: list[dict[str, Any]], *names: str) -> Any:
    for params in sources:
        for name in names:
            if params.get(name) is not None:
                return params[name]
    return None


def inversion_facts(project: Project, record: StageRecord) -> dict[str, Any]:
    """Source prompt, guidance scale and model of an inversion, from its record (or the project)."""
    params = record.params
    nested = [p for p in (params.get("null_text"), params.get("config")) if isinstance(p, dict)]
    sources = [params, *nested]
    prompt = _param(sources, "prompt", "source_prompt") or project.manifest.prompt
    if not prompt:
        raise MissingPrerequisiteError(
            "the inversion records no source prompt", hint="run vdir invert again"
        )
    scale = _param(sources, "guidance_scale", "cfg", "cfg_scale")
    model = _param(sources, "model_spec", "model")
    identity = _param(sources, "model_identity", "identity")
    stdg = params.get("stdg")
    target = stdg.get("target") if isinstance(stdg, dict) else None
    return {
        "prompt": str(prompt),
        "target": target if target in ("foreground", "background") else "foreground",
        "guidance_scale": float(scale) if scale is not None else 7.5,
        "model": model,
        "identity": identity if isinstance(identity, dict) else None,
    }


# ----------------------------------------------------------------------------- settings


def edit_settings(request: EditRequest, guidance_scale: float, vae_factor: int) -> EditSettings:
    from videodirector_cli.diffusion.attention.controller import ControlSettings
    from videodirector_cli.diffusion.editing import EditSettings, dilation_cells

    control = ControlSettings(
        tau_s=request.tau_s,
        tau_c=request.tau_c,
        sa1=request.sa1,
        sa2=request.sa2,
        cross=request.cross,
        sa2_layers=request.sa2_layers,
    )
    return EditSettings(
        control=control,
        mode=request.mode,
        reweight=parse_reweight(request.reweight),
        guidance_scale=guidance_scale,
        blend=request.blend,
        blend_dilate=dilation_cells(request.blend_dilate, vae_factor) if request.blend else 0,
    )


def check_request(request: EditRequest, source_prompt: str) -> None:
    """Checks that need neither the model nor the project's files."""
    from videodirector_cli.diffusion.attention import seq_align

    if not request.prompt.strip():
        raise UsageError("the edit prompt is empty", hint='vdir edit "a tiger walking on rocks"')
    for name, value in (("--tau-s", request.tau_s), ("--tau-c", request.tau_c)):
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"{name} must be between 0 and 1, not {value}")
    if request.mode not in ("auto", "replace", "refine"):
        raise UsageError(f"--mode {request.mode!r} is not one of: auto, replace, refine")
    if request.mask not in MASK_CHOICES:
        raise UsageError(f"--mask {request.mask!r} is not one of: auto, none")
    if request.target not in (None, "foreground", "background"):
        raise UsageError(f"--target {request.target!r} is not one of: foreground, background")
    if request.blend_dilate < 0:
        raise UsageError("--blend-dilate must be 0 or more pixels")
    if request.mode == "replace":
        problem = seq_align.word_count_mismatch(source_prompt, request.prompt)
        if problem:
            raise UsageError(
                f"{problem}; a swap needs the same number of words ('a bear walking' -> "
                "'a tiger walking')",
                hint="use --mode refine (or auto), which aligns inserted and removed words",
            )
    have = {seq_align.normalise_word(w) for w in request.prompt.split()}
    for word in parse_reweight(request.reweight):
        if not all(seq_align.normalise_word(w) in have for w in word.split()):
            raise UsageError(
                f"--reweight {word!r}: '{word}' is not a word of the edit prompt "
                f"'{request.prompt}'",
                hint="reweighting scales the attention to words of the edit prompt",
            )


def check_tokens(model: DiffusionModel, source_prompt: str, settings: EditSettings, prompt: str):
    """Prompt length and word-to-token mappings through the model's own tokenizer."""
    from videodirector_cli.diffusion.attention import seq_align
    from videodirector_cli.diffusion.attention.controller import parse_layer_spec
    from videodirector_cli.diffusion.attention.layers import layers_of
    from videodirector_cli.diffusion.prompts import check_prompt

    check_prompt(model.tokenizer, prompt, "the edit prompt")
    parse_layer_spec(layers_of(model.unet, "spatial_self"), settings.control.sa2_layers)
    mapping = seq_align.token_mapping(model.tokenizer, source_prompt, prompt, settings.mode)
    if settings.reweight:
        target = seq_align.tokenize_prompt(model.tokenizer, prompt)
        seq_align.reweight_vector(target, settings.reweight)
    return mapping


# ----------------------------------------------------------------------------- model


def load_edit_model(request: EditRequest, facts: dict[str, Any], output: Output) -> DiffusionModel:
    """The inversion's model: the user's options if given (checked), else what it recorded."""
    from videodirector_cli.diffusion.loading import ModelSpec, describe_identity, load_model

    given = any(v is not None for v in (request.model, request.motion_adapter, request.vae))
    recorded = facts["model"]
    spec = ModelSpec(device=request.device, dtype=request.dtype)
    if given:
        spec.model, spec.motion_adapter, spec.vae = (
            request.model,
            request.motion_adapter,
            request.vae,
        )
    elif isinstance(recorded, dict):
        spec.model = recorded.get("model")
        spec.motion_adapter = recorded.get("motion_adapter")
        spec.vae = recorded.get("vae")
    elif isinstance(recorded, str):
        spec.model = recorded
    model = load_model(spec, output)
    identity = facts["identity"]
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


# ----------------------------------------------------------------------------- run


def _existing_state(project: Project, name: str) -> str | None:
    record = project.manifest.edits.get(name)
    if record is None:
        return None
    return stage_state(record, lineage.current_inputs(project.manifest), project.locked_by_someone)


def _files_intact(project: Project, name: str, record: StageRecord, frames: int) -> bool:
    paths = project.paths
    files = [paths.edit_frame(name, i) for i in range(frames)]
    latents = paths.edit_dir(name) / LATENTS_NAME
    if not all(f.is_file() for f in files) or not latents.is_file():
        return False
    return hash_files(files) == record.outputs.get("edit") and hash_file(
        latents
    ) == record.outputs.get("latents")


def choose_name(
    project: Project, request: EditRequest, source_prompt: str, params: dict[str, Any]
) -> tuple[str, bool]:
    """(name, up_to_date). An explicit name with other params needs --force; a derived one
    takes the first free suffix (tiger, tiger-2, ...) unless one already holds these params."""
    edits = project.manifest.edits
    if request.name is not None:
        name = check_name(request.name)
        record = edits.get(name)
        if record is not None and record.params != params and not request.force:
            changed = sorted(
                k
                for k in params.keys() | record.params.keys()
                if params.get(k) != record.params.get(k)
            )
            raise UsageError(
                f"edit {name!r} exists with other settings ({', '.join(changed)})",
                hint="use --force to replace it, or another --name",
            )
        return name, _up_to_date(project, name, params) and not request.force
    base = derive_name(source_prompt, request.prompt)
    for number in range(1, 1000):
        name = base if number == 1 else f"{base}-{number}"
        record = edits.get(name)
        if record is None or record.params == params:
            return name, record is not None and _up_to_date(project, name, params)
    raise UsageError("too many edits with the same name", hint="pass --name")


def _up_to_date(project: Project, name: str, params: dict[str, Any]) -> bool:
    record = project.manifest.edits.get(name)
    if record is None or record.params != params or _existing_state(project, name) != "done":
        return False
    frames = int(record.metrics.get("frames", project.manifest.frame_count))
    return _files_intact(project, name, record, frames)


def _load_masks(project: Project, mode: str) -> np.ndarray | None:
    if mode == "none":
        return None
    from videodirector_cli.stages.mask import load_project_masks

    return load_project_masks(project)


def edit_params(
    request: EditRequest, facts: dict[str, Any], key: str, uses_masks: bool
) -> dict[str, Any]:
    """What the edit's result depends on (besides the inversion and masks' content), without the
    model: an up-to-date edit is recognised before any weights are loaded."""
    from videodirector_cli.diffusion.attention.controller import ControlSettings
    from videodirector_cli.diffusion.attention.seq_align import choose_mode

    return {
        "prompt": request.prompt,
        "source_prompt": facts["prompt"],
        "inversion": key,
        "mode": choose_mode(request.mode, facts["prompt"], request.prompt),
        "reweight": dict(sorted(parse_reweight(request.reweight).items())),
        "tau_s": request.tau_s,
        "tau_c": request.tau_c,
        "sa1": request.sa1,
        "sa2": request.sa2,
        "cross": request.cross,
        "sa2_layers": request.sa2_layers,
        "sa1_max_tokens": ControlSettings().sa1_max_tokens,
        "guidance_scale": facts["guidance_scale"],
        "blend": request.blend,
        "blend_dilate_px": request.blend_dilate if request.blend else 0,
        "mask": "project" if uses_masks else "none",
        "target": edit_target(request, facts) if uses_masks else None,
    }


def edit_target(request: EditRequest, facts: dict[str, Any]) -> str:
    """What the edit changes: by default what the inversion's STDG treated as the target."""
    return request.target or facts["target"]


def _up_to_date_result(name: str, key: str) -> StageOutcome:
    return StageOutcome(
        {"name": name, "up_to_date": True, "inversion": key},
        f"edit {name} is up to date; nothing to do",
    )


def run_edit(project: Project, request: EditRequest, output: Output) -> StageOutcome:
    """Validate, then edit."""
    key, record = resolve_inversion(project, request.inversion)
    facts = inversion_facts(project, record)
    source_prompt = facts["prompt"]
    check_request(request, source_prompt)
    # Masks matter to SA-II and --blend only; an edit without either does not depend on them.
    masks = _load_masks(project, request.mask) if (request.sa2 or request.blend) else None
    if masks is not None and edit_target(request, facts) == "background":
        masks = ~masks  # the edited region is everything but the object
    if request.blend and masks is None:
        raise UsageError(
            "--blend keeps the background outside the mask, but there is no mask",
            hint="run vdir mask first (or drop --blend)",
        )
    params = edit_params(request, facts, key, masks is not None)
    model_given = any(v is not None for v in (request.model, request.motion_adapter, request.vae))
    if not model_given:  # a named model is checked against the inversion's first
        name, up_to_date = choose_name(project, request, source_prompt, params)
        if up_to_date:
            return _up_to_date_result(name, key)
    model = load_edit_model(request, facts, output)
    settings = edit_settings(request, facts["guidance_scale"], model.vae_scale_factor)
    check_tokens(model, source_prompt, settings, request.prompt)
    name, up_to_date = choose_name(project, request, source_prompt, params)
    if up_to_date:
        return _up_to_date_result(name, key)
    stored = _load_inversion(project, key, record)
    if masks is None and request.sa2:
        output.info(
            "no mask: SA-II has nothing to mask out, so the edit attends to every "
            "reconstruction key (run vdir mask to keep source content out of the edited object)"
        )
    with project.writing("edit"):
        resolve_inversion(project, key)  # the manifest was re-read under the lock
        name, up_to_date = choose_name(project, request, source_prompt, params)
        if up_to_date:
            return _up_to_date_result(name, key)
        return _run_locked(project, request, output, model, stored, settings, masks, name, params)


def _load_inversion(project: Project, key: str, record: StageRecord) -> StoredInversion:
    from videodirector_cli.stages.inversion_files import InversionFiles

    files = InversionFiles(project.paths.inversion_dir(key))
    stored = files.load()
    recorded = record.outputs.get("inversion")
    if recorded and files.content_hash(stored.steps) != recorded:
        raise StaleError(
            f"the files of inversion {key[:12]} changed after vdir invert wrote them",
            hint="run vdir invert again",
        )
    return stored


def _run_locked(
    project: Project,
    request: EditRequest,
    output: Output,
    model: DiffusionModel,
    stored: StoredInversion,
    settings: EditSettings,
    masks_np: np.ndarray | None,
    name: str,
    params: dict[str, Any],
) -> StageOutcome:
    import torch

    from videodirector_cli.diffusion.editing import run_edit_path
    from videodirector_cli.diffusion.passes import PassCounter

    if request.seed is not None:
        torch.manual_seed(request.seed)
    masks = None if masks_np is None else torch.from_numpy(masks_np)
    key = params["inversion"]
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
            project.stage(("edits", name), params, inputs, total=steps) as run,
            output.progress(f"edit {name}", total=steps) as bar,
        ):

            def on_step(index: int, latent: torch.Tensor) -> None:
                bar.advance(1)
                run.checkpoint(index + 1)

            outcome = run_edit_path(
                model,
                stored,
                request.prompt,
                settings,
                masks=masks,
                counter=counter,
                callback=on_step,
                source_prompt=params["source_prompt"],
            )
            edit_seconds = time.perf_counter() - started
            frames = _write_edit(staging, project, name, model, outcome.latents)
            metrics = {
                "passes": counter.as_dict(),
                "controls_applied": outcome.applied,
                "edit_seconds": round(edit_seconds, 3),
                "seconds": round(time.perf_counter() - started, 3),
                "frames": frames,
            }
            atomic_write_json(
                staging / INFO_NAME,
                {"name": name, "params": params, "metrics": metrics, "seed": request.seed},
            )
            replace_dir(staging, paths.edit_dir(name))
            run.record.outputs = {
                "edit": hash_files([paths.edit_frame(name, i) for i in range(frames)]),
                "latents": hash_file(paths.edit_dir(name) / LATENTS_NAME),
            }
            run.record.metrics.update(metrics)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = {
        "name": name,
        "up_to_date": False,
        "inversion": key,
        "prompt": request.prompt,
        "mode": params["mode"],
        "mask": params["mask"],
        "folder": str(paths.edit_dir(name)),
        "frames": frames,
        **metrics,
    }
    human = (
        f"edit {name}: {frames} frames in {paths.edit_dir(name)} "
        f"({params['mode']}, {counter.forwards} UNet calls, {metrics['seconds']:.1f} s); "
        f"next: vdir render {name} --compare"
    )
    return StageOutcome(result, human)


def _write_edit(folder: Path, project: Project, name: str, model: DiffusionModel, latents) -> int:
    """latents.safetensors + the decoded frames into the staging ``folder``; the frame count."""
    from safetensors.torch import save_file

    from videodirector_cli.diffusion.latents import decode_latents
    from videodirector_cli.media.frames import write_png

    cpu = latents.detach().to("cpu").float().contiguous()
    with atomic_path(folder / LATENTS_NAME) as tmp:
        save_file({"latents": cpu}, str(tmp))
    images = decode_latents(model, latents)
    final = project.paths.edit_dir(name)
    for index, image in enumerate(images):
        write_png(folder / project.paths.edit_frame(name, index).relative_to(final), image)
    return len(images)

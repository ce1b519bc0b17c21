"""`vdir batch PLAN`: the plan file (TOML) that lists clips, their masks, inversion and edits.

The plan's tables are the stages' own settings models (InitRequest's choices, MaskRequest,
InvertSettings, EditSettings, ModelChoice), so every key a plan may hold is a setting of a
command with the same name and meaning; `[defaults]` is merged under each clip's own tables.
Every error names the plan's line (TOML syntax) or key (``clip[2].edits[0].settings.tau_s``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from videodirector_cli.errors import InputError, UsageError
from videodirector_cli.settings.base import Settings
from videodirector_cli.settings.edit import EditSettings
from videodirector_cli.settings.init import InitRequest
from videodirector_cli.settings.invert import InvertSettings
from videodirector_cli.settings.mask import Box, MaskRequest, Point
from videodirector_cli.settings.model import ModelChoice

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A clip's or an edit's name is a folder name (as `vdir edit --name`)."""
INIT_KEYS = ("frames", "start", "stride", "fps", "size", "fit")


def _folder_name(value: str, what: str) -> str:
    if not NAME_RE.match(value) or ".." in value or value.lower() == "source":
        raise ValueError(
            f"{what} {value!r} cannot be a folder name (letters, digits, '.', '_', '-'; "
            "not 'source')"
        )
    return value


class _Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MaskPlan(_Plan):
    """How a clip's mask is made: a SAM2 box or clicks, a folder of masks, or a plain shape."""

    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, ...], ...] = ()
    frame: int | None = None
    folder: Path | None = None
    sam2: bool = True
    """False: the box itself (or its ellipse, ``shape``) on every frame (`vdir mask --no-sam2`)."""
    shape: str | None = None
    sam2_size: str | None = None

    def request(self, base: Path, device: str) -> MaskRequest:
        points = tuple(Point(p[0], p[1], int(p[2]) if len(p) > 2 else 1) for p in self.points)
        box = Box(*self.box) if self.box is not None else None
        folder = (base / self.folder) if self.folder is not None else None
        return MaskRequest(
            points=points,
            box=box,
            frame=self.frame,
            from_dir=folder,
            no_sam2=not self.sam2,
            shape=self.shape,  # type: ignore[arg-type]
            sam2_size=self.sam2_size,
            device=device,
        )


class EditPlan(_Plan):
    name: str
    prompt: str
    settings: dict[str, Any] = Field(default_factory=dict)
    """`vdir edit`'s settings (EditSettings keys), over the plan's [defaults.edit]."""

    @model_validator(mode="after")
    def _name(self) -> EditPlan:
        _folder_name(self.name, "edit name")
        return self


class ClipPlan(_Plan):
    name: str
    video: Path
    prompt: str
    init: dict[str, Any] = Field(default_factory=dict)
    """`vdir init`'s choices: frames, start, stride, fps, size, fit."""
    mask: MaskPlan | None = None
    """None (no table): no mask."""
    invert: dict[str, Any] = Field(default_factory=dict)
    """`vdir invert`'s settings (InvertSettings keys), over [defaults.invert]."""
    edits: tuple[EditPlan, ...] = ()

    @model_validator(mode="after")
    def _name(self) -> ClipPlan:
        _folder_name(self.name, "clip name")
        names = [e.name for e in self.edits]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"edit names given twice: {', '.join(twice)}")
        return self


class Defaults(_Plan):
    init: dict[str, Any] = Field(default_factory=dict)
    invert: dict[str, Any] = Field(default_factory=dict)
    edit: dict[str, Any] = Field(default_factory=dict)
    model: ModelChoice = Field(default_factory=ModelChoice)


class BatchPlan(_Plan):
    defaults: Defaults = Field(default_factory=Defaults)
    clip: tuple[ClipPlan, ...]

    @model_validator(mode="after")
    def _unique(self) -> BatchPlan:
        names = [c.name for c in self.clip]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"clip names given twice: {', '.join(twice)}")
        if not self.clip:
            raise ValueError("the plan lists no clip ([[clip]] tables)")
        return self


class ResolvedClip(_Plan):
    """One clip with every stage's request built and validated (defaults merged)."""

    name: str
    init: InitRequest
    mask: MaskPlan | None
    invert: InvertSettings
    edits: tuple[tuple[str, str, EditSettings], ...]


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _where(error: ValidationError, prefix: str) -> str:
    first = error.errors()[0]
    loc = prefix
    for part in first.get("loc", ()):
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{loc or 'top level'}: {message}"


def _build(cls: type[Settings], data: dict[str, Any], where: str) -> Any:
    try:
        value = cls.model_validate(data)
        value.check()
        return value
    except ValidationError as exc:
        raise InputError(f"plan {_where(exc, where)}") from None
    except UsageError as exc:
        raise InputError(f"plan {where}: {exc.message}") from None


def resolve(plan: BatchPlan, base: Path) -> list[ResolvedClip]:
    """Every clip's requests, validated now so no project is half-made by a bad later clip;
    paths in the plan are relative to the plan file's folder."""
    clips = []
    for index, clip in enumerate(plan.clip):
        where = f"clip[{index}]"
        video = clip.video if clip.video.is_absolute() else base / clip.video
        if not video.is_file():
            raise InputError(f"plan {where}.video: {video} does not exist")
        init_values = _merged(plan.defaults.init, clip.init)
        unknown = sorted(set(init_values) - set(INIT_KEYS))
        if unknown:
            raise InputError(
                f"plan {where}.init: unknown keys {', '.join(unknown)} (known: {', '.join(INIT_KEYS)})"
            )
        init = _build(
            InitRequest, {**init_values, "video": video, "prompt": clip.prompt}, f"{where}.init"
        )
        if clip.mask is not None and clip.mask.folder is not None:
            folder = clip.mask.folder if clip.mask.folder.is_absolute() else base / clip.mask.folder
            if not folder.is_dir():
                raise InputError(f"plan {where}.mask.folder: {folder} is not a folder")
        invert = _build(
            InvertSettings, _merged(plan.defaults.invert, clip.invert), f"{where}.invert"
        )
        edits = []
        for number, edit in enumerate(clip.edits):
            settings = _build(
                EditSettings,
                _merged(plan.defaults.edit, edit.settings),
                f"{where}.edits[{number}].settings",
            )
            edits.append((edit.name, edit.prompt, settings))
        clips.append(
            ResolvedClip(
                name=clip.name, init=init, mask=clip.mask, invert=invert, edits=tuple(edits)
            )
        )
    return clips


def load_plan(path: Path) -> BatchPlan:
    """Parse and validate a plan file; a syntax error names its line, a bad value its key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"plan {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"plan {path} cannot be read ({exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"plan {path} is not valid TOML: {exc}") from None
    try:
        return BatchPlan.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"plan {path}: {_where(exc, '')}") from None


class BatchRequest(Settings):
    plan: Path = Field(description="The plan file (TOML; docs/batch.md).")
    out: Path | None = Field(
        None,
        description="Folder of the clips' projects and the index page. Default: the plan's "
        "name without .toml, beside it.",
    )
    devices: tuple[str, ...] = Field(
        (),
        description="Run one worker process per device, e.g. cuda:0,cuda:1 (clips spread over "
        "them; a device named twice gets two workers). Default: one worker, in this process, on "
        "the plan's [defaults.model] device.",
    )
    only: tuple[str, ...] = Field(
        (), description="Run only these clips (comma-separated names); the index lists all."
    )
    ray: str | None = Field(
        None,
        description="Run the steps as tasks on a Ray cluster: 'auto' joins the cluster of this "
        "environment, HOST:PORT or ray://HOST:PORT another one, 'local' starts one here. Needs "
        "pip install 'videodirector-cli[ray]'.",
    )
    steps: tuple[str, ...] = Field(
        (),
        description="Run only these steps of the --only clips (init, mask, invert, edit:NAME, "
        "render, report): what a worker is given. Not for everyday use.",
        json_schema_extra={"option": "--step"},
    )

    def check(self) -> None:
        if self.plan.suffix.lower() != ".toml":
            raise UsageError(f"the plan {self.plan} must be a .toml file", hint="docs/batch.md")
        if self.ray is not None and self.devices:
            raise UsageError(
                "--ray and --devices exclude each other", hint="Ray assigns the devices itself"
            )
        if self.ray is not None and not self.ray.strip():
            raise UsageError("--ray needs an address: auto, local, HOST:PORT or ray://HOST:PORT")

    def out_dir(self) -> Path:
        return self.out if self.out is not None else self.plan.with_suffix("")

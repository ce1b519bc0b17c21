"""Option aliases shared by several commands, defined once, and ``setting``: an option whose
default and help are a settings model's field (videodirector_cli/settings/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from videodirector_cli.output import Output
from videodirector_cli.settings.base import field_default, field_help, option_name
from videodirector_cli.settings.model import ModelChoice, RunChoice

_FIELD = object()


def setting(
    model: type[BaseModel],
    name: str,
    *flags: str,
    default: Any = _FIELD,
    argument: bool = False,
    **options: Any,
) -> Any:
    """A typer option (or argument) for ``model``'s field ``name``: its default and help text
    come from the field. ``flags`` default to the field's option name; ``default`` overrides the
    field's where the command line spells it otherwise (a comma list, None for 'not given', the
    off state of a --no-X flag)."""
    if default is not _FIELD:
        value = default
    elif model.model_fields[name].is_required():
        value = ...
    else:
        value = field_default(model, name)
    help_text = field_help(model, name)
    if argument:
        return typer.Argument(value, help=help_text, **options)
    return typer.Option(value, *(flags or (option_name(model, name),)), help=help_text, **options)


ProjectOpt = Annotated[
    Path | None,
    typer.Option(
        "--project",
        "-p",
        envvar="VDIR_PROJECT",
        help="Project folder. Default: the current folder or the nearest parent holding a project.",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one machine-readable JSON result on stdout.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]


def _model_option(name: str, envvar: str, **options: Any) -> Any:
    return typer.Option(
        option_name(ModelChoice, name), envvar=envvar, help=field_help(ModelChoice, name), **options
    )


ModelOpt = Annotated[str | None, _model_option("model", "VDIR_MODEL", show_default=False)]
MotionAdapterOpt = Annotated[
    str | None, _model_option("motion_adapter", "VDIR_MOTION_ADAPTER", show_default=False)
]
VaeOpt = Annotated[str | None, _model_option("vae", "VDIR_VAE", show_default=False)]
DeviceOpt = Annotated[str, _model_option("device", "VDIR_DEVICE")]
DtypeOpt = Annotated[str, _model_option("dtype", "VDIR_DTYPE")]
MemoryOpt = Annotated[
    str,
    typer.Option(
        option_name(RunChoice, "memory"), envvar="VDIR_MEMORY", help=field_help(RunChoice, "memory")
    ),
]
PlanOpt = Annotated[
    bool, typer.Option(option_name(RunChoice, "plan"), help=field_help(RunChoice, "plan"))
]
GpuOpt = Annotated[
    str | None,
    typer.Option(
        option_name(RunChoice, "gpu"), help=field_help(RunChoice, "gpu"), show_default=False
    ),
]
DEFAULT_MEMORY = field_default(RunChoice, "memory")
DEFAULT_DEVICE = field_default(ModelChoice, "device")
DEFAULT_DTYPE = field_default(ModelChoice, "dtype")


def make_output(json_mode: bool, quiet: bool) -> Output:
    if json_mode:
        return Output(mode="json")
    if quiet:
        return Output(mode="quiet")
    return Output(mode="human")


def run_stage(stage: Any, project: Path | None, request: Any, output: Output) -> None:
    """Check the request (a wrong option is reported before a missing project), find the
    project, run the stage, print its outcome."""
    from videodirector_cli.project.store import Project

    request.check()
    outcome = stage(Project.find(project), request, output)
    output.result(outcome.data, outcome.human)

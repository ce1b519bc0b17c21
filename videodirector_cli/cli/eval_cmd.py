"""`vdir eval [NAME]`: background PSNR, reconstruction PSNR and smoothness of your own edits."""

from __future__ import annotations

import typer

from videodirector_cli.cli.app import handles_errors
from videodirector_cli.cli.options import (
    DEFAULT_DEVICE,
    DEFAULT_DTYPE,
    DeviceOpt,
    DtypeOpt,
    JsonOpt,
    ProjectOpt,
    QuietOpt,
    make_output,
    run_stage,
    setting,
)
from videodirector_cli.settings.evaluate import EvalRequest
from videodirector_cli.settings.model import ModelChoice


@handles_errors
def evaluate(
    name: str | None = setting(
        EvalRequest, "name", argument=True, metavar="NAME", show_default=False
    ),
    dilate: int = setting(EvalRequest, "dilate", metavar="PX"),
    inversion: bool = setting(EvalRequest, "inversion", "--inversion/--no-inversion"),
    device: DeviceOpt = DEFAULT_DEVICE,
    dtype: DtypeOpt = DEFAULT_DTYPE,
    project: ProjectOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Measure edits without ground truth: background PSNR against the source outside the
    mask (needs vdir mask), object PSNR inside it, temporal smoothness of edit and source, and
    the inversion's reconstruction PSNR. Reads only; writes nothing."""
    from videodirector_cli.stages.evaluate import run_eval

    output = make_output(json_output, quiet)
    choice = ModelChoice(device=device, dtype=dtype)
    request = EvalRequest(name=name, dilate=dilate, inversion=inversion, model=choice)
    run_stage(run_eval, project, request, output)


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)

"""`vdir eval [NAME]`: background PSNR, reconstruction PSNR and smoothness of your own edits."""

from __future__ import annotations

from typing import Annotated

import typer

from videodirector_cli.cli.app import handles_errors
from videodirector_cli.cli.options import (
    DeviceOpt,
    DtypeOpt,
    JsonOpt,
    ProjectOpt,
    QuietOpt,
    make_output,
)


@handles_errors
def evaluate(
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME",
            help="The edit to measure. Default: every up-to-date edit (or only the current "
            "inversion when there is no edit yet).",
            show_default=False,
        ),
    ] = None,
    dilate: Annotated[
        int,
        typer.Option(
            "--dilate",
            metavar="PX",
            help="Grow the mask by PX pixels before measuring the background, to leave out the "
            "edge band a changed silhouette may cover.",
        ),
    ] = 0,
    inversion: Annotated[
        bool,
        typer.Option(
            "--inversion/--no-inversion",
            help="Also report the inversion's reconstruction PSNR (decodes it with the "
            "inversion's model unless vdir invert recorded it).",
        ),
    ] = True,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    project: ProjectOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Measure edits without ground truth: background PSNR against the source outside the
    mask (needs vdir mask), object PSNR inside it, temporal smoothness of edit and source, and
    the inversion's reconstruction PSNR. Reads only; writes nothing."""
    from videodirector_cli.project.store import Project
    from videodirector_cli.stages.evaluate import EvalRequest, run_eval

    output = make_output(json_output, quiet)
    request = EvalRequest(name=name, dilate=dilate, inversion=inversion, device=device, dtype=dtype)
    request.check()
    outcome = run_eval(Project.find(project), request, output)
    output.result(outcome["result"], outcome["human"])


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)

"""`vdir demo`: the whole pipeline on a generated clip with the project's own small model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from videodirector_cli.cli.app import handles_errors
from videodirector_cli.cli.options import DeviceOpt, JsonOpt, QuietOpt, make_output


@handles_errors
def demo(
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            help="Folder for the demo (made if missing). Running the demo again in the same "
            "folder resumes, or finds everything up to date.",
        ),
    ] = Path("vdir-demo"),
    steps: Annotated[
        int,
        typer.Option("--steps", help="DDIM steps (the paper uses 50; 15 keeps the demo short)."),
    ] = 15,
    inner_steps: Annotated[
        int,
        typer.Option(
            "--inner-steps", help="Null-text optimisation updates per step (the paper: 10)."
        ),
    ] = 3,
    device: DeviceOpt = "auto",
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Generate a clip, then init -> mask -> invert -> two edits -> render --compare, offline.

    Uses the project's own small model trained on a procedural world ('toy'): 64x64 frames,
    coloured shapes moving on simple backgrounds. It shows the pipeline; real videos need the
    real AnimateDiff weights (see docs/models.md).
    """
    from videodirector_cli.stages.demo import DemoRequest, run_demo, summary

    output = make_output(json_output, quiet)
    result = run_demo(
        DemoRequest(folder=folder, steps=steps, inner_steps=inner_steps, device=device), output
    )
    output.result(result, summary(result))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

"""`vdir demo`: the whole pipeline on a generated clip with the project's own small model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from videodirector_cli.cli.app import handles_errors
from videodirector_cli.cli.options import (
    DEFAULT_DEVICE,
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    make_output,
    setting,
)
from videodirector_cli.settings.demo import DemoRequest


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
    steps: int = setting(DemoRequest, "steps"),
    inner_steps: int = setting(DemoRequest, "inner_steps"),
    device: DeviceOpt = DEFAULT_DEVICE,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Generate a clip, then init -> mask -> invert -> two edits -> render --compare, offline.

    Uses the project's own small model trained on a procedural world ('toy'): 64x64 frames,
    coloured shapes moving on simple backgrounds. It shows the pipeline; real videos need the
    real AnimateDiff weights (see docs/models.md).
    """
    from videodirector_cli.stages.demo import run_demo

    output = make_output(json_output, quiet)
    request = DemoRequest(steps=steps, inner_steps=inner_steps, device=device)
    outcome = run_demo(folder, request, output)
    output.result(outcome.data, outcome.human)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

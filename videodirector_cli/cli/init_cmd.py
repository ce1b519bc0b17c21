"""`vdir init VIDEO [DIR]`: start a project from a video."""

from __future__ import annotations

from pathlib import Path

import typer

from videodirector_cli.cli.app import handles_errors
from videodirector_cli.cli.options import JsonOpt, QuietOpt, make_output, setting
from videodirector_cli.settings.init import InitRequest


@handles_errors
def init(
    video: Path = setting(InitRequest, "video", argument=True, metavar="VIDEO", show_default=False),
    folder: Path = typer.Argument(
        Path("."),
        metavar="DIR",
        help="Project folder: new, empty, or (with --force) an existing project. "
        "Default: the current folder, like git init.",
    ),
    frames: int = setting(InitRequest, "frames", "--frames", "-n"),
    start: str | None = setting(InitRequest, "start", show_default=False),
    stride: int | None = setting(InitRequest, "stride", show_default=False),
    fps: float | None = setting(InitRequest, "fps", show_default=False),
    size: str = setting(InitRequest, "size"),
    fit: str = setting(InitRequest, "fit"),
    prompt: str | None = setting(InitRequest, "prompt", show_default=False),
    force: bool = setting(InitRequest, "force"),
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Create a project: pick frames from VIDEO and store them losslessly in DIR."""
    from videodirector_cli.stages.init import run_init

    output = make_output(json_output, quiet)
    request = InitRequest(
        video=video,
        frames=frames,
        start=start,
        stride=stride,
        fps=fps,
        size=size,
        fit=fit,
        prompt=prompt,
        force=force,
    )
    outcome = run_init(folder, request, output)
    output.result(outcome.data, outcome.human)


def register(app: typer.Typer) -> None:
    app.command("init")(init)

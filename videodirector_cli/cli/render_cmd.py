"""`vdir render [NAME ...]`: mp4 videos and contact sheets of the source or of edits."""

from __future__ import annotations

from pathlib import Path

import typer

from videodirector_cli.cli.app import handles_errors
from videodirector_cli.cli.options import (
    JsonOpt,
    ProjectOpt,
    QuietOpt,
    make_output,
    run_stage,
    setting,
)
from videodirector_cli.settings.render import RenderRequest


@handles_errors
def render(
    names: list[str] | None = setting(
        RenderRequest, "names", argument=True, default=None, metavar="NAME", show_default=False
    ),
    compare: bool = setting(RenderRequest, "compare"),
    out: Path | None = setting(RenderRequest, "out", "--out", "-o", show_default=False),
    crf: int = setting(RenderRequest, "crf"),
    project: ProjectOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Encode H.264 mp4s (at the source fps / stride) and PNG contact sheets into renders/."""
    from videodirector_cli.stages.render import run_render

    output = make_output(json_output, quiet)
    request = RenderRequest(names=tuple(names or ()), compare=compare, out=out, crf=crf)
    run_stage(run_render, project, request, output)


def register(app: typer.Typer) -> None:
    app.command("render")(render)

"""`vdir render [NAME ...]`: mp4 videos and contact sheets of the source or of edits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from videodirector_cli.cli.app import handles_errors
from videodirector_cli.cli.options import JsonOpt, ProjectOpt, QuietOpt, make_output


@handles_errors
def render(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAME",
            help="What to render: 'source' (the project's frames) or the name of an edit. "
            "Default: every up-to-date edit, or the source when there is none.",
            show_default=False,
        ),
    ] = None,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Also write NAME_compare.mp4: source | mask overlay (when the project has "
            "masks) | edit, side by side, with its contact sheet.",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write the video here instead of renders/ (one NAME only; with --compare, the "
            "comparison). The contact sheet goes beside it as .png.",
            show_default=False,
        ),
    ] = None,
    crf: Annotated[
        int,
        typer.Option("--crf", help="H.264 quality: 0 lossless .. 51 worst; 18 looks lossless."),
    ] = 18,
    project: ProjectOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Encode H.264 mp4s (at the source fps / stride) and PNG contact sheets into renders/."""
    from videodirector_cli.project.store import Project
    from videodirector_cli.stages.render import RenderRequest, run_render

    output = make_output(json_output, quiet)
    request = RenderRequest(names=list(names or []), compare=compare, out=out, crf=crf)
    request.check()
    outcome = run_render(Project.find(project), request, output)
    output.result(outcome.data, outcome.human)


def register(app: typer.Typer) -> None:
    app.command("render")(render)

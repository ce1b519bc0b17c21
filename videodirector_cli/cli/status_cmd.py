"""`vdir status`: every stage's state and the next command to run."""

from __future__ import annotations

import typer

from videodirector_cli.cli.app import handles_errors
from videodirector_cli.cli.options import JsonOpt, ProjectOpt, QuietOpt, make_output


@handles_errors
def status(
    project: ProjectOpt = None, json_output: JsonOpt = False, quiet: QuietOpt = False
) -> None:
    """Show each stage (frames, masks, inversions, edits, renders) as done, stale, missing,
    running or interrupted (with progress), and the next command to run. Never writes."""
    from rich.console import Console

    from videodirector_cli.project.store import Project
    from videodirector_cli.stages.status import project_status, render_table

    output = make_output(json_output, quiet)
    found = Project.find(project)
    report = project_status(found)
    if output.mode == "human":
        # The status report is this command's data, so its human form goes to stdout too.
        Console(highlight=False).print(render_table(report))
    else:
        output.result(report)


def register(app: typer.Typer) -> None:
    app.command("status")(status)

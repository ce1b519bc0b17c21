"""`vdir report`: one HTML page with the source, the mask and every edit playing in sync."""

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
from videodirector_cli.settings.report import ReportRequest


@handles_errors
def report(
    out: Path | None = setting(ReportRequest, "out", metavar="FILE", show_default=False),
    open_page: bool = setting(ReportRequest, "open"),
    dilate: int = setting(ReportRequest, "dilate", metavar="PX"),
    project: ProjectOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a self-contained HTML page of the project: source | mask | each edit playing in
    sync from one control with a frame scrubber; each edit's prompt, settings and vdir eval
    numbers; each inversion's reconstruction PSNR and per-step loss; what is stale. The videos
    go in a folder beside the page; it works from a file:// URL with no network. Takes no lock:
    it runs while edits run and shows what is finished."""
    from videodirector_cli.stages.report import run_report

    output = make_output(json_output, quiet)
    request = ReportRequest(out=out, open=open_page, dilate=dilate)
    run_stage(run_report, project, request, output)


def register(app: typer.Typer) -> None:
    app.command("report")(report)

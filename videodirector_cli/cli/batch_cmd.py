"""`vdir batch PLAN`: run a plan of clips and edits through every stage, resumably."""

from __future__ import annotations

from pathlib import Path

import typer

from videodirector_cli.cli.app import handles_errors
from videodirector_cli.cli.options import JsonOpt, QuietOpt, make_output, setting
from videodirector_cli.settings.batch import BatchRequest


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


@handles_errors
def batch(
    plan: Path = setting(BatchRequest, "plan", argument=True, metavar="PLAN"),
    out: Path | None = setting(BatchRequest, "out", metavar="DIR", show_default=False),
    devices: str | None = setting(
        BatchRequest, "devices", default=None, metavar="DEV,DEV", show_default=False
    ),
    only: str | None = setting(
        BatchRequest, "only", default=None, metavar="CLIP,CLIP", show_default=False
    ),
    ray: str | None = setting(BatchRequest, "ray", metavar="ADDRESS", show_default=False),
    step: str | None = setting(BatchRequest, "steps", default=None, hidden=True),
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run every clip of a plan (TOML, docs/batch.md) through init, mask, invert, its edits,
    render and report, one project per clip in the output folder, then write index.html
    linking every clip's report. What is done is skipped: a rerun after a crash resumes, a
    finished plan reruns in seconds."""
    from videodirector_cli.stages.batch import run_batch

    output = make_output(json_output, quiet)
    request = BatchRequest(
        plan=plan,
        out=out,
        devices=_names(devices),
        only=_names(only),
        ray=ray,
        steps=_names(step),
    )
    outcome = run_batch(request, output)
    output.result(outcome.data, outcome.human)


def register(app: typer.Typer) -> None:
    app.command("batch")(batch)

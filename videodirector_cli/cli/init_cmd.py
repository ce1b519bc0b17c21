"""`vdir init VIDEO [DIR]`: start a project from a video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from videodirector_cli.cli.app import handles_errors
from videodirector_cli.cli.options import JsonOpt, QuietOpt, make_output


@handles_errors
def init(
    video: Annotated[
        Path,
        typer.Argument(
            metavar="VIDEO",
            help="The video: anything ffmpeg reads (mp4, mov, webm, mkv, gif, ...). Audio is "
            "ignored; rotation metadata is applied.",
            show_default=False,
        ),
    ],
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            help="Project folder: new, empty, or (with --force) an existing project. "
            "Default: the current folder, like git init.",
        ),
    ] = Path("."),
    frames: Annotated[
        int,
        typer.Option("--frames", "-n", help="How many frames to take (AnimateDiff works on 16)."),
    ] = 16,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            help="First frame: a frame index (--start 12) or a time in seconds, written with an "
            "'s' or a decimal point (--start 1.5s, --start 2s, --start 0.5). A time picks the "
            "frame on screen at that instant. Default: the first frame.",
            show_default=False,
        ),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(
            "--stride",
            help="Take every N-th frame (default 1). The renders play at the source fps / N.",
            show_default=False,
        ),
    ] = None,
    fps: Annotated[
        float | None,
        typer.Option(
            "--fps",
            help="Instead of --stride: sample the video at this rate (frames on screen at "
            "start, start + 1/fps, ...); right for variable-frame-rate phone videos.",
            show_default=False,
        ),
    ] = None,
    size: Annotated[
        str,
        typer.Option(
            "--size",
            help="Working size: 512 (a square) or WIDTHxHEIGHT such as 768x432. Sides are "
            "multiples of 8 between 64 and 2048.",
        ),
    ] = "512",
    fit: Annotated[
        str,
        typer.Option(
            "--fit",
            help="How to reach --size when the aspect ratio differs: crop (the centre), pad "
            "(black bars) or stretch.",
        ),
    ] = "crop",
    prompt: Annotated[
        str | None,
        typer.Option(
            "--prompt",
            help="A description of the source clip ('a brown bear walking on rocks'); the "
            "inversion reconstructs the video from it.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Start an existing project over: its frames, masks, inversions, edits and "
            "renders are removed once the new video has decoded fine.",
        ),
    ] = False,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Create a project: pick frames from VIDEO and store them losslessly in DIR."""
    from videodirector_cli.stages.init import InitRequest, init_project

    output = make_output(json_output, quiet)
    request = InitRequest(
        video=video,
        folder=folder,
        frames=frames,
        start=start,
        stride=stride,
        fps=fps,
        size=size,
        fit=fit,
        prompt=prompt,
        force=force,
    )
    outcome = init_project(request, output)
    output.result(outcome.data, outcome.human)


def register(app: typer.Typer) -> None:
    app.command("init")(init)

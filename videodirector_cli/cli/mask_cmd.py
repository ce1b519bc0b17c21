"""`vdir mask`: per-frame masks of what the edit may change (SAM2, imported, or a static shape)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from videodirector_cli.cli.app import handles_errors
from videodirector_cli.cli.options import DeviceOpt, JsonOpt, ProjectOpt, QuietOpt, make_output


@handles_errors
def mask(
    point: Annotated[
        list[str] | None,
        typer.Option(
            "--point",
            help="X,Y[,LABEL] prompt for SAM2, repeatable. LABEL 1 (default) = on the object, "
            "0 = not on it. In frame pixels.",
            show_default=False,
        ),
    ] = None,
    box: Annotated[
        str | None,
        typer.Option(
            "--box",
            help="X0,Y0,X1,Y1 box around the object (top-left, bottom-right), for SAM2 or, with "
            "--no-sam2, as the mask itself. In frame pixels.",
            show_default=False,
        ),
    ] = None,
    frame: Annotated[
        int | None,
        typer.Option(
            "--frame",
            help="0-based frame the --point/--box prompts refer to (default 0); SAM2 tracks "
            "forwards and backwards from it.",
            show_default=False,
        ),
    ] = None,
    from_dir: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Import your own masks instead: a folder with one PNG/JPEG per frame (natural "
            "name order, any size; resized to the frames and binarised).",
            show_default=False,
        ),
    ] = None,
    no_sam2: Annotated[
        bool,
        typer.Option(
            "--no-sam2",
            help="Without SAM2 weights: use the --box (or its inscribed ellipse, see --shape) as "
            "the same mask on every frame. A crude fallback for objects that stay put.",
        ),
    ] = False,
    shape: Annotated[
        str | None,
        typer.Option(
            "--shape",
            help="With --no-sam2: 'box' (default) or 'ellipse' inscribed in the box.",
            show_default=False,
        ),
    ] = None,
    ellipse: Annotated[
        bool | None,
        typer.Option(
            "--ellipse/--no-ellipse",
            help="OR each mask with the ellipse fitted to its largest region (paper supp. III). "
            "Default: on for SAM2 and imported masks, off for --no-sam2 shapes.",
            show_default=False,
        ),
    ] = None,
    sam2: Annotated[
        str | None,
        typer.Option(
            "--sam2",
            help="SAM2.1 size: tiny (default), small, base-plus or large (hub ids "
            "facebook/sam2.1-hiera-*; read from the Hugging Face cache, fetched if missing and the "
            "hub is reachable). 'random' = random weights, for tests only.",
            show_default=False,
        ),
    ] = None,
    sam2_checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--sam2-checkpoint",
            help="A local SAM2 checkpoint file (.pt) instead of the hub, e.g. sam2.1_hiera_large.pt.",
            show_default=False,
        ),
    ] = None,
    sam2_config: Annotated[
        str | None,
        typer.Option(
            "--sam2-config",
            help="Config for --sam2-checkpoint, e.g. sam2.1_hiera_l (default: from the file name).",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "auto",
    project: ProjectOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Make one mask per frame of the object to edit, with a preview (masks/preview.png, .mp4).

    Coordinates are pixels of the project's frames (frames/*.png): x right, y down, origin at
    the top-left corner, so a WxH frame spans [0,W]x[0,H].

    Examples: vdir mask --point 250,300 --point 40,60,0 | vdir mask --box 100,80,400,420
    --frame 5 | vdir mask --from my_masks/ | vdir mask --box 100,80,400,420 --no-sam2
    """
    from videodirector_cli.masks.shapes import parse_box, parse_point
    from videodirector_cli.project.store import Project
    from videodirector_cli.stages.mask import MaskRequest, check_request, run_mask

    output = make_output(json_output, quiet)
    request = MaskRequest(
        points=[parse_point(text) for text in point or []],
        box=parse_box(box) if box is not None else None,
        frame=frame,
        from_dir=from_dir,
        no_sam2=no_sam2,
        shape=shape,
        ellipse=ellipse,
        sam2_size=sam2,
        sam2_checkpoint=sam2_checkpoint,
        sam2_config=sam2_config,
        device=device,
    )
    check_request(request)
    outcome = run_mask(Project.find(project), request, output)
    output.result(outcome.data, outcome.human)


def register(app: typer.Typer) -> None:
    app.command("mask")(mask)

"""`vdir mask`: per-frame masks of what the edit may change (SAM2, imported, or a static shape)."""

from __future__ import annotations

from pathlib import Path

import typer

from videodirector_cli.cli.app import handles_errors
from videodirector_cli.cli.options import (
    DEFAULT_DEVICE,
    DeviceOpt,
    JsonOpt,
    ProjectOpt,
    QuietOpt,
    make_output,
    run_stage,
    setting,
)
from videodirector_cli.settings.mask import MaskRequest


@handles_errors
def mask(
    point: list[str] | None = setting(MaskRequest, "points", default=None, show_default=False),
    box: str | None = setting(MaskRequest, "box", show_default=False),
    frame: int | None = setting(MaskRequest, "frame", show_default=False),
    from_dir: Path | None = setting(MaskRequest, "from_dir", show_default=False),
    no_sam2: bool = setting(MaskRequest, "no_sam2"),
    shape: str | None = setting(MaskRequest, "shape", show_default=False),
    ellipse: bool | None = setting(
        MaskRequest, "ellipse", "--ellipse/--no-ellipse", show_default=False
    ),
    sam2: str | None = setting(MaskRequest, "sam2_size", show_default=False),
    sam2_checkpoint: Path | None = setting(MaskRequest, "sam2_checkpoint", show_default=False),
    sam2_config: str | None = setting(MaskRequest, "sam2_config", show_default=False),
    device: DeviceOpt = DEFAULT_DEVICE,
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
    from videodirector_cli.stages.mask import run_mask

    output = make_output(json_output, quiet)
    request = MaskRequest.of(
        points=tuple(parse_point(text) for text in point or []),
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
    run_stage(run_mask, project, request, output)


def register(app: typer.Typer) -> None:
    app.command("mask")(mask)

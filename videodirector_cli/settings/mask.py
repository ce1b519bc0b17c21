"""`vdir mask`'s request: SAM2 prompts, imported masks or a static shape, and the ellipse."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from videodirector_cli.errors import UsageError
from videodirector_cli.settings.base import Settings, in_range
from videodirector_cli.settings.init import MAX_FRAMES
from videodirector_cli.settings.model import device_field

MAX_PIXELS = 1 << 20


@dataclass(frozen=True)
class Point:
    """A click in frame pixels (x right, y down)."""

    x: float
    y: float
    label: int = 1
    """1: on the object; 0: not on the object (a negative click)."""


@dataclass(frozen=True)
class Box:
    """Top-left (x0, y0) and bottom-right (x1, y1) corners in frame pixels."""

    x0: float
    y0: float
    x1: float
    y1: float

    def as_list(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]


class MaskRequest(Settings):
    """What the user asked `vdir mask` for: exactly one of SAM2 prompts, --from, --no-sam2."""

    points: tuple[Point, ...] = Field(
        (),
        description="X,Y[,LABEL] prompt for SAM2, repeatable. LABEL 1 (default) = on the object, "
        "0 = not on it. In frame pixels.",
        json_schema_extra={"option": "--point"},
    )
    box: Box | None = Field(
        None,
        description="X0,Y0,X1,Y1 box around the object (top-left, bottom-right), for SAM2 or, "
        "with --no-sam2, as the mask itself. In frame pixels.",
    )
    frame: int | None = Field(
        None,
        description="0-based frame the --point/--box prompts refer to (default 0); SAM2 tracks "
        "forwards and backwards from it.",
    )
    from_dir: Path | None = Field(
        None,
        description="Import your own masks instead: a folder with one PNG/JPEG per frame "
        "(natural name order, any size; resized to the frames and binarised).",
        json_schema_extra={"option": "--from"},
    )
    no_sam2: bool = Field(
        False,
        description="Without SAM2 weights: use the --box (or its inscribed ellipse, see "
        "--shape) as the same mask on every frame. A crude fallback for objects that stay put.",
    )
    shape: Literal["box", "ellipse"] | None = Field(
        None, description="With --no-sam2: 'box' (default) or 'ellipse' inscribed in the box."
    )
    ellipse: bool | None = Field(
        None,
        description="OR each mask with the ellipse fitted to its largest region (paper supp. "
        "III). Default: on for SAM2 and imported masks, off for --no-sam2 shapes.",
    )
    sam2_size: str | None = Field(
        None,
        description="SAM2.1 size: tiny (default), small, base-plus or large (hub ids "
        "facebook/sam2.1-hiera-*; read from the Hugging Face cache, fetched if missing and the "
        "hub is reachable). 'random' = random weights, for tests only.",
        json_schema_extra={"option": "--sam2"},
    )
    sam2_checkpoint: Path | None = Field(
        None,
        description="A local SAM2 checkpoint file (.pt) instead of the hub, e.g. "
        "sam2.1_hiera_large.pt.",
    )
    sam2_config: str | None = Field(
        None,
        description="Config for --sam2-checkpoint, e.g. sam2.1_hiera_l (default: from the file "
        "name).",
    )
    sam2_image_size: int | None = Field(
        None,
        description="SAM2's input size, with random weights only (small keeps CPU tests fast). "
        "Not a command-line option.",
    )
    device: str = device_field()

    @property
    def method(self) -> str:
        if self.from_dir is not None:
            return "import"
        if self.no_sam2:
            return "shape"
        return "sam2"

    @property
    def uses_ellipse(self) -> bool:
        return self.ellipse if self.ellipse is not None else self.method != "shape"

    def check(self) -> None:
        """Mode rules that need no project: exactly one of SAM2 prompts, --from, --no-sam2 --box."""
        in_range("--frame", self.frame, 0, MAX_FRAMES, hint="a 0-based frame index")
        for point in self.points:
            for value in (point.x, point.y):
                in_range("--point", value, -MAX_PIXELS, MAX_PIXELS, hint="X,Y in frame pixels")
        if self.box is not None:
            for value in self.box.as_list():
                in_range("--box", value, -MAX_PIXELS, MAX_PIXELS, hint="in frame pixels")
        sam2_options = (
            self.sam2_size is not None
            or self.sam2_checkpoint is not None
            or self.sam2_config is not None
        )
        if self.from_dir is not None:
            if self.points or self.box is not None or self.no_sam2:
                raise UsageError(
                    "--from imports masks: it cannot be combined with --point, --box or --no-sam2"
                )
        elif self.no_sam2:
            if self.points:
                raise UsageError(
                    "--no-sam2 draws a box or ellipse: --point needs SAM2",
                    hint="use --box X0,Y0,X1,Y1 --no-sam2, or drop --no-sam2",
                )
            if self.box is None:
                raise UsageError("--no-sam2 needs --box X0,Y0,X1,Y1")
        elif not self.points and self.box is None:
            raise UsageError(
                "say what to mask",
                hint="--point X,Y (repeatable), --box X0,Y0,X1,Y1, --from DIR, or --box ... "
                "--no-sam2",
            )
        if self.method != "sam2":
            if self.frame is not None:
                raise UsageError(
                    "--frame only applies to SAM2 prompts (--point/--box without --no-sam2)"
                )
            if sam2_options:
                raise UsageError(
                    "--sam2, --sam2-checkpoint and --sam2-config only apply to SAM2 prompts"
                )
        if self.shape is not None and self.method != "shape":
            raise UsageError("--shape only applies with --no-sam2")

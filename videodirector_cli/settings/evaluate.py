"""`vdir eval`'s request: which edit, how much margin around the mask, and the inversion."""

from __future__ import annotations

from pydantic import Field

from videodirector_cli.errors import UsageError
from videodirector_cli.settings.base import Settings, in_range
from videodirector_cli.settings.model import ModelChoice


class EvalRequest(Settings):
    name: str | None = Field(
        None,
        description="The edit to measure. Default: every up-to-date edit (or only the current "
        "inversion when there is no edit yet).",
    )
    dilate: int = Field(
        0,
        description="Grow the mask by PX pixels before measuring the background, to leave out "
        "the edge band a changed silhouette may cover.",
    )
    inversion: bool = Field(
        True,
        description="Also report the inversion's reconstruction PSNR (decodes it with the "
        "inversion's model unless vdir invert recorded it).",
    )
    model: ModelChoice = Field(
        default_factory=ModelChoice,
        description="Where to decode an inversion without a recorded report: the inversion's "
        "own weights unless named here (then they must be the same model).",
    )

    def check(self) -> None:
        if self.dilate < 0:
            raise UsageError(f"--dilate must be 0 or more pixels, not {self.dilate}")
        in_range("--dilate", self.dilate, 0, 512, hint="pixels around the mask")

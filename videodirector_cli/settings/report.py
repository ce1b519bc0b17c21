"""`vdir report`'s request: where the page goes and whether to open it."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from videodirector_cli.errors import UsageError
from videodirector_cli.settings.base import Settings


class ReportRequest(Settings):
    out: Path | None = Field(
        None,
        description="Write the page here (an .html file); its videos go in the folder "
        "NAME_media beside it. Default: report/index.html in the project.",
    )
    open: bool = Field(
        False,
        description="Open the page in the default web browser when it is written.",
        json_schema_extra={"option": "--open"},
    )
    dilate: int = Field(
        0,
        description="Grow the mask by PX pixels before measuring an edit's background PSNR "
        "(as vdir eval --dilate).",
    )

    def check(self) -> None:
        if self.dilate < 0:
            raise UsageError(f"--dilate must be 0 or more pixels, not {self.dilate}")
        if self.out is not None:
            if self.out.suffix.lower() not in (".html", ".htm"):
                raise UsageError(f"--out {self.out} must end in .html")
            if self.out.is_dir():
                raise UsageError(
                    f"--out {self.out} is a folder", hint="give a file name ending in .html"
                )

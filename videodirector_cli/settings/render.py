"""`vdir render`'s request: what to render, side by side or not, where, at what quality."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from videodirector_cli.errors import UsageError
from videodirector_cli.settings.base import Settings


class RenderRequest(Settings):
    names: tuple[str, ...] = Field(
        (),
        description="What to render: 'source' (the project's frames) or the name of an edit. "
        "Default: every up-to-date edit, or the source when there is none.",
    )
    compare: bool = Field(
        False,
        description="Also write NAME_compare.mp4: source | mask overlay (when the project has "
        "masks) | edit, side by side, with its contact sheet.",
    )
    out: Path | None = Field(
        None,
        description="Write the video here instead of renders/ (one NAME, or none when there is "
        "one edit, or only the source, to render; with --compare, the comparison). The contact sheet goes beside it as .png.",
    )
    crf: int = Field(18, description="H.264 quality: 0 lossless .. 51 worst; 18 looks lossless.")

    def check(self) -> None:
        if not 0 <= self.crf <= 51:
            raise UsageError(f"--crf {self.crf} is outside 0..51", hint="18 is visually lossless")
        if self.out is not None:
            if len(self.names) > 1:
                raise UsageError(
                    "--out takes one NAME (or none when the project has one thing to render)",
                    hint="e.g. vdir render tiger --out tiger.mp4",
                )
            if self.out.suffix.lower() != ".mp4":
                raise UsageError(f"--out {self.out} must end in .mp4")
            if self.out.exists() and self.out.is_dir():
                raise UsageError(
                    f"--out {self.out} is a folder", hint="give a file name ending in .mp4"
                )

"""`vdir init`'s request: which frames of the video, at what size, with what prompt."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from videodirector_cli.settings.base import Settings, in_range

MAX_FRAMES = 100_000
"""More frames than any clip vdir can invert; a larger --frames or --stride is a typo."""
MAX_FPS = 1000.0


class InitRequest(Settings):
    """What the user asked `vdir init` for (the folder is the stage's own argument)."""

    video: Path = Field(
        description="The video: anything ffmpeg reads (mp4, mov, webm, mkv, gif, ...). Audio is "
        "ignored; rotation metadata is applied."
    )
    frames: int = Field(16, description="How many frames to take (AnimateDiff works on 16).")
    start: str | None = Field(
        None,
        description="First frame: a frame index (--start 12) or a time in seconds, written with "
        "an 's' or a decimal point (--start 1.5s, --start 2s, --start 0.5). A time picks the "
        "frame on screen at that instant. Default: the first frame.",
    )
    stride: int | None = Field(
        None,
        description="Take every N-th frame (default 1). The renders play at the source fps / N.",
    )
    fps: float | None = Field(
        None,
        description="Instead of --stride: sample the video at this rate (frames on screen at "
        "start, start + 1/fps, ...); right for variable-frame-rate phone videos.",
    )
    size: str = Field(
        "512",
        description="Working size: 512 (a square) or WIDTHxHEIGHT such as 768x432. Sides are "
        "multiples of 8 between 64 and 2048.",
    )
    fit: str = Field(
        "crop",
        description="How to reach --size when the aspect ratio differs: crop (the centre), pad "
        "(black bars) or stretch.",
    )
    prompt: str | None = Field(
        None,
        description="A description of the source clip ('a brown bear walking on rocks'); the "
        "inversion reconstructs the video from it.",
    )
    force: bool = Field(
        False,
        description="Start an existing project over: its frames, masks, inversions, edits and "
        "renders are removed once the new video has decoded fine.",
    )

    def check(self) -> None:
        from videodirector_cli.media.fit import check_fit, parse_size

        in_range("--frames", self.frames, 1, MAX_FRAMES)
        in_range("--stride", self.stride, 1, MAX_FRAMES)
        in_range("--fps", self.fps, 1e-3, MAX_FPS, hint="a sampling rate in frames per second")
        self.frame_choice()
        parse_size(self.size)
        check_fit(self.fit)

    def frame_choice(self):  # -> media.frame_choice.FrameChoice
        from videodirector_cli.errors import UsageError
        from videodirector_cli.media.frame_choice import FrameChoice, parse_start

        if self.stride is not None and self.fps is not None:
            raise UsageError(
                "--stride and --fps both choose the frame spacing", hint="give only one of them"
            )
        return FrameChoice(
            count=self.frames, start=parse_start(self.start), stride=self.stride or 1, fps=self.fps
        )

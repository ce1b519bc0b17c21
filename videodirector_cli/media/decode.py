"""Read frames out of any video ffmpeg can read (PyAV), the way a viewer would show them.

Frames come out upright (the container's rotation is applied), as 8-bit RGB whatever the source
bit depth, in presentation order. Times are the frames' own timestamps (pts), relative to the
first frame, so variable-frame-rate clips keep their real timing. Only the chosen frames are
converted to pixels; the rest are decoded and dropped, which keeps memory at the size of the
result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videodirector_cli.errors import InputError
from videodirector_cli.media.frame_choice import FrameChoice, Start, parse_start

__all__ = ["DecodedClip", "FrameChoice", "Start", "VideoInfo", "decode", "parse_start", "probe"]

TIME_EPS = 1e-4
"""Seconds: two times closer than this are the same instant (pts are rounded to the time base)."""

Transform = Callable[[np.ndarray], np.ndarray]


@dataclass
class VideoInfo:
    """What the container says about the video stream (sizes after rotation)."""

    container: str
    codec: str
    width: int
    height: int
    rotation: int
    fps: float
    frame_count: int | None
    pix_fmt: str | None


@dataclass
class DecodedClip:
    info: VideoInfo
    frames: np.ndarray
    """(F, H, W, 3) uint8 RGB, after rotation and the caller's transform."""
    times: list[float]
    """Seconds from the first frame of the video, one per chosen frame."""
    indices: list[int]
    """Position of each chosen frame in presentation order (0 = the first frame)."""
    warnings: list[str] = field(default_factory=list)


def _av_errors() -> tuple[type[BaseException], ...]:
    import av

    return (av.error.FFmpegError, OSError, ValueError)


def _open(path: Path) -> Any:
    import av

    if not path.exists():
        raise InputError(f"{path} does not exist", hint="check the path of the video")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a video file")
    try:
        return av.open(str(path), mode="r")
    except _av_errors() as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(
            f"{path} is not a video ffmpeg can read ({reason})",
            hint="check that the file is a complete video (mp4, mov, webm, mkv, gif, ...)",
        ) from None


def _video_stream(container: Any, path: Path) -> Any:
    import av

    candidates = [
        stream
        for stream in container.streams.video
        if not (stream.disposition & av.stream.Disposition.attached_pic)
    ]
    if not candidates:
        raise InputError(f"{path} has no video stream", hint="is it an audio file or an image?")
    return candidates[0]


def _rate(stream: Any) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and float(rate) > 0:
            return float(rate)
    return None


def _rotation_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns for a display rotation (PyAV reports it counter-clockwise)."""
    return round(rotation / 90) % 4


def _upright_rgb(frame: Any) -> np.ndarray:
    """8-bit RGB in display orientation; swscale converts 10-bit and other formats."""
    array = frame.to_ndarray(format="rgb24")
    turns = _rotation_turns(frame.rotation or 0)
    if turns:
        array = np.ascontiguousarray(np.rot90(array, k=turns))
    return array


@dataclass
class _Candidate:
    index: int
    time: float
    frame: Any
    pixels: np.ndarray | None = None


class _Sampler:
    """Picks frames from the decoded sequence as it streams past, one frame of look-ahead.

    A time target (``--start 1.5s``, ``--fps``) takes the frame on screen at that instant: the
    last frame whose time is not after it. Index targets (``--start 12``, ``--stride``) count
    frames in presentation order.
    """

    def __init__(self, choice: FrameChoice, frame_duration: float) -> None:
        self.choice = choice
        self.frame_duration = frame_duration
        self.chosen: list[_Candidate] = []
        self.previous: _Candidate | None = None

    @property
    def done(self) -> bool:
        return len(self.chosen) >= self.choice.count

    @property
    def anchor(self) -> _Candidate | None:
        return self.chosen[0] if self.chosen else None

    def _next_target_time(self) -> float:
        assert self.anchor is not None and self.choice.fps is not None
        return self.anchor.time + len(self.chosen) / self.choice.fps

    def feed(self, current: _Candidate) -> None:
        start = self.choice.start
        if self.anchor is None:
            if start.seconds is None:
                if current.index == (start.index or 0):
                    self.chosen.append(current)
                    self.previous = current
                    return
            elif current.time > start.seconds + TIME_EPS:
                self.chosen.append(self.previous or current)
        if self.anchor is not None and not self.done:
            if self.choice.fps is not None:
                while not self.done and current.time > self._next_target_time() + TIME_EPS:
                    self.chosen.append(self.previous or current)
            elif (
                current.index > self.anchor.index
                and (current.index - self.anchor.index) % self.choice.stride == 0
            ):
                self.chosen.append(current)
        self.previous = current

    def finish(self) -> None:
        """End of stream: the last frame stays on screen for one frame duration."""
        last = self.previous
        if last is None or self.done:
            return
        shown_until = last.time + self.frame_duration - TIME_EPS
        seconds = self.choice.start.seconds
        if self.anchor is None and seconds is not None and seconds < shown_until:
            self.chosen.append(last)
        if self.anchor is not None and self.choice.fps is not None:
            while not self.done and self._next_target_time() < shown_until:
                self.chosen.append(last)


class _FrameReader:
    """Decoded frames in presentation order; stops at the first damaged packet.

    Demuxing and decoding are separate so that the frames the decoder still holds when the file
    breaks off (frame threading keeps several in flight) are flushed out, not lost.
    """

    def __init__(self, container: Any, stream: Any) -> None:
        self.container = container
        self.stream = stream
        self.damage: str | None = None

    def __iter__(self) -> Iterator[Any]:
        errors = _av_errors()
        try:
            for packet in self.container.demux(self.stream):
                yield from self.stream.decode(packet)  # the last, empty packet flushes
        except errors as exc:
            self.damage = getattr(exc, "strerror", None) or str(exc)
            try:
                yield from self.stream.decode(None)
            except errors:
                return


def probe(path: Path) -> VideoInfo:
    """The container's description of the video (decodes the first frame for its rotation)."""
    return decode(path, FrameChoice(count=1)).info


def _describe(container: Any, stream: Any, first: Any) -> VideoInfo:
    codec = stream.codec_context.name
    width, height = stream.codec_context.width, stream.codec_context.height
    rotation = round(float(first.rotation or 0))
    if _rotation_turns(rotation) % 2:
        width, height = height, width
    fps = _rate(stream)
    return VideoInfo(
        container=container.format.name,
        codec=codec,
        width=width,
        height=height,
        rotation=rotation,
        fps=fps or 0.0,
        frame_count=stream.frames or None,
        pix_fmt=stream.codec_context.pix_fmt,
    )


def decode(
    path: Path,
    choice: FrameChoice,
    transform: Transform | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> DecodedClip:
    """Decode ``choice.count`` frames of ``path``; ``transform`` maps each upright RGB frame.

    Raises InputError with what the video has when it cannot give what was asked for.
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        return _decode_stream(container, stream, path, choice, transform, on_frame)
    finally:
        container.close()


def _decode_stream(
    container: Any,
    stream: Any,
    path: Path,
    choice: FrameChoice,
    transform: Transform | None,
    on_frame: Callable[[int], None] | None,
) -> DecodedClip:
    nominal_fps = _rate(stream)
    sampler = _Sampler(choice, frame_duration=1.0 / nominal_fps if nominal_fps else 0.04)
    converted = 0
    first_frame: Any | None = None
    origin: float | None = None
    decoded = 0
    reached_end = False

    def convert_new_choices() -> None:
        nonlocal converted
        for candidate in sampler.chosen[converted:]:
            if candidate.pixels is None:  # a frame chosen twice (--fps) is converted once
                rgb = _upright_rgb(candidate.frame)
                candidate.pixels = transform(rgb) if transform else rgb
                candidate.frame = None  # keep pixels only, not the decoded picture
            converted += 1
            if on_frame is not None:
                on_frame(converted)

    frames = _FrameReader(container, stream)
    for frame in frames:
        if first_frame is None:
            first_frame = frame
        raw_time = frame.time
        if raw_time is None:
            raw_time = decoded / (nominal_fps or 25.0)
        if origin is None:
            origin = raw_time
        sampler.feed(_Candidate(decoded, raw_time - origin, frame))
        decoded += 1
        convert_new_choices()
        if sampler.done:
            break
    else:
        reached_end = True
    damage = frames.damage
    if reached_end or damage:
        sampler.finish()
        convert_new_choices()

    if first_frame is None:
        detail = f" ({damage})" if damage else ""
        raise InputError(
            f"{path} has no decodable video frame{detail}",
            hint="the file may be truncated or damaged; try re-exporting it",
        )
    info = _describe(container, stream, first_frame)
    if not info.fps:
        info.fps = _measured_fps(sampler) or 25.0
    if not sampler.done:
        _explain_shortage(path, choice, sampler, decoded, info, damage)
    if reached_end and info.frame_count is None:
        info.frame_count = decoded
    warnings = []
    if damage:
        warnings.append(
            f"{path.name} is damaged after frame {decoded} ({damage}); using frames before it"
        )
    chosen = sampler.chosen[: choice.count]
    return DecodedClip(
        info=info,
        frames=np.stack([c.pixels for c in chosen if c.pixels is not None]),
        times=[round(c.time, 6) for c in chosen],
        indices=[c.index for c in chosen],
        warnings=warnings,
    )


def _measured_fps(sampler: _Sampler) -> float | None:
    if sampler.previous is None or sampler.previous.index == 0 or sampler.previous.time <= 0:
        return None
    return sampler.previous.index / sampler.previous.time


def _explain_shortage(
    path: Path,
    choice: FrameChoice,
    sampler: _Sampler,
    decoded: int,
    info: VideoInfo,
    damage: str | None,
) -> None:
    """Raise an InputError that says what the video has and what would fit."""
    if damage:
        damaged = f" (decoding stopped early: {damage})"
    elif info.frame_count and info.frame_count > decoded:
        damaged = f" (the container lists {info.frame_count}: the file looks truncated)"
    else:
        damaged = ""
    duration = (sampler.previous.time if sampler.previous else 0.0) + 1.0 / (info.fps or 25.0)
    have = f"{path.name} has {decoded} decodable frames ({duration:.2f} s at {info.fps:.3g} fps){damaged}"
    anchor = sampler.anchor
    if anchor is None:
        raise InputError(
            f"--start {choice.start.describe()} is past the end: {have}",
            hint="choose an earlier --start",
        )
    if choice.fps is not None:
        span = duration - anchor.time
        fitting = max(1, int(span * choice.fps + TIME_EPS))
        raise InputError(
            f"{choice.count} frames at --fps {choice.fps:g} need {choice.count / choice.fps:.2f} s "
            f"from {anchor.time:.2f} s, but {have}",
            hint=f"use --frames {fitting}, a lower --fps, or an earlier --start",
        )
    available = decoded - anchor.index
    fitting = -(-available // choice.stride)
    hint = f"use --frames {fitting}"
    if choice.stride > 1 or choice.count > 1:
        widest = (available - 1) // (choice.count - 1) if choice.count > 1 else 0
        if 1 <= widest < choice.stride:
            hint += f", --stride {widest}"
    hint += " or an earlier --start" if anchor.index else ""
    raise InputError(
        f"asked for {choice.count} frames every {choice.stride} from frame {anchor.index}, "
        f"but {have}",
        hint=hint,
    )

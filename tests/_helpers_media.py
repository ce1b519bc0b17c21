"""Synthetic videos made with PyAV for the media and CLI tests.

Every frame carries its own index as an 8-bit code drawn in the central square (4x4 cells: the
top two rows are the bits, the bottom-left cell is a red orientation mark), so a test can tell
which source frame ended up where, after rotation, a centre crop, or a lossy codec.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

CLIPS = Path(__file__).resolve().parent / "data" / "clips"
"""The two real clips (bear, blackswan) with their masks, inside the repository (README there)."""

GRID = 4
ON, OFF, RED = (235, 235, 235), (20, 20, 20), (220, 30, 30)


def pattern_frame(index: int, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 upright frame whose central square encodes ``index``."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[...] = np.linspace(60, 180, width, dtype=np.uint8)[None, :, None]
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    cell = side / GRID
    for row in range(GRID):
        for col in range(GRID):
            slot = row * GRID + col
            if slot < 8:
                color = ON if (index >> slot) & 1 else OFF
            elif (row, col) == (GRID - 1, 0):
                color = RED
            else:
                color = (128, 128, 128)
            y0, y1 = top + round(row * cell), top + round((row + 1) * cell)
            x0, x1 = left + round(col * cell), left + round((col + 1) * cell)
            frame[y0:y1, x0:x1] = color
    return frame


def _cell_mean(image: np.ndarray, row: int, col: int) -> np.ndarray:
    height, width = image.shape[:2]
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    cell = side / GRID
    cy, cx = top + (row + 0.5) * cell, left + (col + 0.5) * cell
    r = max(1, int(cell / 4))
    patch = image[int(cy) - r : int(cy) + r, int(cx) - r : int(cx) + r]
    return patch.reshape(-1, 3).mean(axis=0)


def read_code(image: np.ndarray) -> int:
    """The index drawn by :func:`pattern_frame` in the central square of ``image``."""
    value = 0
    for slot in range(8):
        if _cell_mean(image, slot // GRID, slot % GRID).mean() > 128:
            value |= 1 << slot
    return value


def upright(image: np.ndarray) -> bool:
    """True when the red orientation mark sits bottom-left, where it was drawn."""
    r, g, b = _cell_mean(image, GRID - 1, 0)
    return r > 150 and g < 100 and b < 100


def make_video(
    path: Path,
    *,
    frames: int = 20,
    width: int = 64,
    height: int = 64,
    fps: int = 24,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    fmt: str | None = None,
    rotation: int = 0,
    times: list[float] | None = None,
    audio: bool = False,
    noise: bool = False,
    faststart: bool = False,
) -> Path:
    """Write a test video; ``width`` x ``height`` is the upright (displayed) size.

    ``rotation`` (counter-clockwise degrees, a multiple of 90) is stored as display-matrix
    metadata with the pixels turned the other way, so a correct reader shows them upright.
    ``times`` (seconds) gives each frame its own timestamp: a variable-frame-rate file.
    """
    import av

    path = Path(path)
    turns = (rotation // 90) % 4
    coded_w, coded_h = (height, width) if turns % 2 else (width, height)
    options = {"movflags": "faststart"} if faststart else {}
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w", format=fmt, options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = coded_w, coded_h, pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "ultrafast"}
        if rotation:
            stream.set_display_rotation(rotation)
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        sound = container.add_stream("aac", rate=44100) if audio else None
        for index in range(frames):
            picture = pattern_frame(index, width, height)
            if noise:
                picture = rng.integers(0, 256, picture.shape, dtype=np.uint8)
            stored = np.ascontiguousarray(np.rot90(picture, k=-turns)) if turns else picture
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            if pix_fmt != "rgb24":
                frame = frame.reformat(format=pix_fmt)
            if times is not None:
                frame.pts = round(times[index] * 1000)
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            _add_audio(container, sound, seconds=frames / fps)
    return path


def _add_audio(container, stream, seconds: float) -> None:
    """A quiet 440 Hz tone: something for the decoder to skip."""
    import av

    sample_rate, chunk = 44100, 1024
    for k in range(int(seconds * sample_rate / chunk) + 1):
        t = (np.arange(chunk) + k * chunk) / sample_rate
        tone = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate = sample_rate
        frame.pts = k * chunk
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def decode_all(path: Path) -> tuple[np.ndarray, list[float], float]:
    """Every frame of ``path`` as RGB, their times (s, from the first frame) and the stream fps."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        arrays, times = [], []
        for frame in container.decode(stream):
            arrays.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time))
        fps = float(stream.average_rate)
    return np.stack(arrays), [t - times[0] for t in times], fps

"""H.264 mp4 writing with PyAV (its wheel bundles libx264)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from videodirector_cli.project.atomic import atomic_path


def _even(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: pad the last row/column by edge replication."""
    _, height, width, _ = frames.shape
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def write_mp4(path: Path, frames: np.ndarray, fps: float, crf: int = 18) -> None:
    """Write (F, H, W, 3) uint8 RGB frames as an H.264 mp4, atomically."""
    import av

    frames = _even(np.ascontiguousarray(frames, dtype=np.uint8))
    _, height, width, _ = frames.shape
    with (
        atomic_path(path, suffix=".mp4") as tmp,
        av.open(str(tmp), mode="w", format="mp4") as container,
    ):
        stream = container.add_stream("libx264", rate=fps_fraction(fps))
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

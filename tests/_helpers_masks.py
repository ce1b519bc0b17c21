"""Projects with synthetic frames for the mask tests (written directly, no video needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _helpers_media import CLIPS
from _helpers_project import frames_record

from videodirector_cli.media.frames import write_png
from videodirector_cli.project.fingerprint import hash_files
from videodirector_cli.project.manifest import SourceInfo
from videodirector_cli.project.store import Project


def clip_dir(name: str) -> Path:
    """One of the real test clips in tests/data/clips (fails, never skips, when it is missing)."""
    folder = CLIPS / name
    assert folder.is_dir(), f"test clip {name!r} not found at {folder}"
    return folder


def moving_disk_frames(count: int = 4, size: int = 64, radius: int = 10) -> np.ndarray:
    """(F, H, W, 3) uint8: a bright disk moving right over a dark textured background."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60, size=(count, size, size, 3), dtype=np.uint8)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    for index in range(count):
        cx, cy = size * 0.3 + index * 4, size * 0.5
        disk = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
        frames[index][disk] = (230, 200, 40)
    return frames


def make_project(root: Path, frames: np.ndarray, fps: float = 8.0) -> Project:
    """A project holding ``frames`` as its frames stage, as `vdir init` would leave it."""
    count, height, width, _ = frames.shape
    project = Project.create(root)
    with project.writing("test-init"):
        project.manifest.source = SourceInfo(
            path="synthetic.mp4",
            sha256="0" * 64,
            fps=fps,
            width=width,
            height=height,
            frame_count=count,
            output_fps=fps,
            size=(width, height),
            fit="crop",
        )
        project.manifest.prompt = "a test clip"
        params = frames_record(count, size=(width, height)).params
        with project.stage(("frames", None), params=params, inputs={}) as run:
            for index, frame in enumerate(frames):
                write_png(project.paths.frame(index), frame)
            run.record.outputs["frames"] = hash_files(project.paths.frame_files(count))
    return Project.open(root)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: to prove that nothing changed."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "lock"
    }

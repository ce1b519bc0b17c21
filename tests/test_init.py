"""`vdir init`: what it stores, where, and what it refuses (leaving everything as it was)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _helpers_media import CLIPS, decode_all, make_video, read_code, upright
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.media.frames import read_frames
from videodirector_cli.project.fingerprint import hash_file, hash_files
from videodirector_cli.project.paths import ProjectPaths
from videodirector_cli.project.store import Project

BEAR = CLIPS / "bear" / "bear.mp4"


def vdir(*args: str) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: 'unchanged' means this is equal."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_init_real_clip_stores_lossless_frames_and_the_source(tmp_path: Path) -> None:
    project_dir = tmp_path / "bear"
    result = vdir("init", BEAR, project_dir, "--prompt", "A brown bear", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["frames"] == 16 and data["size"] == [512, 512] and data["fps"] == 24

    project = Project.open(project_dir)
    manifest = project.manifest
    source = manifest.source
    assert manifest.prompt == "A brown bear"
    assert source is not None and source.sha256 == hash_file(BEAR)
    assert (source.codec, source.fps, source.width, source.height) == ("mpeg4", 24.0, 512, 512)
    assert source.frame_indices == list(range(16))
    assert source.frame_times == pytest.approx([i / 24 for i in range(16)], abs=1e-6)
    assert manifest.frames is not None and manifest.frames.status == "done"
    assert manifest.frames.inputs == {"source": source.sha256}
    assert manifest.frames.params.frames == 16
    assert manifest.frames.versions["av"]

    paths = ProjectPaths(project_dir)
    stored = read_frames(paths.frame_files(16))
    reference, _, _ = decode_all(BEAR)
    assert np.array_equal(stored, reference)  # PNG is lossless and 512x512 is not resampled
    assert manifest.frames.outputs["frames"] == hash_files(paths.frame_files(16))


def test_dir_defaults_to_the_current_folder(tmp_path: Path, monkeypatch) -> None:
    video = make_video(tmp_path / "clip.mp4", frames=8)
    here = tmp_path / "work"
    here.mkdir()
    monkeypatch.chdir(here)
    result = vdir("init", video, "--frames", "8", "--size", "64", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert (here / "manifest.json").is_file() and (here / "frames" / "00007.png").is_file()


def test_frame_choice_and_size_are_recorded(tmp_path: Path) -> None:
    video = make_video(tmp_path / "wide.mp4", frames=30, width=192, height=96)
    result = vdir(
        "init", video, tmp_path / "p", "--frames", "5", "--start", "2", "--stride", "3",
        "--size", "128x64", "--fit", "pad", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = Project.open(tmp_path / "p").manifest
    assert manifest.source.frame_indices == [2, 5, 8, 11, 14]
    assert manifest.source.output_fps == pytest.approx(8.0)  # 24 fps / stride 3
    assert manifest.source.size == (128, 64)
    frames = read_frames(ProjectPaths(tmp_path / "p").frame_files(5))
    assert frames.shape == (5, 64, 128, 3)
    assert [read_code(f) for f in frames] == [2, 5, 8, 11, 14]
    assert manifest.frames.params.model_dump(mode="json") == {
        "frames": 5, "start": "frame 2", "stride": 3, "fps": None, "size": [128, 64], "fit": "pad",
    }  # fmt: skip


def test_rotated_odd_sized_source_is_cropped_upright(tmp_path: Path) -> None:
    video = make_video(tmp_path / "phone.mp4", frames=6, width=90, height=150, rotation=90,
                       codec="libx264", pix_fmt="yuv444p")  # fmt: skip
    result = vdir("init", video, tmp_path / "p", "--frames", "6", "--size", "64")
    assert result.exit_code == 0, result.output
    frames = read_frames(ProjectPaths(tmp_path / "p").frame_files(6))
    assert frames.shape == (6, 64, 64, 3)
    assert all(upright(f) for f in frames)
    assert [read_code(f) for f in frames] == list(range(6))
    assert Project.open(tmp_path / "p").manifest.source.rotation == 90


def test_fps_option_on_variable_frame_rate(tmp_path: Path) -> None:
    times = [0.0, 0.03, 0.09, 0.12, 0.18, 0.30, 0.33, 0.36]
    video = make_video(tmp_path / "vfr.mp4", frames=8, times=times, audio=True)
    result = vdir("init", video, tmp_path / "p", "--frames", "6", "--fps", "12.5", "--size", "64")
    assert result.exit_code == 0, result.output
    source = Project.open(tmp_path / "p").manifest.source
    assert source.frame_indices == [0, 1, 3, 4, 5, 7]
    assert source.frame_times == pytest.approx([0.0, 0.03, 0.12, 0.18, 0.30, 0.36], abs=1e-3)
    assert source.output_fps == 12.5


# ---- refusals: non-zero exit, one clear line, nothing changed --------------------------------


def assert_refused(result, code: int, words: str) -> None:
    assert result.exit_code == code, result.output
    assert words in result.stderr
    assert result.stderr.startswith("vdir: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


@pytest.fixture
def short_video(tmp_path: Path) -> Path:
    return make_video(tmp_path / "short.mp4", frames=10)


def test_bad_videos_leave_no_project(tmp_path: Path, short_video: Path) -> None:
    text = tmp_path / "text.mp4"
    text.write_text("not a video")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(short_video.read_bytes()[:300])
    whole = make_video(tmp_path / "fs.mp4", frames=4, noise=True, faststart=True)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(whole.read_bytes()[: whole.read_bytes().find(b"mdat") + 4])
    cases = [
        (tmp_path / "missing.mp4", [], 3, "does not exist"),
        (text, [], 3, "not a video ffmpeg can read"),
        (truncated, [], 3, "truncated.mp4"),
        (empty, [], 3, "no decodable video frame"),
        (short_video, [], 3, "has 10 decodable frames"),
        (short_video, ["--size", "500"], 2, "multiple of 8"),
        (short_video, ["--size", "99999"], 2, "outside 64..2048"),
        (short_video, ["--fit", "zoom"], 2, "--fit"),
        (short_video, ["--stride", "2", "--fps", "5"], 2, "--stride and --fps"),
        (short_video, ["--start", "soon"], 2, "--start"),
    ]
    for video, extra, code, words in cases:
        target = tmp_path / "new"
        assert_refused(vdir("init", video, target, *extra), code, words)
        assert not target.exists(), words
    # an empty folder stays empty
    empty_dir = tmp_path / "empty_dir"
    empty_dir.mkdir()
    assert_refused(vdir("init", text, empty_dir), 3, "not a video")
    assert list(empty_dir.iterdir()) == []


def test_dir_is_a_file_or_non_empty(tmp_path: Path, short_video: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("mine")
    assert_refused(vdir("init", short_video, a_file, "--frames", "4"), 2, "is a file")
    assert a_file.read_text() == "mine"
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert_refused(vdir("init", short_video, busy, "--frames", "4"), 6, "not empty")
    assert snapshot(busy) == {"notes.txt": b"mine"}


def test_init_over_a_project_needs_force(tmp_path: Path, short_video: Path) -> None:
    project_dir = tmp_path / "p"
    first = vdir("init", short_video, project_dir, "--frames", "4", "--size", "64")
    assert first.exit_code == 0, first.output
    before = snapshot(project_dir)
    assert_refused(vdir("init", short_video, project_dir, "--frames", "6"), 6, "already a vdir")
    assert snapshot(project_dir) == before


def test_force_starts_over_only_after_the_new_video_decoded(
    tmp_path: Path, short_video: Path
) -> None:
    project_dir = tmp_path / "p"
    assert vdir("init", short_video, project_dir, "--frames", "8", "--size", "64").exit_code == 0
    paths = ProjectPaths(project_dir)
    (paths.masks_dir).mkdir()
    (paths.masks_dir / "00000.png").write_bytes(b"old mask")
    (project_dir / "my-notes.txt").write_text("kept")
    before = snapshot(project_dir)

    bad = tmp_path / "bad.mp4"
    bad.write_text("garbage")
    assert_refused(vdir("init", bad, project_dir, "--force"), 3, "not a video")
    assert_refused(vdir("init", short_video, project_dir, "--force", "--frames", "50"), 3, "has 10")
    assert snapshot(project_dir) == before

    result = vdir("init", short_video, project_dir, "--force", "--frames", "3", "--size", "64")
    assert result.exit_code == 0, result.output
    assert not paths.masks_dir.exists()
    assert sorted(p.name for p in paths.frames_dir.iterdir()) == [
        "00000.png",
        "00001.png",
        "00002.png",
    ]
    assert (project_dir / "my-notes.txt").read_text() == "kept"
    manifest = Project.open(project_dir).manifest
    assert manifest.frame_count == 3 and manifest.masks is None


def test_force_refuses_a_damaged_manifest(tmp_path: Path, short_video: Path) -> None:
    project_dir = tmp_path / "p"
    assert vdir("init", short_video, project_dir, "--frames", "4", "--size", "64").exit_code == 0
    manifest = project_dir / "manifest.json"
    manifest.write_text('{"tool": "vdir", "schema_version": 1, "frames": ')
    before = snapshot(project_dir)
    assert_refused(vdir("init", short_video, project_dir, "--force", "--frames", "4"), 6, "damaged")
    assert snapshot(project_dir) == before

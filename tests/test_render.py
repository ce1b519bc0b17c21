"""`vdir render`: init -> render round trips, edits, comparisons, staleness, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _helpers_media import CLIPS, decode_all, make_video, read_code
from _helpers_project import edit_record, inversion_files, inversion_record, masks_record
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.media.frames import read_frames, read_rgb, write_mask, write_png
from videodirector_cli.project import lineage
from videodirector_cli.project.fingerprint import hash_files
from videodirector_cli.project.paths import ProjectPaths
from videodirector_cli.project.store import Project

ROUND_TRIP_MAE_LIMIT = 4.0
"""Mean absolute error (0-255) of frames -> H.264 crf 18 -> frames on the real clips: measured
2.48 (bear) and 2.00 (blackswan); at crf 0 they are 1.34 and 1.14: yuv420p chroma
subsampling alone."""


def vdir(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def init(video: Path, folder: Path, *extra) -> Path:
    result = vdir("init", video, folder, *extra)
    assert result.exit_code == 0, result.output
    return folder


def render_json(*args) -> dict:
    result = vdir("render", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("clip", ["bear", "blackswan"])
def test_real_clip_round_trip(tmp_path: Path, clip: str) -> None:
    project_dir = init(CLIPS / clip / f"{clip}.mp4", tmp_path / clip)
    data = render_json("-p", project_dir)
    item = data["renders"][0]
    assert item["name"] == "source" and item["crf"] == 18
    source = Project.open(project_dir).manifest.source
    frames = read_frames(ProjectPaths(project_dir).frame_files(16)).astype(np.float64)
    decoded, times, fps = decode_all(Path(item["video"]))
    assert decoded.shape == frames.shape  # frame count and size kept
    assert fps == pytest.approx(source.output_fps)
    assert times == pytest.approx([t - source.frame_times[0] for t in source.frame_times], abs=1e-3)
    mae = np.abs(decoded - frames).mean()
    assert mae < ROUND_TRIP_MAE_LIMIT, f"{clip}: mean abs error {mae:.2f}"
    sheet = Path(item["sheet"])
    assert sheet.is_file()
    assert read_rgb(sheet).shape == (2 * 256 + 2, 8 * 256 + 7 * 2, 3)  # 16 thumbnails, 8 a row


SYNTHETIC = {
    "odd size": dict(width=77, height=51, codec="ffv1", pix_fmt="yuv444p", fmt="matroska"),
    "10-bit": dict(pix_fmt="yuv420p10le"),
    "rotated": dict(width=96, height=64, rotation=90),
    "with audio": dict(audio=True),
}


@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_synthetic_round_trip_keeps_frames_and_times(tmp_path: Path, name: str) -> None:
    suffix = ".mkv" if SYNTHETIC[name].get("fmt") == "matroska" else ".mp4"
    video = make_video(tmp_path / f"clip{suffix}", frames=20, **SYNTHETIC[name])
    project_dir = init(video, tmp_path / "p", "--frames", "6", "--stride", "3", "--size", "64")
    item = render_json("-p", project_dir, "source")["renders"][0]
    decoded, times, fps = decode_all(Path(item["video"]))
    assert len(decoded) == 6 and fps == pytest.approx(8.0)  # 24 fps / stride 3
    assert [read_code(f) for f in decoded] == [0, 3, 6, 9, 12, 15]
    source = Project.open(project_dir).manifest.source
    assert times == pytest.approx(source.frame_times, abs=1e-3)


def test_variable_frame_rate_renders_at_the_chosen_fps(tmp_path: Path) -> None:
    times = [0.0, 0.03, 0.09, 0.12, 0.18, 0.30, 0.33, 0.36]
    video = make_video(tmp_path / "vfr.mp4", frames=8, times=times)
    project_dir = init(video, tmp_path / "p", "--frames", "6", "--fps", "12.5", "--size", "64")
    item = render_json("-p", project_dir)["renders"][0]
    decoded, rendered_times, fps = decode_all(Path(item["video"]))
    assert fps == pytest.approx(12.5)
    assert [read_code(f) for f in decoded] == [0, 1, 3, 4, 5, 7]
    assert rendered_times == pytest.approx([i / 12.5 for i in range(6)], abs=1e-3)


# ---- edits, comparisons, staleness ---------------------------------------------------------------


def add_edit(project_dir: Path, name: str, shade: int) -> None:
    """What `vdir edit` leaves behind: frames under edits/NAME/frames and a done record."""
    project = Project.open(project_dir)
    paths = project.paths
    count = project.manifest.frame_count
    frames = read_frames(paths.frame_files(count))
    for index, frame in enumerate(frames):
        write_png(paths.edit_frame(name, index), (255 - frame) // 2 + shade)
    with project.writing("test"):
        manifest = project.manifest
        if "k1" not in manifest.inversions:  # an edit is made from an inversion
            manifest.inversions["k1"] = inversion_record(
                inputs=lineage.inputs_for(manifest, ["frames", "masks", "prompt"]),
                outputs={"inversion": inversion_files(project_dir, "k1", b"inversion")},
            )
            manifest.current_inversion = "k1"
        manifest.edits[name] = edit_record(
            inputs=lineage.inputs_for(manifest, ["inversion:k1", "masks"]),
            outputs={"edit": hash_files([paths.edit_frame(name, i) for i in range(count)])},
            inversion="k1",
        )
        project.save()


def add_masks(project_dir: Path) -> None:
    project = Project.open(project_dir)
    paths = project.paths
    count = project.manifest.frame_count
    mask = np.zeros((64, 64), dtype=bool)
    mask[16:48, 16:48] = True
    for index in range(count):
        write_mask(paths.mask(index), mask)
    with project.writing("test"):
        manifest = project.manifest
        frames = lineage.inputs_for(manifest, ["frames"])["frames"]
        manifest.masks = masks_record(frames, hash_files(paths.mask_files(count)))
        project.save()


@pytest.fixture
def small_project(tmp_path: Path) -> Path:
    video = make_video(tmp_path / "clip.mp4", frames=8)
    return init(video, tmp_path / "p", "--frames", "4", "--size", "64")


def test_default_renders_every_done_edit_and_compare_has_three_panels(small_project: Path) -> None:
    add_masks(small_project)
    add_edit(small_project, "tiger", 0)
    add_edit(small_project, "lion", 20)
    data = render_json("-p", small_project, "--compare")
    assert sorted(r["name"] for r in data["renders"]) == ["lion", "tiger"]
    tiger = next(r for r in data["renders"] if r["name"] == "tiger")
    assert tiger["panels"] == 3
    compare, _, _ = decode_all(Path(tiger["compare"]))
    assert compare.shape == (4, 64, 3 * 64 + 2 * 4, 3)
    edit, _, _ = decode_all(Path(tiger["video"]))
    expected = read_frames([ProjectPaths(small_project).edit_frame("tiger", i) for i in range(4)])
    assert np.abs(edit.astype(float) - expected).mean() < ROUND_TRIP_MAE_LIMIT
    # the middle panel is tinted inside the mask and dimmed (to 35 %) outside it
    middle = compare[:, :, 68:132].astype(float)
    source = read_frames(ProjectPaths(small_project).frame_files(4)).astype(float)
    tint = np.array([255, 40, 40], dtype=float)
    inside = 0.65 * source[:, 20:44, 20:44] + 0.35 * tint
    assert np.abs(middle[:, 20:44, 20:44] - inside).mean() < 8
    assert np.abs(middle[:, :8, :8] - 0.35 * source[:, :8, :8]).mean() < 6
    record = Project.open(small_project).manifest.renders["tiger"]
    assert record.status == "done" and set(record.inputs) == {"frames", "edit:tiger", "masks"}
    assert Path(tiger["compare_sheet"]).is_file()


def test_without_masks_the_comparison_has_two_panels(small_project: Path) -> None:
    add_edit(small_project, "tiger", 0)
    item = render_json("-p", small_project, "tiger", "--compare")["renders"][0]
    assert item["panels"] == 2
    assert decode_all(Path(item["compare"]))[0].shape == (4, 64, 2 * 64 + 4, 3)
    record = Project.open(small_project).manifest.renders["tiger"]
    assert record.inputs["masks"] == lineage.NO_MASK


def test_out_writes_where_asked(small_project: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "clip.mp4"
    item = render_json("-p", small_project, "source", "--out", target)["renders"][0]
    assert (
        Path(item["video"]) == target and target.is_file() and target.with_suffix(".png").is_file()
    )
    assert len(decode_all(target)[0]) == 4


def test_changed_edit_files_are_refused_and_a_redone_edit_makes_the_render_stale(
    small_project: Path,
) -> None:
    add_edit(small_project, "tiger", 0)
    render_json("-p", small_project, "tiger")
    renders = ProjectPaths(small_project).renders_dir
    before = {p.name: p.read_bytes() for p in renders.iterdir()}
    manifest_before = (small_project / "manifest.json").read_bytes()

    frame = ProjectPaths(small_project).edit_frame("tiger", 2)
    frame.write_bytes(frame.read_bytes()[:-1] + b"\0")  # tampered by hand
    result = vdir("render", "-p", small_project, "tiger")
    assert result.exit_code == 5 and "changed after vdir edit" in result.stderr
    assert {p.name: p.read_bytes() for p in renders.iterdir()} == before
    assert (small_project / "manifest.json").read_bytes() == manifest_before

    add_edit(small_project, "tiger", 40)  # `vdir edit` ran again
    status = json.loads(vdir("status", "-p", small_project, "--json").stdout)
    render_row = next(r for r in status["stages"] if r["stage"] == "render")
    assert render_row["state"] == "stale" and status["next"] == "vdir render tiger"
    render_json("-p", small_project, "tiger")
    status = json.loads(vdir("status", "-p", small_project, "--json").stdout)
    assert status["next"] is None


def test_stale_edit_is_not_rendered(small_project: Path) -> None:
    add_edit(small_project, "tiger", 0)
    add_masks(small_project)
    project = Project.open(small_project)  # the edit was made with masks that have changed since
    with project.writing("test"):
        project.manifest.edits["tiger"].inputs["masks"] = "an older mask set"
        project.save()
    result = vdir("render", "-p", small_project, "tiger")
    assert result.exit_code == 5 and "stale: its masks changed" in result.stderr
    status = json.loads(vdir("status", "-p", small_project, "--json").stdout)
    (edit,) = [row for row in status["stages"] if row["stage"] == "edit"]
    assert edit["state"] == "stale" and edit["changed"] == ["masks"]  # what changed, as it says
    # by default it is skipped with a warning and the source is rendered instead
    result = vdir("render", "-p", small_project)
    assert result.exit_code == 0 and "skipping edit 'tiger'" in result.stderr


def test_refusals(tmp_path: Path, small_project: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = vdir("render", "-p", empty)
    assert result.exit_code == 6 and "not a vdir project" in result.stderr

    result = vdir("render", "-p", small_project, "ghost")
    assert result.exit_code == 4 and "no edit named 'ghost'" in result.stderr

    for args, words in [
        (["source", "ghost", "--out", "x.mp4"], "--out takes one NAME"),
        (["source", "--out", "x.avi"], ".mp4"),
        (["--crf", "99"], "--crf"),
    ]:
        result = vdir("render", "-p", small_project, *args)
        assert result.exit_code == 2 and words in result.stderr, result.output
    assert not ProjectPaths(small_project).renders_dir.exists()

    project = Project.open(small_project)
    with project.writing("test"):
        project.manifest.frames.status = "running"  # an init that was killed
        project.save()
    result = vdir("render", "-p", small_project)
    assert result.exit_code == 4 and "interrupted" in result.stderr

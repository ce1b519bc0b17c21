"""`vdir mask --from DIR`: the user's own masks, including the shared clips' SAM2 masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _helpers_masks import clip_dir, make_project, moving_disk_frames, snapshot
from PIL import Image
from typer.testing import CliRunner

from videodirector_cli.cli.app import app
from videodirector_cli.errors import InputError
from videodirector_cli.masks.importer import binarise, import_masks, list_mask_files
from videodirector_cli.project.readers import read_project_masks
from videodirector_cli.project.store import Project


def _save(path: Path, array: np.ndarray, **kwargs: object) -> None:
    Image.fromarray(array).save(path, **kwargs)


def test_natural_order_and_other_files_ignored(tmp_path: Path) -> None:
    for name in ("10.png", "2.png", "1.png", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_mask_files(tmp_path)] == ["1.png", "2.png", "10.png"]


def test_binarise_handles_common_mask_kinds() -> None:
    zero_one = np.zeros((8, 8), dtype=np.uint8)
    zero_one[2:5, 2:5] = 1
    assert binarise(Image.fromarray(zero_one)).sum() == 9
    palette_values = np.zeros((8, 8), dtype=np.uint8)
    palette_values[0:2, :] = 3
    palette = Image.fromarray(palette_values, mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 20, 20, 20] + [0] * 756)
    assert binarise(palette).sum() == 16, "any non-zero palette index is an object"
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[:, :4] = 255
    assert binarise(Image.fromarray(rgb)).sum() == 32
    assert not binarise(Image.fromarray(np.zeros((8, 8), dtype=np.uint8))).any()


def test_jpeg_masks_are_resized_and_binarised(tmp_path: Path) -> None:
    truth = np.zeros((3, 40, 60), dtype=np.uint8)
    for index in range(3):
        truth[index, 10:30, 10 + 10 * index : 30 + 10 * index] = 255
    for index in range(3):
        _save(tmp_path / f"m{index}.jpg", truth[index], quality=70)
    masks = import_masks(tmp_path, 3, (30, 20))  # half size
    assert masks.shape == (3, 20, 30) and masks.dtype == bool
    expected = truth[:, ::2, ::2] > 0
    assert (masks != expected).mean() < 0.02


def test_wrong_count_and_unreadable_file_change_nothing(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", moving_disk_frames(count=4))
    good = tmp_path / "good"
    good.mkdir()
    for index in range(4):
        mask = np.zeros((64, 64), dtype=np.uint8)
        mask[10:30, 10 + 5 * index : 30 + 5 * index] = 255
        _save(good / f"{index:04d}.png", mask)
    runner = CliRunner()
    ok = runner.invoke(app, ["mask", "--from", str(good), "-p", str(project.paths.root), "-q"])
    assert ok.exit_code == 0, ok.output
    before = snapshot(project.paths.root)

    three = tmp_path / "three"
    three.mkdir()
    for path in sorted(good.iterdir())[:3]:
        (three / path.name).write_bytes(path.read_bytes())
    result = runner.invoke(app, ["mask", "--from", str(three), "-p", str(project.paths.root)])
    assert result.exit_code == InputError.exit_code
    assert "holds 3 mask images but the project has 4 frames" in result.output
    assert snapshot(project.paths.root) == before

    broken = tmp_path / "broken"
    broken.mkdir()
    for path in sorted(good.iterdir()):
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "0002.png").write_bytes(b"not a png at all")
    result = runner.invoke(app, ["mask", "--from", str(broken), "-p", str(project.paths.root)])
    assert result.exit_code == InputError.exit_code
    assert "cannot read mask" in result.output and "0002.png" in result.output
    assert snapshot(project.paths.root) == before

    missing = runner.invoke(
        app, ["mask", "--from", str(tmp_path / "nope"), "-p", str(project.paths.root)]
    )
    assert missing.exit_code == InputError.exit_code and "does not exist" in missing.output
    assert snapshot(project.paths.root) == before


@pytest.mark.parametrize("clip", ["bear", "blackswan"])
def test_import_shared_clip_masks(tmp_path: Path, clip: str) -> None:
    folder = clip_dir(clip)
    root = tmp_path / clip
    # The masks are 512x512; frames at 256 make the importer resize them.
    made = CliRunner().invoke(
        app, ["init", str(folder / f"{clip}.mp4"), str(root), "--size", "256", "-q"]
    )
    assert made.exit_code == 0, made.output
    project = Project.open(root)
    assert project.manifest.frame_count == 16
    source = np.stack(
        [
            np.asarray(Image.open(p).convert("L")) >= 128
            for p in sorted((folder / "masks").glob("*.png"))
        ]
    )
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "mask",
            "--from",
            str(folder / "masks"),
            "--no-ellipse",
            "--json",
            "-p",
            str(project.paths.root),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["frames"] == 16 and data["method"] == "import" and data["ellipse"] is False
    coverage = np.array(data["coverage"])
    # The object is a real part of the picture, and nearest resizing keeps its share.
    assert ((coverage > 0.02) & (coverage < 0.6)).all()
    assert np.abs(coverage - source.mean(axis=(1, 2))).max() < 0.01

    reopened = Project.open(project.paths.root)
    record = reopened.manifest.masks
    assert record is not None and record.status == "done"
    assert record.params.method == "import" and record.params.from_dir == str(
        (folder / "masks").resolve()
    )
    masks = read_project_masks(reopened)
    assert masks is not None and masks.shape == (16, 256, 256)
    assert [p.name for p in sorted(project.paths.masks_dir.glob("0*.png"))] == [
        f"{i:05d}.png" for i in range(16)
    ]
    assert project.paths.mask_sheet.is_file() and project.paths.mask_overlay_video.is_file()

    # The ellipse trick only adds pixels.
    with_ellipse = runner.invoke(
        app, ["mask", "--from", str(folder / "masks"), "--json", "-p", str(project.paths.root)]
    )
    assert with_ellipse.exit_code == 0, with_ellipse.output
    ored = read_project_masks(Project.open(project.paths.root))
    assert ored is not None and ored[masks].all() and ored.sum() > masks.sum()

"""Files deleted, truncated or changed after vdir wrote them: `vdir status` and every stage's
up-to-date check notice (size and mtime first, the hash when those differ), name the file, call
the record damaged, and never reuse it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _helpers_editing import fast_model_loader, make_project_with_inversion
from _helpers_faults import one_error_line, row, small_project, status_of, vdir
from _helpers_project import EDITED_EDIT, EDITED_NAME, copy_project

from videodirector_cli.project.paths import ProjectPaths
from videodirector_cli.project.store import Project


@pytest.fixture(autouse=True)
def _fast_models(monkeypatch):
    monkeypatch.setattr("videodirector_cli.diffusion.loading.load_model", fast_model_loader)


def _truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def _flip_a_byte(path: Path) -> None:
    """Same size, other content (and a new mtime, as any write gives)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "deleted": (lambda p: p.unlink(), "is missing"),
    "truncated": (_truncate, "is truncated"),
    "changed": (_flip_a_byte, "differs"),
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_damaged_frames_are_noticed_by_status_and_every_stage(tmp_path: Path, how: str) -> None:
    root = small_project(tmp_path)
    frame = ProjectPaths(root).frame(2)
    damage, words = DAMAGE[how]
    damage(frame)

    report = status_of(root)
    frames = row(report, "frames")
    assert frames["state"] == "damaged"
    assert "00002.png" in frames["message"] and words in frames["message"]
    assert report["next"].startswith("vdir init") and report["next"].endswith("--force")
    human = vdir("status", "-p", root)
    assert human.exit_code == 0 and "damaged" in human.stdout

    for command in (
        ["invert", "--model", "tiny", "--steps", "2"],
        ["mask", "--no-sam2", "--box", "8,8,40,40"],
        ["render"],
    ):
        one_error_line(vdir(*command, "-p", root), 5, "00002.png", words)


def test_a_touched_but_unchanged_file_is_still_done(tmp_path: Path) -> None:
    root = small_project(tmp_path)
    frame = ProjectPaths(root).frame(1)
    os.utime(frame, ns=(1, 1))  # mtime differs from what vdir saw: hashed again, same hash
    assert row(status_of(root), "frames")["state"] == "done"


def test_damaged_masks(tmp_path: Path) -> None:
    root = small_project(tmp_path)
    assert vdir("mask", "--no-sam2", "--box", "8,8,40,40", "-p", root).exit_code == 0
    _truncate(ProjectPaths(root).mask(3))
    report = status_of(root)
    masks = row(report, "masks")
    assert masks["state"] == "damaged" and "00003.png is truncated" in masks["message"]
    assert report["next"] == "vdir mask"
    one_error_line(vdir("render", "--compare", "-p", root), 5, "00003.png")
    assert vdir("mask", "--no-sam2", "--box", "8,8,40,40", "-p", root).exit_code == 0
    assert row(status_of(root), "masks")["state"] == "done"


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_damaged_inversion_steps_are_never_reused(tmp_path: Path, edited_project, how) -> None:
    root = copy_project(edited_project.root, tmp_path)
    project = Project.open(root)
    key = project.manifest.current_inversion
    step = project.paths.inversion_dir(key) / "steps" / "step_0001.safetensors"
    damage, words = DAMAGE[how]
    damage(step)

    report = status_of(root)
    inversion = row(report, "inversion", key)
    assert inversion["state"] == "damaged" and "step_0001.safetensors" in inversion["message"]
    assert words in inversion["message"]
    assert report["next"] == "vdir invert"
    # A new edit reads the inversion: it refuses, naming the file. (The existing edit, made
    # before the damage from the inversion as recorded, stays up to date.)
    one_error_line(vdir(*EDITED_EDIT, "--name", "another", "-p", root), 5, "step_0001")


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_damaged_edit_files_are_made_again(tmp_path: Path, edited_project, how: str) -> None:
    root = copy_project(edited_project.root, tmp_path)
    frame = ProjectPaths(root).edit_frame(EDITED_NAME, 1)
    damage, words = DAMAGE[how]
    damage(frame)

    report = status_of(root)
    assert words in row(report, "edit", EDITED_NAME)["message"]
    edit = row(report, "edit", EDITED_NAME)
    assert edit["state"] == "damaged" and "00001.png" in edit["message"]
    assert report["next"] == "vdir edit"
    one_error_line(vdir("render", EDITED_NAME, "-p", root), 5, "00001.png")

    again = vdir(*EDITED_EDIT, "-p", root, "--json")  # not 'up to date': made again
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["up_to_date"] is False
    assert row(status_of(root), "edit", EDITED_NAME)["state"] == "done"
    assert vdir("render", EDITED_NAME, "-p", root).exit_code == 0


def test_a_resumed_inversion_redoes_a_changed_step(tmp_path: Path) -> None:
    from _helpers_invert import make_invert_project

    root = tmp_path / "p"
    make_invert_project(root)
    args = ["invert", "--model", "tiny", "--steps", "3", "--inner-steps", "1", "--no-report"]
    first = vdir(*args, "-p", root, "--json")
    assert first.exit_code == 0, first.output
    key = json.loads(first.stdout)["inversion"]
    steps = ProjectPaths(root).inversion_dir(key) / "steps"
    original = (steps / "step_0001.safetensors").read_bytes()
    _flip_a_byte(steps / "step_0001.safetensors")
    assert row(status_of(root), "inversion", key)["state"] == "damaged"

    again = vdir(*args, "-p", root, "--json")
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert data["up_to_date"] is False and data["resumed_from"] == 1
    assert (steps / "step_0001.safetensors").read_bytes() == original
    assert row(status_of(root), "inversion", key)["state"] == "done"


def test_an_old_project_without_the_index_is_checked_by_hash(tmp_path: Path) -> None:
    root = tmp_path / "p"
    make_project_with_inversion(root)
    (root / ".vdir" / "files.json").unlink(missing_ok=True)
    report = status_of(root)
    assert {r["state"] for r in report["stages"]} <= {"done", "missing"}
    _flip_a_byte(ProjectPaths(root).frame(0))
    assert row(status_of(root), "frames")["state"] == "damaged"

"""All-or-nothing replacements: `init --force` and `mask` build the new state beside the old
and swap it in, so a failure (a full disk, a symbolic link, kill -9) leaves the old project
byte for byte as it was; links where vdir writes are refused with one line, never deleted
through."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _helpers_faults import (
    EACCES,
    ENOSPC,
    one_error_line,
    os_error,
    row,
    small_project,
    snapshot,
    status_of,
    vdir,
)
from _helpers_media import make_video

from videodirector_cli.project.atomic import TEMP_PREFIX
from videodirector_cli.project.paths import ProjectPaths


@pytest.fixture
def masked(tmp_path: Path) -> Path:
    """A project with frames, masks and a render: several stage folders to replace."""
    root = small_project(tmp_path)
    assert vdir("mask", "--no-sam2", "--box", "8,8,40,40", "-p", root).exit_code == 0
    assert vdir("render", "-p", root).exit_code == 0
    (root / "my-notes.txt").write_text("kept")
    return root


def _fail_on_write(monkeypatch, nth: int) -> None:
    """The ``nth`` PNG written from now on finds the disk full."""
    from videodirector_cli.media import frames

    real = frames.write_png
    calls = {"n": 0}

    def write_png(path, image):
        calls["n"] += 1
        if calls["n"] == nth:
            raise os_error(ENOSPC, path)
        real(path, image)

    monkeypatch.setattr(frames, "write_png", write_png)
    monkeypatch.setattr("videodirector_cli.stages.init.write_png", write_png)


def test_init_force_that_fails_half_way_leaves_the_old_project(masked: Path, monkeypatch, tmp_path):
    before = snapshot(masked)
    other = make_video(tmp_path / "other.mp4", frames=8, noise=True)
    _fail_on_write(monkeypatch, nth=3)
    result = vdir("init", other, masked, "--force", "--frames", "6", "--size", "64")
    one_error_line(result, 9, "no space left")
    assert snapshot(masked) == before
    assert not list(masked.glob(f"{TEMP_PREFIX}*"))
    monkeypatch.undo()
    assert row(status_of(masked), "masks")["state"] == "done"
    again = vdir("init", other, masked, "--force", "--frames", "6", "--size", "64")
    assert again.exit_code == 0, again.output
    assert (
        not ProjectPaths(masked).masks_dir.exists()
        and not ProjectPaths(masked).renders_dir.exists()
    )
    assert (masked / "my-notes.txt").read_text() == "kept"
    assert row(status_of(masked), "frames")["state"] == "done"


def test_mask_that_fails_half_way_keeps_the_old_masks(masked: Path, monkeypatch) -> None:
    before = snapshot(masked)
    _fail_on_write(monkeypatch, nth=2)
    one_error_line(vdir("mask", "--no-sam2", "--box", "0,0,20,20", "-p", masked), 9, "no space")
    assert snapshot(masked) == before


@pytest.mark.parametrize("folder", ["renders", "masks", "edits", "frames"])
def test_a_symlinked_stage_folder_is_refused_and_never_deleted_through(
    masked: Path, tmp_path: Path, folder: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    target = masked / folder
    if target.exists():
        target.rename(elsewhere)
    else:
        elsewhere.mkdir()
        (elsewhere / "precious.txt").write_text("mine")
    target.symlink_to(elsewhere, target_is_directory=True)
    before, outside = snapshot(masked), snapshot(elsewhere)

    video = tmp_path / "p.mp4"
    for command in (
        ["init", video, masked, "--force", "--frames", "4", "--size", "64"],
        ["mask", "--no-sam2", "--box", "8,8,40,40", "-p", masked],
        ["render", "-p", masked],
    ):
        one_error_line(vdir(*command), 6, "is a symbolic link", folder)
    assert snapshot(masked) == before and snapshot(elsewhere) == outside
    assert vdir("status", "-p", masked).exit_code == 0  # reading still works


def test_a_symlinked_edit_folder_is_refused(masked: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("mine")
    edits = ProjectPaths(masked).edits_dir
    edits.mkdir()
    (edits / "tiger").symlink_to(elsewhere, target_is_directory=True)
    one_error_line(vdir("render", "-p", masked), 6, "is a symbolic link", "tiger")
    assert (elsewhere / "precious.txt").read_text() == "mine"


KILLED_SWAP = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from videodirector_cli.project.atomic import replace_folders, staging_dir
    from videodirector_cli.project.paths import ProjectPaths

    paths = ProjectPaths(Path(sys.argv[1]))
    staged = staging_dir(paths.frames_dir)
    (staged / "00000.png").write_bytes(b"new")
    targets = dict.fromkeys(paths.stage_dirs)
    targets[paths.frames_dir] = staged
    replace_folders(paths.root, paths.manifest, targets, lambda: os.kill(os.getpid(), signal.SIGKILL))
    """
)


def test_kill_9_inside_the_swap_is_undone_by_the_next_writer(masked: Path) -> None:
    before = snapshot(masked)
    process = subprocess.run([sys.executable, "-c", KILLED_SWAP, str(masked)], timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not ProjectPaths(masked).masks_dir.exists()  # killed between the renames and commit
    assert vdir("render", "-p", masked).exit_code == 0  # a writer puts the old folders back
    after = snapshot(masked)
    assert {
        k: v for k, v in after.items() if not k.startswith(("renders", "manifest", ".vdir"))
    } == {k: v for k, v in before.items() if not k.startswith(("renders", "manifest", ".vdir"))}
    assert not list(masked.glob(f"{TEMP_PREFIX}*"))
    assert row(status_of(masked), "masks")["state"] == "done"


def test_mask_whose_swap_fails_leaves_masks_and_manifest_as_they_were(
    masked: Path, monkeypatch
) -> None:
    before = snapshot(masked)

    def refused(staging, target):
        raise os_error(EACCES, target)

    monkeypatch.setattr("videodirector_cli.stages.mask.replace_dir", refused)
    one_error_line(vdir("mask", "--no-sam2", "--box", "0,0,20,20", "-p", masked), 6, "masks")
    assert snapshot(masked) == before


def test_edit_force_that_fails_keeps_the_old_edit(tmp_path: Path, edited_project, monkeypatch):
    from _helpers_editing import fast_model_loader
    from _helpers_project import EDITED_EDIT, EDITED_NAME, copy_project

    monkeypatch.setattr("videodirector_cli.diffusion.loading.load_model", fast_model_loader)
    root = copy_project(edited_project.root, tmp_path)
    before = snapshot(root)
    _fail_on_write(monkeypatch, nth=2)
    result = vdir(*EDITED_EDIT, "--name", EDITED_NAME, "--force", "--tau-s", "0.5", "-p", root)
    one_error_line(result, 9, "no space left")
    assert snapshot(root) == before
    assert not list((root / "edits").glob(f"{TEMP_PREFIX}*"))

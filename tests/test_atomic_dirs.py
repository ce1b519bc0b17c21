"""Folder swaps: readers see the old set or the new one; a kill between renames is recovered."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from videodirector_cli.project import atomic
from videodirector_cli.project.atomic import TEMP_PREFIX, recover_dir, replace_dir, staging_dir


def _set(folder: Path, content: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text(content)


def test_replace_dir_swaps_in_the_new_set_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "masks"
    _set(target, "old")
    staging = staging_dir(target)
    _set(staging, "new")
    replace_dir(staging, target)
    assert (target / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks"]


def test_failed_replace_puts_the_old_set_back(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "masks"
    _set(target, "old")
    staging = staging_dir(target)
    _set(staging, "new")
    real_replace = os.replace
    calls = []

    def failing_second_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing_second_rename)
    with pytest.raises(OSError):
        replace_dir(staging, target)
    monkeypatch.undo()
    assert (target / "a.txt").read_text() == "old"


def test_recover_after_a_kill_between_the_two_renames(tmp_path: Path) -> None:
    target = tmp_path / "masks"
    # the state a kill -9 leaves after the first rename: target moved aside, new set staged
    old = tmp_path / f"{TEMP_PREFIX}masks-old-x1"
    _set(old / "masks", "old")
    _set(tmp_path / f"{TEMP_PREFIX}masks-new-x2", "new")
    recover_dir(target)
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks"]


def test_atomic_files_get_the_usual_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    target = tmp_path / "f.json"
    atomic.atomic_write_json(target, {"a": 1})
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask

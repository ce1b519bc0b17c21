"""A full disk, a read-only or forbidden folder, too many open files: vdir errors with the
documented exit codes (9 resource, 6 project) and one line naming the path and what to do; no
partial file is left, recorded or not; `vdir status` says what happened.

The full disk is made for real where an unprivileged test can (a file-size limit: the kernel
refuses the write with EFBIG), and by an OSError injected at the write for the rest."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers_faults import (
    EACCES,
    EMFILE,
    ENOSPC,
    EROFS,
    one_error_line,
    os_error,
    row,
    small_project,
    snapshot,
    status_of,
    vdir,
)
from _helpers_media import make_video
from PIL import Image

from videodirector_cli.project.atomic import TEMP_PREFIX
from videodirector_cli.project.paths import ProjectPaths


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"{TEMP_PREFIX}*")]


def test_disk_full_in_the_middle_of_a_render(tmp_path: Path, monkeypatch) -> None:
    root = small_project(tmp_path)
    real_save = Image.Image.save
    calls = {"n": 0}

    def fills_the_disk(image, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:  # the first PNG (the contact sheet) gets half written
            real_save(image, fp, *args, **kwargs)
            with open(fp, "r+b") as handle:
                handle.truncate(os.path.getsize(fp) // 2)
            raise os_error(ENOSPC, fp)
        return real_save(image, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", fills_the_disk)
    result = vdir("render", "-p", root)
    line = one_error_line(result, 9, "no space left on the device holding", "free some disk space")
    assert str(root) in line
    renders = ProjectPaths(root).renders_dir
    assert not renders.exists() or not [p for p in renders.rglob("*") if p.is_file()]
    assert not _leftovers(root)
    failed = row(status_of(root), "render", "source")
    assert failed["state"] == "failed" and "no space left" in failed["message"]

    monkeypatch.setattr(Image.Image, "save", real_save)
    assert vdir("render", "-p", root).exit_code == 0  # space freed: the same command works
    assert row(status_of(root), "render", "source")["state"] == "done"


@pytest.mark.parametrize(
    ("code", "exit_code", "words"),
    [(EROFS, 6, "read-only file system"), (EACCES, 6, "permission denied"), (ENOSPC, 9, "space")],
)
def test_a_project_that_cannot_be_written(
    tmp_path: Path, monkeypatch, code: int, exit_code: int, words: str
) -> None:
    root = small_project(tmp_path)
    before = snapshot(root)

    def refuses(*args, **kwargs):
        raise os_error(code, kwargs.get("dir", args[-1] if args else root))

    monkeypatch.setattr("videodirector_cli.project.atomic.tempfile.mkstemp", refuses)
    for command in (
        ["mask", "--no-sam2", "--box", "8,8,40,40"],
        ["render"],
        ["init", tmp_path / "p.mp4", root, "--force", "--frames", "4", "--size", "64"],
    ):
        result = vdir(*command, "-p", root) if command[0] != "init" else vdir(*command)
        one_error_line(result, exit_code, words, str(root))
        assert snapshot(root) == before, command
    monkeypatch.undo()
    assert status_of(root)["next"] == "vdir invert"


def test_too_many_open_files(tmp_path: Path, monkeypatch) -> None:
    root = small_project(tmp_path)
    before = snapshot(root)

    def no_more_files(path, *args, **kwargs):
        raise os_error(EMFILE, path)

    monkeypatch.setattr("videodirector_cli.media.frames.Image.open", no_more_files)
    one_error_line(vdir("render", "-p", root), 9, "too many open files", "ulimit -n")
    one_error_line(
        vdir("mask", "--no-sam2", "--box", "8,8,40,40", "-p", root), 9, "too many open files"
    )
    assert snapshot(root) == before


def test_json_mode_prints_an_error_document_too(tmp_path: Path, monkeypatch) -> None:
    root = small_project(tmp_path)

    def refuses(*args, **kwargs):
        raise os_error(EROFS, root)

    monkeypatch.setattr("videodirector_cli.project.atomic.tempfile.mkstemp", refuses)
    result = vdir("render", "-p", root, "--json")
    assert result.exit_code == 6
    document = json.loads(result.stdout)
    assert document["schema_version"] == 1 and document["ok"] is False
    assert document["error"]["exit_code"] == 6 and document["error"]["kind"] == "ProjectError"
    assert "read-only" in document["error"]["message"]


# ---- a real fault: a file-size limit makes the kernel refuse the write (EFBIG) ----------------

LIMIT = 200_000
"""Larger than a manifest, smaller than one 512x512 noise frame."""


def _limited(*args: object) -> subprocess.CompletedProcess:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

    return subprocess.run(
        [sys.executable, "-m", "videodirector_cli", *map(str, args)],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=120,
    )


def _assert_one_line(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("vdir: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_real_full_disk_during_init_leaves_no_project_and_the_old_one_as_it_was(
    tmp_path: Path,
) -> None:
    video = make_video(tmp_path / "noise.mp4", frames=8, width=128, height=128, noise=True)
    new = tmp_path / "new"
    result = _limited("init", video, new, "--frames", "4", "--size", "512", "--fit", "stretch")
    _assert_one_line(result, 9, "no space left", "free some disk space")
    assert not new.exists()

    old = small_project(tmp_path)
    before = snapshot(old)
    result = _limited(
        "init", video, old, "--force", "--frames", "4", "--size", "512", "--fit", "stretch"
    )
    _assert_one_line(result, 9, "no space left", str(old))
    assert snapshot(old) == before
    assert row(status_of(old), "frames")["state"] == "done"

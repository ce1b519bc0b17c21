"""Shared by the hardening tests: a small real project, the CLI, and byte snapshots."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

from _helpers_media import make_video
from typer.testing import CliRunner

from videodirector_cli.cli.app import app


def vdir(*args: Any):
    return CliRunner().invoke(app, [str(a) for a in args])


def small_project(tmp_path: Path, name: str = "p", frames: int = 4) -> Path:
    """`vdir init` of a generated clip: ``frames`` frames of 64x64."""
    video = make_video(tmp_path / f"{name}.mp4", frames=8)
    folder = tmp_path / name
    result = vdir("init", video, folder, "--frames", frames, "--size", "64", "--prompt", "a bear")
    assert result.exit_code == 0, result.output
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links as their target's name) with its bytes; the lock
    file, which each writer stamps with its pid, is left out."""
    if not folder.exists():
        return {}
    found: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        if path.name == "lock" and path.parent.name == ".vdir":
            continue
        if path.is_symlink():
            found[str(path.relative_to(folder))] = b"-> " + str(path.readlink()).encode()
        elif path.is_file():
            found[str(path.relative_to(folder))] = path.read_bytes()
    return found


def status_of(folder: Path) -> dict[str, Any]:
    result = vdir("status", "-p", folder, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def row(report: dict[str, Any], stage: str, key: str | None = None) -> dict[str, Any]:
    return next(r for r in report["stages"] if r["stage"] == stage and r["key"] == key)


def one_error_line(result, code: int, *words: str) -> str:
    """The command failed with ``code`` and one 'vdir: error:' line holding ``words``."""
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vdir: error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "Traceback" not in result.output and "this is a bug" not in lines[0]
    return lines[0]


def os_error(code: int, filename: Path | str | None = None) -> OSError:
    return OSError(
        code, __import__("os").strerror(code), None if filename is None else str(filename)
    )


ENOSPC, EROFS, EACCES, EMFILE = errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EMFILE

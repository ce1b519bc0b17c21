"""The repository stands alone: nothing tracked names a folder outside it or a machine's path.

A user clones vdir into a folder of its own; a path such as the developers' sibling data folder or
an absolute home/work path of one machine works on that machine only. `.ci/run` also tests a copy
of the clone in an empty temporary folder, which catches what this scan cannot (a file read
through a computed path).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Built from pieces so that this file does not match itself.
_SIBLING = re.escape("..") + r"[/\\]" + "sha" + "red"
_MACHINE = (
    r"(?<![\w.~-])/(?:"
    + "|".join(("wo" + "rk", "ro" + "ot", "ho" + "me", "Us" + "ers", "mnt"))
    + r")/[\w.-]"
)
FORBIDDEN = re.compile(f"{_SIBLING}|{_MACHINE}|[A-Za-z]:\\\\Users\\\\")
BINARY_SUFFIXES = {".png", ".jpg", ".mp4", ".safetensors", ".ckpt", ".pt", ".bin", ".pdf"}


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, text=True
        ).stdout
        names = [n for n in out.split("\0") if n]
    except (OSError, subprocess.CalledProcessError):  # an unpacked archive: every file
        skip = {".git", ".venv", ".nox", "__pycache__", ".pytest_cache", ".mypy_cache"}
        names = [
            str(p.relative_to(REPO))
            for p in REPO.rglob("*")
            if p.is_file() and not skip.intersection(p.relative_to(REPO).parts)
        ]
    return [REPO / n for n in names if Path(n).suffix.lower() not in BINARY_SUFFIXES]


def offending_lines() -> list[str]:
    found = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:120]}")
    return found


def test_the_pattern_catches_what_it_must() -> None:
    sibling = ".." + "/sha" + "red/data/clips"
    assert FORBIDDEN.search(f'CLIPS = Path("{sibling}")')
    assert FORBIDDEN.search('default="/' + 'work/toy-train"')
    assert FORBIDDEN.search('"_name_or_path": "/' + 'home/me/weights"')
    assert FORBIDDEN.search("C:\\" + "Users\\me\\clip.mp4")
    for fine in ("tests/data/clips/bear", "~/.cache/vdir", "/tmp/x", "a/work/b", "http://x/home/y"):
        assert not FORBIDDEN.search(fine), fine


def test_no_tracked_file_names_an_outside_folder_or_machine_path() -> None:
    assert tracked_files(), "found no files to scan"
    bad = offending_lines()
    assert not bad, "paths that exist on one machine only:\n" + "\n".join(bad)


def test_the_real_clips_live_in_the_repository() -> None:
    clips = REPO / "tests" / "data" / "clips"
    assert (clips / "README.md").is_file()
    for name in ("bear", "blackswan"):
        assert (clips / name / f"{name}.mp4").is_file()
        assert len(list((clips / name / "masks").glob("*.png"))) == 16

"""Atomic file writes: a temp file in the same folder, fsync, os.replace.

A killed process leaves either the old file or the new one, never half of one; leftovers are
``.tmp-*`` files that readers ignore.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".tmp-"


def _default_file_mode() -> int:
    """0o666 minus the umask: what a plain open() would give (mkstemp gives 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_file_mode()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path`` atomically.

    For writers that want a file name (safetensors, PyAV, PIL). The suffix defaults to the
    target's so that libraries choosing a format by extension still do the right thing.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=TEMP_PREFIX,
        suffix=suffix if suffix is not None else target.suffix,
        dir=target.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp)):
            exc.filename = str(target)  # a full disk is reported at the file the user knows
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def move_into_place(source: Path, target: Path) -> None:
    """Move a finished file to ``target`` atomically (a copy beside it first when ``target`` is
    on another filesystem, as ``render --out`` may be)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        source.unlink(missing_ok=True)
        return
    _fsync_dir(target.parent)


def remove_temp_files(folder: Path) -> int:
    """Delete leftovers of interrupted writes in ``folder`` (not recursive)."""
    removed = 0
    if folder.is_dir():
        for leftover in folder.glob(f"{TEMP_PREFIX}*"):
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed


# Folders ---------------------------------------------------------------------------------------
# A stage that writes a set of files (masks, an edit) builds the new set in a staging folder beside
# the target and swaps it in with renames, so readers see the old set or the new one, never a mix.


def staging_dir(target: Path) -> Path:
    """A fresh staging folder beside ``target`` (same filesystem, so renames are atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{target.name}-new-", dir=target.parent))


def replace_dir(staging: Path, target: Path) -> None:
    """Replace folder ``target`` by ``staging``; on failure the old folder is put back."""
    old: Path | None = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{target.name}-old-", dir=target.parent))
        os.replace(target, old / target.name)
    try:
        os.replace(staging, target)
    except BaseException:
        if old is not None:
            os.replace(old / target.name, target)
            shutil.rmtree(old, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_dir(target: Path) -> None:
    """Clean up after a process killed inside ``replace_dir`` or while staging.

    If it died between its two renames, ``target`` is missing and its old copy is put back;
    every other leftover staging folder of ``target`` is removed. Call it under the project lock.
    """
    for old in sorted(target.parent.glob(f"{TEMP_PREFIX}{target.name}-old-*")):
        saved = old / target.name
        if not target.exists() and saved.exists():
            os.replace(saved, target)
        shutil.rmtree(old, ignore_errors=True)
    for leftover in target.parent.glob(f"{TEMP_PREFIX}{target.name}-new-*"):
        shutil.rmtree(leftover, ignore_errors=True)


# Several folders at once -------------------------------------------------------------------------
# `vdir init --force` replaces every stage folder of a project and its manifest together: the old
# folders are moved into a trash folder, the new ones in, then the new manifest is written (the
# commit). A failure before the commit puts everything back; a kill before it is undone by
# ``recover_replaced`` under the next writer's lock (the trash holds the old manifest's bytes, so
# "the manifest is still the old one" tells that the commit never happened).

REPLACED_PREFIX = f"{TEMP_PREFIX}replaced-"
_OLD_MANIFEST = "manifest.before"


def replace_folders(
    root: Path, manifest: Path, targets: dict[Path, Path | None], commit: Callable[[], None]
) -> None:
    """Replace each target folder by its staged folder (None: remove it), then ``commit()``.

    All or nothing: until ``commit`` returns, any failure restores every target as it was.
    """
    trash = Path(tempfile.mkdtemp(prefix=REPLACED_PREFIX, dir=root))
    moved: list[Path] = []
    try:
        if manifest.is_file():
            shutil.copyfile(manifest, trash / _OLD_MANIFEST)
        for target, staged in targets.items():
            if target.exists() or target.is_symlink():
                os.replace(target, trash / target.name)
                moved.append(target)
            if staged is not None:
                os.replace(staged, target)
        commit()
    except BaseException:
        for target, staged in targets.items():
            if staged is not None and not staged.exists() and target.exists():
                os.replace(target, staged)
        for target in moved:
            os.replace(trash / target.name, target)
        shutil.rmtree(trash, ignore_errors=True)
        raise
    _fsync_dir(root)
    shutil.rmtree(trash, ignore_errors=True)


def recover_replaced(root: Path, manifest: Path) -> None:
    """Finish what a process killed inside ``replace_folders`` left: before its commit, the old
    folders go back; after it, the trash is emptied. Call it under the project lock."""
    for trash in sorted(root.glob(f"{REPLACED_PREFIX}*")):
        before = trash / _OLD_MANIFEST
        committed = not before.is_file() or (
            manifest.is_file() and manifest.read_bytes() != before.read_bytes()
        )
        if not committed:
            for saved in trash.iterdir():
                if saved.name == _OLD_MANIFEST:
                    continue
                target = root / saved.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(saved, target)
        shutil.rmtree(trash, ignore_errors=True)

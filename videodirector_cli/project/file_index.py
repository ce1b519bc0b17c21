"""What vdir last knew of the files it wrote: size, mtime and content hash, in .vdir/files.json.

Checking that a project's files are still what the manifest recorded is cheap first: a file
whose size and mtime are what vdir saw is taken to hold the hash it had then; only a file whose
size or mtime differs is hashed again. The index is a cache, never the authority (the manifest's
hashes are): a missing or damaged index only makes the next check slower. It is written by
commands that hold the project lock (with the manifest), never by `vdir status`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from videodirector_cli.project.atomic import atomic_write_text
from videodirector_cli.project.fingerprint import hash_file, hash_files

INDEX_NAME = "files.json"

Entry = tuple[int, int, str]
"""(size in bytes, mtime in ns, sha256)."""


class FileIndex:
    def __init__(self, root: Path, state_dir: Path) -> None:
        self.root = Path(root)
        self.path = Path(state_dir) / INDEX_NAME
        self._entries: dict[str, Entry] | None = None
        self._fresh: dict[tuple[str, int, int], str] = {}
        self._dirty = False

    # reading ----------------------------------------------------------------------------------
    @property
    def entries(self) -> dict[str, Entry]:
        if self._entries is None:
            self._entries = _load(self.path)
        return self._entries

    def _key(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(Path(path).resolve())

    def known(self, path: Path) -> Entry | None:
        return self.entries.get(self._key(path))

    def digest(self, path: Path) -> str:
        """The file's sha256: the remembered one when its size and mtime are unchanged."""
        stat = os.stat(path)
        entry = self.known(path)
        if entry is not None and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
            return entry[2]
        fresh_key = (self._key(path), stat.st_size, stat.st_mtime_ns)
        if fresh_key not in self._fresh:
            self._fresh[fresh_key] = hash_file(path)
        return self._fresh[fresh_key]

    def combined(self, paths: Iterable[Path]) -> str:
        """fingerprint.hash_files of ``paths`` (the manifest's output hashes), cheaply."""
        return hash_files(paths, digest=self.digest)

    def changed(self, paths: Iterable[Path]) -> list[Path]:
        """Those of ``paths`` whose content is not what vdir remembered (or never saw)."""
        found = []
        for path in paths:
            entry = self.known(path)
            if entry is None or self.digest(path) != entry[2]:
                found.append(Path(path))
        return found

    def shrunk(self, path: Path) -> bool:
        """True when the file is smaller than vdir wrote it (truncated)."""
        entry = self.known(path)
        return entry is not None and os.stat(path).st_size < entry[0]

    # writing ----------------------------------------------------------------------------------
    def remember(self, paths: Iterable[Path]) -> None:
        """Take the files as they are now as vdir's (after writing them or verifying them)."""
        for path in paths:
            stat = os.stat(path)
            digest = self.digest(path)
            entry = (stat.st_size, stat.st_mtime_ns, digest)
            key = self._key(path)
            if self.entries.get(key) != entry:
                self.entries[key] = entry
                self._dirty = True

    def forget_under(self, folder: Path) -> None:
        prefix = self._key(folder).rstrip("/") + "/"
        for key in [k for k in self.entries if k.startswith(prefix)]:
            del self.entries[key]
            self._dirty = True

    def save(self) -> None:
        """Persist (under the project lock); entries of files that are gone are dropped."""
        if not self._dirty or self._entries is None:
            return
        kept = {k: v for k, v in self._entries.items() if (self.root / k).is_file()}
        atomic_write_text(self.path, json.dumps(kept, sort_keys=True) + "\n")
        self._dirty = False


def _load(path: Path) -> dict[str, Entry]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    entries: dict[str, Entry] = {}
    for key, value in raw.items():
        if (
            isinstance(value, list)
            and len(value) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value[:2])
            and isinstance(value[2], str)
        ):
            entries[str(key)] = (value[0], value[1], value[2])
    return entries

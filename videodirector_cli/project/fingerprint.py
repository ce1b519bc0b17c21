"""Content hashes: the basis of 'is this stage still up to date?'."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(paths: Iterable[Path], digest: Callable[[Path], str] = hash_file) -> str:
    """One hash over several files, names included (a rename changes it). ``digest`` gives
    each file's sha256 (project/file_index.py's remembers them)."""
    combined = hashlib.sha256()
    for path in paths:
        combined.update(path.name.encode())
        combined.update(b"\0")
        combined.update(digest(path).encode())
        combined.update(b"\n")
    return combined.hexdigest()


def hash_params(params: Any) -> str:
    """Hash of JSON-able data, independent of dict order."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def short(digest: str, length: int = 12) -> str:
    return digest[:length]

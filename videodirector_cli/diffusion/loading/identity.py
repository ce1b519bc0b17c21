"""What identifies the loaded weights: part of every inversion key.

Hub downloads are named by repo and commit; local files and folders by a sha256 of their
contents. Hashing a multi-GB checkpoint takes seconds, so file hashes are cached by (path, size,
mtime) in the user cache folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from videodirector_cli.diffusion.loading.locate import Located

HASH_CACHE_MIN_BYTES = 1 << 20
_CHUNK = 1 << 20


def describe_identity(identity: dict[str, str]) -> str:
    """One line for messages: 'model=..., motion_adapter=..., vae=...'."""
    return ", ".join(f"{key}={value}" for key, value in identity.items())


def short_identity(identity: dict[str, str]) -> str:
    """describe_identity with hashes cut to 12 digits and without the scheduler."""
    shown = {k: re.sub(r"([0-9a-f]{12})[0-9a-f]{20,}", r"\1", v) for k, v in identity.items()}
    return describe_identity({k: v for k, v in shown.items() if k != "scheduler"})


def scheduler_identity(replaced: str) -> str:
    base = "DDIM(linear 0.00085-0.012, steps_offset=1, epsilon)"
    return f"{base}; replaces {replaced}" if replaced and replaced != "DDIMScheduler" else base


def identity_of(located: Located, path: Path) -> str:
    """'hub:repo@commit' for hub downloads, else a content hash of the file or folder used."""
    if located.hub:
        return f"hub:{located.hub}"
    if path.is_file():
        return f"file:{path.name}:sha256:{file_digest(path)}"
    return f"folder:{path.name}:sha256:{hash_tree(path)}"


def pipeline_digest(root: Path) -> str:
    """Hash of the component folders a model was loaded from (not unrelated files beside them)."""
    digest = hashlib.sha256()
    for sub in ("unet", "text_encoder", "tokenizer", "vae", "motion_adapter"):
        if (root / sub).is_dir():
            digest.update(sub.encode() + b"\0" + hash_tree(root / sub).encode() + b"\n")
    return digest.hexdigest()


def hash_tree(folder: Path) -> str:
    """One sha256 over every file under ``folder`` (relative names included)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        digest.update(relative.encode() + b"\0" + file_digest(path).encode() + b"\n")
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file, cached by (path, size, mtime) so big checkpoints are hashed once."""
    path = path.resolve()
    stat = path.stat()
    if stat.st_size < HASH_CACHE_MIN_BYTES:
        return hash_file(path)
    cache_path = _hash_cache_path()
    key = str(path)
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    entry = _read_hash_cache(cache_path).get(key)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
        return str(entry["sha256"])
    digest = hash_file(path)
    cache = _read_hash_cache(cache_path)  # re-read: another process may have added entries
    cache[key] = {**stamp, "sha256": digest}
    with contextlib.suppress(OSError):  # a read-only cache only costs time
        _write_json_atomically(cache_path, cache)
    return digest


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_cache_path() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vdir")) / "file-hashes.json"


def _read_hash_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json_atomically(path: Path, data: Any) -> None:
    """Temp file beside ``path``, then os.replace: readers see the old cache or the new one.

    The hash cache lives outside any project and losing it only costs a re-hash, so this needs
    none of project/atomic.py's guarantees beyond that (diffusion/ does not import project/).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise

"""Byte-identical safetensors files: the same tensors and metadata give the same bytes.

safetensors writes its JSON header with the metadata keys in hash-map order, which differs
between processes, so a step file written after a resume differed in bytes (not in tensors)
from an uninterrupted run's. ``canonical_header`` rewrites the header with sorted keys, in
place and at the same length, before the file is renamed into place.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

_LENGTH = struct.Struct("<Q")


def canonical_header(path: Path) -> None:
    """Sort the keys of a safetensors file's header (tensors and ``__metadata__``) in place."""
    with open(path, "r+b") as handle:
        (length,) = _LENGTH.unpack(handle.read(_LENGTH.size))
        header = json.loads(handle.read(length).decode("utf-8"))
        canonical = json.dumps(
            header, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
        if len(canonical) > length:
            return  # cannot happen for safetensors' compact JSON; left as written
        handle.seek(_LENGTH.size)
        handle.write(canonical + b" " * (length - len(canonical)))

"""Swap attention processors by module name for the duration of a ``with`` block."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


@contextmanager
def swapped_processors(unet, replacements: Mapping[str, Any]) -> Iterator[None]:
    """Install ``replacements`` ({processor name: processor}); restore the originals in finally.

    Names not mentioned keep their current processor.
    """
    original = dict(unet.attn_processors)
    unknown = sorted(set(replacements) - set(original))
    if unknown:
        raise KeyError(f"no attention processor named {unknown[0]}")
    unet.set_attn_processor({**original, **replacements})
    try:
        yield
    finally:
        unet.set_attn_processor(original)

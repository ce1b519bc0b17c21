"""The folder names of edits: a readable one derived from the prompts, or the user's, checked."""

from __future__ import annotations

import re

from videodirector_cli.errors import UsageError
from videodirector_cli.project.names import RESERVED_NAMES, is_edit_name


def check_name(name: str) -> str:
    """An explicit --name: a plain folder name, or UsageError saying what would do."""
    if is_edit_name(name):
        return name
    suggestion = slug(name) or "my-edit"
    raise UsageError(
        f"--name {name!r} is not usable as a folder name",
        hint=f"use letters, digits, '.', '_' and '-' (no '/', no '..', not 'source'), "
        f"e.g. --name {suggestion}",
    )


def slug(text: str, limit: int = 40) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > limit:
            break
        out = candidate
    return out if out.lower() not in RESERVED_NAMES else f"{out}-edit"


def derive_name(source_prompt: str, edit_prompt: str) -> str:
    """A readable name: the edit prompt's words that the source lacks ('tiger'), else its words."""
    from videodirector_cli.diffusion.attention.seq_align import normalise_word

    have = {normalise_word(w) for w in source_prompt.split()}
    new = [w for w in edit_prompt.split() if normalise_word(w) not in have]
    return slug(" ".join(new)) or slug(edit_prompt) or "edit"

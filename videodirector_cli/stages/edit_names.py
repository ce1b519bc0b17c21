"""The folder names of edits: a readable one derived from the prompts, or the user's, checked."""

from __future__ import annotations

import re

from videodirector_cli.errors import UsageError
from videodirector_cli.stages.common import SOURCE

RESERVED_NAMES = (SOURCE,)
"""`vdir render source` renders the project's own frames: no edit may take that name."""
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str) -> str:
    """An explicit --name: a plain folder name, or UsageError saying what would do."""
    if NAME_RE.match(name) and ".." not in name and name.lower() not in RESERVED_NAMES:
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

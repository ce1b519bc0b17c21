"""The names vdir gives folders inside a project (edits, renders, inversion keys): one rule,
used for what the command line is given and for what manifest.json says."""

from __future__ import annotations

import re

SOURCE = "source"
"""The render name of the project's own frames: no edit may take this name."""
RESERVED_NAMES = (SOURCE,)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NAME_RULE = "letters, digits, '.', '_' and '-' (no '/', no '..', at most 64)"


def is_plain_name(name: object) -> bool:
    """A single folder name that cannot lead anywhere but into its own folder."""
    return isinstance(name, str) and bool(NAME_RE.match(name)) and ".." not in name


def is_edit_name(name: object) -> bool:
    return is_plain_name(name) and str(name).lower() not in RESERVED_NAMES

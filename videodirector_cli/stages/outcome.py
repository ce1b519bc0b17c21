"""What every stage hands back to the command line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class StageOutcome:
    """Plain data for ``--json`` on stdout, and the summary a person reads on stderr."""

    data: dict[str, Any]
    human: str

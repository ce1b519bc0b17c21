"""How commands talk: data on stdout (``--json``), messages and progress on stderr.

Stages receive an ``Output`` and never print directly, so the same stage code serves the human
terminal, ``--json`` pipelines, ``--quiet`` Makefiles and tests.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Mode = Literal["human", "json", "quiet"]
JSON_SCHEMA_VERSION = 1
"""The layout of every --json document (results and errors); bumped when a key changes."""


class ProgressHandle:
    """What a stage advances; a no-op when no bar is shown."""

    def __init__(self, progress: Progress | None, task_id: Any) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, n: int = 1, **fields: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task_id, advance=n, info=_format_fields(fields))

    def update(self, completed: int | None = None, **fields: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task_id, completed=completed, info=_format_fields(fields))


def _format_fields(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.3g}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


@dataclass
class Output:
    mode: Mode = "human"
    force_progress: bool = False
    stderr: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))

    @property
    def shows_progress(self) -> bool:
        if self.mode != "human":
            return False
        return self.force_progress or self.stderr.is_terminal

    def info(self, message: str) -> None:
        """A human message on stderr (silent with --quiet and --json)."""
        if self.mode == "human":
            self.stderr.print(message, markup=False)

    def warn(self, message: str) -> None:
        """A warning on stderr; shown even with --json (stderr stays free for messages)."""
        if self.mode != "quiet":
            self.stderr.print(f"warning: {message}", markup=False, style="yellow", soft_wrap=True)

    def result(self, data: dict[str, Any], human: str | None = None) -> None:
        """The command's one result: JSON on stdout with --json, else a human summary."""
        if self.mode == "json":
            document = {"schema_version": JSON_SCHEMA_VERSION, **data}
            sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
            sys.stdout.flush()
        elif self.mode == "human" and human:
            self.stderr.print(human, markup=False)

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[ProgressHandle]:
        """A rich progress bar on stderr when interactive; otherwise nothing."""
        if not self.shows_progress:
            yield ProgressHandle(None, None)
            return
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        )
        with Progress(*columns, console=self.stderr, transient=False) as bar:
            task_id = bar.add_task(description, total=total, info="")
            yield ProgressHandle(bar, task_id)

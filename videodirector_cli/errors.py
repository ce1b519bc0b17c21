"""The errors vdir reports to users: one line each, with a distinct exit code per kind.

Every failure a user can cause or fix is one of these; anything else is a bug and keeps its
traceback (shown only with VDIR_DEBUG=1).
"""

from __future__ import annotations


class VdirError(Exception):
    """Base of every user-facing error. ``hint`` is a short 'what to do next'."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(VdirError):
    """An option or argument value that cannot be right (bad size, bad coordinates...)."""

    exit_code = 2


class InputError(VdirError):
    """An input file that cannot be used: missing, unreadable, not a video, too short."""

    exit_code = 3


class MissingPrerequisiteError(VdirError):
    """A stage needs the output of an earlier one that does not exist yet."""

    exit_code = 4


class StaleError(VdirError):
    """A stage's inputs or params changed since it ran, or an input does not match."""

    exit_code = 5


class ProjectError(VdirError):
    """The project folder itself is the problem: not a project, damaged manifest, non-empty dir."""

    exit_code = 6


class LockedError(VdirError):
    """Another vdir process is writing this project."""

    exit_code = 7


class ModelError(VdirError):
    """Model weights are missing, incomplete or not the kind vdir needs."""

    exit_code = 8


class ResourceError(VdirError):
    """Out of (GPU) memory or disk."""

    exit_code = 9


class NumericalError(VdirError):
    """A NaN or inf appeared; the last good checkpoint was kept."""

    exit_code = 10


class InterruptedByUser(VdirError):
    """Ctrl-C: work so far is checkpointed."""

    exit_code = 130

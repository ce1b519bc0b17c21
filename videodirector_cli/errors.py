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


# OS errors a user can fix (a full disk, a read-only folder) are not bugs -------------------------

_FULL = {"ENOSPC", "EDQUOT", "EFBIG"}
_TOO_MANY = {"EMFILE", "ENFILE"}
_NOT_WRITABLE = {"EROFS", "EACCES", "EPERM"}


def from_os_error(exc: OSError) -> VdirError | None:
    """The VdirError a user-fixable OSError stands for (None for the others, which are bugs).

    One line naming the path and what to do, with the class's exit code: a full disk or too many
    open files is a ResourceError (9), a read-only or forbidden path a ProjectError (6).
    """
    import errno

    name = errno.errorcode.get(exc.errno or -1, "")
    where = exc.filename if exc.filename is not None else "a file"
    if name in _FULL:
        return ResourceError(
            f"no space left on the device holding {where} ({exc.strerror})",
            hint="free some disk space and run the same command again; "
            "nothing half-written was kept",
        )
    if name in _TOO_MANY:
        return ResourceError(
            f"too many open files while opening {where} ({exc.strerror})",
            hint="raise the limit (ulimit -n 4096) and run the same command again",
        )
    if name in _NOT_WRITABLE:
        why = "read-only file system" if name == "EROFS" else "permission denied"
        return ProjectError(
            f"cannot write {where} ({why})",
            hint="make the folder writable (or use a copy of the project that is) and run the "
            "same command again",
        )
    return None


def error_document(exc: VdirError) -> dict[str, object]:
    """What --json prints on stdout for a failed command (the stderr line says the same)."""
    return {
        "ok": False,
        "error": {
            "kind": type(exc).__name__,
            "exit_code": exc.exit_code,
            "message": exc.message,
            "hint": exc.hint,
        },
    }

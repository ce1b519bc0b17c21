"""One writer per project: an advisory ``flock`` that the kernel drops when the process dies.

flock (not a pid file) so that kill -9 never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from videodirector_cli.errors import LockedError

POLL_S = 0.05
"""How often a waiting writer tries the lock again."""


class ProjectLock:
    """The project's lock, or (``what``) the lock of one record that runs beside others."""

    def __init__(self, lock_path: Path, purpose: str = "write", what: str = "this project") -> None:
        self.lock_path = lock_path
        self.purpose = purpose
        self.what = what
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait`` seconds for another holder to let go."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(POLL_S)
                    continue
                holder = _read_holder(fd)
                os.close(fd)
                raise LockedError(
                    f"another vdir process{holder} is writing {self.what}",
                    hint="wait for it to finish, or stop it; nothing was changed",
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {self.purpose}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""
    if not text:
        return ""
    pid, _, purpose = text.partition(" ")
    return f" (pid {pid}, {purpose})" if purpose else f" (pid {pid})"


def is_locked(lock_path: Path) -> bool:
    """True while some process holds the lock (used to tell 'running' from 'interrupted')."""
    if not lock_path.exists():
        return False
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)

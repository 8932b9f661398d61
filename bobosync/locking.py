"""The single-instance guard: an operating-system file lock beside the database.

Task Scheduler starts a pass every minute; a pass that takes longer than that must not run
twice at once. The lock is an OS lock (``fcntl.flock`` on Linux, ``msvcrt.locking`` on
Windows, via the ``filelock`` library), so the kernel releases it when the process dies for
any reason: a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import Optional

import filelock

from .errors import LockHeld

log = logging.getLogger(__name__)


class SingleInstanceLock:
    """Held for the whole of a pass (or of a ``--watch`` process)::

        with SingleInstanceLock(settings.lock_path):
            ...   # raises LockHeld at entry if another run holds it
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = filelock.FileLock(str(path), timeout=0)

    def acquire(self) -> None:
        """Take the lock (a no-op when this object already holds it)."""
        if self._lock.is_locked:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise LockHeld(f"another bobosync run holds the lock {self.path}") from None
        log.debug("single-instance lock %s acquired", self.path)

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    @property
    def is_held(self) -> bool:
        return bool(self._lock.is_locked)

    def __enter__(self) -> SingleInstanceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()

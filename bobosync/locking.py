"""The single-instance guard: an operating-system file lock beside the database.

Task Scheduler starts a pass every minute; a pass that takes longer than that must not run
twice at once. The lock is an OS lock on the open file (``fcntl.flock`` on Linux,
``msvcrt.locking`` on Windows), so the kernel releases it when the process dies for any
reason: a crashed run never leaves a stale lock behind, and the file's existence means nothing.

Taken with the standard library directly rather than through the filelock library, whose
import alone cost an idle pass 20 to 50 ms (issue 13): these two calls are all it needs.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Optional

from .errors import LockHeld

log = logging.getLogger(__name__)

#: What a lock another process holds looks like: EAGAIN/EWOULDBLOCK from flock, EACCES or
#: EDEADLOCK (36 on Windows) from msvcrt.locking.
_HELD = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)}

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # the first byte; the file may be empty

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class SingleInstanceLock:
    """Held for the whole of a pass (or of a ``--watch`` process)::

    with SingleInstanceLock(settings.lock_path):
        ...   # raises LockHeld at entry if another run holds it
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        """Take the lock (a no-op when this object already holds it). Raises LockHeld when
        another process holds it, OSError when the file cannot be opened."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _try_lock(fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _HELD:
                raise LockHeld(f"another bobosync run holds the lock {self.path}") from None
            raise
        self._fd = fd
        log.debug("single-instance lock %s acquired", self.path)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _unlock(fd)
        finally:
            os.close(fd)  # closing releases it too, whatever the unlock said

    @property
    def is_held(self) -> bool:
        return self._fd is not None

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

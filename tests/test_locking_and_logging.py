"""The single-instance lock (across real processes) and the logging set-up."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from bobosync.errors import LockHeld
from bobosync.locking import SingleInstanceLock
from bobosync.logsetup import (
    LOG_FILE_NAME,
    configure_logging,
    purge_old_logs,
    redact,
    register_secret,
)

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from bobosync.locking import SingleInstanceLock
    lock = SingleInstanceLock(Path(sys.argv[1]))
    lock.acquire()
    print("held", flush=True)
    time.sleep(60)
    """
)


def test_lock_is_exclusive_across_processes_and_freed_when_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / "bobo_mapping.db.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match="another bobosync run"):
            SingleInstanceLock(path).acquire()
    finally:
        holder.kill()  # no clean-up code runs: the OS must release the lock
        holder.wait()
    with SingleInstanceLock(path) as lock:
        assert lock.is_held
    assert not lock.is_held


@pytest.fixture
def bobosync_logger() -> Iterator[logging.Logger]:
    """configure_logging changes the process-wide logger: put it back for the other tests."""
    logger = logging.getLogger("bobosync")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        if handler not in saved[0]:
            handler.close()
    for handler in saved[0]:
        logger.addHandler(handler)
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_log_file_console_and_redaction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bobosync_logger: logging.Logger
) -> None:
    logger = configure_logging("DEBUG", tmp_path / "logs", secrets=("hunter2-secret",))
    register_secret("tok-abcdef123456")
    try:
        raise ValueError("bad password hunter2-secret")
    except ValueError:
        logging.getLogger("bobosync.test").exception("token %s and %s", "tok-abcdef123456", "ok")
    for handler in logger.handlers:
        handler.flush()
    text = (tmp_path / "logs" / LOG_FILE_NAME).read_text(encoding="utf-8")
    console = capsys.readouterr().err
    for output in (text, console):
        assert "token *** and ok" in output
        assert "bad password ***" in output  # the traceback too
        assert "hunter2-secret" not in output and "tok-abcdef123456" not in output
    assert redact("x hunter2-secret y") == "x *** y"
    configure_logging("INFO", None, console=False)  # reconfiguring replaces, never duplicates
    assert len(logger.handlers) == 0


def test_purge_old_logs_by_date_in_name(tmp_path: Path) -> None:
    for name in (f"{LOG_FILE_NAME}.2025-06-01", f"{LOG_FILE_NAME}.2025-06-10", LOG_FILE_NAME, "other.txt"):
        (tmp_path / name).write_text("x")
    assert purge_old_logs(tmp_path, 10, date(2025, 6, 17)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{LOG_FILE_NAME}.2025-06-10", LOG_FILE_NAME, "other.txt"]
    )
    assert purge_old_logs(tmp_path, 0, date(2030, 1, 1)) == 0


def test_acquire_is_idempotent_and_one_release_frees(tmp_path: Path) -> None:
    lock = SingleInstanceLock(tmp_path / "x.lock")
    lock.acquire()
    held = []
    with lock:  # entering again does not count a second hold
        held.append(lock.is_held)
    held.append(lock.is_held)
    assert held == [True, False]
    with SingleInstanceLock(tmp_path / "x.lock"):
        pass


@pytest.mark.parametrize("code", [errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)])
def test_a_lock_refused_as_windows_refuses_it_means_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """msvcrt.locking says "held" with EACCES or EDEADLOCK, not flock's EWOULDBLOCK."""
    import bobosync.locking as locking

    def refuse(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(locking, "_try_lock", refuse)
    lock = SingleInstanceLock(tmp_path / "x.lock")
    with pytest.raises(LockHeld):
        lock.acquire()
    assert not lock.is_held


def test_a_lock_that_fails_otherwise_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bobosync.locking as locking

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(locking, "_try_lock", broken)
    with pytest.raises(OSError) as caught:
        SingleInstanceLock(tmp_path / "x.lock").acquire()
    assert not isinstance(caught.value, LockHeld) and caught.value.errno == errno.EIO

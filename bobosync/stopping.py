"""Stop signals: which ones mean "stop" (SIGINT, SIGTERM, and Ctrl-Break on Windows), and a
block during which the first of them only sets a flag.

Kept apart from :mod:`bobosync.worker` so that a ``--watch`` waiting for the lock can listen
for them without importing the whole pass first.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator, Mapping
from types import FrameType
from typing import Any, Optional

log = logging.getLogger(__name__)

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name))


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event that the first stop signal sets while the block runs; the previous handlers
    come back after it. Outside the main thread (tests) no handler is installed and the event
    is only set by the caller."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        log.info("stop requested (signal %d)", signum)
        stop.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, on_signal)
    try:
        yield stop
    finally:
        restore_signal_handlers(previous)


def restore_signal_handlers(previous: Mapping[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)

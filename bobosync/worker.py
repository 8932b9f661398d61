"""The loop around passes: one pass (Task Scheduler) or one every N seconds (``--watch``).

Both modes drive the same :meth:`Worker.run`. Signal handlers only set flags: the first
SIGINT/SIGTERM (or Ctrl-Break on Windows) lets the pass in hand finish and then stops; a
second one stops at once by raising :class:`ForcedStop` out of whatever is running, which is
safe because every step of a pass is crash-safe (see :mod:`bobosync.filestore`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import datetime
from types import FrameType
from typing import Any, Callable, Optional

from .errors import ForcedStop
from .monitoring import after_pass
from .processor import BOBOProcessor, PassReport
from .stopping import STOP_SIGNALS, restore_signal_handlers

log = logging.getLogger(__name__)



class Worker:
    def __init__(
        self,
        processor: BOBOProcessor,
        interval: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.processor = processor
        self.interval = interval
        self.monotonic = monotonic
        self.stop_requested = False
        self.passes = 0

    def run_once(self, now: Optional[datetime] = None) -> PassReport:
        """One pass, then the metrics file and health e-mail; the unit both modes are made of."""
        self.passes += 1
        report = self.processor.run_pass(now)
        after_pass(self.processor.settings, self.processor.db, report, self.processor.clock())
        return report

    def run(self, *, watch: bool) -> int:
        """Run one pass, or passes until stopped. Returns the process exit code."""
        previous = self._install_signal_handlers()
        try:
            if not watch:
                return self.run_once().exit_code
            log.info("watching %s every %g s (Ctrl-C to stop)", self.processor.settings.csv_directory, self.interval)
            while not self.stop_requested:
                started = self.monotonic()
                try:
                    self.run_once()
                except Exception:  # a failed pass never ends the loop
                    log.exception("pass failed; trying again in %g s", self.interval)
                self._sleep_until(started + self.interval)
            log.info("stopped after %d pass(es)", self.passes)
            return 0
        finally:
            restore_signal_handlers(previous)

    def request_stop(self) -> None:
        self.stop_requested = True

    def _sleep_until(self, deadline: float) -> None:
        # Short naps rather than one long sleep, so a stop request is noticed within 0.2 s.
        while not self.stop_requested:
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.2))

    def _handle_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.stop_requested:
            raise ForcedStop(f"signal {signum} received twice")
        self.stop_requested = True
        log.info("stop requested (signal %d): finishing the pass in hand; repeat to stop now", signum)

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}  # only the main thread may set handlers (tests run workers in threads)
        previous = {}
        for sig in STOP_SIGNALS:
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle_signal)
        return previous

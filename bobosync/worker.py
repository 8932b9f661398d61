"""The loop around passes: one pass (Task Scheduler) or passes until stopped (``--watch``).

Both modes drive the same :meth:`Worker.run`. In ``--watch`` one iteration is
:meth:`Worker.step`, callable with a chosen ``now``: a full pass every POLL_INTERVAL_SECONDS
(files, then the AtHoc-side work on its own schedule: mapping sync, replays, reconcile,
auto-cleanup), and between them a stat listing of CSV_DIRECTORY every second (no file is
opened, nothing is asked of AtHoc) that starts a files-only pass as soon as a file it has not
seen yet has settled (FILE_SETTLE_SECONDS). A settling file is looked at again when its settle
time ends. A file a pass kept (for retry, or AtHoc did not answer) waits for the next full
pass, so a busy or broken folder does not multiply AtHoc requests; the AtHoc client, and so
its token, lives as long as the processor and is renewed only near its expiry.

Signal handlers only set flags: the first SIGINT/SIGTERM (or Ctrl-Break on Windows) lets the
pass in hand finish and then stops; a second one stops at once by raising :class:`ForcedStop`
out of whatever is running, which is safe because every step of a pass is crash-safe (see
:mod:`bobosync.filestore`).
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
from .filestore import list_waiting_files
from .monitoring import after_pass
from .processor import BOBOProcessor, PassReport
from .stopping import STOP_SIGNALS, restore_signal_handlers
from .timebase import as_utc

log = logging.getLogger(__name__)

#: Seconds between two listings of CSV_DIRECTORY in ``--watch``.
SCAN_SECONDS = 1.0
#: Looked at this long after a settling file's settle time ends (its mtime may be rounded).
_SETTLE_MARGIN = 0.05

_FileKey = tuple[str, int, int, int]


class Worker:
    def __init__(
        self,
        processor: BOBOProcessor,
        interval: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        scan_seconds: float = SCAN_SECONDS,
    ) -> None:
        self.processor = processor
        self.interval = interval
        self.monotonic = monotonic
        self.scan_seconds = scan_seconds
        self.stop_requested = False
        self.passes = 0
        #: monotonic time of the next full pass (None: at once)
        self._next_full: Optional[float] = None
        #: the settled files CSV_DIRECTORY held before the last pass: not new to a scan
        self._seen: frozenset[_FileKey] = frozenset()

    def run_once(self, now: Optional[datetime] = None, *, files_only: bool = False) -> PassReport:
        """One pass, then the metrics file and health e-mail; the unit both modes are made of."""
        self.passes += 1
        report = self.processor.run_pass(now, files_only=files_only)
        after_pass(self.processor.settings, self.processor.db, report, self.processor.clock())
        return report

    def step(self, now: Optional[datetime] = None) -> float:
        """One iteration of ``--watch`` at ``now`` (default: the processor's clock): the full
        pass when it is due, else a files-only pass when a file not seen before has settled,
        else nothing. Returns the seconds to wait before the next iteration."""
        chosen = now is not None
        now = as_utc(now or self.processor.clock())
        full = self._next_full is None or self.monotonic() >= self._next_full
        ready, settles_at = self._scan(now)
        if full:
            self._next_full = self.monotonic() + self.interval
        if full or not ready <= self._seen:
            self._seen = ready
            try:
                self.run_once(now, files_only=not full)
            except Exception:  # a failed pass never ends the loop
                log.exception("pass failed; trying again in %g s", self.interval)
            if not chosen:  # the pass took time: measure the next wait from its end
                now = as_utc(self.processor.clock())
            _, settles_at = self._scan(now)
        assert self._next_full is not None
        wait = min(self._next_full - self.monotonic(), self.scan_seconds)
        if settles_at is not None:
            wait = min(wait, settles_at + _SETTLE_MARGIN - now.timestamp())
        return max(wait, 0.0)

    def _scan(self, now: datetime) -> tuple[frozenset[_FileKey], Optional[float]]:
        """The settled files in CSV_DIRECTORY, and when the next settling one will have settled.
        A folder that cannot be listed counts as empty here: the full pass reports it."""
        settings = self.processor.settings
        try:
            listing = list_waiting_files(settings.csv_directory, now.timestamp(), settings.file_settle_seconds)
        except OSError:
            return self._seen, None
        return frozenset((f.name, f.size, f.mtime_ns, f.file_id) for f in listing.ready), listing.settles_at

    def run(self, *, watch: bool) -> int:
        """Run one pass, or passes until stopped. Returns the process exit code."""
        previous = self._install_signal_handlers()
        try:
            if not watch:
                return self.run_once().exit_code
            log.info(
                "watching %s: files as soon as they settle (a look every %g s), AtHoc checks every %g s "
                "(Ctrl-C to stop)",
                self.processor.settings.csv_directory,
                self.scan_seconds,
                self.interval,
            )
            while not self.stop_requested:
                self._sleep_until(self.monotonic() + self.step())
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

"""What a pass tells the outside world when it ends: the metrics file and health e-mails.

:func:`after_pass` is called once after every real pass (one-off or ``--watch``; never for a
dry run) by :meth:`bobosync.worker.Worker.run_once`. It judges the health once, with the same
:func:`bobosync.status.collect_status` that ``bobosync status`` uses, then writes METRICS_FILE
(:mod:`bobosync.metrics`) and sends a health e-mail if one is due (:mod:`bobosync.notify`).
Nothing here can fail the pass: every problem is a WARNING.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Optional

from .errors import DatabaseError
from .timebase import as_utc

if TYPE_CHECKING:  # imported by after_pass only when a metrics file or e-mail is configured
    from .processor import PassReport
    from .settings import Settings
    from .store import RunHistory, Store

log = logging.getLogger(__name__)


def after_pass(settings: Settings, db: Store, report: PassReport, now: datetime) -> None:
    """Write the metrics file and send the health e-mail, as configured. Never raises."""
    if settings.metrics_file is None and not settings.notify_enabled:
        return
    # Only now: an idle pass without either never loads the status, metrics and mail modules.
    from .metrics import render_metrics, write_atomically
    from .notify import notify_health
    from .status import collect_status

    now = as_utc(now)
    try:
        status = collect_status(settings, db, now)
    except Exception:  # the pass is done; its report must not be lost to a bug here
        log.warning("health could not be judged after the pass; no metrics file or e-mail", exc_info=True)
        return
    if settings.metrics_file is not None:
        try:
            successes = _last_successes(db)
            # The mapping sync's own record (sync_tracking), as status shows it: it also
            # knows syncs from before the run history (a database of the original tool).
            successes["mapping_sync"] = status.mapping_sync.last_success or successes.get("mapping_sync")
            text = render_metrics(settings, report, status, now, successes)
            write_atomically(settings.metrics_file, text)
        except OSError as exc:
            log.warning("METRICS_FILE %s not written: %s", settings.metrics_file, exc.strerror or exc)
        else:
            log.debug("metrics written to %s", settings.metrics_file)
    if settings.notify_enabled:
        notify_health(settings, db, status, now)


def _last_successes(db: RunHistory) -> dict[str, Optional[datetime]]:
    from .metrics import SUCCESS_KINDS

    found: dict[str, Optional[datetime]] = {}
    for kind in SUCCESS_KINDS:
        try:
            runs = db.recent_runs(kind, limit=200)
        except DatabaseError:
            runs = []
        found[kind] = next((run.finished_at or run.started_at for run in runs if run.status == "ok"), None)
    return found

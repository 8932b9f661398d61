"""Send and settle: the one way a duty value goes to AtHoc.

Every write of a pass (a file's event, a replay, a reconcile repair, the clear of a stale
account, an auto-cleanup clear) is a :class:`~bobosync.desired.Write` and goes through
:meth:`DutyWriter.send` and :meth:`DutyWriter.settle`:

1. ``send`` notes each employee's write in the desired state as *sending* and commits that
   (with any new events the caller hands over) *before* the request leaves: if the process
   dies, the next pass finds the note and treats the write as suspect;
2. it sends the writes with SyncByCommonNames (chunked, see :mod:`bobosync.client`);
3. ``settle``, inside the caller's transaction (so a batch's files are decided in the same
   commit), records each answer in the desired state (:func:`bobosync.desired.answered`): what
   AtHoc now holds, or that the write is suspect because its answer was lost, or that the
   LOGIN_ID is not in AtHoc any more.

The writer also keeps what this pass wrote since the last full listing, so that the listing
can stand in for a fresh read for the rest of the pass (:attr:`DutyWriter.since_listing`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Callable, Optional, Protocol

from .client import AtHocClient, UpdateOutcome, UpdateResult
from .counts import PassCounts
from .desired import DesiredState, Write, WriteReason, answered, desired_value, sending
from .settings import Settings
from .store import AuditRow, AuditTrail, DesiredStateStore

log = logging.getLogger(__name__)

__all__ = ["DutyWriter"]


class WriterStore(DesiredStateStore, AuditTrail, Protocol):
    """What the writer needs from the store: the desired states and the audit trail."""


class DutyWriter:
    """Sends writes and records their outcome in the desired state (see the module docstring)."""

    def __init__(self, settings: Settings, db: WriterStore, connect: Callable[[], AtHocClient]) -> None:
        self.settings = settings
        self.db = db
        self._connect = connect
        self.window = timedelta(minutes=settings.reconcile_suspect_minutes)
        #: casefolded LOGIN_ID -> the value written since the last full listing (None: a write
        #: whose answer was lost, so the value is not known). None: no listing in this pass.
        self.since_listing: Optional[dict[str, Optional[str]]] = None
        #: employees written (or tried) in this pass: a replay leaves them alone
        self.attempted: set[str] = set()
        #: False when this machine's clock is not trusted this pass: no book-on is taken for
        #: older than AUTO_CLEANUP_HOURS (that would read this machine's clock).
        self.aging = True
        #: Record audit rows for ``bobosync trace`` (AUDIT_RETENTION_DAYS > 0).
        self.auditing = settings.audit_retention_days > 0

    def desired(self, state: DesiredState, now: datetime) -> str:
        hours = self.settings.auto_cleanup_hours if self.aging else 0.0
        return desired_value(state, now, self.settings.athoc_datetime_format, hours)

    def save(self, states: dict[str, DesiredState], employee_ids: Iterable[str], now: datetime) -> None:
        """Write these employees' desired states (joins the caller's transaction, if any)."""
        self.db.save_desired_states((states[e], self.desired(states[e], now)) for e in dict.fromkeys(employee_ids))

    def send(
        self,
        writes: Sequence[Write],
        states: dict[str, DesiredState],
        now: datetime,
        counts: PassCounts,
        *,
        save: Iterable[str] = (),
    ) -> dict[str, UpdateResult]:
        """Note the writes as sending (saving the states of ``save`` too) in one commit, then
        send them; one result per LOGIN_ID. ``states`` is updated in place. Only
        AtHocAuthError is raised (see :meth:`AtHocClient.batch_update_duty_status`)."""
        touched = list(save)
        for write in writes:
            if write.employee_id is not None and write.employee_id in states:
                states[write.employee_id] = sending(states[write.employee_id], write, now)
                touched.append(write.employee_id)
                self.attempted.add(write.employee_id)
        if touched:
            with self.db.transaction():
                self.save(states, touched, now)
        if not writes:
            return {}
        counts.updates_sent += len(writes)
        return self._connect().batch_update_duty_status({w.login_id: w.value for w in writes})

    def settle(
        self,
        writes: Sequence[Write],
        results: dict[str, UpdateResult],
        states: dict[str, DesiredState],
        now: datetime,
        counts: PassCounts,
    ) -> None:
        """Record AtHoc's answers in the desired state; call inside a transaction."""
        touched: list[str] = []
        audit: list[AuditRow] = []
        debug = log.isEnabledFor(logging.DEBUG)
        for write in writes:
            result = results.get(write.login_id)
            if result is None:
                continue
            self._count(write, result, counts, debug)
            if self.auditing:
                lost = " (the answer was lost: it may have been applied)" if result.maybe_applied else ""
                audit.append(
                    AuditRow(
                        now,
                        "write",
                        result.outcome.value,
                        write.employee_id,
                        write.login_id,
                        value=write.value,
                        detail=f"{write.reason.value}: {result.detail}{lost}",
                    )
                )
            self._note_since_listing(write, result)
            employee_id = write.employee_id
            if employee_id is not None and employee_id in states:
                states[employee_id] = answered(
                    states[employee_id],
                    write,
                    result.outcome.value,
                    result.detail,
                    result.maybe_applied,
                    now,
                    self.window,
                )
                touched.append(employee_id)
        self.save(states, touched, now)
        self.db.record_audit(audit)

    def _note_since_listing(self, write: Write, result: UpdateResult) -> None:
        if self.since_listing is None:
            return
        key = write.login_id.casefold()
        if result.outcome is UpdateOutcome.APPLIED:
            self.since_listing[key] = write.value
        elif result.maybe_applied:
            self.since_listing[key] = None

    @staticmethod
    def _count(write: Write, result: UpdateResult, counts: PassCounts, debug: bool) -> None:
        outcome = result.outcome
        who = f"{write.login_id} (employee {write.employee_id})" if write.employee_id else write.login_id
        if result.maybe_applied:
            counts.suspect += 1
        if outcome is UpdateOutcome.APPLIED:
            counts.applied += 1
            if write.reason is WriteReason.REPAIR:
                counts.repaired += 1
            elif write.reason is WriteReason.REPLAY:
                counts.replayed += 1
            elif write.reason in (WriteReason.CLEANUP, WriteReason.STALE):
                counts.cleared += 1
            if debug:
                log.debug("applied %s = %r (%s)", who, write.value, write.reason.value)
        elif outcome is UpdateOutcome.NOT_IN_ATHOC:
            counts.not_in_athoc += 1
            if write.employee_id is not None and write.reason is not WriteReason.STALE:
                log.warning(
                    "employee %s: LOGIN_ID %s is not in AtHoc (%s)", write.employee_id, write.login_id, result.detail
                )
        elif outcome is UpdateOutcome.FAILED:
            counts.failed += 1
            log.warning("update of %s failed: %s", who, result.detail)
        else:
            counts.failed += 1

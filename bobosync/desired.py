"""The desired state: the duty value each BOBO employee should have in AtHoc, and the rules
that compare it with what AtHoc holds. Pure functions and records, no I/O.

One :class:`DesiredState` per employee BOBO ever mentioned (the ``desired_state`` table), mapped
or not. It holds the employee's latest event and what became of it: the LOGIN_ID it was last
written to and AtHoc's last answer, a write in flight, a write whose answer was lost (*suspect*
until ``suspect_until``: AtHoc may still apply it), an account the employee no longer maps to
that still holds bobosync's value (*stale*, to be cleared), and the last value read back.

What AtHoc should hold (:func:`desired_value`): for a book-on, the event's local reading in
ATHOC_DATETIME_FORMAT; for a book-off, ``""``; for a book-on older than AUTO_CLEANUP_HOURS,
``""`` too: it is no longer *current* (:func:`is_current`), so it is not sent to an account
that never had it.

Two values agree (:func:`values_agree`) when they are the same text once trimmed, or the same
date-time in ATHOC_DATETIME_FORMAT: AtHoc may give back ``5/6/2024 9:00:00`` for what was
written as ``05/06/2024 09:00:00``, or keep a stray space.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo
from typing import Callable, NamedTuple, Optional

from .bobo_csv import Transaction
from .resolution import EventOrder
from .settings import Settings
from .timebase import as_utc, latest_instant

__all__ = [
    "DesiredState",
    "Write",
    "WriteReason",
    "desired_value",
    "is_current",
    "value_instant",
    "values_agree",
]


@dataclass(frozen=True)
class DesiredState:
    """One row of ``desired_state`` (see the module docstring)."""

    employee_id: str
    #: the event's place in the order of events: its true instant (by which it is also aged),
    #: then its file and row (THE tie rule, :class:`bobosync.resolution.EventOrder`)
    order: EventOrder
    transaction: Transaction
    #: BOBO's own reading of the event time (local wall clock, naive): what a book-on writes
    event_local: datetime
    recorded_at: datetime
    #: the LOGIN_ID last written to, the value AtHoc accepted there, and when
    login_id: Optional[str] = None
    written_value: Optional[str] = None
    written_at: Optional[datetime] = None
    #: AtHoc's last answer for this employee (``applied: Updated``, ``failed: ...``) and when
    last_answer: Optional[str] = None
    answered_at: Optional[datetime] = None
    #: the value last read back from AtHoc (listing or read-back) and when
    athoc_value: Optional[str] = None
    athoc_read_at: Optional[datetime] = None
    #: a write sent whose answer is not recorded yet (a crash leaves it here)
    sending_login: Optional[str] = None
    sending_value: Optional[str] = None
    sent_at: Optional[datetime] = None
    #: a write whose answer was lost: read back until ``suspect_until``
    suspect_login: Optional[str] = None
    suspect_until: Optional[datetime] = None
    #: an account this employee no longer maps to, still holding ``stale_value`` from bobosync
    stale_login: Optional[str] = None
    stale_value: Optional[str] = None
    #: when a reconcile last repaired this employee (AtHoc answered OK)
    repaired_at: Optional[datetime] = None

    @property
    def is_book_on(self) -> bool:
        return self.transaction is Transaction.BOOK_ON

    @property
    def event_at(self) -> datetime:
        """The event's true instant (aware, UTC)."""
        return self.order.instant

    @property
    def source_file(self) -> str:
        return self.order.file_name

    def with_event(
        self, order: EventOrder, transaction: Transaction, event_local: datetime, recorded_at: datetime
    ) -> DesiredState:
        """This state with a later event (what became of earlier writes is kept)."""
        return replace(self, order=order, transaction=transaction, event_local=event_local, recorded_at=recorded_at)


class WriteReason(str, enum.Enum):
    """Why a write is sent (shown in logs and counted in the run history)."""

    #: a file event (new, or the event of a kept file sent again)
    EVENT = "event"
    #: the desired value of an employee whose last write did not land, or who is newly mapped
    REPLAY = "replay"
    #: a reconcile or read-back found AtHoc holding something else
    REPAIR = "repair"
    #: a clear of an account still holding bobosync's value for an employee mapped elsewhere now
    STALE = "stale"
    #: the auto-cleanup: a value older than AUTO_CLEANUP_HOURS
    CLEANUP = "cleanup"


class Write(NamedTuple):
    """One value to write to one AtHoc user."""

    login_id: str
    value: str
    #: the employee it is for; None for a cleanup clear of a user BOBO never mentioned
    employee_id: Optional[str]
    reason: WriteReason


def is_current(state: DesiredState, now: datetime, cleanup_hours: float) -> bool:
    """False for a book-on older than AUTO_CLEANUP_HOURS (0: never too old)."""
    if not state.is_book_on or cleanup_hours <= 0:
        return True
    return now - state.event_at <= timedelta(hours=cleanup_hours)


def desired_value(state: DesiredState, now: datetime, datetime_format: str, cleanup_hours: float) -> str:
    """The value AtHoc should hold for this employee at ``now`` (see the module docstring)."""
    if not state.is_book_on or not is_current(state, now, cleanup_hours):
        return ""
    return state.event_local.strftime(datetime_format)


def value_instant(value: str, datetime_format: str, zone: tzinfo) -> Optional[datetime]:
    """The instant an AtHoc duty value stands for: read (trimmed) with ATHOC_DATETIME_FORMAT in
    ATHOC_TIMEZONE, a repeated reading taking the later instant (so that nothing is taken for
    older than it is); None when it does not parse."""
    try:
        when = datetime.strptime(value.strip(), datetime_format)
    except ValueError:
        return None
    return latest_instant(when, zone).instant


def stale_duty_judge(
    settings: Settings, now: datetime, slack: timedelta = timedelta(0)
) -> Callable[[str], Optional[bool]]:
    """THE auto-cleanup's judgement of an AtHoc duty value at ``now``, used by the pass and by
    ``status``: True when it stands for an instant more than AUTO_CLEANUP_HOURS (plus ``slack``)
    ago, False when not, None when it does not parse with ATHOC_DATETIME_FORMAT."""
    fmt, zone = settings.athoc_datetime_format, settings.athoc_zone
    cutoff = as_utc(now) - timedelta(hours=settings.auto_cleanup_hours) - slack

    def is_old(value: str) -> Optional[bool]:
        instant = value_instant(value, fmt, zone)
        return None if instant is None else instant < cutoff

    return is_old


def values_agree(athoc: Optional[str], desired: str, datetime_format: str) -> bool:
    """Whether AtHoc's value ``athoc`` (None: no value) is the ``desired`` one."""
    held = (athoc or "").strip()
    wanted = desired.strip()
    if held == wanted:
        return True
    if not held or not wanted:
        return False
    try:
        return datetime.strptime(held, datetime_format) == datetime.strptime(wanted, datetime_format)
    except ValueError:
        return False


# --------------------------------------------------------------------------- what answers do


def _same_login(a: Optional[str], b: Optional[str]) -> bool:
    return a is not None and b is not None and a.casefold() == b.casefold()


def sending(state: DesiredState, write: Write, now: datetime) -> DesiredState:
    """Noted before a write is sent: if the answer never comes (a crash), AtHoc may hold it."""
    if write.reason is WriteReason.STALE:
        return state
    return replace(state, sending_login=write.login_id, sending_value=write.value, sent_at=now)


def lost_in_crash(state: DesiredState, window: timedelta) -> DesiredState:
    """A write noted as sending when the process died: its answer is lost, it is suspect."""
    if state.sending_login is None:
        return state
    sent = state.sent_at or state.recorded_at
    cleared = replace(state, sending_login=None, sending_value=None, sent_at=None)
    answer = "unanswered: the run that sent it ended before the answer was recorded"
    return _suspect(cleared, state.sending_login, sent + window, answer, sent)


def _suspect(state: DesiredState, login_id: str, until: datetime, answer: str, now: datetime) -> DesiredState:
    if _same_login(state.suspect_login, login_id) and state.suspect_until is not None:
        until = max(until, state.suspect_until)
    return replace(state, suspect_login=login_id, suspect_until=until, last_answer=answer, answered_at=now)


def answered(
    state: DesiredState,
    write: Write,
    outcome: str,
    detail: str,
    maybe_applied: bool,
    now: datetime,
    window: timedelta,
) -> DesiredState:
    """The state after AtHoc's answer (``outcome`` an UpdateOutcome value) to ``write``."""
    if write.reason is WriteReason.STALE:
        # Cleared, or the account is gone: nothing left to clear. Otherwise try again later.
        if outcome in ("applied", "not_in_athoc") and _same_login(state.stale_login, write.login_id):
            return replace(state, stale_login=None, stale_value=None)
        return state
    state = replace(
        state, sending_login=None, sending_value=None, sent_at=None, last_answer=f"{outcome}: {detail}", answered_at=now
    )
    if outcome == "applied":
        if state.login_id is not None and not _same_login(state.login_id, write.login_id) and state.written_value:
            # The collar moved: the old account still shows this employee's value until cleared.
            state = replace(state, stale_login=state.login_id, stale_value=state.written_value)
        if _same_login(state.stale_login, write.login_id):
            state = replace(state, stale_login=None, stale_value=None)
        state = replace(state, login_id=write.login_id, written_value=write.value, written_at=now)
        if write.reason is WriteReason.REPAIR:
            state = replace(state, repaired_at=now)
        return state
    if outcome == "not_in_athoc":
        if _same_login(state.login_id, write.login_id):
            state = replace(state, login_id=None, written_value=None, written_at=None)
        if _same_login(state.stale_login, write.login_id):
            state = replace(state, stale_login=None, stale_value=None)
        return state
    if maybe_applied:
        return _suspect(state, write.login_id, now + window, state.last_answer or "", now)
    return state


def read_back(state: DesiredState, value: str, now: datetime) -> DesiredState:
    """The value just read from AtHoc for this employee's account."""
    return replace(state, athoc_value=value, athoc_read_at=now)


def is_suspect(state: DesiredState, now: datetime) -> bool:
    """Whether this employee's account must still be read back (a lost answer may still land)."""
    return state.suspect_login is not None and state.suspect_until is not None and now <= state.suspect_until


def end_suspicion(state: DesiredState, now: datetime) -> DesiredState:
    """Drop a suspect window that has run out."""
    if state.suspect_login is not None and not is_suspect(state, now):
        return replace(state, suspect_login=None, suspect_until=None)
    return state

"""When the AtHoc → local user-mapping sync is due.

The schedule reads only the ``sync_tracking`` row ``user_mapping`` (last_sync_time, status),
as the original did, so an operator can force a sync (set status to ``error``) or postpone
one (set last_sync_time to now) by editing that row.

Ages are measured between instants; SYNC_HOUR and "today" are this machine's local time (what
an operator means by 20:00). A last sync recorded in the future (the clock was set back since)
counts as due, never as fresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from .database import SYNC_SUCCESS_WORDS
from .store import SyncState
from .timebase import FUTURE_MARGIN, as_utc

#: Section 6 of the design: unmapped IDs trigger an extra sync when the mapping is older than this.
UNMAPPED_RESYNC_AGE = timedelta(hours=1)


@dataclass(frozen=True)
class SyncDecision:
    due: bool
    reason: str


def _local(value: datetime) -> datetime:
    """An instant as this machine's local wall-clock time (naive)."""
    return as_utc(value).astimezone().replace(tzinfo=None)


def mapping_sync_due(
    state: Optional[SyncState], now: datetime, sync_hour: int, retry_days: int, *, clock_trusted: bool = True
) -> SyncDecision:
    """Due when: never synced; last status error/no_data; the last sync lies in the future;
    more than ``retry_days`` days since the last success (only when ``clock_trusted``: this
    machine's clock agrees with AtHoc's); or it is ``sync_hour`` o'clock (local) or later and
    none succeeded today."""
    if state is None or state.last_sync_time is None:
        return SyncDecision(True, "never synced")
    if state.status not in SYNC_SUCCESS_WORDS:
        return SyncDecision(True, f"last sync ended with status {state.status or 'unknown'!r}")
    last, now = as_utc(state.last_sync_time), as_utc(now)
    if last > now + FUTURE_MARGIN:
        # The clock was set back since (or the row was edited into the future): no age can be
        # trusted, and a stale mapping drops book-ons of new officers. Sync.
        return SyncDecision(True, f"last success {_local(last):%Y-%m-%d %H:%M} lies in the future")
    if clock_trusted and now - last > timedelta(days=retry_days):
        return SyncDecision(True, f"more than {retry_days} day(s) since the last success")
    local_now = _local(now)
    if local_now.hour >= sync_hour and _local(last).date() < local_now.date():
        return SyncDecision(True, f"daily sync at {sync_hour:02d}:00 and none succeeded today")
    return SyncDecision(False, f"last success {_local(last):%Y-%m-%d %H:%M}")


def next_sync_due(state: Optional[SyncState], now: datetime, sync_hour: int, retry_days: int) -> datetime:
    """The earliest time at or after ``now`` when :func:`mapping_sync_due` says yes."""
    if mapping_sync_due(state, now, sync_hour, retry_days).due or state is None or state.last_sync_time is None:
        return as_utc(now)
    last = as_utc(state.last_sync_time)
    daily = datetime.combine(max(_local(last).date() + timedelta(days=1), _local(now).date()), datetime.min.time())
    return min(as_utc(daily.replace(hour=sync_hour)), last + timedelta(days=retry_days))


def reconcile_due(last_started: Optional[datetime], now: datetime, minutes: float) -> bool:
    """Due every ``minutes`` (0: never): no reconcile yet, the last one started that long ago,
    or it lies in the future (the clock was set back: no age can be trusted)."""
    if minutes <= 0:
        return False
    if last_started is None:
        return True
    age = as_utc(now) - as_utc(last_started)
    return age >= timedelta(minutes=minutes) or age < -FUTURE_MARGIN


def mapping_is_stale(state: Optional[SyncState], now: datetime) -> bool:
    """True when the last sync attempt is over an hour old, lies in the future, or there was none."""
    if state is None or state.last_sync_time is None:
        return True
    age = as_utc(now) - as_utc(state.last_sync_time)
    return age > UNMAPPED_RESYNC_AGE or age < -FUTURE_MARGIN

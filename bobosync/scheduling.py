"""When the AtHoc → local user-mapping sync is due.

The schedule reads only the ``sync_tracking`` row ``user_mapping`` (last_sync_time, status),
as the original did, so an operator can force a sync (set status to ``error``) or postpone
one (set last_sync_time to now) by editing that row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from .database import SyncState

#: Section 6 of the design: unmapped IDs trigger an extra sync when the mapping is older than this.
UNMAPPED_RESYNC_AGE = timedelta(hours=1)


@dataclass(frozen=True)
class SyncDecision:
    due: bool
    reason: str


def mapping_sync_due(
    state: Optional[SyncState], now: datetime, sync_hour: int, retry_days: int
) -> SyncDecision:
    """Due when: never synced; last status error/no_data; more than ``retry_days`` days since
    the last success; or it is ``sync_hour`` o'clock or later and none succeeded today."""
    if state is None or state.last_sync_time is None:
        return SyncDecision(True, "never synced")
    if state.status != "success":
        return SyncDecision(True, f"last sync ended with status {state.status or 'unknown'!r}")
    last = state.last_sync_time
    if last > now:
        # The clock went backwards (or the row was edited into the future): trust the row.
        return SyncDecision(False, f"last success {last:%Y-%m-%d %H:%M} is in the future")
    if now - last > timedelta(days=retry_days):
        return SyncDecision(True, f"more than {retry_days} day(s) since the last success")
    if now.hour >= sync_hour and last.date() < now.date():
        return SyncDecision(True, f"daily sync at {sync_hour:02d}:00 and none succeeded today")
    return SyncDecision(False, f"last success {last:%Y-%m-%d %H:%M}")


def next_sync_due(state: Optional[SyncState], now: datetime, sync_hour: int, retry_days: int) -> datetime:
    """The earliest time at or after ``now`` when :func:`mapping_sync_due` says yes."""
    if mapping_sync_due(state, now, sync_hour, retry_days).due or state is None or state.last_sync_time is None:
        return now
    last = state.last_sync_time
    daily = datetime.combine(max(last.date() + timedelta(days=1), now.date()), datetime.min.time())
    daily = daily.replace(hour=sync_hour)
    return min(daily, last + timedelta(days=retry_days))


def mapping_is_stale(state: Optional[SyncState], now: datetime) -> bool:
    """True when the last sync attempt is over an hour old (or there was none)."""
    return state is None or state.last_sync_time is None or now - state.last_sync_time > UNMAPPED_RESYNC_AGE

"""When the mapping sync is due (section 7) and the one-hour rule (section 6)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional

import pytest

from bobosync.scheduling import mapping_is_stale, mapping_sync_due, next_sync_due, reconcile_due
from bobosync.store import SyncState
from bobosync.timebase import as_utc

NOW = datetime(2025, 6, 17, 14, 0, 0)


def state(last: Optional[datetime], status: Optional[str] = "success") -> SyncState:
    return SyncState(
        last_sync_date=last.date() if last else None,
        last_sync_time=last,
        status=status,
        records_synced=10,
        last_success_time=last if status == "success" else None,
    )


@pytest.mark.parametrize(
    ("sync_state", "now", "due", "why"),
    [
        (None, NOW, True, "never synced"),
        (state(None, None), NOW, True, "never synced"),
        (state(NOW - timedelta(minutes=5), "error"), NOW, True, "status 'error'"),
        (state(NOW - timedelta(minutes=5), "no_data"), NOW, True, "status 'no_data'"),
        (state(NOW - timedelta(days=2, minutes=1)), NOW, True, "2 day(s)"),
        (state(NOW - timedelta(days=1, hours=23)), NOW, False, "last success"),
        # 20:00 or later and none succeeded today
        (state(datetime(2025, 6, 16, 20, 5)), datetime(2025, 6, 17, 20, 0), True, "daily sync at 20:00"),
        (state(datetime(2025, 6, 16, 20, 5)), datetime(2025, 6, 17, 19, 59), False, "last success"),
        (state(datetime(2025, 6, 17, 8, 0)), datetime(2025, 6, 17, 21, 0), False, "last success"),
        # recorded in the future (the clock was set back since): due, never fresh
        (state(NOW + timedelta(hours=3)), NOW, True, "lies in the future"),
    ],
)
def test_mapping_sync_due(sync_state: Optional[SyncState], now: datetime, due: bool, why: str) -> None:
    decision = mapping_sync_due(sync_state, now, sync_hour=20, retry_days=2)
    assert decision.due is due
    assert why in decision.reason


def test_next_sync_due_is_the_daily_hour_or_the_retry_limit() -> None:
    last = datetime(2025, 6, 17, 20, 5)
    # naive times are this machine's local time; the answers are instants
    assert next_sync_due(state(last), datetime(2025, 6, 17, 21, 0), 20, 2) == as_utc(datetime(2025, 6, 18, 20, 0))
    assert next_sync_due(state(last), datetime(2025, 6, 17, 21, 0), 23, 1) == as_utc(last + timedelta(days=1))
    assert next_sync_due(None, NOW, 20, 2) == as_utc(NOW)


def test_the_retry_days_rule_waits_while_the_clock_is_not_trusted() -> None:
    old = state(NOW - timedelta(days=3))
    assert mapping_sync_due(old, NOW, sync_hour=23, retry_days=2).due
    assert not mapping_sync_due(old, NOW, sync_hour=23, retry_days=2, clock_trusted=False).due


def test_one_hour_rule_reads_the_last_attempt() -> None:
    assert mapping_is_stale(None, NOW)
    assert mapping_is_stale(state(NOW - timedelta(hours=1, seconds=1), "error"), NOW)
    assert not mapping_is_stale(state(NOW - timedelta(minutes=59)), NOW)
    assert mapping_is_stale(state(NOW + timedelta(minutes=5)), NOW)  # recorded in the future: stale


def test_reconcile_is_due_every_n_minutes_and_when_the_last_one_lies_in_the_future() -> None:
    now = datetime(2026, 6, 15, 12, 0, tzinfo=timezone.utc)
    assert reconcile_due(None, now, 15)
    assert not reconcile_due(now - timedelta(minutes=14), now, 15)
    assert reconcile_due(now - timedelta(minutes=15), now, 15)
    assert reconcile_due(now + timedelta(hours=3), now, 15)  # the clock was set back since
    assert not reconcile_due(None, now, 0)  # RECONCILE_MINUTES=0: off

"""Latest event per employee (bobosync.resolution)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bobosync.bobo_csv import BadRow, BOBOEntry, Transaction, read_bobo_file
from bobosync.resolution import AppliedEvent, EventOrder, LatestEvents, ResolvedEvent, drop_not_newer
from bobosync.timebase import UTC

T0 = datetime(2024, 6, 17, 14, 30, 0)


def resolved(e: BOBOEntry, file_index: int) -> ResolvedEvent:
    """The event as LatestEvents returns it when given no instants and no file names."""
    return ResolvedEvent(e, file_index, EventOrder(e.event_time.replace(tzinfo=UTC), file_index, "", e.row_number))


ON, OFF = Transaction.BOOK_ON, Transaction.BOOK_OFF


def entry(
    employee_id: str = "12345",
    seconds: int = 0,
    row_number: int = 1,
    transaction: Transaction = ON,
) -> BOBOEntry:
    return BOBOEntry(transaction, employee_id, T0 + timedelta(seconds=seconds), row_number)


def test_first_entry_becomes_latest() -> None:
    latest = LatestEvents()
    assert len(latest) == 0 and latest.events() == {}
    e = entry()
    assert latest.add(e, 3) is True
    assert latest.events() == {"12345": resolved(e, 3)}
    assert len(latest) == 1
    assert latest.superseded == 0


def test_later_event_time_wins_whatever_the_order() -> None:
    early, late = entry(seconds=0), entry(seconds=60, transaction=OFF)
    forward = LatestEvents()
    assert forward.add(early, 0) is True
    assert forward.add(late, 0) is True
    backward = LatestEvents()
    assert backward.add(late, 0) is True
    assert backward.add(early, 0) is False  # a late file must not undo a newer status
    assert forward.events() == backward.events() == {"12345": resolved(late, 0)}
    assert forward.superseded == backward.superseded == 1


def test_event_time_beats_file_and_row_order() -> None:
    latest = LatestEvents()
    newer = entry(seconds=1, row_number=1)
    latest.add(newer, 0)
    assert latest.add(entry(seconds=0, row_number=99), 5) is False
    assert latest.events()["12345"] == resolved(newer, 0)


def test_tie_on_time_later_file_wins() -> None:
    a, b = entry(row_number=9, transaction=ON), entry(row_number=1, transaction=OFF)
    latest = LatestEvents()
    assert latest.add(a, 0) is True
    assert latest.add(b, 1) is True
    assert latest.events()["12345"] == resolved(b, 1)
    other = LatestEvents()
    assert other.add(b, 1) is True
    assert other.add(a, 0) is False
    assert other.events()["12345"] == resolved(b, 1)


def test_tie_on_time_and_file_later_row_wins() -> None:
    a, b = entry(row_number=2, transaction=ON), entry(row_number=3, transaction=OFF)
    latest = LatestEvents()
    assert latest.add(b, 4) is True
    assert latest.add(a, 4) is False
    assert latest.events()["12345"].entry == b
    other = LatestEvents()
    other.add(a, 4)
    assert other.add(b, 4) is True
    assert other.events()["12345"].entry == b


def test_same_entry_twice_is_not_newer() -> None:
    latest = LatestEvents()
    e = entry()
    assert latest.add(e, 0) is True
    assert latest.add(e, 0) is False
    assert latest.superseded == 1
    assert len(latest) == 1


def test_superseded_counts_losers_and_displaced() -> None:
    latest = LatestEvents()
    latest.add(entry("A", 10), 0)  # held
    latest.add(entry("A", 5), 0)  # loses: 1
    latest.add(entry("A", 20), 0)  # displaces the first: 2
    latest.add(entry("B", 0), 0)  # new employee: no change
    latest.add(entry("B", 0, row_number=2), 0)  # displaces: 3
    assert latest.superseded == 3
    assert len(latest) == 2
    assert latest.superseded + len(latest) == 5


def test_employees_are_kept_apart_and_ids_are_text() -> None:
    latest = LatestEvents()
    latest.add(entry("05990", 0), 0)
    latest.add(entry("5990", 100), 0)
    events = latest.events()
    assert set(events) == {"05990", "5990"}
    assert events["05990"].entry.event_time == T0


def test_events_give_entries_equal_to_those_added() -> None:
    latest = LatestEvents()
    e = BOBOEntry(OFF, "05990", T0, 17)
    latest.add(e, 2)
    (event,) = latest.events().values()
    assert event == resolved(e, 2)
    assert type(event.entry) is BOBOEntry and event.entry.transaction is OFF
    assert not event.entry.is_book_on


def test_events_returns_a_new_dict() -> None:
    latest = LatestEvents()
    latest.add(entry(), 0)
    events = latest.events()
    events.clear()
    assert len(latest.events()) == 1


def test_resolved_event_key() -> None:
    e = entry(seconds=5, row_number=7)
    assert resolved(e, 3).key == EventOrder((T0 + timedelta(seconds=5)).replace(tzinfo=UTC), 3, "", 7)


def test_drop_not_newer() -> None:
    events = {
        "newer": resolved(entry("newer", 10), 0),
        "equal": resolved(entry("equal", 10), 0),
        "older": resolved(entry("older", 10), 0),
        "unknown": resolved(entry("unknown", 10), 0),
        "same state later": resolved(entry("same state later", 10), 1),
        "other state later": resolved(entry("other state later", 10, transaction=Transaction.BOOK_OFF), 1),
    }
    at = (T0 + timedelta(seconds=10)).replace(tzinfo=UTC)

    def applied(when: datetime, file_index: int = 0) -> AppliedEvent:
        return AppliedEvent(EventOrder(when, file_index, "", 1), Transaction.BOOK_ON)

    last_applied = {
        "newer": applied(at - timedelta(seconds=1)),
        "equal": applied(at),
        "older": applied(at + timedelta(hours=1)),
        "someone else": applied(at),
        "same state later": applied(at),
        "other state later": applied(at),
    }
    decided = drop_not_newer(events, last_applied)
    assert decided.kept == {
        "newer": events["newer"],
        "unknown": events["unknown"],
        "other state later": events["other state later"],
    }
    assert decided.dropped == 3
    assert decided.same == {"same state later": events["same state later"]}
    assert decided.behind == []  # the file of "older" is not newer than the applied one's
    assert drop_not_newer({}, last_applied).kept == {}
    assert drop_not_newer(events, {}).kept == events
    assert drop_not_newer(events, {}).kept is not events


def test_drop_not_newer_reports_an_older_event_from_a_newer_file() -> None:
    late = resolved(entry("1", 0), 5)  # file 5: newer than file 2, but its event 11 min older
    applied = AppliedEvent(EventOrder((T0 + timedelta(minutes=11)).replace(tzinfo=UTC), 2, "", 1), Transaction.BOOK_OFF)
    decided = drop_not_newer({"1": late}, {"1": applied})
    assert decided.kept == {} and [b.employee_id for b in decided.behind] == ["1"]
    just = AppliedEvent(
        applied.order._replace(instant=(T0 + timedelta(minutes=10)).replace(tzinfo=UTC)), Transaction.BOOK_OFF
    )
    assert drop_not_newer({"1": late}, {"1": just}).behind == []  # 10 minutes: within the margin


def test_resolution_of_real_files(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        "BON,1,P,D,T,20240617143000,,,,\n"
        "BOF,1,P,D,T,20240617140000,,,,\n"  # older: loses
        "BON,2,P,D,T,20240617143000,,,,\n"
        "XYZ,3,P,D,T,20240617143000,,,,\n"
    )
    (tmp_path / "b.csv").write_text(
        "BOF,2,P,D,T,20240617143000,,,,\n"  # same time, later file: wins
        "BOF,1,P,D,T,20240617142959,,,,\n"  # older: loses
    )
    latest = LatestEvents()
    bad = []
    for index, name in enumerate(["a.csv", "b.csv"]):
        for item in read_bobo_file(tmp_path / name):
            if isinstance(item, BadRow):
                bad.append(item)
            else:
                latest.add(item, index)
    events = latest.events()
    assert {k: (v.entry.transaction, v.file_index, v.entry.row_number) for k, v in events.items()} == {
        "1": (ON, 0, 1),
        "2": (OFF, 1, 1),
    }
    assert latest.superseded == 3
    assert [b.row_number for b in bad] == [4]


# -- property ------------------------------------------------------------------------------

_EVENT = st.tuples(
    st.sampled_from(["1", "2", "05990", "5990"]),  # few employees
    st.integers(0, 5),  # few distinct times: many ties
    st.integers(0, 3),  # file index
    st.integers(1, 4),  # row number
    st.sampled_from([ON, OFF]),
)


@settings(max_examples=400, deadline=None)
@given(events=st.lists(_EVENT, max_size=40), seed=st.integers(0, 2**32 - 1))
def test_property_result_is_the_max_by_ordering_key(
    events: list[tuple[str, int, int, int, Transaction]], seed: int
) -> None:
    # One file holds each (file, row) once, as in real files.
    seen: set[tuple[int, int]] = set()
    offered = []
    for employee_id, seconds, file_index, row_number, transaction in events:
        if (file_index, row_number) in seen:
            continue
        seen.add((file_index, row_number))
        offered.append((entry(employee_id, seconds, row_number, transaction), file_index))
    random.Random(seed).shuffle(offered)  # files and rows in any order

    latest = LatestEvents()
    best: dict[str, ResolvedEvent] = {}
    for e, file_index in offered:
        candidate = resolved(e, file_index)
        became_latest = latest.add(e, file_index)
        held = best.get(e.employee_id)
        assert became_latest == (held is None or candidate.key > held.key)
        if became_latest:
            best[e.employee_id] = candidate

    expected: dict[str, ResolvedEvent] = {}
    for e, file_index in offered:
        candidate = resolved(e, file_index)
        if e.employee_id not in expected or candidate.key > expected[e.employee_id].key:
            expected[e.employee_id] = candidate
    assert latest.events() == expected
    assert len(latest) == len(expected)
    assert latest.superseded == len(offered) - len(expected)

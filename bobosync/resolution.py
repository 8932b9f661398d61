"""The latest event per employee, across the files of a batch and across passes.

Only the latest event of each employee matters. "Latest" is the maximum of the ordering key
``(event_time, file_index, row_number)``: the latest DateTime_Created wins; on a tie, the
entry from the later file of the batch, then the later row of that file. The result depends
only on the entries added, not on the order they are added in.

Across passes, :func:`drop_not_newer` keeps a late file from undoing a newer status: an event
is sent only when it is strictly newer than the last event applied for that employee.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple

from .bobo_csv import BOBOEntry, Transaction

__all__ = ["LatestEvents", "ResolvedEvent", "drop_not_newer", "drop_older_than_in_flight"]


class ResolvedEvent(NamedTuple):
    """An entry and the position of its file in the batch."""

    entry: BOBOEntry
    file_index: int

    @property
    def key(self) -> tuple[datetime, int, int]:
        """The ordering key ``(event_time, file_index, row_number)``; the maximum wins."""
        return (self.entry.event_time, self.file_index, self.entry.row_number)


class LatestEvents:
    """Keeps, for each employee, the entry with the greatest ordering key offered so far.

    ``superseded`` counts the entries that did not survive: each entry that lost to the one
    already held, and each held entry displaced by a later one. After any sequence of adds,
    ``superseded + len(self)`` is the number of entries added.

    :meth:`add` runs once per row, so it keeps as little as it can: per employee, one tuple
    ``(event_time, file_index, row_number, transaction)``, the employee ID being the dict key.
    :meth:`events` rebuilds the entries from that: they are equal to the entries added, not
    the same objects. (Holding on to the entries themselves, with their own ID strings and
    row numbers, measured 15-20% slower over a million rows: each held object is memory the
    CPU caches lose.)
    """

    __slots__ = ("_held", "superseded")

    def __init__(self) -> None:
        self._held: dict[str, tuple[datetime, int, int, Transaction]] = {}
        self.superseded = 0

    def add(self, entry: BOBOEntry, file_index: int) -> bool:
        """Offer one entry; True when it became (for now) the latest of its employee."""
        # Fields by position (0 transaction, 1 employee_id, 2 event_time, 3 row_number): on a
        # named tuple that is measurably cheaper than by name, and this runs once per row.
        held_by_id = self._held
        employee_id = entry[1]
        when = entry[2]
        held = held_by_id.get(employee_id)
        if held is not None:
            self.superseded += 1
            held_when = held[0]
            if when < held_when or (
                when == held_when
                and (file_index < held[1] or (file_index == held[1] and entry[3] <= held[2]))
            ):
                return False
        held_by_id[employee_id] = (when, file_index, entry[3], entry[0])
        return True

    def events(self) -> dict[str, ResolvedEvent]:
        """employee_id -> its latest event (a new dict each call)."""
        return {
            employee_id: ResolvedEvent(BOBOEntry(tx, employee_id, when, row), file_index)
            for employee_id, (when, file_index, row, tx) in self._held.items()
        }

    def __len__(self) -> int:
        return len(self._held)

    def __repr__(self) -> str:
        return f"<LatestEvents: {len(self._held)} employees, {self.superseded} superseded>"


def drop_not_newer(
    events: Mapping[str, ResolvedEvent], last_applied: Mapping[str, datetime]
) -> tuple[dict[str, ResolvedEvent], int]:
    """Keep the events strictly newer than the last event applied for their employee.

    Returns ``(kept, dropped)``. An employee with no applied event keeps its event. An event
    at exactly the time of the last applied one is dropped: it is that event again, or one
    that must not undo it (a late file must not undo a newer status).
    """
    kept: dict[str, ResolvedEvent] = {}
    dropped = 0
    for employee_id, event in events.items():
        applied = last_applied.get(employee_id)
        if applied is not None and event.entry.event_time <= applied:
            dropped += 1
        else:
            kept[employee_id] = event
    return kept, dropped


def drop_older_than_in_flight(
    events: Mapping[str, ResolvedEvent], in_flight: Mapping[str, datetime]
) -> tuple[dict[str, ResolvedEvent], int]:
    """Keep the events not older than an event sent earlier whose outcome was lost.

    AtHoc may already hold such an in-flight event (the process died, or a request timed out
    after AtHoc applied it), so an older one must not be sent over it. An event at the same
    time is kept: it is usually that very event, sent again to learn its outcome.
    """
    kept: dict[str, ResolvedEvent] = {}
    dropped = 0
    for employee_id, event in events.items():
        sent = in_flight.get(employee_id)
        if sent is not None and event.entry.event_time < sent:
            dropped += 1
        else:
            kept[employee_id] = event
    return kept, dropped

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

from .bobo_csv import BOBOEntry

__all__ = ["LatestEvents", "ResolvedEvent", "drop_not_newer"]


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

    This is on the hot path (one call per row), so the entries and their file positions are
    kept in two plain dicts and the :class:`ResolvedEvent` objects are only built by
    :meth:`events`.
    """

    __slots__ = ("_entries", "_files", "superseded")

    def __init__(self) -> None:
        self._entries: dict[str, BOBOEntry] = {}
        self._files: dict[str, int] = {}
        self.superseded = 0

    def add(self, entry: BOBOEntry, file_index: int) -> bool:
        """Offer one entry; True when it became (for now) the latest of its employee."""
        entries = self._entries
        employee_id = entry.employee_id
        held = entries.get(employee_id)
        if held is not None:
            self.superseded += 1
            when = entry.event_time
            held_when = held.event_time
            if when < held_when:
                return False
            if when == held_when:
                held_file = self._files[employee_id]
                if file_index < held_file or (
                    file_index == held_file and entry.row_number <= held.row_number
                ):
                    return False
        entries[employee_id] = entry
        self._files[employee_id] = file_index
        return True

    def events(self) -> dict[str, ResolvedEvent]:
        """employee_id -> its latest event (a new dict each call)."""
        files = self._files
        return {
            employee_id: ResolvedEvent(entry, files[employee_id])
            for employee_id, entry in self._entries.items()
        }

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<LatestEvents: {len(self._entries)} employees, {self.superseded} superseded>"


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

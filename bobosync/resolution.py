"""The latest event per employee, across the files of a batch and across passes.

Only the latest event of each employee matters. "Latest" is the maximum of the ordering key
``(event_time, file_index, row_number)``: the latest DateTime_Created wins; on a tie, the
entry from the later file of the batch, then the later row of that file. Files do not have to
be added in any particular order: the result depends only on the entries added.

Across passes, :func:`drop_not_newer` keeps a late file from undoing a newer status: an event
is sent only when it is strictly newer than the last event applied for that employee.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Callable, NamedTuple

from .bobo_csv import BOBOEntry

__all__ = ["LatestEvents", "ResolvedEvent", "drop_not_newer"]


class ResolvedEvent(NamedTuple):
    """An entry and the position of its file in the batch."""

    entry: BOBOEntry
    file_index: int

    @property
    def key(self) -> tuple[datetime, int, int]:
        """The ordering key: ``(event_time, file_index, row_number)``; the maximum wins."""
        return (self.entry.event_time, self.file_index, self.entry.row_number)


_new_event: Callable[..., ResolvedEvent] = tuple.__new__


class LatestEvents:
    """Keeps, for each employee, the entry with the greatest ordering key seen so far.

    ``superseded`` counts the entries that did not survive: each entry that lost to the one
    already held, and each held entry displaced by a later one. After any sequence of adds,
    ``superseded + len(self)`` equals the number of entries added.
    """

    __slots__ = ("_latest", "superseded")

    def __init__(self) -> None:
        self._latest: dict[str, ResolvedEvent] = {}
        self.superseded = 0

    def add(self, entry: BOBOEntry, file_index: int) -> bool:
        """Offer one entry; True when it became (for now) the latest of its employee."""
        latest = self._latest
        employee_id = entry.employee_id
        held = latest.get(employee_id)
        if held is not None:
            self.superseded += 1
            held_entry = held.entry
            if entry.event_time < held_entry.event_time:
                return False
            if entry.event_time == held_entry.event_time and (
                file_index < held.file_index
                or (
                    file_index == held.file_index
                    and entry.row_number <= held_entry.row_number
                )
            ):
                return False
        latest[employee_id] = _new_event(ResolvedEvent, (entry, file_index))
        return True

    def events(self) -> dict[str, ResolvedEvent]:
        """employee_id -> its latest event (a new dict; changing it does not change us)."""
        return dict(self._latest)

    def __len__(self) -> int:
        return len(self._latest)

    def __repr__(self) -> str:
        return f"<LatestEvents {len(self._latest)} employees, {self.superseded} superseded>"


def drop_not_newer(
    events: Mapping[str, ResolvedEvent], last_applied: Mapping[str, datetime]
) -> tuple[dict[str, ResolvedEvent], int]:
    """Keep the events strictly newer than the last event applied for their employee.

    Returns ``(kept, dropped)``. An employee with no applied event keeps its event; an event
    at exactly the same time as the last applied one is dropped (it was applied already, or
    it would undo a status of the same second).
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

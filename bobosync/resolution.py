"""The latest event per employee, across the files of a batch and across passes.

Only the latest event of each employee matters. "Latest" is the maximum of :class:`EventOrder`,
THE tie rule of bobosync: the later true instant (UTC, :mod:`bobosync.timebase`) wins; on an
equal instant the later file in listing order (modification time, then name), then the later
row of that file. Within a batch the files are indexed in listing order, so ``(instant,
file_index, row)`` orders the same way. The result depends only on the entries added, not on
the order they are added in, nor on how files are split into batches and passes.

Across passes, :func:`drop_not_newer` keeps a late file from undoing a newer status: an event
is sent only when its order is greater than that of the last event applied for that employee
and it says something new (the same instant with the same transaction is that event again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple, Optional

from .bobo_csv import BOBOEntry, Transaction
from .timebase import UTC

__all__ = [
    "BEHIND_AFTER",
    "AppliedEvent",
    "Behind",
    "EventOrder",
    "LatestEvents",
    "NotNewer",
    "ResolvedEvent",
    "drop_not_newer",
]

#: An event that loses to the applied one although its file is newer, by more than this, is
#: logged as a sign of a BOBO terminal whose clock runs behind.
BEHIND_AFTER = timedelta(minutes=10)


class EventOrder(NamedTuple):
    """Where an event stands in THE order of events; the maximum wins (see the module docstring)."""

    instant: datetime  # aware, UTC
    file_mtime_ns: int
    file_name: str
    row: int


class AppliedEvent(NamedTuple):
    """The event an employee's desired state holds, as :func:`drop_not_newer` compares with it."""

    order: EventOrder
    transaction: Transaction


class ResolvedEvent(NamedTuple):
    """An entry (with its local reading), the position of its file in the batch, and its order."""

    entry: BOBOEntry
    file_index: int
    order: EventOrder

    @property
    def instant(self) -> datetime:
        """The true instant of the event (aware, UTC)."""
        return self.order.instant

    @property
    def key(self) -> EventOrder:
        return self.order


class LatestEvents:
    """Keeps, for each employee, the entry with the greatest ordering key offered so far.

    ``superseded`` counts the entries that did not survive: each entry that lost to the one
    already held, and each held entry displaced by a later one. After any sequence of adds,
    ``superseded + len(self)`` is the number of entries added.

    ``files`` gives ``(modification time ns, name)`` of each file index, in listing order; they
    make the :class:`EventOrder` of the events returned.

    :meth:`add` runs once per row, so it keeps as little as it can: per employee, one tuple
    ``(instant, file_index, row_number, transaction, reading)``, the employee ID being the dict key.
    :meth:`events` rebuilds the entries from that: they are equal to the entries added, not
    the same objects. (Holding on to the entries themselves, with their own ID strings and
    row numbers, measured 15-20% slower over a million rows: each held object is memory the
    CPU caches lose.)
    """

    __slots__ = ("_files", "_held", "superseded")

    def __init__(self, files: Sequence[tuple[int, str]] = ()) -> None:
        self._files = files
        self._held: dict[str, tuple[datetime, int, int, Transaction, datetime]] = {}
        self.superseded = 0

    def add(self, entry: BOBOEntry, file_index: int, instant: Optional[datetime] = None) -> bool:
        """Offer one entry with its true instant (default: its reading taken as UTC); True when
        it became (for now) the latest of its employee."""
        # Fields by position (0 transaction, 1 employee_id, 2 event_time, 3 row_number): on a
        # named tuple that is measurably cheaper than by name, and this runs once per row.
        held_by_id = self._held
        employee_id = entry[1]
        when = instant if instant is not None else entry[2].replace(tzinfo=UTC)
        held = held_by_id.get(employee_id)
        if held is not None:
            self.superseded += 1
            held_when = held[0]
            if when < held_when or (
                when == held_when and (file_index < held[1] or (file_index == held[1] and entry[3] <= held[2]))
            ):
                return False
        held_by_id[employee_id] = (when, file_index, entry[3], entry[0], entry[2])
        return True

    def _file(self, index: int) -> tuple[int, str]:
        return self._files[index] if index < len(self._files) else (index, "")

    def events(self) -> dict[str, ResolvedEvent]:
        """employee_id -> its latest event (a new dict each call)."""
        return {
            employee_id: ResolvedEvent(
                BOBOEntry(tx, employee_id, reading, row), file_index, EventOrder(when, *self._file(file_index), row)
            )
            for employee_id, (when, file_index, row, tx, reading) in self._held.items()
        }

    def __len__(self) -> int:
        return len(self._held)

    def __repr__(self) -> str:
        return f"<LatestEvents: {len(self._held)} employees, {self.superseded} superseded>"


class Behind(NamedTuple):
    """An event that lost to the applied one although its file is newer (see BEHIND_AFTER)."""

    employee_id: str
    event: ResolvedEvent
    applied: AppliedEvent


class NotNewer(NamedTuple):
    """What :func:`drop_not_newer` decided."""

    kept: dict[str, ResolvedEvent]
    #: Events dropped: not newer than the applied one, or that very state again.
    dropped: int
    #: Of the dropped, those later in the order but saying the same (same instant, same
    #: transaction): AtHoc already holds their value; recorded as applied without sending, so
    #: that the stored order is the same whatever the pass boundaries.
    same: dict[str, ResolvedEvent]
    behind: list[Behind]


def drop_not_newer(events: Mapping[str, ResolvedEvent], last_applied: Mapping[str, AppliedEvent]) -> NotNewer:
    """Keep the events later in the order than the last event applied for their employee.

    An employee with no applied event keeps its event. An event not later than the applied
    one is dropped: it is that event again, or one that must not undo it (a late file must not
    undo a newer status); when its file is newer and it is more than BEHIND_AFTER older, it is
    also reported in ``behind``. A later event with the same instant and transaction says
    nothing new: dropped, and reported in ``same``.
    """
    kept: dict[str, ResolvedEvent] = {}
    same: dict[str, ResolvedEvent] = {}
    behind: list[Behind] = []
    dropped = 0
    for employee_id, event in events.items():
        applied = last_applied.get(employee_id)
        if applied is None:
            kept[employee_id] = event
            continue
        order = event.order
        if order <= applied.order:
            dropped += 1
            if (
                order.file_mtime_ns > applied.order.file_mtime_ns
                and applied.order.instant - order.instant > BEHIND_AFTER
            ):
                behind.append(Behind(employee_id, event, applied))
        elif order.instant == applied.order.instant and event.entry.transaction is applied.transaction:
            dropped += 1
            same[employee_id] = event
        else:
            kept[employee_id] = event
    return NotNewer(kept, dropped, same, behind)

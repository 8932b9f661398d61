"""What the pipeline needs from its store: the records, and small Protocols by subject.

The pass (processor, writer, file mover), status, the health e-mail and the metrics are typed
against these Protocols, not against the SQLite class, each part against what it needs (the
writer: desired states and the audit trail; the choice of files: file records; the e-mail:
run history), so a reader sees what each part uses, and another store is one class that
satisfies :class:`Store` (mypy checks that :class:`~bobosync.database.BOBODatabase` does: see
``tests/test_architecture.py``). Only the original tool's API needs the SQLite class itself.
The Protocols::

    Store
     ├── MappingStore        collar number -> AtHoc login (the mapping sync's listing)
     ├── DesiredStateStore   the value each person should hold, and where its write stands
     ├── FileRecords         failures and retries per file, files kept in place, the move journal
     ├── RunHistory          runs, their counts, the mapping sync's record
     └── AuditTrail          what was seen and done about one person (``bobosync trace``)

Every method that writes may be called inside :meth:`Transactional.transaction`, and then
commits with the rest of the block or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Callable, NamedTuple, Optional, Protocol

from .desired import DesiredState

__all__ = [
    "AuditRow",
    "AuditTrail",
    "DesiredStateStore",
    "FileRecords",
    "MappingChange",
    "MappingStore",
    "PendingMove",
    "RememberedFile",
    "RunHistory",
    "RunRecord",
    "Store",
    "SyncState",
    "Transactional",
]


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SyncState:
    """One row of ``sync_tracking``."""

    last_sync_date: Optional[date]
    #: An instant, read from the local text the original writes (and operators edit).
    last_sync_time: Optional[datetime]
    status: Optional[str]
    records_synced: int
    last_success_time: Optional[datetime]
    #: Mappings in the last complete listing bobosync stored; None when there is no record of
    #: one (a row the original wrote: its INSERT OR REPLACE drops this column's value).
    listing_mappings: Optional[int] = None


@dataclass(frozen=True)
class RunRecord:
    """One row of ``run_history``."""

    id: int
    kind: str
    started_at: datetime
    finished_at: Optional[datetime]
    status: str
    duration_seconds: Optional[float]
    counts: dict[str, Any]
    error: Optional[str]
    pid: Optional[int]


class AuditRow(NamedTuple):
    """One row of ``audit_log``: something bobosync saw or did about one person.

    ``kind`` is ``event`` (a CSV row: ``outcome`` says what became of it), ``write`` (a value
    sent: ``outcome`` is AtHoc's answer, ``detail`` why it was sent and AtHoc's words),
    ``read`` (a read-back that found a value other than the one read before, or drift) or
    ``mapping`` (the collar number ``employee_id`` now maps to ``login_id``, or no longer does)
    or ``superseded``: one row per employee and batch for every event of it that a later one
    superseded, listed in ``events`` as JSON ``[[BON/BOF, instant, file, row], ...]`` (a
    backlog's rows are mostly superseded: one insert per person, not per row). A named tuple,
    not a dataclass: a pass makes many, and this is the cheapest to make.
    """

    recorded_at: datetime
    kind: str
    outcome: str
    employee_id: Optional[str] = None
    login_id: Optional[str] = None
    transaction_type: Optional[str] = None
    event_at: Optional[datetime] = None
    source_file: Optional[str] = None
    source_row: Optional[int] = None
    value: Optional[str] = None
    detail: Optional[str] = None
    events: Optional[str] = None


@dataclass(frozen=True)
class RememberedFile:
    """A file processed in place (``MOVE_PROCESSED_FILES=false``)."""

    name: str
    size: int
    sha256: str
    mtime_ns: Optional[int]
    processed_at: datetime
    ctime_ns: Optional[int] = None
    file_id: Optional[int] = None

    @property
    def fingerprint(self) -> tuple[int, Optional[int], Optional[int], Optional[int]]:
        """(size, mtime_ns, ctime_ns, file_id), as :class:`bobosync.filestore.Fingerprint`."""
        return (self.size, self.mtime_ns, self.ctime_ns, self.file_id)


@dataclass(frozen=True)
class PendingMove:
    """A file move that was started and not yet known to be finished."""

    src: str
    dst: str
    sha256: str
    started_at: datetime


@dataclass(frozen=True)
class MappingChange:
    """What :meth:`MappingStore.replace_mappings` did."""

    added: int
    removed: int
    changed: int
    total: int


# --------------------------------------------------------------------------- interfaces


class Transactional(Protocol):
    def transaction(self) -> AbstractContextManager[None]:
        """One transaction: the writes inside commit together or not at all (re-entrant)."""
        ...


class MappingStore(Transactional, Protocol):
    def all_mappings(self) -> dict[str, str]: ...
    def mapping_count(self) -> int: ...
    def get_usernames(self, employee_ids: Iterable[str]) -> dict[str, str]: ...
    def numeric_mappings(self, numbers: Iterable[str]) -> dict[str, list[tuple[str, str]]]: ...
    def replace_mappings(self, mapping: Mapping[str, str], now: datetime, *, audit: bool = True) -> MappingChange: ...


class DesiredStateStore(Transactional, Protocol):
    def desired_states(self, employee_ids: Optional[Iterable[str]] = None) -> dict[str, DesiredState]: ...
    def save_desired_states(self, states: Iterable[tuple[DesiredState, str]]) -> None: ...
    def desired_employee_ids(self) -> list[str]: ...
    def sending_states(self) -> dict[str, DesiredState]: ...
    def watched_states(self) -> dict[str, DesiredState]: ...
    def replay_candidates(self, aged_before: Optional[datetime]) -> dict[str, DesiredState]: ...
    def adopt_carried_over(self, zone: tzinfo, value_of: Callable[[DesiredState], str]) -> int: ...
    def should_warn_unreadable(self, values: Mapping[str, str], now: datetime, every: timedelta) -> list[str]: ...
    def forget_unreadable(self, keep: Iterable[str]) -> None: ...


class FileRecords(Transactional, Protocol):
    def record_file_failure(self, filename: str, error: str, when: datetime) -> int: ...
    def clear_file_retry(self, filename: str) -> None: ...
    def last_failure_reason(self, filename: str) -> Optional[str]: ...
    def retry_counts(self) -> dict[str, tuple[int, Optional[str]]]: ...
    def log_processing(
        self,
        filename: str,
        records_processed: int,
        status: str,
        error_message: Optional[str] = None,
        processed_at: Optional[datetime] = None,
        *,
        success_count: Optional[int] = None,
        error_count: Optional[int] = None,
    ) -> None: ...
    def remember_file(
        self,
        name: str,
        size: int,
        sha256: str,
        mtime_ns: Optional[int],
        when: datetime,
        ctime_ns: Optional[int] = None,
        file_id: Optional[int] = None,
    ) -> None: ...
    def refresh_remembered(
        self, name: str, size: int, sha256: str, mtime_ns: int, ctime_ns: int, file_id: int
    ) -> None: ...
    def remembered_by_name(self, names: Optional[Iterable[str]] = None) -> dict[str, list[RememberedFile]]: ...
    def purge_remembered(self, before: datetime, keep: Iterable[str] = ()) -> int: ...
    def add_pending_move(self, src: str, dst: str, sha256: str, when: datetime) -> None: ...
    def pending_moves(self) -> list[PendingMove]: ...
    def remove_pending_move(self, src: str) -> None: ...


class RunHistory(Transactional, Protocol):
    def start_run(self, kind: str, started_at: datetime, pid: Optional[int] = None) -> int: ...
    def finish_run(
        self,
        run_id: int,
        status: str,
        finished_at: datetime,
        counts: Optional[Mapping[str, Any]] = None,
        error: Optional[str] = None,
    ) -> None: ...
    def recent_runs(
        self, kind: Optional[str] = None, limit: int = 20, since: Optional[datetime] = None
    ) -> list[RunRecord]: ...
    def mark_interrupted_runs(self, now: datetime) -> int: ...
    def rebuild_due(self) -> Optional[int]: ...
    def get_sync_state(self, sync_type: str = "user_mapping") -> Optional[SyncState]: ...
    def record_sync(
        self, status: str, when: datetime, records_synced: int = 0, sync_type: str = "user_mapping"
    ) -> None: ...


class AuditTrail(Transactional, Protocol):
    def record_audit(self, rows: Iterable[AuditRow]) -> None: ...
    def purge_audit(self, before: datetime) -> int: ...


class Store(MappingStore, DesiredStateStore, FileRecords, RunHistory, AuditTrail, Protocol):
    """Everything a pass needs: the SQLite database, or any class that offers the same."""

    def close(self) -> None: ...

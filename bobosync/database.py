"""The local SQLite database: schema, migrations and every query bobosync makes.

The file (``bobo_mapping.db`` by default) started life in the original tool with four tables,
which are kept with their names and meaning:

``worker_mapping``
    employee ID (BOBO) -> AtHoc username, refreshed by the mapping sync.
``processing_log``
    one row per processed file.
``sync_tracking``
    one row per kind of sync; the ``user_mapping`` row drives the mapping-sync schedule and
    operators edit it by hand to force or postpone a sync (``last_sync_date``,
    ``last_sync_time`` = local ISO time of the last attempt, ``status`` = ``success`` /
    ``error`` / ``no_data``).
``file_retry_tracking``
    how many times a file failed, and why.

Schema version 1 adds ``sync_tracking.last_success_time`` and the tables
``employee_last_event`` (latest event applied per employee), ``run_history``,
``remembered_files`` (files processed in place when processed files are not moved) and
``pending_moves`` (the journal that makes file moves survive a crash).

Schema version 2 adds ``remembered_files.ctime_ns`` and ``remembered_files.file_id``: with
``mtime_ns`` and the size, the fingerprint that tells, without reading it, that a file left in
place is still the one processed (rows remembered before have none: they are hashed once).

Schema version 3 stores bobosync's own times as true instants: UTC ISO 8601 with offset
(``2026-10-25T01:10:00+00:00``; run_history with microseconds, so durations are exact), and
keeps each applied or in-flight event's full place in the order of events (file modification
time, file name, row: :class:`~bobosync.resolution.EventOrder`). Its migration converts the
naive local times versions 1 and 2 wrote, read as this machine's local time.

The original tool's four tables keep the formats the original writes, so it can still run on
the file: ``processing_log.processed_at``, ``worker_mapping.last_updated`` and the
``file_retry_tracking`` times as UTC ``YYYY-MM-DD HH:MM:SS`` (SQLite's CURRENT_TIMESTAMP);
``sync_tracking.last_sync_date`` / ``last_sync_time`` as this machine's local date and
``isoformat()`` time (which operators edit by hand). ``sync_tracking.last_success_time``, a
column bobosync added, holds an instant.

Schema version 4 adds ``desired_state`` (per employee: the latest event with its place in the
order of events, the value AtHoc should hold and what became of the writes; see
:mod:`bobosync.desired`), which replaces ``employee_last_event`` and ``events_in_flight`` (their
events are carried over; the tables are dropped), and ``duty_value_warnings`` (when the
auto-cleanup last warned about an unreadable value).

Schema version 5 gives the original's tables every column the original has (``collar_id``;
``entries_processed``, ``success_count``, ``error_count``, ``errors``; ``first_seen``,
``last_retry``), filled on bobosync's rows too, so that the original can run on the file again
(rollback) and bobosync after that; ``sync_tracking.listing_mappings`` records the size of the
last complete listing bobosync stored (the original's INSERT OR REPLACE clears it: then the
mapping sync has no listing to compare with). ``completed``, the original's word, is a success.

Schema version 6 adds ``audit_log``: per employee (and LOGIN_ID), what ``bobosync trace``
shows: each event seen and what became of it, each value sent with AtHoc's answer, read-backs
that found a new value, mapping changes. Only those columns: no GPS or other CSV fields. Rows
older than AUDIT_RETENTION_DAYS are purged.

The schema version lives in ``PRAGMA user_version``. Migrations only go forward, each in its
own transaction. A legacy table that lacks some columns gets them; unknown extra columns are
left alone. Reading is tolerant of every format written over time (``T`` or space, with or
without microseconds or offset, a bare date).

Every :class:`sqlite3.Error` leaves this module as a :class:`~bobosync.errors.DatabaseError`;
the translation happens in one place, :meth:`BOBODatabase._guard`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar, Union

from bobosync.bobo_csv import Transaction
from bobosync.desired import DesiredState
from bobosync.errors import DatabaseError
from bobosync.resolution import EventOrder
from bobosync.store import AuditRow, MappingChange, PendingMove, RememberedFile, RunRecord, SyncState
from bobosync.timebase import UTC, as_utc, utc_now

log = logging.getLogger(__name__)

#: run_history ``kind`` of a rebuild of the desired state (``bobosync rebuild-state``).
REBUILD_RUN_KIND = "rebuild-state"

#: The schema version this code writes and understands.
SCHEMA_VERSION = 6

#: Sync status words that mean a complete listing: bobosync writes ``success``, the original
#: ``completed`` (for the original every word but ``no_data`` and ``error`` is a success).
SYNC_SUCCESS_WORDS = frozenset({"success", "completed"})

#: Stands in for a stored time that cannot be read.
_EARLIEST = datetime.min.replace(tzinfo=UTC)

#: The most bound parameters put in one ``IN (...)`` list.
_CHUNK = 500

_T = TypeVar("_T")


# --------------------------------------------------------------------------- time text

_DATETIME_RE = re.compile(
    r"""^\s*
    (?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})
    (?:[T\s]+
        (?P<h>\d{1,2}):(?P<mi>\d{2})
        (?::(?P<s>\d{2})(?:[.,](?P<frac>\d+))?)?
    )?
    \s*(?P<tz>Z|[+-]\d{2}:?\d{2})?
    \s*$""",
    re.VERBOSE | re.IGNORECASE,
)
#: Exactly the text :func:`format_datetime` writes (seconds, or microseconds, and +00:00).
_STORED_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?\+00:00", re.ASCII)


def format_datetime(value: datetime, *, precise: bool = False) -> str:
    """``value`` as bobosync stores an instant: UTC ISO 8601 with offset, seconds precision
    (truncated) or, ``precise=True``, microseconds. A naive value is this machine's local time."""
    return as_utc(value).isoformat(sep="T", timespec="microseconds" if precise else "seconds")


def format_sqlite_utc(value: datetime) -> str:
    """``value`` as SQLite's CURRENT_TIMESTAMP writes it (the original's tables): UTC
    ``YYYY-MM-DD HH:MM:SS``."""
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S")


def format_local_iso(value: datetime) -> str:
    """``value`` as the original writes ``sync_tracking.last_sync_time``: this machine's local
    time, naive, ``isoformat()`` (microseconds when there are any)."""
    return as_utc(value).astimezone().replace(tzinfo=None).isoformat()


def parse_datetime(value: object, *, naive_utc: bool = False) -> Optional[datetime]:
    """Read a stored time as an instant (aware, UTC), tolerating every format written over time.

    Accepts ``YYYY-MM-DDTHH:MM:SS``, a space instead of ``T``, optional seconds, optional
    fractional seconds, a bare date (midnight), an optional UTC offset and a Unix timestamp
    stored as a number. Text without an offset is this machine's local time, or UTC with
    ``naive_utc=True`` (CURRENT_TIMESTAMP). Returns None for NULL, empty or unreadable text.
    """
    if value is None:
        return None
    if type(value) is str and _STORED_RE.fullmatch(value):
        # What format_datetime writes, read once per employee in every batch: the C parser,
        # several times faster than the tolerant regular expression below.
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None  # e.g. month 13: the tolerant path would refuse it too
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    match = _DATETIME_RE.match(value)
    if match is None:
        return None
    frac = (match.group("frac") or "")[:6].ljust(6, "0")
    try:
        result = datetime(
            int(match.group("y")),
            int(match.group("mo")),
            int(match.group("d")),
            int(match.group("h") or 0),
            int(match.group("mi") or 0),
            int(match.group("s") or 0),
            int(frac),
        )
    except ValueError:
        return None
    tz = match.group("tz")
    if tz:
        if tz.upper() == "Z":
            offset = timedelta(0)
        else:
            digits = tz[1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            if tz[0] == "-":
                offset = -offset
        return result.replace(tzinfo=timezone(offset)).astimezone(UTC)
    if naive_utc:
        return result.replace(tzinfo=UTC)
    try:
        return as_utc(result)
    except (OverflowError, OSError, ValueError):  # local time of a year the OS cannot convert
        return None


def parse_date(value: object) -> Optional[date]:
    """Read a stored local date (``YYYY-MM-DD``, or any time :func:`parse_datetime` accepts,
    taken as this machine's local date)."""
    parsed = parse_datetime(value)
    return None if parsed is None else parsed.astimezone().date()


def _chunks(items: Sequence[_T], size: int = _CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _int_or_none(value: Any) -> Optional[int]:
    return None if value is None else int(value)


# --------------------------------------------------------------------------- schema

# The original's tables, exactly as it created them (schema version 0).
_LEGACY_TABLES: dict[str, str] = {
    "worker_mapping": """CREATE TABLE IF NOT EXISTS worker_mapping (
        employee_id TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        last_updated TIMESTAMP DEFAULT CURRENT_TIMESTAMP)""",
    "processing_log": """CREATE TABLE IF NOT EXISTS processing_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        filename TEXT NOT NULL,
        processed_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        records_processed INTEGER,
        status TEXT,
        error_message TEXT)""",
    "sync_tracking": """CREATE TABLE IF NOT EXISTS sync_tracking (
        sync_type TEXT PRIMARY KEY,
        last_sync_date DATE,
        last_sync_time TIMESTAMP,
        status TEXT,
        records_synced INTEGER DEFAULT 0)""",
    "file_retry_tracking": """CREATE TABLE IF NOT EXISTS file_retry_tracking (
        filename TEXT PRIMARY KEY,
        retry_count INTEGER DEFAULT 0,
        first_attempt TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        last_attempt TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        last_error TEXT)""",
}

# Key columns cannot be added afterwards: a legacy table without one cannot be upgraded.
_LEGACY_KEYS: dict[str, str] = {
    "worker_mapping": "employee_id",
    "processing_log": "id",
    "sync_tracking": "sync_type",
    "file_retry_tracking": "filename",
}

# The other columns of the legacy tables, as ALTER TABLE ADD COLUMN can add them (no
# CURRENT_TIMESTAMP default, NOT NULL only with a constant default). bobosync always writes
# these columns explicitly, so the missing dynamic defaults do not matter.
_LEGACY_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "worker_mapping": (
        ("username", "TEXT NOT NULL DEFAULT ''"),
        ("last_updated", "TIMESTAMP"),
    ),
    "processing_log": (
        ("filename", "TEXT NOT NULL DEFAULT ''"),
        ("processed_at", "TIMESTAMP"),
        ("records_processed", "INTEGER"),
        ("status", "TEXT"),
        ("error_message", "TEXT"),
    ),
    "sync_tracking": (
        ("last_sync_date", "DATE"),
        ("last_sync_time", "TIMESTAMP"),
        ("status", "TEXT"),
        ("records_synced", "INTEGER DEFAULT 0"),
    ),
    "file_retry_tracking": (
        ("retry_count", "INTEGER DEFAULT 0"),
        ("first_attempt", "TIMESTAMP"),
        ("last_attempt", "TIMESTAMP"),
        ("last_error", "TEXT"),
    ),
}

_V1_TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS employee_last_event (
        employee_id TEXT PRIMARY KEY,
        event_time TEXT NOT NULL,
        transaction_type TEXT NOT NULL,
        login_id TEXT,
        source_file TEXT,
        applied_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS run_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        duration_seconds REAL,
        counts TEXT,
        error TEXT,
        pid INTEGER)""",
    "CREATE INDEX IF NOT EXISTS run_history_kind_started ON run_history (kind, started_at)",
    """CREATE TABLE IF NOT EXISTS remembered_files (
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        mtime_ns INTEGER,
        processed_at TEXT NOT NULL,
        PRIMARY KEY (name, size, sha256))""",
    """CREATE TABLE IF NOT EXISTS pending_moves (
        src TEXT PRIMARY KEY,
        dst TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        started_at TEXT NOT NULL)""",
    # Events sent to AtHoc whose outcome is not recorded yet: AtHoc may hold them.
    """CREATE TABLE IF NOT EXISTS events_in_flight (
        employee_id TEXT PRIMARY KEY,
        event_time TEXT NOT NULL,
        sent_at TEXT NOT NULL)""",
)


def _table_names(conn: sqlite3.Connection) -> set[str]:
    return {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _table_columns(conn: sqlite3.Connection, table: str) -> set[str]:
    # PRAGMA arguments cannot be bound; ``table`` is always one of this module's constants.
    return {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}


def _add_missing_columns(conn: sqlite3.Connection, table: str, columns: Iterable[tuple[str, str]]) -> None:
    present = _table_columns(conn, table)
    for name, declaration in columns:
        if name not in present:
            log.debug("database upgrade: adding missing column %s.%s", table, name)
            # Identifiers cannot be bound; both come from this module's constants.
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    """Schema 0 (the original tool, or an empty file) -> 1."""
    for table, create in _LEGACY_TABLES.items():
        conn.execute(create)
        key = _LEGACY_KEYS[table]
        if key not in _table_columns(conn, table):
            raise sqlite3.DatabaseError(f"legacy table {table} has no {key} column and cannot be upgraded")
        _add_missing_columns(conn, table, _LEGACY_COLUMNS[table])
    _add_missing_columns(conn, "sync_tracking", (("last_success_time", "TEXT"),))
    for statement in _V1_TABLES:
        conn.execute(statement)
    _backfill_last_success(conn)


def _backfill_last_success(conn: sqlite3.Connection) -> None:
    """Set last_success_time from the last attempt of rows whose last attempt succeeded,
    normalising the original's isoformat() text (microseconds) to the stored format."""
    rows = conn.execute(
        "SELECT sync_type, last_sync_time FROM sync_tracking "
        "WHERE status IN ('success', 'completed') AND last_success_time IS NULL"
    ).fetchall()
    for sync_type, last_sync_time in rows:
        parsed = parse_datetime(last_sync_time)
        if parsed is not None:
            conn.execute(
                "UPDATE sync_tracking SET last_success_time = ? WHERE sync_type = ?",
                (format_datetime(parsed), sync_type),
            )


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2: the rest of a remembered file's fingerprint."""
    _add_missing_columns(conn, "remembered_files", (("ctime_ns", "INTEGER"), ("file_id", "INTEGER")))


#: Schema 3: every event applied or in flight keeps its whole place in the order of events.
_V2_ORDER_COLUMNS = (
    ("source_file", "TEXT NOT NULL DEFAULT ''"),
    ("source_mtime_ns", "INTEGER NOT NULL DEFAULT 0"),
    ("source_row", "INTEGER NOT NULL DEFAULT 0"),
)

#: (table, column, how schema 3 writes it): the times schemas 1 and 2 wrote as naive local text.
#: In the original's tables only bobosync's rows (``T`` between date and time) are converted:
#: the original's own rows are already UTC CURRENT_TIMESTAMP text.
_V2_TIME_COLUMNS: tuple[tuple[str, str, Callable[[datetime], str]], ...] = (
    ("employee_last_event", "event_time", format_datetime),
    ("employee_last_event", "applied_at", format_datetime),
    ("events_in_flight", "event_time", format_datetime),
    ("events_in_flight", "sent_at", format_datetime),
    ("run_history", "started_at", lambda value: format_datetime(value, precise=True)),
    ("run_history", "finished_at", lambda value: format_datetime(value, precise=True)),
    ("remembered_files", "processed_at", format_datetime),
    ("pending_moves", "started_at", format_datetime),
    ("sync_tracking", "last_success_time", format_datetime),
    ("processing_log", "processed_at", format_sqlite_utc),
    ("worker_mapping", "last_updated", format_sqlite_utc),
    ("file_retry_tracking", "first_attempt", format_sqlite_utc),
    ("file_retry_tracking", "last_attempt", format_sqlite_utc),
)
_ORIGINALS_TABLES = frozenset(_LEGACY_TABLES)


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Schema 2 -> 3: times as instants, events with their whole order (see the module docstring)."""
    # (Tables a later schema dropped are skipped: a file set back to schema 2 by hand.)
    present = _table_names(conn)
    for table in ("employee_last_event", "events_in_flight"):
        if table in present:
            _add_missing_columns(conn, table, _V2_ORDER_COLUMNS)
    if "employee_last_event" in present:
        conn.execute("UPDATE employee_last_event SET source_file = '' WHERE source_file IS NULL")
    for table, column, write in _V2_TIME_COLUMNS:
        if table not in present or column not in _table_columns(conn, table):
            continue
        # Identifiers cannot be bound; both come from this module's constants.
        where = f"{column} IS NOT NULL AND {column} != ''"
        if table in _ORIGINALS_TABLES:
            where += f" AND {column} LIKE '%T%'"
        rows = conn.execute(f"SELECT rowid, {column} FROM {table} WHERE {where}").fetchall()
        changes = []
        for rowid, text in rows:
            instant = parse_datetime(text)
            if instant is not None:
                changes.append((write(instant), rowid))
            else:
                log.warning("database upgrade: %s.%s holds %r, not a time; left as it is", table, column, text)
        conn.executemany(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", changes)


_V4_TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS desired_state (
        employee_id TEXT PRIMARY KEY,
        event_at TEXT NOT NULL,
        event_local TEXT,
        transaction_type TEXT NOT NULL,
        source_file TEXT NOT NULL,
        source_mtime_ns INTEGER NOT NULL,
        source_row INTEGER NOT NULL,
        recorded_at TEXT NOT NULL,
        desired_value TEXT,
        login_id TEXT,
        written_value TEXT,
        written_at TEXT,
        last_answer TEXT,
        answered_at TEXT,
        athoc_value TEXT,
        athoc_read_at TEXT,
        sending_login TEXT,
        sending_value TEXT,
        sent_at TEXT,
        suspect_login TEXT,
        suspect_until TEXT,
        stale_login TEXT,
        stale_value TEXT,
        repaired_at TEXT)""",
    """CREATE TABLE IF NOT EXISTS duty_value_warnings (
        login_id TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        warned_at TEXT NOT NULL)""",
)


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    """Schema 3 -> 4: the desired state, taking over the last applied events.

    Each ``employee_last_event`` row becomes the employee's desired state, as written to its
    LOGIN_ID. Its local reading (what a book-on writes) and the values are not known here (they
    need BOBO_TIMEZONE and ATHOC_DATETIME_FORMAT): ``event_local`` and ``desired_value`` stay
    NULL until the first pass fills them in (:meth:`BOBODatabase.adopt_carried_over`). An event
    in flight had its file kept, which the next pass reads again: nothing to carry over.
    """
    for statement in _V4_TABLES:
        conn.execute(statement)
    if "employee_last_event" in _table_names(conn):
        conn.execute(
            "INSERT OR IGNORE INTO desired_state (employee_id, event_at, transaction_type, source_file, "
            "source_mtime_ns, source_row, recorded_at, login_id, written_at, last_answer, answered_at) "
            "SELECT employee_id, event_time, transaction_type, COALESCE(source_file, ''), source_mtime_ns, "
            "source_row, applied_at, login_id, applied_at, 'applied: carried over from schema 3', applied_at "
            "FROM employee_last_event WHERE transaction_type IN ('BON', 'BOF')"
        )
    conn.execute("DROP TABLE IF EXISTS employee_last_event")
    conn.execute("DROP TABLE IF EXISTS events_in_flight")


#: The original tool's columns that earlier schemas lacked (its real tables have them), with
#: how to fill them from bobosync's own columns on rows the original did not write.
_ORIGINAL_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("worker_mapping", "collar_id", "TEXT", "employee_id"),
    ("processing_log", "entries_processed", "INTEGER", "records_processed"),
    ("processing_log", "success_count", "INTEGER", "CASE WHEN status = 'failed' THEN 0 ELSE records_processed END"),
    ("processing_log", "error_count", "INTEGER", "CASE WHEN status = 'failed' THEN 1 ELSE 0 END"),
    ("processing_log", "errors", "TEXT", "COALESCE(error_message, '')"),
    ("file_retry_tracking", "first_seen", "TIMESTAMP", "first_attempt"),
    ("file_retry_tracking", "last_retry", "TIMESTAMP", "last_attempt"),
)


def _migrate_4_to_5(conn: sqlite3.Connection) -> None:
    """Schema 4 -> 5: the original's tables with every one of the original's columns, filled,
    so that the original can run on the file again (rollback); ``completed`` is a success."""
    _add_missing_columns(conn, "sync_tracking", (("listing_mappings", "INTEGER"),))
    for table, column, declaration, fill in _ORIGINAL_COLUMNS:
        present = _table_columns(conn, table)
        if column not in present:
            _add_missing_columns(conn, table, ((column, declaration),))
        # Identifiers and expressions come from this module's constants.
        conn.execute(f"UPDATE {table} SET {column} = {fill} WHERE {column} IS NULL")
    # A row the original rewrote (rollback) lost bobosync's columns.
    _backfill_last_success(conn)


def _migrate_5_to_6(conn: sqlite3.Connection) -> None:
    """Schema 5 -> 6: the audit ``bobosync trace`` reads (see :class:`AuditRow`)."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            recorded_at TEXT NOT NULL,
            employee_id TEXT,
            login_id TEXT,
            kind TEXT NOT NULL,
            transaction_type TEXT,
            event_at TEXT,
            source_file TEXT,
            source_row INTEGER,
            value TEXT,
            outcome TEXT NOT NULL,
            detail TEXT,
            events TEXT)"""
    )
    conn.execute("CREATE INDEX IF NOT EXISTS audit_log_employee ON audit_log (employee_id)")
    conn.execute("CREATE INDEX IF NOT EXISTS audit_log_recorded ON audit_log (recorded_at)")


#: MIGRATIONS[n] takes a database from schema n to schema n + 1.
_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _migrate_0_to_1,
    _migrate_1_to_2,
    _migrate_2_to_3,
    _migrate_3_to_4,
    _migrate_4_to_5,
    _migrate_5_to_6,
)
assert len(_MIGRATIONS) == SCHEMA_VERSION


#: A mapping as both tools write it: ``collar_id`` filled, as the original fills it.
_UPSERT_MAPPING = (
    "INSERT INTO worker_mapping (employee_id, username, collar_id, last_updated) "
    "VALUES (?, ?, ?, ?) ON CONFLICT(employee_id) DO UPDATE SET "
    "username = excluded.username, collar_id = excluded.collar_id, last_updated = excluded.last_updated"
)

#: The columns of ``desired_state``, in the order :meth:`BOBODatabase.save_desired_states` writes.
_DESIRED_COLUMNS = (
    "employee_id",
    "event_at",
    "event_local",
    "transaction_type",
    "source_file",
    "source_mtime_ns",
    "source_row",
    "recorded_at",
    "desired_value",
    "login_id",
    "written_value",
    "written_at",
    "last_answer",
    "answered_at",
    "athoc_value",
    "athoc_read_at",
    "sending_login",
    "sending_value",
    "sent_at",
    "suspect_login",
    "suspect_until",
    "stale_login",
    "stale_value",
    "repaired_at",
)


# --------------------------------------------------------------------------- the database


class BOBODatabase:
    """The bobosync SQLite database.

    Opening a writable database creates its folder and file if needed, switches it to WAL
    journal mode and migrates it to :data:`SCHEMA_VERSION`. The connection runs in autocommit
    mode; every write goes through :meth:`transaction` (``BEGIN IMMEDIATE`` ... ``COMMIT``),
    which callers may also use to group several writes into one transaction.

    ``read_only=True`` opens the file read-only and never writes or migrates it: methods
    cope with an old schema (missing tables read as empty). When the file does not exist an
    empty in-memory database with the current schema stands in for it. Write methods on a
    read-only database raise :class:`DatabaseError`.

    A connection belongs to the thread that opened it.
    """

    def __init__(
        self,
        db_path: Union[str, Path],
        *,
        read_only: bool = False,
        busy_timeout: float = 30.0,
    ) -> None:
        self._path = Path(db_path)
        self._read_only = read_only
        self._busy_timeout = busy_timeout
        self._depth = 0
        self._in_memory = False
        self._conn: Optional[sqlite3.Connection] = None
        try:
            if read_only:
                self._open_read_only()
            else:
                self._open_writable()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening

    def _connect(self, target: str, *, uri: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(target, timeout=self._busy_timeout, isolation_level=None, uri=uri)
        conn.row_factory = sqlite3.Row
        return conn

    def _open_writable(self) -> None:
        with self._guard("creating the database folder"):
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(f"cannot create the folder of database {self._path}: {exc}") from exc
        with self._guard("opening the database"):
            self._conn = self._connect(str(self._path), uri=False)
            mode = str(self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            if mode != "wal":
                log.warning("database %s: WAL journal mode not available (using %s)", self._path, mode)
        self._migrate()

    def _open_read_only(self) -> None:
        if not self._path.exists():
            log.info("database %s does not exist; using an empty in-memory database", self._path)
            self._in_memory = True
            with self._guard("creating an in-memory database"):
                self._conn = self._connect(":memory:", uri=False)
            self._migrate()
        else:
            uri = self._path.resolve().as_uri() + "?mode=ro"
            with self._guard("opening the database read-only"):
                self._conn = self._connect(uri, uri=True)
                version = self._user_version()
            if version > SCHEMA_VERSION:
                raise self._newer_error(version)
        with self._guard("opening the database read-only"):
            self._connection.execute("PRAGMA query_only = ON")

    def _newer_error(self, version: int) -> DatabaseError:
        return DatabaseError(
            f"database {self._path} was written by a newer bobosync "
            f"(schema {version}, this version knows {SCHEMA_VERSION})"
        )

    def _user_version(self) -> int:
        return int(self._connection.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        with self._guard("reading the schema version"):
            version = self._user_version()
        if version > SCHEMA_VERSION:
            raise self._newer_error(version)
        from_original = False
        while version < SCHEMA_VERSION:
            with self._transaction(), self._guard(f"migrating to schema {version + 1}"):
                # Read again under the write lock: another process may have migrated.
                version = self._user_version()
                if version > SCHEMA_VERSION:
                    raise self._newer_error(version)
                if version == SCHEMA_VERSION:
                    break
                fresh = (
                    version == 0
                    and not self._connection.execute(
                        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'worker_mapping'"
                    ).fetchone()
                )
                log.info(
                    "database %s: %s",
                    self._path,
                    "created" if fresh else f"upgrading schema {version} -> {version + 1}",
                )
                from_original = from_original or (version == 0 and not fresh)
                _MIGRATIONS[version](self._connection)
                version += 1
                if version == SCHEMA_VERSION and from_original:
                    # The original wrote book-off times instead of clearing them: the first pass
                    # rebuilds the desired state from the processed files (once), see rebuild_due.
                    self._connection.execute(
                        "INSERT INTO run_history (kind, started_at, status) VALUES (?, ?, 'due')",
                        (REBUILD_RUN_KIND, format_datetime(utc_now(), precise=True)),
                    )
                # PRAGMA values cannot be bound; ``version`` is an int we computed.
                self._connection.execute(f"PRAGMA user_version = {int(version)}")

    # ------------------------------------------------------------------ plumbing

    @property
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise DatabaseError(f"database {self._path} is closed")
        return self._conn

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """THE place where sqlite3 errors become :class:`DatabaseError`."""
        try:
            yield
        except sqlite3.Error as exc:
            text = str(exc)
            if "locked" in text.lower() or "busy" in text.lower():
                message = (
                    f"database {self._path} is locked: another process holds the database "
                    f"and it was still busy after waiting {self._busy_timeout:g} s "
                    f"({action}: {text})"
                )
            else:
                message = f"database {self._path}: {action} failed: {text}"
            raise DatabaseError(message) from exc

    def _check_writable(self, action: str) -> None:
        if self._read_only:
            raise DatabaseError(f"database {self._path} is open read-only; refusing to write ({action})")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._depth > 0:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        conn = self._connection
        with self._guard("starting a transaction"):
            conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._rollback(conn)
            raise
        self._depth = 0
        try:
            with self._guard("committing a transaction"):
                conn.execute("COMMIT")
        except DatabaseError:
            self._rollback(conn)
            raise

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("database %s: rollback failed", self._path)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` if the block raises.

        Re-entrant: a ``transaction()`` inside another one joins the outer transaction (an
        exception that escapes only the inner block, and is then caught, does not roll
        anything back by itself).
        """
        self._check_writable("transaction")
        with self._transaction():
            yield

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        self._check_writable(action)
        with self._transaction(), self._guard(action):
            yield self._connection

    def _has_table(self, table: str) -> bool:
        """False only for a read-only database whose (older) schema lacks ``table``."""
        if not self._read_only:
            return True
        row = self._connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        return row is not None

    # ------------------------------------------------------------------ lifecycle

    @property
    def path(self) -> Path:
        return self._path

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def schema_version(self) -> int:
        """The schema version of the open database (``PRAGMA user_version``)."""
        with self._guard("reading the schema version"):
            return self._user_version()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                log.exception("database %s: close failed", self._path)

    def __enter__(self) -> BOBODatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ worker_mapping

    def update_mapping(self, employee_id: str, username: str, collar_id: Optional[str] = None) -> None:
        """Map ``employee_id`` to ``username``; ``collar_id`` is the collar as AtHoc spelt it
        (default: ``employee_id``)."""
        stamp = format_sqlite_utc(datetime.now(UTC))
        with self._write("updating a worker mapping") as conn:
            conn.execute(_UPSERT_MAPPING, (employee_id, username, collar_id or employee_id, stamp))

    def get_username_by_employee_id(self, employee_id: str) -> Optional[str]:
        with self._guard("reading a worker mapping"):
            if not self._has_table("worker_mapping"):
                return None
            row = self._connection.execute(
                "SELECT username FROM worker_mapping WHERE employee_id = ?", (employee_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def get_usernames(self, employee_ids: Iterable[str]) -> dict[str, str]:
        """employee_id -> username for those of ``employee_ids`` that are mapped."""
        ids = _unique(employee_ids)
        result: dict[str, str] = {}
        with self._guard("reading worker mappings"):
            if not ids or not self._has_table("worker_mapping"):
                return result
            for chunk in _chunks(ids):
                rows = self._connection.execute(
                    "SELECT employee_id, username FROM worker_mapping "
                    f"WHERE employee_id IN ({_placeholders(len(chunk))})",
                    tuple(chunk),
                )
                for employee_id, username in rows:
                    result[str(employee_id)] = str(username)
        return result

    def numeric_mappings(self, numbers: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
        """For COLLAR_MATCH=numeric: number -> (employee_id, username) of every mapping whose
        employee_id is all digits and, leading zeros ignored, that number (``"5990"`` finds
        ``5990`` and ``05990``). ``numbers`` are written without leading zeros (``"0"`` for zero)."""
        wanted = _unique(numbers)
        result: dict[str, list[tuple[str, str]]] = {}
        with self._guard("reading worker mappings"):
            if not wanted or not self._has_table("worker_mapping"):
                return result
            for chunk in _chunks(wanted):
                rows = self._connection.execute(
                    "SELECT employee_id, username FROM worker_mapping "
                    "WHERE employee_id <> '' AND employee_id NOT GLOB '*[^0-9]*' "
                    "AND (CASE ltrim(employee_id, '0') WHEN '' THEN '0' ELSE ltrim(employee_id, '0') END) "
                    f"IN ({_placeholders(len(chunk))}) ORDER BY employee_id",
                    tuple(chunk),
                )
                for employee_id, username in rows:
                    number = str(employee_id).lstrip("0") or "0"
                    result.setdefault(number, []).append((str(employee_id), str(username)))
        return result

    def all_mappings(self) -> dict[str, str]:
        with self._guard("reading worker mappings"):
            if not self._has_table("worker_mapping"):
                return {}
            rows = self._connection.execute("SELECT employee_id, username FROM worker_mapping").fetchall()
        return {str(employee_id): str(username) for employee_id, username in rows}

    def mapping_rows(self) -> list[tuple[str, str, Optional[str]]]:
        """Every worker_mapping row as (employee_id, username, collar_id)."""
        with self._guard("reading worker mappings"):
            if not self._has_table("worker_mapping"):
                return []
            collar = "collar_id" if "collar_id" in _table_columns(self._connection, "worker_mapping") else "NULL"
            rows = self._connection.execute(
                f"SELECT employee_id, username, {collar} FROM worker_mapping ORDER BY employee_id"
            ).fetchall()
        return [(str(e), str(u), None if c is None else str(c)) for e, u, c in rows]

    def mapping_count(self) -> int:
        with self._guard("counting worker mappings"):
            if not self._has_table("worker_mapping"):
                return 0
            row = self._connection.execute("SELECT COUNT(*) FROM worker_mapping").fetchone()
        return int(row[0])

    def replace_mappings(self, mapping: Mapping[str, str], now: datetime, *, audit: bool = True) -> MappingChange:
        """Make ``worker_mapping`` equal to ``mapping`` in one transaction (each change audited,
        unless ``audit`` is False).

        Rows not in ``mapping`` are deleted; new and changed rows are written with
        ``last_updated = now``; unchanged rows are left alone. An empty ``mapping`` empties
        the table: callers must not pass the result of a failed listing.
        """
        stamp = format_sqlite_utc(now)
        with self._write("replacing worker mappings") as conn:
            current = {
                str(employee_id): str(username)
                for employee_id, username in conn.execute("SELECT employee_id, username FROM worker_mapping")
            }
            removed = [employee_id for employee_id in current if employee_id not in mapping]
            added = [employee_id for employee_id in mapping if employee_id not in current]
            changed = [
                employee_id
                for employee_id, username in mapping.items()
                if employee_id in current and current[employee_id] != username
            ]
            for chunk in _chunks(removed):
                conn.execute(
                    f"DELETE FROM worker_mapping WHERE employee_id IN ({_placeholders(len(chunk))})",
                    tuple(chunk),
                )
            conn.executemany(
                _UPSERT_MAPPING,
                [(employee_id, mapping[employee_id], employee_id, stamp) for employee_id in added + changed],
            )
            if audit:
                self.record_audit(
                    [AuditRow(now, "mapping", "mapped", e, mapping[e], detail="new mapping") for e in added]
                    + [AuditRow(now, "mapping", "mapped", e, mapping[e], detail=f"was {current[e]}") for e in changed]
                    + [
                        AuditRow(
                            now,
                            "mapping",
                            "unmapped",
                            e,
                            current[e],
                            detail="no AtHoc user has this collar number any more",
                        )
                        for e in removed
                    ]
                )
        change = MappingChange(added=len(added), removed=len(removed), changed=len(changed), total=len(mapping))
        log.debug("database %s: mappings replaced: %s", self._path, change)
        return change

    # ------------------------------------------------------------------ processing_log

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
    ) -> None:
        """One row per file handled. The original's columns are filled as the original fills them;
        unless given, a failed file counts nothing succeeded and one error, any other all rows
        succeeded."""
        when = format_sqlite_utc(processed_at if processed_at is not None else datetime.now(UTC))
        failed = status == "failed"
        if success_count is None:
            success_count = 0 if failed else records_processed
        if error_count is None:
            error_count = 1 if failed else 0
        with self._write("logging a processed file") as conn:
            conn.execute(
                "INSERT INTO processing_log "
                "(filename, processed_at, records_processed, status, error_message, "
                "entries_processed, success_count, error_count, errors) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    filename,
                    when,
                    records_processed,
                    status,
                    error_message,
                    records_processed,
                    success_count,
                    error_count,
                    error_message or "",
                ),
            )

    def last_failure_reason(self, filename: str) -> Optional[str]:
        """Why ``filename`` was last sent to the failed folder (processing_log), if it was."""
        with self._guard("reading processing_log"):
            if not self._has_table("processing_log"):
                return None
            row = self._connection.execute(
                "SELECT error_message FROM processing_log WHERE filename = ? AND status = 'failed' "
                "ORDER BY id DESC LIMIT 1",
                (filename,),
            ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    # ------------------------------------------------------------------ sync_tracking

    def get_sync_state(self, sync_type: str = "user_mapping") -> Optional[SyncState]:
        """The ``sync_tracking`` row of ``sync_type``, or None when there is none."""
        with self._guard("reading the sync state"):
            if not self._has_table("sync_tracking"):
                return None
            row = self._connection.execute("SELECT * FROM sync_tracking WHERE sync_type = ?", (sync_type,)).fetchone()
        if row is None:
            return None
        values: dict[str, Any] = dict(zip(row.keys(), tuple(row)))
        last_sync_time = parse_datetime(values.get("last_sync_time"))
        status = values.get("status")
        status = None if status is None else str(status)
        last_success_time = parse_datetime(values.get("last_success_time"))
        if last_success_time is None and status in SYNC_SUCCESS_WORDS:
            # A read-only schema-0 file, or a row the original rewrote after the upgrade
            # (rollback): what the migration backfills.
            last_success_time = last_sync_time
        for column in ("last_sync_time", "last_sync_date", "last_success_time"):
            raw = values.get(column)
            if raw not in (None, "") and parse_datetime(raw) is None:
                log.warning(
                    "database %s: sync_tracking %r has an unreadable %s %r; ignoring it",
                    self._path,
                    sync_type,
                    column,
                    raw,
                )
        records = values.get("records_synced")
        try:
            records_synced = int(records) if records is not None else 0
        except (TypeError, ValueError):
            records_synced = 0
        listing = values.get("listing_mappings")
        return SyncState(
            listing_mappings=listing if isinstance(listing, int) else None,
            last_sync_date=parse_date(values.get("last_sync_date")),
            last_sync_time=last_sync_time,
            status=status,
            records_synced=records_synced,
            last_success_time=last_success_time,
        )

    def record_sync(
        self,
        status: str,
        when: datetime,
        records_synced: int = 0,
        sync_type: str = "user_mapping",
    ) -> None:
        """Record a sync attempt; ``last_success_time`` moves only when ``status == 'success'``.
        ``last_sync_date`` and ``last_sync_time`` are written as the original writes them
        (this machine's local time), ``last_success_time`` as an instant."""
        stamp = format_local_iso(when)
        succeeded = status in SYNC_SUCCESS_WORDS
        success = format_datetime(when) if succeeded else None
        listing = records_synced if succeeded else None
        with self._write("recording a sync") as conn:
            conn.execute(
                "INSERT INTO sync_tracking (sync_type, last_sync_date, last_sync_time, status, "
                "records_synced, last_success_time, listing_mappings) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(sync_type) DO UPDATE SET "
                "last_sync_date = excluded.last_sync_date, "
                "last_sync_time = excluded.last_sync_time, "
                "status = excluded.status, "
                "records_synced = excluded.records_synced, "
                "last_success_time = COALESCE(excluded.last_success_time, "
                "sync_tracking.last_success_time), "
                "listing_mappings = COALESCE(excluded.listing_mappings, sync_tracking.listing_mappings)",
                (sync_type, stamp[:10], stamp, status, records_synced, success, listing),
            )

    # ------------------------------------------------------------------ file_retry_tracking

    def record_file_failure(self, filename: str, error: str, when: datetime) -> int:
        """Count one more failure of ``filename``; returns the new count."""
        stamp = format_sqlite_utc(when)
        with self._write("recording a file failure") as conn:
            conn.execute(
                "INSERT INTO file_retry_tracking "
                "(filename, retry_count, first_attempt, last_attempt, last_error, first_seen, last_retry) "
                "VALUES (?, 1, ?, ?, ?, ?, ?) ON CONFLICT(filename) DO UPDATE SET "
                "retry_count = COALESCE(file_retry_tracking.retry_count, 0) + 1, "
                "last_attempt = excluded.last_attempt, last_error = excluded.last_error, "
                "last_retry = excluded.last_retry",
                (filename, stamp, stamp, error, stamp, stamp),
            )
            row = conn.execute("SELECT retry_count FROM file_retry_tracking WHERE filename = ?", (filename,)).fetchone()
        return int(row[0])

    def clear_file_retry(self, filename: str) -> None:
        with self._write("clearing a retry count") as conn:
            conn.execute("DELETE FROM file_retry_tracking WHERE filename = ?", (filename,))

    def retry_counts(self) -> dict[str, tuple[int, Optional[str]]]:
        """filename -> (retry count, last error)."""
        with self._guard("reading retry counts"):
            if not self._has_table("file_retry_tracking"):
                return {}
            # A not-yet-upgraded original file has no last_error: read it without one.
            error = "last_error" if "last_error" in _table_columns(self._connection, "file_retry_tracking") else "NULL"
            rows = self._connection.execute(
                f"SELECT filename, retry_count, {error} FROM file_retry_tracking"
            ).fetchall()
        return {str(name): (int(count or 0), None if error is None else str(error)) for name, count, error in rows}

    # ------------------------------------------------------------------ desired_state

    def desired_states(self, employee_ids: Optional[Iterable[str]] = None) -> dict[str, DesiredState]:
        """employee_id -> desired state, for the given employees (every one when None)."""
        columns = f"SELECT {', '.join(_DESIRED_COLUMNS)} FROM desired_state"
        rows: list[Any] = []
        with self._guard("reading the desired state"):
            if not self._has_table("desired_state"):
                return {}
            if employee_ids is None:
                rows = self._connection.execute(columns).fetchall()
            else:
                for chunk in _chunks(_unique(employee_ids)):
                    rows.extend(
                        self._connection.execute(
                            f"{columns} WHERE employee_id IN ({_placeholders(len(chunk))})", tuple(chunk)
                        )
                    )
        states = (self._desired_state(row) for row in rows)
        return {state.employee_id: state for state in states if state is not None}

    def _desired_state(self, row: Any) -> Optional[DesiredState]:
        event_at = parse_datetime(row["event_at"])
        recorded_at = parse_datetime(row["recorded_at"])
        try:
            transaction = Transaction(row["transaction_type"])
        except ValueError:
            transaction = None
        if event_at is None or recorded_at is None or transaction is None:
            log.warning(
                "database %s: unreadable desired_state row for employee %s; ignoring it", self._path, row["employee_id"]
            )
            return None
        try:
            # BOBO's own reading; a row carried over from schema 3 has none until the first pass
            # fills it in (adopt_carried_over): this machine's zone stands in meanwhile.
            event_local = (
                datetime.fromisoformat(row["event_local"])
                if row["event_local"]
                else event_at.astimezone().replace(tzinfo=None)
            )
        except ValueError:
            event_local = event_at.astimezone().replace(tzinfo=None)
        return DesiredState(
            employee_id=str(row["employee_id"]),
            order=EventOrder(
                event_at, int(row["source_mtime_ns"] or 0), str(row["source_file"] or ""), int(row["source_row"] or 0)
            ),
            transaction=transaction,
            event_local=event_local,
            recorded_at=recorded_at,
            login_id=row["login_id"],
            written_value=row["written_value"],
            written_at=parse_datetime(row["written_at"]),
            last_answer=row["last_answer"],
            answered_at=parse_datetime(row["answered_at"]),
            athoc_value=row["athoc_value"],
            athoc_read_at=parse_datetime(row["athoc_read_at"]),
            sending_login=row["sending_login"],
            sending_value=row["sending_value"],
            sent_at=parse_datetime(row["sent_at"]),
            suspect_login=row["suspect_login"],
            suspect_until=parse_datetime(row["suspect_until"]),
            stale_login=row["stale_login"],
            stale_value=row["stale_value"],
            repaired_at=parse_datetime(row["repaired_at"]),
        )

    def save_desired_states(self, states: Iterable[tuple[DesiredState, str]]) -> None:
        """Write (state, the value AtHoc should hold now) pairs, replacing each employee's row."""

        def stamp(value: Optional[datetime]) -> Optional[str]:
            return None if value is None else format_datetime(value)

        rows = [
            (
                st.employee_id,
                format_datetime(st.order.instant),
                st.event_local.isoformat(timespec="seconds"),
                st.transaction.value,
                st.order.file_name,
                st.order.file_mtime_ns,
                st.order.row,
                format_datetime(st.recorded_at),
                desired,
                st.login_id,
                st.written_value,
                stamp(st.written_at),
                st.last_answer,
                stamp(st.answered_at),
                st.athoc_value,
                stamp(st.athoc_read_at),
                st.sending_login,
                st.sending_value,
                stamp(st.sent_at),
                st.suspect_login,
                stamp(st.suspect_until),
                st.stale_login,
                st.stale_value,
                stamp(st.repaired_at),
            )
            for st, desired in states
        ]
        if not rows:
            return
        with self._write("recording the desired state") as conn:
            conn.executemany(
                f"INSERT OR REPLACE INTO desired_state ({', '.join(_DESIRED_COLUMNS)}) "
                f"VALUES ({_placeholders(len(_DESIRED_COLUMNS))})",
                rows,
            )

    def adopt_carried_over(self, zone: tzinfo, value_of: Callable[[DesiredState], str]) -> int:
        """Fill in the rows carried over from schema 3 (no local reading yet): the reading of
        their instant in BOBO's ``zone``, and as written the value ``value_of`` gives (what the
        earlier version wrote for that event). Returns how many."""
        with self._guard("reading the desired state"):
            if not self._has_table("desired_state"):
                return 0
            ids = [
                str(r[0])
                for r in self._connection.execute("SELECT employee_id FROM desired_state WHERE event_local IS NULL")
            ]
        if not ids:
            return 0
        states = []
        for state in self.desired_states(ids).values():
            local = state.event_at.astimezone(zone).replace(tzinfo=None)
            adopted = dataclasses.replace(state, event_local=local)
            value = value_of(adopted)
            states.append((dataclasses.replace(adopted, written_value=value if state.login_id else None), value))
        self.save_desired_states(states)
        return len(states)

    def _desired_where(self, where: str, params: Sequence[Any] = ()) -> dict[str, DesiredState]:
        with self._guard("reading the desired state"):
            if not self._has_table("desired_state"):
                return {}
            rows = self._connection.execute(
                f"SELECT {', '.join(_DESIRED_COLUMNS)} FROM desired_state WHERE {where}", tuple(params)
            ).fetchall()
        states = (self._desired_state(row) for row in rows)
        return {state.employee_id: state for state in states if state is not None}

    def replay_candidates(self, aged_before: Optional[datetime]) -> dict[str, DesiredState]:
        """Employees AtHoc may not hold the desired value for: never written (pending), written
        something else, a write in flight, or a book-on written and older than ``aged_before``."""
        where = (
            "login_id IS NULL OR written_value IS NULL OR written_value <> desired_value OR sending_login IS NOT NULL"
        )
        params: list[Any] = []
        if aged_before is not None:
            where += " OR (transaction_type = 'BON' AND written_value <> '' AND event_at < ?)"
            params.append(format_datetime(aged_before))
        return self._desired_where(where, params)

    def watched_states(self) -> dict[str, DesiredState]:
        """Employees with a suspect write (a lost answer) or a stale account to clear."""
        return self._desired_where("suspect_login IS NOT NULL OR stale_login IS NOT NULL")

    def sending_states(self) -> dict[str, DesiredState]:
        """Employees with a write noted as sending (left by a run that died)."""
        return self._desired_where("sending_login IS NOT NULL")

    def desired_employee_ids(self) -> list[str]:
        with self._guard("reading the desired state"):
            if not self._has_table("desired_state"):
                return []
            return [str(row[0]) for row in self._connection.execute("SELECT employee_id FROM desired_state")]

    def count_book_ons_applied_since(self, since: datetime) -> int:
        """Employees whose desired state is a book-on AtHoc accepted at or after ``since``:
        people AtHoc should show on duty now (for ``bobosync check``)."""
        with self._guard("counting recent book-ons"):
            if not self._has_table("desired_state"):
                return 0
            row = self._connection.execute(
                "SELECT COUNT(*) FROM desired_state WHERE transaction_type = 'BON' AND written_value <> '' "
                "AND written_at >= ?",
                (format_datetime(since),),
            ).fetchone()
        return int(row[0])

    def should_warn_unreadable(self, values: Mapping[str, str], now: datetime, every: timedelta) -> list[str]:
        """The LOGIN_IDs of ``values`` (LOGIN_ID -> an unreadable duty value) not warned about
        in the last ``every``, or whose value changed since; records that they are warned now.
        Users whose value became readable are forgotten by :meth:`forget_unreadable`."""
        if not values:
            return []
        with self._write("recording duty value warnings") as conn:
            due: list[str] = []
            for chunk in _chunks(list(values)):
                known = {
                    str(login): (str(value), parse_datetime(warned))
                    for login, value, warned in conn.execute(
                        "SELECT login_id, value, warned_at FROM duty_value_warnings "
                        f"WHERE login_id IN ({_placeholders(len(chunk))})",
                        tuple(chunk),
                    )
                }
                for login in chunk:
                    value, warned = known.get(login, (None, None))
                    if value != values[login] or warned is None or not (now - every < warned <= now):
                        due.append(login)
            conn.executemany(
                "INSERT OR REPLACE INTO duty_value_warnings (login_id, value, warned_at) VALUES (?, ?, ?)",
                [(login, values[login], format_datetime(now)) for login in due],
            )
        return due

    def forget_unreadable(self, keep: Iterable[str]) -> None:
        """Forget the warnings of every user not in ``keep`` (their value is readable now, or gone)."""
        kept = set(keep)
        with self._guard("reading duty value warnings"):
            known = [str(row[0]) for row in self._connection.execute("SELECT login_id FROM duty_value_warnings")]
        gone = [(login,) for login in known if login not in kept]
        if not gone:
            return  # the usual case: no write transaction at all
        with self._write("forgetting duty value warnings") as conn:
            conn.executemany("DELETE FROM duty_value_warnings WHERE login_id = ?", gone)

    # ------------------------------------------------------------------ audit_log

    def record_audit(self, rows: Iterable[AuditRow]) -> None:
        """Add audit rows (joins the caller's transaction: one executemany per batch)."""
        stamps: dict[datetime, str] = {}  # a batch's rows share their time: formatted once

        def stamp(when: datetime) -> str:
            text = stamps.get(when)
            if text is None:
                text = stamps[when] = format_datetime(when, precise=True)
            return text

        values = [
            (
                stamp(r[0]),
                r[3],
                r[4],
                r[1],
                r[5],
                None if r[6] is None else format_datetime(r[6]),
                r[7],
                r[8],
                r[9],
                r[2],
                r[10],
                r[11],
            )
            for r in rows
        ]
        if not values:
            return
        with self._write("recording the audit") as conn:
            conn.executemany(
                "INSERT INTO audit_log (recorded_at, employee_id, login_id, kind, transaction_type, event_at, "
                "source_file, source_row, value, outcome, detail, events) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )

    def audit_rows(self, employee_ids: Iterable[str], login_ids: Iterable[str], since: datetime) -> list[AuditRow]:
        """Audit rows recorded at or after ``since`` about any of ``employee_ids`` or of
        ``login_ids`` (any case), in the order they were recorded."""
        employees, logins = _unique(employee_ids), _unique(login.casefold() for login in login_ids)
        with self._guard("reading the audit"):
            if not self._has_table("audit_log") or not (employees or logins):
                return []
            rows = self._connection.execute(
                "SELECT * FROM audit_log WHERE recorded_at >= ? AND "
                f"(employee_id IN ({_placeholders(len(employees)) or 'NULL'}) "
                f"OR lower(login_id) IN ({_placeholders(len(logins)) or 'NULL'})) ORDER BY id",
                (format_datetime(since, precise=True), *employees, *logins),
            ).fetchall()
        return [
            AuditRow(
                recorded_at=parse_datetime(row["recorded_at"]) or _EARLIEST,
                kind=str(row["kind"]),
                outcome=str(row["outcome"]),
                employee_id=row["employee_id"],
                login_id=row["login_id"],
                transaction_type=row["transaction_type"],
                event_at=parse_datetime(row["event_at"]),
                source_file=row["source_file"],
                source_row=_int_or_none(row["source_row"]),
                value=row["value"],
                detail=row["detail"],
                events=row["events"],
            )
            for row in rows
        ]

    def employees_of_login(self, login_id: str) -> list[str]:
        """The employee IDs mapped, or once audited, to ``login_id`` (any case)."""
        with self._guard("reading worker mappings"):
            found: list[str] = []
            for table, column in (
                ("worker_mapping", "username"),
                ("desired_state", "login_id"),
                ("audit_log", "login_id"),
            ):
                if not self._has_table(table):
                    continue
                # Identifiers cannot be bound; both come from this module's constants.
                found.extend(
                    str(row[0])
                    for row in self._connection.execute(
                        f"SELECT DISTINCT employee_id FROM {table}"
                        f" WHERE lower({column}) = ? AND employee_id IS NOT NULL",
                        (login_id.casefold(),),
                    )
                )
        return _unique(found)

    def purge_audit(self, before: datetime) -> int:
        """Delete audit rows recorded before ``before``; returns how many."""
        with self._write("purging the audit") as conn:
            return int(
                conn.execute(
                    "DELETE FROM audit_log WHERE recorded_at < ?", (format_datetime(before, precise=True),)
                ).rowcount
            )

    # ------------------------------------------------------------------ remembered_files

    def remembered_by_name(self, names: Optional[Iterable[str]] = None) -> dict[str, list[RememberedFile]]:
        """name -> remembered versions of that file (oldest first); every name when None."""
        rows: list[Any] = []
        columns = "SELECT name, size, sha256, mtime_ns, processed_at, ctime_ns, file_id FROM remembered_files"
        with self._guard("reading remembered files"):
            if not self._has_table("remembered_files"):
                return {}
            if self._read_only and "file_id" not in _table_columns(self._connection, "remembered_files"):
                columns = "SELECT name, size, sha256, mtime_ns, processed_at FROM remembered_files"  # schema 1
            if names is None:
                rows = self._connection.execute(columns).fetchall()
            else:
                for chunk in _chunks(_unique(names)):
                    rows.extend(
                        self._connection.execute(
                            f"{columns} WHERE name IN ({_placeholders(len(chunk))})",
                            tuple(chunk),
                        )
                    )
        result: dict[str, list[RememberedFile]] = {}
        for row in rows:
            name, size, sha256, mtime_ns, processed_at = row[:5]
            ctime_ns, file_id = tuple(row[5:7]) if len(row) > 5 else (None, None)
            result.setdefault(str(name), []).append(
                RememberedFile(
                    name=str(name),
                    size=int(size),
                    sha256=str(sha256),
                    mtime_ns=_int_or_none(mtime_ns),
                    processed_at=parse_datetime(processed_at) or _EARLIEST,
                    ctime_ns=_int_or_none(ctime_ns),
                    file_id=_int_or_none(file_id),
                )
            )
        for files in result.values():
            files.sort(key=lambda remembered: remembered.processed_at)
        return result

    def remember_file(
        self,
        name: str,
        size: int,
        sha256: str,
        mtime_ns: Optional[int],
        when: datetime,
        ctime_ns: Optional[int] = None,
        file_id: Optional[int] = None,
    ) -> None:
        """Remember a processed file; remembering it again refreshes fingerprint and time."""
        with self._write("remembering a file") as conn:
            conn.execute(
                "INSERT INTO remembered_files "
                "(name, size, sha256, mtime_ns, processed_at, ctime_ns, file_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name, size, sha256) DO UPDATE SET "
                "mtime_ns = excluded.mtime_ns, processed_at = excluded.processed_at, "
                "ctime_ns = excluded.ctime_ns, file_id = excluded.file_id",
                (name, size, sha256, mtime_ns, format_datetime(when), ctime_ns, file_id),
            )

    def refresh_remembered(self, name: str, size: int, sha256: str, mtime_ns: int, ctime_ns: int, file_id: int) -> None:
        """A remembered file was found unchanged by its hash: store its new fingerprint, so
        that later passes need not read it again (its processing time stays)."""
        with self._write("refreshing a remembered file") as conn:
            conn.execute(
                "UPDATE remembered_files SET mtime_ns = ?, ctime_ns = ?, file_id = ? "
                "WHERE name = ? AND size = ? AND sha256 = ?",
                (mtime_ns, ctime_ns, file_id, name, size, sha256),
            )

    def purge_remembered(self, before: datetime, keep: Iterable[str] = ()) -> int:
        """Forget files processed before ``before``, except those named in ``keep`` (files
        still waiting in the CSV folder: forgetting them would process them again).
        Returns how many were forgotten."""
        kept = set(keep)
        with self._write("purging remembered files") as conn:
            old = conn.execute(
                "SELECT name, size, sha256 FROM remembered_files WHERE processed_at < ?",
                (format_datetime(before),),
            ).fetchall()
            doomed = [tuple(row) for row in old if row[0] not in kept]
            conn.executemany("DELETE FROM remembered_files WHERE name = ? AND size = ? AND sha256 = ?", doomed)
            return len(doomed)

    # ------------------------------------------------------------------ run_history

    def start_run(self, kind: str, started_at: datetime, pid: Optional[int] = None) -> int:
        """Record the start of a run (status ``running``); returns its id."""
        with self._write("recording the start of a run") as conn:
            cursor = conn.execute(
                "INSERT INTO run_history (kind, started_at, status, pid) VALUES (?, ?, 'running', ?)",
                (kind, format_datetime(started_at, precise=True), pid),
            )
            run_id = cursor.lastrowid
        assert run_id is not None
        return int(run_id)

    def finish_run(
        self,
        run_id: int,
        status: str,
        finished_at: datetime,
        counts: Optional[Mapping[str, Any]] = None,
        error: Optional[str] = None,
    ) -> None:
        """Record how run ``run_id`` ended; the duration is measured from its start."""
        counts_text = json.dumps(dict(counts or {}), sort_keys=True, default=str)
        with self._write("recording the end of a run") as conn:
            row = conn.execute("SELECT started_at FROM run_history WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise DatabaseError(f"database {self._path}: no run with id {run_id}")
            started = parse_datetime(row[0])
            duration: Optional[float] = None
            if started is not None:
                duration = max(0.0, (as_utc(finished_at) - started).total_seconds())
            conn.execute(
                "UPDATE run_history SET status = ?, finished_at = ?, duration_seconds = ?, "
                "counts = ?, error = ? WHERE id = ?",
                (status, format_datetime(finished_at, precise=True), duration, counts_text, error, run_id),
            )

    def rebuild_due(self) -> Optional[int]:
        """The run-history id of a rebuild of the desired state still due (recorded when a
        database from the original tool was upgraded), else None."""
        with self._guard("reading whether a rebuild is due"):
            row = self._connection.execute(
                "SELECT id FROM run_history WHERE kind = ? AND status = 'due' ORDER BY id DESC LIMIT 1",
                (REBUILD_RUN_KIND,),
            ).fetchone()
        return None if row is None else int(row[0])

    def mark_interrupted_runs(self, now: datetime) -> int:
        """Turn every ``running`` row into ``interrupted``; returns how many.

        Only call this while holding the single-instance lock: any ``running`` row then
        belongs to a process that died.
        """
        with self._write("marking interrupted runs") as conn:
            cursor = conn.execute(
                "UPDATE run_history SET status = 'interrupted', finished_at = ?, "
                "error = COALESCE(error, 'the process ended before the run finished') "
                "WHERE status = 'running'",
                (format_datetime(now, precise=True),),
            )
            count = int(cursor.rowcount)
        if count:
            log.warning("database %s: %d unfinished run(s) marked interrupted", self._path, count)
        return count

    def recent_runs(
        self, kind: Optional[str] = None, limit: int = 20, since: Optional[datetime] = None
    ) -> list[RunRecord]:
        """Runs, newest first (in the order they were recorded, which stays right when the
        clock goes backwards), optionally of one ``kind`` and started at or after ``since``."""
        conditions: list[str] = []
        params: list[Any] = []
        if kind is not None:
            conditions.append("kind = ?")
            params.append(kind)
        if since is not None:
            conditions.append("started_at >= ?")
            params.append(format_datetime(since, precise=True))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        params.append(int(limit))
        with self._guard("reading run history"):
            if not self._has_table("run_history"):
                return []
            rows = self._connection.execute(
                "SELECT id, kind, started_at, finished_at, status, duration_seconds, counts, "
                f"error, pid FROM run_history{where} ORDER BY id DESC LIMIT ?",
                tuple(params),
            ).fetchall()
        return [self._run_record(row) for row in rows]

    @staticmethod
    def _run_record(row: Any) -> RunRecord:
        counts: dict[str, Any] = {}
        if row["counts"]:
            try:
                loaded = json.loads(row["counts"])
            except ValueError:
                loaded = None
            if isinstance(loaded, dict):
                counts = loaded
        duration = row["duration_seconds"]
        return RunRecord(
            id=int(row["id"]),
            kind=str(row["kind"]),
            started_at=parse_datetime(row["started_at"]) or _EARLIEST,
            finished_at=parse_datetime(row["finished_at"]),
            status=str(row["status"]),
            duration_seconds=None if duration is None else float(duration),
            counts=counts,
            error=row["error"],
            pid=None if row["pid"] is None else int(row["pid"]),
        )

    # ------------------------------------------------------------------ pending_moves

    def add_pending_move(self, src: str, dst: str, sha256: str, when: datetime) -> None:
        """Journal a move before doing it (replaces an older entry for the same ``src``)."""
        with self._write("journaling a file move") as conn:
            conn.execute(
                "INSERT INTO pending_moves (src, dst, sha256, started_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(src) DO UPDATE SET dst = excluded.dst, sha256 = excluded.sha256, "
                "started_at = excluded.started_at",
                (src, dst, sha256, format_datetime(when)),
            )

    def remove_pending_move(self, src: str) -> None:
        with self._write("clearing a journaled file move") as conn:
            conn.execute("DELETE FROM pending_moves WHERE src = ?", (src,))

    def pending_moves(self) -> list[PendingMove]:
        """Journaled moves, oldest first."""
        with self._guard("reading journaled file moves"):
            if not self._has_table("pending_moves"):
                return []
            rows = self._connection.execute(
                "SELECT src, dst, sha256, started_at FROM pending_moves ORDER BY started_at, src"
            ).fetchall()
        return [
            PendingMove(
                src=str(src),
                dst=str(dst),
                sha256=str(sha256),
                started_at=parse_datetime(started_at) or _EARLIEST,
            )
            for src, dst, sha256, started_at in rows
        ]

"""Build a database the way the original tool left it (schema version 0), and write to it as
the original does (for rollback tests).

Deliberately independent of :mod:`bobosync.database`: it holds the original's exact tables and
the values it writes, from ``original-tool.md`` (section 2).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Optional, Union

#: The original tool's tables, verbatim.
LEGACY_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS worker_mapping (employee_id TEXT PRIMARY KEY, username TEXT NOT NULL,
    collar_id TEXT, last_updated TIMESTAMP DEFAULT CURRENT_TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS processing_log (id INTEGER PRIMARY KEY AUTOINCREMENT, filename TEXT NOT NULL,
    processed_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, entries_processed INTEGER, success_count INTEGER,
    error_count INTEGER, errors TEXT)""",
    """CREATE TABLE IF NOT EXISTS sync_tracking (sync_type TEXT PRIMARY KEY, last_sync_date DATE,
    last_sync_time TIMESTAMP, status TEXT)""",
    """CREATE TABLE IF NOT EXISTS file_retry_tracking (filename TEXT PRIMARY KEY, retry_count INTEGER DEFAULT 0,
    first_seen TIMESTAMP DEFAULT CURRENT_TIMESTAMP, last_retry TIMESTAMP DEFAULT CURRENT_TIMESTAMP)""",
)


def create_legacy_database(
    path: Union[str, Path],
    mappings: dict[str, str],
    *,
    last_sync: Optional[tuple[datetime, str]] = None,
) -> None:
    """Create a schema-0 ``bobo_mapping.db`` at ``path`` holding ``mappings``.

    ``last_sync=(when, status)`` also writes the ``user_mapping`` row of ``sync_tracking`` as
    the original did (``when.isoformat()`` with microseconds, date as ``YYYY-MM-DD``; status
    ``completed``, ``no_data`` or ``error``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(str(path))) as conn, conn:
        for statement in LEGACY_SCHEMA:
            conn.execute(statement)
    original_sync_mappings(path, mappings)
    if last_sync is not None:
        original_update_sync_tracking(path, *last_sync)


def original_sync_mappings(path: Union[str, Path], mappings: dict[str, str]) -> None:
    """The original's mapping sync: INSERT OR REPLACE of every listed collar, never a delete.
    ``collar_id`` is the value as returned (here the stripped one: the original strips only
    ``employee_id``)."""
    with closing(sqlite3.connect(str(path))) as conn, conn:
        conn.executemany(
            "INSERT OR REPLACE INTO worker_mapping (employee_id, username, collar_id) VALUES (?, ?, ?)",
            [(employee_id, username, employee_id) for employee_id, username in mappings.items()],
        )


def original_update_sync_tracking(path: Union[str, Path], when: datetime, status: str = "completed") -> None:
    """``update_sync_tracking`` as the original writes it: local date and ``isoformat()``."""
    with closing(sqlite3.connect(str(path))) as conn, conn:
        conn.execute(
            "INSERT OR REPLACE INTO sync_tracking (sync_type, last_sync_date, last_sync_time, status) "
            "VALUES ('user_mapping', ?, ?, ?)",
            (when.strftime("%Y-%m-%d"), when.isoformat(), status),
        )


def original_log_processing(
    path: Union[str, Path], filename: str, entries: int, success: int, errors: int, text: str = ""
) -> None:
    """``log_processing`` as the original writes it (processed_at from CURRENT_TIMESTAMP)."""
    with closing(sqlite3.connect(str(path))) as conn, conn:
        conn.execute(
            "INSERT INTO processing_log (filename, entries_processed, success_count, error_count, errors) "
            "VALUES (?, ?, ?, ?, ?)",
            (filename, entries, success, errors, text),
        )


def original_track_file_retry(path: Union[str, Path], filename: str) -> int:
    """``track_file_retry`` as the original does it: 1 at the first failure, +1 after."""
    with closing(sqlite3.connect(str(path))) as conn, conn:
        row = conn.execute("SELECT retry_count FROM file_retry_tracking WHERE filename = ?", (filename,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO file_retry_tracking (filename, retry_count) VALUES (?, 1)", (filename,))
            return 1
        conn.execute(
            "UPDATE file_retry_tracking SET retry_count = retry_count + 1, last_retry = CURRENT_TIMESTAMP "
            "WHERE filename = ?",
            (filename,),
        )
        return int(row[0]) + 1

"""Build a database the way the original tool left it (schema version 0).

Used by the database tests and by end-to-end tests that upgrade an existing installation.
Deliberately independent of :mod:`bobosync.database`: it writes what the original wrote.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Optional, Union

#: The original tool's tables, verbatim.
LEGACY_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS worker_mapping (
        employee_id TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        last_updated TIMESTAMP DEFAULT CURRENT_TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS processing_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        filename TEXT NOT NULL,
        processed_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        records_processed INTEGER,
        status TEXT,
        error_message TEXT)""",
    """CREATE TABLE IF NOT EXISTS sync_tracking (
        sync_type TEXT PRIMARY KEY,
        last_sync_date DATE,
        last_sync_time TIMESTAMP,
        status TEXT,
        records_synced INTEGER DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS file_retry_tracking (
        filename TEXT PRIMARY KEY,
        retry_count INTEGER DEFAULT 0,
        first_attempt TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        last_attempt TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        last_error TEXT)""",
)


def create_legacy_database(
    path: Union[str, Path],
    mappings: dict[str, str],
    *,
    last_sync: Optional[tuple[datetime, str]] = None,
) -> None:
    """Create a schema-0 ``bobo_mapping.db`` at ``path`` holding ``mappings``.

    ``last_sync=(when, status)`` also writes the ``user_mapping`` row of ``sync_tracking`` as
    the original did (``when.isoformat()`` with microseconds, date as ``YYYY-MM-DD``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(str(path))) as conn, conn:
        for statement in LEGACY_SCHEMA:
            conn.execute(statement)
        conn.executemany(
            "INSERT OR REPLACE INTO worker_mapping (employee_id, username) VALUES (?, ?)",
            list(mappings.items()),
        )
        if last_sync is not None:
            when, status = last_sync
            conn.execute(
                "INSERT OR REPLACE INTO sync_tracking "
                "(sync_type, last_sync_date, last_sync_time, status, records_synced) "
                "VALUES ('user_mapping', ?, ?, ?, ?)",
                (when.date().isoformat(), when.isoformat(), status, len(mappings)),
            )

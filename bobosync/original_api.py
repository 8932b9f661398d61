"""The original tool's public API, for REPL habits and scripts of sites that ran it.

``from athoc_client import AtHocClient`` and ``from bobo_processor import BOBOProcessor,
BOBODatabase, BOBOEntry`` inside ``bobosync/`` give these classes: the original's method names,
signatures and return shapes (``../shared/reference/original-tool.md`` section 4, without its
alert and role calls). Each is a thin adapter over bobosync's own client, database and pipeline;
nothing here talks HTTP, SQL or parses CSV itself. ``bobosync.AtHocClient`` and friends keep
bobosync's API.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Optional

from bobosync import client as _client
from bobosync import database as _database
from bobosync import processor as _processor
from bobosync.bobo_csv import BOBOEntry
from bobosync.errors import AtHocError
from bobosync.settings import load_settings
from bobosync.timebase import utc_now

log = logging.getLogger(__name__)

__all__ = ["AtHocClient", "BOBODatabase", "BOBOEntry", "BOBOProcessor"]

#: The original's field default for its duty calls (its code, not its .env).
_ORIGINAL_FIELD = "DUTY_STATUS"
#: The answers the original counted as a written row: applied, or a user AtHoc does not have.
_DONE = (_client.UpdateOutcome.APPLIED, _client.UpdateOutcome.NOT_IN_ATHOC)


def _format(dt: datetime) -> str:
    return dt.strftime("%d/%m/%Y %H:%M:%S")


class AtHocClient:
    """The original ``athoc_client.AtHocClient``: ``AtHocClient()`` reads the settings and gets
    a token at once."""

    def __init__(self, *, _wrapped: Optional[_client.AtHocClient] = None) -> None:
        self.client = _wrapped if _wrapped is not None else _client.AtHocClient()
        settings = self.client.settings
        self.base_url = settings.athoc_server_url.rstrip("/")
        self.org_code = settings.org_code
        self.session = self.client.transport.session

    def __enter__(self) -> AtHocClient:
        return self

    def __exit__(
        self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.client.close()

    format_datetime_for_athoc = staticmethod(_format)

    def get_all_users_with_attributes(self, fields: Optional[list[str]] = None) -> dict[str, dict[str, Any]]:
        """{LOGIN_ID: user}; ``None`` asks for USER_ATTRIBUTES; any AtHoc error gives ``{}``."""
        wanted = ["LOGIN_ID", *(fields if fields is not None else self.client.settings.user_attributes)]
        try:
            users = self.client.get_all_users_with_attributes(list(dict.fromkeys(wanted)))
        except AtHocError as exc:
            log.error("Error getting users: %s", exc)
            return {}
        return {user["LOGIN_ID"]: user for user in users}

    def get_user_attributes(self, usernames: list[str]) -> dict[str, dict[str, Any]]:
        try:
            return self.client.read_users(usernames)
        except AtHocError as exc:
            log.error("Error getting user attributes: %s", exc)
            return {}

    def update_user_duty_status(
        self, username: str, duty_datetime: Optional[str] = None, duty_status_field: str = _ORIGINAL_FIELD
    ) -> bool:
        """True only when AtHoc applied the row."""
        results = self.client.batch_update_duty_status({username: duty_datetime or ""}, duty_status_field)
        result = results.get(username)
        return result is not None and result.outcome is _client.UpdateOutcome.APPLIED

    def batch_update_duty_status(
        self, duty_updates: list[dict[str, Any]], duty_status_field: str = _ORIGINAL_FIELD
    ) -> dict[str, bool]:
        """Rows ``{'username': ..., 'datetime': ...}`` (a datetime is formatted, None or '' clears);
        {LOGIN_ID: done}, a user AtHoc does not have counting as done; an exception: all False."""
        updates: dict[str, str] = {}
        for row in duty_updates:
            value = row.get("datetime")
            updates[str(row["username"])] = _format(value) if isinstance(value, datetime) else str(value or "")
        if not updates:
            return {}
        try:
            results = self.client.batch_update_duty_status(updates, duty_status_field)
        except AtHocError as exc:
            log.error("Error in batch duty status update: %s", exc)
            return {login_id: False for login_id in updates}
        return {login_id: results[login_id].outcome in _DONE if login_id in results else False for login_id in updates}

    def query_users_with_old_duty_status(
        self, duty_status_field: str = _ORIGINAL_FIELD, hours_threshold: int = 24
    ) -> list[str]:
        try:
            rows = self.client.query_users_with_old_duty_status(field=duty_status_field, hours=hours_threshold)
        except AtHocError as exc:
            log.error("Error querying users with old duty status: %s", exc)
            return []
        return [row["LOGIN_ID"] for row in rows]

    def clear_old_duty_status(self, duty_status_field: str = _ORIGINAL_FIELD, hours_threshold: int = 24) -> int:
        return self.client.clear_old_duty_status(field=duty_status_field, hours=hours_threshold)


class BOBODatabase:
    """The original ``bobo_processor.BOBODatabase`` over bobosync's database (which upgrades
    the file on open and writes the original's columns as the original did)."""

    def __init__(self, db_path: str = "bobo_mapping.db", *, _wrapped: Optional[_database.BOBODatabase] = None) -> None:
        self.database = _wrapped if _wrapped is not None else _database.BOBODatabase(db_path)
        self.db_path = str(self.database.path) if _wrapped is not None else db_path

    def init_database(self) -> None:
        """Nothing left to do: opening the database created or upgraded it."""

    def get_last_sync_date(self, sync_type: str = "user_mapping") -> Optional[str]:
        state = self.database.get_sync_state(sync_type)
        return None if state is None or state.last_sync_date is None else state.last_sync_date.isoformat()

    def get_last_sync_status(self, sync_type: str = "user_mapping") -> Optional[str]:
        state = self.database.get_sync_state(sync_type)
        return None if state is None else state.status

    def update_sync_tracking(self, sync_type: str = "user_mapping", status: str = "completed") -> None:
        self.database.record_sync(status, utc_now(), sync_type=sync_type)

    def get_username_by_employee_id(self, employee_id: str) -> Optional[str]:
        return self.database.get_username_by_employee_id(employee_id)

    def update_mapping(self, employee_id: str, username: str, collar_id: Optional[str] = None) -> None:
        self.database.update_mapping(employee_id, username, collar_id)

    def log_processing(
        self, filename: str, entries_processed: int, success_count: int, error_count: int, errors: str = ""
    ) -> None:
        status = "failed" if error_count else "success"
        self.database.log_processing(
            filename, entries_processed, status, errors or None, success_count=success_count, error_count=error_count
        )

    def get_all_mappings(self) -> list[tuple[str, str, Optional[str]]]:
        return self.database.mapping_rows()

    def track_file_retry(self, filename: str) -> int:
        return self.database.record_file_failure(filename, "", utc_now())

    def clear_file_retry_tracking(self, filename: str) -> None:
        self.database.clear_file_retry(filename)


#: The original's ``config`` keys that are also attributes of its processor.
_CONFIG_ATTRIBUTES = (
    "csv_directory",
    "sync_mappings",
    "duty_status_field",
    "batch_size",
    "auto_cleanup_hours",
    "processed_directory",
    "move_processed_files",
    "log_directory",
    "log_purge_days",
    "sync_hour",
    "sync_retry_days",
    "max_retry_attempts",
    "failed_files_directory",
)


class BOBOProcessor:
    """The original ``bobo_processor.BOBOProcessor``: ``BOBOProcessor()`` reads the settings;
    ``athoc_client`` connects on first use; ``process_directory()`` runs one bobosync pass."""

    def __init__(self) -> None:
        settings = load_settings()
        database = _database.BOBODatabase(settings.db_path)
        self.processor = _processor.BOBOProcessor(settings, db=database)
        s = self.processor.settings
        # The original's settings attributes (its paths as text).
        for name in _CONFIG_ATTRIBUTES:
            value = getattr(s, name)
            setattr(self, name, str(value) if isinstance(value, Path) else value)
        self.duty_status_field: str = s.duty_status_field
        self.move_processed_files: bool = s.move_processed_files
        # The original's config dict: the attributes above plus four it kept only there.
        self.config: dict[str, Any] = {name: getattr(self, name) for name in _CONFIG_ATTRIBUTES}
        self.config.update(
            db_path=str(s.db_path),
            collar_id_field=s.collar_id_field,
            user_attributes=list(s.user_attributes),
            log_level=logging.getLevelName(s.log_level),
        )
        self.database = BOBODatabase(_wrapped=database)
        self.logger = logging.getLogger("BOBOProcessor")
        self._athoc_client: Optional[AtHocClient] = None

    @property
    def athoc_client(self) -> AtHocClient:
        """The AtHoc client, connected on first use (the original left it None until
        ``connect_athoc()``)."""
        if self._athoc_client is None:
            self._athoc_client = AtHocClient(_wrapped=self.processor.connect_athoc())
        return self._athoc_client

    def connect_athoc(self) -> None:
        self.athoc_client  # noqa: B018 - connecting is the point

    def should_run_user_mapping_sync(self) -> bool:
        return self.processor.should_run_user_mapping_sync()

    def sync_worker_mappings(self) -> None:
        """Sync the worker mapping when it is due, as the original did."""
        if self.should_run_user_mapping_sync():
            self.processor.sync_worker_mappings()

    def get_csv_files(self, directory: str) -> list[str]:
        """``*.csv`` in ``directory``, oldest first: the original's glob, case-blind on Windows
        only (a pass itself takes ``*.CSV`` too, see :func:`bobosync.bobo_csv.is_bobo_file_name`)."""
        files = sorted(Path(directory).glob("*.csv"), key=lambda p: (p.stat().st_mtime, p.name))
        return [str(path) for path in files]

    def collect_csv_files(self) -> list[str]:
        """The files the next pass would process (the original README's name for it)."""
        return [str(path) for path in self.processor.get_csv_files()]

    def parse_csv_file(self, filepath: str) -> list[BOBOEntry]:
        return self.processor.parse_csv_file(Path(filepath))

    def move_processed_file(self, filepath: str) -> bool:
        if not self.move_processed_files:
            return True
        self.processor.move_processed_file(Path(filepath))
        return True

    def process_directory(self) -> int:
        """One pass; returns its exit code."""
        return self.processor.run_pass().exit_code

    def auto_cleanup_old_duty_status(self, field: Optional[str] = None) -> int:
        return self.processor.run_cleanup()

    format_datetime_for_athoc = staticmethod(_format)

"""Steps 2-4: the folders, the database (read-only), the single-instance lock."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from ..bobo_csv import is_bobo_file_name
from ..errors import (
    DatabaseError,
    LockHeld,
)
from ..settings import (
    Settings,
)
from .base import CheckerBase, os_error, write_test
from .results import CheckResult, Status, fail, ok, warn


class LocalChecks(CheckerBase):
    # -- 2. folders -----------------------------------------------------------------------

    def check_folders(self) -> Iterator[CheckResult]:
        settings = self._settings()
        yield self._csv_folder(settings.csv_directory)
        processed = self._output_folder("PROCESSED_DIRECTORY", settings.processed_directory)
        if not settings.move_processed_files:  # a problem there does not stop bobosync today
            processed = dataclasses.replace(
                processed,
                status=Status.WARN if processed.status is Status.FAIL else processed.status,
                detail=processed.detail + " (not used while MOVE_PROCESSED_FILES=false)",
            )
        yield processed
        yield self._output_folder("FAILED_FILES_DIRECTORY", settings.failed_files_directory)
        yield self._output_folder("LOG_DIRECTORY", settings.log_directory)
        yield self._output_folder("DB_PATH folder", settings.db_path.parent)
        yield from self._volumes(settings)

    def _csv_folder(self, folder: Path) -> CheckResult:
        name = "CSV_DIRECTORY"
        fix_missing = (
            "correct CSV_DIRECTORY (relative paths are relative to the .env file's folder) or "
            "create the folder BOBO writes its files to; bobosync never creates it"
        )
        if not folder.exists():
            return fail(name, f"{folder} does not exist", fix_missing)
        if not folder.is_dir():
            return fail(name, f"{folder} is a file, not a folder", fix_missing)
        try:
            csv_files = sum(1 for entry in folder.iterdir() if is_bobo_file_name(entry.name))
        except OSError as exc:
            return fail(
                name,
                f"{folder} cannot be listed: {os_error(exc)}",
                "give the account that runs bobosync read access to the folder (on a share: "
                "share and folder permissions)",
            )
        problem = write_test(folder)
        if problem is not None:
            return fail(
                name,
                f"{folder} is readable but not writable ({problem}): processed and failed files "
                "cannot be moved out of it",
                "give the account that runs bobosync modify (write and delete) access to the folder",
            )
        return ok(name, f"{folder}: exists, readable, writable; {csv_files} CSV file(s) waiting")

    def _output_folder(self, name: str, folder: Path) -> CheckResult:
        fix = (
            f"correct {name.split()[0]} or make the folder (or its parent) writable for the account that runs bobosync"
        )
        if folder.exists():
            if not folder.is_dir():
                return fail(name, f"{folder} is a file, not a folder", fix)
            problem = write_test(folder)
            if problem is not None:
                return fail(name, f"{folder} is not writable ({problem})", fix)
            return ok(name, f"{folder}: exists, writable")
        ancestor = _nearest_existing(folder)
        if ancestor is None:
            return fail(name, f"{folder} does not exist and no parent folder exists either", fix)
        if not ancestor.is_dir():
            return fail(name, f"{folder} cannot be created: {ancestor} is a file, not a folder", fix)
        problem = write_test(ancestor)
        if problem is not None:
            return fail(name, f"{folder} does not exist and cannot be created in {ancestor} ({problem})", fix)
        return ok(name, f"{folder}: does not exist yet; the first run creates it (in {ancestor}, writable)")

    def _volumes(self, settings: Settings) -> Iterator[CheckResult]:
        name = "file moves"
        try:
            csv_dev = settings.csv_directory.stat().st_dev
        except OSError:
            return  # the CSV_DIRECTORY line already says why
        targets = [("FAILED_FILES_DIRECTORY", settings.failed_files_directory)]
        if settings.move_processed_files:
            targets.insert(0, ("PROCESSED_DIRECTORY", settings.processed_directory))
        same: list[str] = []
        other: list[str] = []
        for setting, folder in targets:
            ancestor = _nearest_existing(folder)
            if ancestor is None or not ancestor.is_dir():
                continue
            try:
                dev = ancestor.stat().st_dev
            except OSError:
                continue
            (same if dev == csv_dev else other).append(setting)
        parts = []
        if same:
            parts.append(f"{' and '.join(same)} on the same volume as CSV_DIRECTORY: moves are instant renames")
        if other:
            parts.append(
                f"{' and '.join(other)} on another volume than CSV_DIRECTORY: each move is copy, "
                "verify (SHA-256), then delete the original - slower, equally safe"
            )
        if parts:
            yield ok(name, "; ".join(parts))

    # -- 3. database ----------------------------------------------------------------------

    def check_database(self) -> Iterator[CheckResult]:
        from ..database import SCHEMA_VERSION, BOBODatabase

        name = "database"
        path = self._settings().db_path
        if not path.exists():
            yield ok(name, f"{path} does not exist yet; the first run creates it")
            return
        if not path.is_file():
            yield fail(name, f"{path} is not a file", "correct DB_PATH: it names the SQLite file")
            return
        try:
            with BOBODatabase(path, read_only=True) as db:
                version = db.schema_version
                mappings = db.mapping_count()
                sync = db.get_sync_state()
                pending = len(db.pending_moves())
        except DatabaseError as exc:
            yield fail(
                name,
                f"{path} cannot be read: {exc}",
                "restore the file from a backup, or move it aside: the next run creates a new "
                "database and syncs the worker mapping from AtHoc again",
            )
            return
        parts = [f"{path}: schema {version}"]
        if version < SCHEMA_VERSION:
            parts[0] += f" (upgraded to {SCHEMA_VERSION} by the next run)"
        parts.append(f"{mappings} worker mapping(s)")
        if sync is not None and sync.last_sync_time is not None:
            parts.append(f"last mapping sync {sync.last_sync_time:%Y-%m-%d %H:%M} ({sync.status or '?'})")
        else:
            parts.append("no mapping sync yet")
        if pending:
            parts.append(f"{pending} interrupted file move(s), finished by the next run")
        yield ok(name, ", ".join(parts))

    # -- 4. lock --------------------------------------------------------------------------

    def check_lock(self) -> Iterator[CheckResult]:
        from ..locking import SingleInstanceLock

        name = "lock"
        path = self._settings().lock_path
        if not path.exists():
            yield ok(name, f"free ({path} does not exist)")
            return
        lock = SingleInstanceLock(path)
        try:
            lock.acquire()
        except LockHeld:
            yield warn(
                name,
                f"held: a bobosync run is in progress ({path})",
                "nothing to do if Task Scheduler or the service is running bobosync; otherwise "
                "find the bobosync process that is still running",
            )
            return
        except OSError as exc:
            yield warn(name, f"cannot be tested: {os_error(exc)}", f"check access to {path.parent}")
            return
        lock.release()
        yield ok(name, f"free ({path})")


def _nearest_existing(path: Path) -> Optional[Path]:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None

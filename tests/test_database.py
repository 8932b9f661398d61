"""Tests of bobosync.database against real SQLite files."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest

from bobosync.bobo_csv import Transaction
from bobosync.database import (
    SCHEMA_VERSION,
    BOBODatabase,
    format_datetime,
    format_sqlite_utc,
    parse_datetime,
)
from bobosync.desired import DesiredState
from bobosync.errors import DatabaseError
from bobosync.resolution import EventOrder
from bobosync.store import MappingChange, PendingMove
from bobosync.timebase import UTC, as_utc
from tests.legacy_db import (
    create_legacy_database,
    original_log_processing,
    original_sync_mappings,
    original_track_file_retry,
    original_update_sync_tracking,
)

T0 = datetime(2025, 6, 17, 20, 1, 2, tzinfo=UTC)


FMT = "%d/%m/%Y %H:%M:%S"


def desired(employee_id: str, transaction: str = "BON") -> DesiredState:
    return DesiredState(
        employee_id, EventOrder(T0, 5, "f.csv", 2), Transaction(transaction), datetime(2025, 6, 17, 21, 1, 2), T0
    )


NEW_TABLES = ("run_history", "remembered_files", "pending_moves", "desired_state", "duty_value_warnings", "audit_log")


def raw(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Query the file with a plain sqlite3 connection, bypassing bobosync."""
    with closing(sqlite3.connect(str(path))) as conn:
        return list(conn.execute(sql, params).fetchall())


def user_version(path: Path) -> int:
    return int(raw(path, "PRAGMA user_version")[0][0])


def columns(path: Path, table: str) -> list[str]:
    return [str(row[1]) for row in raw(path, f"PRAGMA table_info({table})")]


def tables(path: Path) -> set[str]:
    return {str(row[0]) for row in raw(path, "SELECT name FROM sqlite_master WHERE type='table'")}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "bobo_mapping.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[BOBODatabase]:
    with BOBODatabase(db_path) as database:
        yield database


# --------------------------------------------------------------------------- creation


def test_fresh_database_is_created_at_current_schema_in_wal_mode(db_path: Path) -> None:
    assert not db_path.parent.exists()
    with BOBODatabase(db_path) as db:
        assert db.path == db_path
        assert db.schema_version == SCHEMA_VERSION == 6
        assert raw(db_path, "PRAGMA integrity_check") == [("ok",)]
    assert user_version(db_path) == SCHEMA_VERSION
    assert raw(db_path, "PRAGMA journal_mode")[0][0] == "wal"
    expected = {"worker_mapping", "processing_log", "sync_tracking", "file_retry_tracking"}
    assert expected | set(NEW_TABLES) <= tables(db_path)
    assert "last_success_time" in columns(db_path, "sync_tracking")
    indexes = {row[1] for row in raw(db_path, "PRAGMA index_list(run_history)")}
    assert "run_history_kind_started" in indexes


def test_reopening_is_idempotent_and_keeps_data(db_path: Path) -> None:
    with BOBODatabase(db_path) as db:
        db.update_mapping("05990", "jsmith")
        db.record_sync("success", T0, 1)
    schema_before = raw(db_path, "SELECT sql FROM sqlite_master ORDER BY name")
    for _ in range(2):
        with BOBODatabase(db_path) as db:
            assert db.schema_version == SCHEMA_VERSION
            assert db.all_mappings() == {"05990": "jsmith"}
            state = db.get_sync_state()
            assert state is not None and state.last_success_time == T0
    assert raw(db_path, "SELECT sql FROM sqlite_master ORDER BY name") == schema_before


def test_newer_schema_is_refused(db_path: Path) -> None:
    BOBODatabase(db_path).close()
    with closing(sqlite3.connect(str(db_path))) as conn:
        conn.execute("PRAGMA user_version = 7")
    with pytest.raises(DatabaseError, match=rf"newer bobosync \(schema 7, this version knows {SCHEMA_VERSION}\)"):
        BOBODatabase(db_path)
    with pytest.raises(DatabaseError, match="newer bobosync"):
        BOBODatabase(db_path, read_only=True)
    assert user_version(db_path) == 7


def test_not_a_database_is_a_database_error_naming_the_file(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(DatabaseError, match=r"bobo_mapping\.db"):
        BOBODatabase(db_path)


def test_closed_database_raises_database_error(db_path: Path) -> None:
    db = BOBODatabase(db_path)
    db.close()
    db.close()  # twice is fine
    with pytest.raises(DatabaseError, match="closed"):
        db.all_mappings()
    with pytest.raises(DatabaseError):
        db.update_mapping("1", "a")


# --------------------------------------------------------------------------- legacy upgrade


def test_legacy_database_is_upgraded_in_place_keeping_data(db_path: Path) -> None:
    when = datetime(2025, 6, 17, 20, 1, 2, 123456)
    create_legacy_database(db_path, {"05990": "jsmith", "12345": "adoe"}, last_sync=(when, "completed"))
    original_log_processing(db_path, "BOBO_20250617_134615_output.csv", 12, 3, 0)
    original_log_processing(db_path, "bad.csv", 0, 0, 1, "'utf-8' codec can't decode byte 0xe9")
    original_update_sync_tracking(db_path, datetime(2025, 6, 16, 8, 0, 0, 500000), "error")
    with closing(sqlite3.connect(str(db_path))) as conn, conn:
        conn.execute("UPDATE sync_tracking SET sync_type = 'other' WHERE status = 'error'")
    original_update_sync_tracking(db_path, when, "completed")
    for _ in range(3):
        original_track_file_retry(db_path, "stuck.csv")
    assert user_version(db_path) == 0

    with BOBODatabase(db_path) as db:
        assert db.schema_version == SCHEMA_VERSION
        assert db.all_mappings() == {"05990": "jsmith", "12345": "adoe"}
        assert db.mapping_count() == 2
        state = db.get_sync_state()
        assert state is not None
        assert state.status == "completed"  # the original's word for a complete listing
        assert state.last_sync_date == date(2025, 6, 17)
        assert state.last_sync_time == as_utc(when)  # the original's local text, as an instant
        assert state.last_success_time == as_utc(datetime(2025, 6, 17, 20, 1, 2))
        other = db.get_sync_state("other")
        assert other is not None and other.status == "error"
        assert other.last_success_time is None
        assert db.retry_counts().get("stuck.csv", (0, None))[0] == 3
        assert db.retry_counts() == {"stuck.csv": (3, None)}
        assert db.record_file_failure("stuck.csv", "again", T0) == 4
        db.update_mapping("777", "newbie")
        db.log_processing("mine.csv", 4, "success", None, T0)

    assert user_version(db_path) == SCHEMA_VERSION
    assert NEW_TABLES and set(NEW_TABLES) <= tables(db_path)
    # The original's tables keep the original's columns and formats, filled for bobosync's rows too.
    assert raw(
        db_path,
        "SELECT filename, entries_processed, success_count, error_count, errors FROM processing_log ORDER BY id",
    ) == [
        ("BOBO_20250617_134615_output.csv", 12, 3, 0, ""),
        ("bad.csv", 0, 0, 1, "'utf-8' codec can't decode byte 0xe9"),
        ("mine.csv", 4, 4, 0, ""),
    ]
    assert raw(db_path, "SELECT employee_id, username, collar_id FROM worker_mapping ORDER BY employee_id") == [
        ("05990", "jsmith", "05990"),
        ("12345", "adoe", "12345"),
        ("777", "newbie", "777"),
    ]
    assert raw(db_path, "SELECT retry_count, first_seen IS NOT NULL, last_retry FROM file_retry_tracking") == [
        (4, 1, format_sqlite_utc(T0)),
    ]
    assert raw(
        db_path,
        "SELECT last_sync_time, status, last_success_time FROM sync_tracking WHERE sync_type = 'user_mapping'",
    ) == [(when.isoformat(), "completed", format_datetime(when))]  # bobosync's own column: the instant


def test_original_runs_again_after_an_upgrade_and_bobosync_after_that(db_path: Path) -> None:
    """Upgrade, use, roll back (the original writes its tables as it does), upgrade again."""
    create_legacy_database(db_path, {"05990": "jsmith"}, last_sync=(datetime(2025, 6, 17, 20, 0), "completed"))
    with BOBODatabase(db_path) as db:
        db.replace_mappings({"05990": "jsmith", "00042": "kjones"}, T0)
        db.record_sync("success", T0, 2)
        db.log_processing("a.csv", 2, "success", None, T0)
        assert db.record_file_failure("b.csv", "503", T0) == 1
    # Rollback: the original, with its own statements, on the upgraded file.
    original_sync_mappings(db_path, {"05990": "jsmith2", "LEAVER": "gone"})
    original_update_sync_tracking(db_path, datetime(2025, 6, 18, 20, 0, 0, 1), "completed")
    original_log_processing(db_path, "c.csv", 5, 5, 0)
    assert original_track_file_retry(db_path, "b.csv") == 2
    # Upgrade again.
    with BOBODatabase(db_path) as db:
        assert db.schema_version == SCHEMA_VERSION
        assert db.all_mappings() == {"05990": "jsmith2", "00042": "kjones", "LEAVER": "gone"}
        state = db.get_sync_state()
        assert state is not None and state.status == "completed"
        assert state.last_sync_time == as_utc(datetime(2025, 6, 18, 20, 0, 0, 1))
        assert state.last_success_time == state.last_sync_time  # the original's `completed` counts
        assert state.listing_mappings is None  # its mapping rows are not a listing bobosync recorded
        assert db.retry_counts().get("b.csv", (0, None))[0] == 2
        assert db.retry_counts()["b.csv"][0] == 2
        db.log_processing("d.csv", 1, "failed", "bad header", T0)
        assert db.last_failure_reason("d.csv") == "bad header"
    assert raw(
        db_path, "SELECT filename, entries_processed, success_count, error_count FROM processing_log ORDER BY id"
    ) == [("a.csv", 2, 2, 0), ("c.csv", 5, 5, 0), ("d.csv", 1, 0, 1)]


def test_legacy_tables_missing_columns_get_them_and_extra_columns_are_kept(
    db_path: Path,
) -> None:
    db_path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(str(db_path))) as conn, conn:
        conn.execute("CREATE TABLE worker_mapping (employee_id TEXT PRIMARY KEY, username TEXT NOT NULL, site TEXT)")
        conn.execute("INSERT INTO worker_mapping VALUES ('05990', 'jsmith', 'north')")
        conn.execute("CREATE TABLE sync_tracking (sync_type TEXT PRIMARY KEY, last_sync_time TIMESTAMP)")
        conn.execute("INSERT INTO sync_tracking VALUES ('user_mapping', '2025-06-17 20:01:02')")
        conn.execute("CREATE TABLE file_retry_tracking (filename TEXT PRIMARY KEY)")
    with BOBODatabase(db_path) as db:
        assert db.get_username_by_employee_id("05990") == "jsmith"
        state = db.get_sync_state()
        assert state is not None
        assert state.last_sync_time == T0
        assert state.status is None and state.records_synced == 0
        db.update_mapping("12345", "adoe")
        db.record_sync("success", T0 + timedelta(hours=1), 2)
        assert db.record_file_failure("x.csv", "bad", T0) == 1
        assert db.retry_counts() == {"x.csv": (1, "bad")}
    assert columns(db_path, "worker_mapping") == ["employee_id", "username", "site", "last_updated", "collar_id"]
    assert set(columns(db_path, "sync_tracking")) >= {
        "last_sync_date",
        "status",
        "records_synced",
        "last_success_time",
    }
    assert raw(db_path, "SELECT site FROM worker_mapping WHERE employee_id = '05990'") == [("north",)]


def test_legacy_table_without_its_key_column_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(str(db_path))) as conn, conn:
        conn.execute("CREATE TABLE worker_mapping (username TEXT)")
    with pytest.raises(DatabaseError, match="employee_id"):
        BOBODatabase(db_path)
    assert user_version(db_path) == 0  # the failed migration was rolled back
    assert "run_history" not in tables(db_path)


# --------------------------------------------------------------------------- read-only


def test_read_only_on_a_missing_file_is_an_empty_in_memory_database(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "bobo_mapping.db"
    with BOBODatabase(path, read_only=True) as db:
        assert db.schema_version == SCHEMA_VERSION
        assert db.all_mappings() == {}
        assert db.get_sync_state() is None
        assert db.recent_runs() == []
        assert db.pending_moves() == []
        with pytest.raises(DatabaseError, match="read-only"):
            db.update_mapping("1", "a")
    assert not path.parent.exists()


def test_read_only_reads_a_legacy_file_without_migrating_it(db_path: Path) -> None:
    when = datetime(2025, 6, 17, 20, 1, 2, 500)
    create_legacy_database(db_path, {"05990": "jsmith"}, last_sync=(when, "success"))
    with closing(sqlite3.connect(str(db_path))) as conn, conn:
        conn.execute("INSERT INTO file_retry_tracking (filename, retry_count) VALUES ('a', 2)")
    before = db_path.read_bytes()
    with BOBODatabase(db_path, read_only=True) as db:
        assert db.schema_version == 0
        assert db.all_mappings() == {"05990": "jsmith"}
        assert db.get_usernames(["05990", "x"]) == {"05990": "jsmith"}
        state = db.get_sync_state()
        assert state is not None
        assert state.last_sync_time == as_utc(when)
        assert state.last_success_time == as_utc(when)  # what the migration would backfill
        assert db.retry_counts() == {"a": (2, None)}
        assert db.desired_states(["05990"]) == {}
        assert db.recent_runs() == []
        assert db.pending_moves() == []
        assert db.remembered_by_name() == {}
        assert raw(db_path, "PRAGMA integrity_check") == [("ok",)]
    assert user_version(db_path) == 0
    assert not set(NEW_TABLES) & tables(db_path)
    assert db_path.read_bytes() == before


def test_read_only_reader_sees_a_live_writer(db_path: Path) -> None:
    with BOBODatabase(db_path) as writer:
        writer.update_mapping("1", "a")
        with BOBODatabase(db_path, read_only=True) as reader:
            assert reader.schema_version == SCHEMA_VERSION
            assert reader.all_mappings() == {"1": "a"}
            with writer.transaction():
                writer.update_mapping("2", "b")
                assert reader.mapping_count() == 1  # uncommitted: not visible, not blocked
            assert reader.mapping_count() == 2


WRITES: dict[str, Callable[[BOBODatabase], object]] = {
    "update_mapping": lambda db: db.update_mapping("1", "a"),
    "replace_mappings": lambda db: db.replace_mappings({}, T0),
    "log_processing": lambda db: db.log_processing("f.csv", 1, "success"),
    "record_sync": lambda db: db.record_sync("success", T0),
    "record_file_failure": lambda db: db.record_file_failure("f", "e", T0),
    "clear_file_retry": lambda db: db.clear_file_retry("f"),
    "save_desired_states": lambda db: db.save_desired_states([(desired("1"), "")]),
    "remember_file": lambda db: db.remember_file("f", 1, "00", None, T0),
    "purge_remembered": lambda db: db.purge_remembered(T0),
    "start_run": lambda db: db.start_run("pass", T0),
    "finish_run": lambda db: db.finish_run(1, "ok", T0),
    "mark_interrupted_runs": lambda db: db.mark_interrupted_runs(T0),
    "add_pending_move": lambda db: db.add_pending_move("a", "b", "00", T0),
    "remove_pending_move": lambda db: db.remove_pending_move("a"),
    "transaction": lambda db: db.transaction().__enter__(),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_read_only_refuses_every_write(db_path: Path, write: str) -> None:
    BOBODatabase(db_path).close()
    before = db_path.read_bytes()
    with (
        BOBODatabase(db_path, read_only=True) as db,
        pytest.raises(DatabaseError, match="read-only"),
    ):
        WRITES[write](db)
    assert db_path.read_bytes() == before


# --------------------------------------------------------------------------- transactions


def test_transaction_rolls_back_on_exception(db: BOBODatabase) -> None:
    db.update_mapping("1", "kept")
    with pytest.raises(RuntimeError), db.transaction():
        db.update_mapping("2", "lost")
        db.record_sync("success", T0)
        raise RuntimeError("boom")
    assert db.all_mappings() == {"1": "kept"}
    assert db.get_sync_state() is None
    db.update_mapping("3", "after")  # the connection is usable again
    assert db.mapping_count() == 2


def test_transaction_is_re_entrant(db: BOBODatabase, db_path: Path) -> None:
    with db.transaction():
        with db.transaction():
            db.update_mapping("1", "a")
        db.update_mapping("2", "b")  # the inner exit did not commit or end the transaction
        # not yet visible to another connection: still one open transaction
        assert raw(db_path, "SELECT COUNT(*) FROM worker_mapping") == [(0,)]
    assert raw(db_path, "SELECT COUNT(*) FROM worker_mapping") == [(2,)]

    with pytest.raises(ValueError), db.transaction():
        with db.transaction():
            db.update_mapping("3", "c")
        raise ValueError("outer fails after the inner block finished")
    assert db.all_mappings() == {"1": "a", "2": "b"}


def test_locked_database_is_reported_as_locked(db_path: Path) -> None:
    BOBODatabase(db_path).close()
    with closing(sqlite3.connect(str(db_path), isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        with BOBODatabase(db_path, busy_timeout=0.2) as db:
            started = time.monotonic()
            with pytest.raises(DatabaseError, match="locked") as caught:
                db.update_mapping("1", "a")
            assert time.monotonic() - started < 5
            assert "another process" in str(caught.value)
            assert "0.2" in str(caught.value)
            assert str(db_path) in str(caught.value)
        other.execute("ROLLBACK")


def test_locked_legacy_database_cannot_be_opened(db_path: Path) -> None:
    create_legacy_database(db_path, {"1": "a"})
    with closing(sqlite3.connect(str(db_path), isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(DatabaseError, match="locked"):
            BOBODatabase(db_path, busy_timeout=0.2)
        other.execute("ROLLBACK")
    with BOBODatabase(db_path) as db:  # and works once the other process lets go
        assert db.schema_version == SCHEMA_VERSION


def test_sqlite_errors_inside_a_write_become_database_errors_and_roll_back(db: BOBODatabase, db_path: Path) -> None:
    db.replace_mappings({"1": "a", "2": "b"}, T0)
    with closing(sqlite3.connect(str(db_path))) as conn, conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON worker_mapping WHEN NEW.employee_id = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
        )
    with pytest.raises(DatabaseError, match="refused by trigger") as caught:
        db.replace_mappings({"boom": "x"}, T0)
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    assert "replacing worker mappings" in str(caught.value)
    assert db.all_mappings() == {"1": "a", "2": "b"}  # the deletions were rolled back too


# --------------------------------------------------------------------------- worker_mapping


def test_replace_mappings_counts_and_timestamps(db: BOBODatabase, db_path: Path) -> None:
    first = db.replace_mappings({"1": "a", "2": "b", "3": "c"}, T0)
    assert first == MappingChange(added=3, removed=0, changed=0, total=3)
    later = T0 + timedelta(days=1)
    second = db.replace_mappings({"1": "a", "2": "B", "4": "d"}, later)
    assert second == MappingChange(added=1, removed=1, changed=1, total=3)
    assert db.all_mappings() == {"1": "a", "2": "B", "4": "d"}
    stamps = dict(raw(db_path, "SELECT employee_id, last_updated FROM worker_mapping"))
    assert stamps == {
        "1": "2025-06-17 20:01:02",
        "2": "2025-06-18 20:01:02",
        "4": "2025-06-18 20:01:02",
    }
    assert db.replace_mappings({"1": "a", "2": "B", "4": "d"}, later) == MappingChange(0, 0, 0, 3)


def test_get_usernames_chunks_large_lookups(db: BOBODatabase) -> None:
    mapping = {f"{i:05d}": f"user{i}" for i in range(1300)}
    db.replace_mappings(mapping, T0)
    conn = db._conn
    assert conn is not None
    if hasattr(conn, "setlimit"):  # Python 3.11+: make an unchunked query fail
        conn.setlimit(getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", 9), 500)
    wanted = [*mapping, "99999", "00001"]
    assert db.get_usernames(wanted) == mapping
    assert db.get_usernames([]) == {}
    assert db.get_username_by_employee_id("00007") == "user7"
    assert db.get_username_by_employee_id("7") is None


def test_update_mapping_upserts(db: BOBODatabase) -> None:
    db.update_mapping("05990", "old")
    db.update_mapping("05990", "new")
    assert db.all_mappings() == {"05990": "new"}


# --------------------------------------------------------------------------- other tables


def test_log_processing_writes_a_row(db: BOBODatabase, db_path: Path) -> None:
    db.log_processing("a.csv", 5, "success", processed_at=T0)
    db.log_processing("b.csv", 0, "error", "unreadable")
    rows = raw(
        db_path,
        "SELECT filename, processed_at, records_processed, status, error_message FROM processing_log ORDER BY id",
    )
    assert rows[0] == ("a.csv", "2025-06-17 20:01:02", 5, "success", None)  # the original's UTC text
    assert rows[1][0] == "b.csv" and rows[1][3:] == ("error", "unreadable")
    assert parse_datetime(rows[1][1]) is not None


def test_record_sync_keeps_last_success_on_failure(db: BOBODatabase, db_path: Path) -> None:
    assert db.get_sync_state() is None
    db.record_sync("success", T0.replace(microsecond=987654), 250)
    db.record_sync("error", T0 + timedelta(hours=2))
    state = db.get_sync_state()
    assert state is not None
    assert state.status == "error"
    assert state.last_sync_time == T0 + timedelta(hours=2)
    assert state.last_sync_date == date(2025, 6, 17)
    assert state.records_synced == 0
    assert state.last_success_time == T0
    assert raw(db_path, "SELECT last_sync_date, last_sync_time FROM sync_tracking") == [
        ("2025-06-17", "2025-06-17T22:01:02")
    ]
    db.record_sync("no_data", T0 + timedelta(days=1), sync_type="other")
    other = db.get_sync_state("other")
    assert other is not None and other.last_success_time is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-17T20:01:02.123456", datetime(2025, 6, 17, 20, 1, 2, 123456)),
        ("2025-06-17 20:01:02.123456", datetime(2025, 6, 17, 20, 1, 2, 123456)),
        ("2025-06-17T20:01:02", datetime(2025, 6, 17, 20, 1, 2)),
        ("2025-06-17 20:01:02", datetime(2025, 6, 17, 20, 1, 2)),
        ("2025-06-17 20:01", datetime(2025, 6, 17, 20, 1)),
        ("2025-06-17T20:01:02.5", datetime(2025, 6, 17, 20, 1, 2, 500000)),
        ("2025-06-17", datetime(2025, 6, 17)),
        (" 2025-06-17 ", datetime(2025, 6, 17)),
        ("", None),
        ("yesterday", None),
        ("2025-13-45", None),
        (None, None),
    ],
)
def test_tolerant_parsing_of_legacy_time_formats(db_path: Path, text: str | None, expected: datetime | None) -> None:
    assert parse_datetime(text) == (None if expected is None else as_utc(expected))  # naive text: local time
    create_legacy_database(db_path, {})
    with closing(sqlite3.connect(str(db_path))) as conn, conn:
        conn.execute(
            "INSERT INTO sync_tracking (sync_type, last_sync_date, last_sync_time, status) "
            "VALUES ('user_mapping', ?, ?, 'success')",
            (text, text),
        )
    with BOBODatabase(db_path) as db:
        state = db.get_sync_state()
    assert state is not None
    assert state.last_sync_time == (None if expected is None else as_utc(expected))
    assert state.last_sync_date == (None if expected is None else expected.date())
    assert state.last_success_time == (None if expected is None else as_utc(expected.replace(microsecond=0)))


def test_file_retry_tracking(db: BOBODatabase, db_path: Path) -> None:
    assert db.retry_counts().get("a.csv", (0, None))[0] == 0
    assert db.record_file_failure("a.csv", "first", T0) == 1
    assert db.record_file_failure("a.csv", "second", T0 + timedelta(minutes=5)) == 2
    assert db.retry_counts().get("a.csv", (0, None))[0] == 2
    assert db.retry_counts() == {"a.csv": (2, "second")}
    assert raw(db_path, "SELECT first_attempt, last_attempt FROM file_retry_tracking") == [
        ("2025-06-17 20:01:02", "2025-06-17 20:06:02")
    ]
    db.clear_file_retry("a.csv")
    assert db.retry_counts().get("a.csv", (0, None))[0] == 0
    assert db.retry_counts() == {}


def test_desired_state_round_trip(db: BOBODatabase, db_path: Path) -> None:
    full = dataclasses.replace(
        desired("2", "BOF"),
        login_id="U2",
        written_value="",
        written_at=T0,
        last_answer="applied: Updated",
        answered_at=T0,
        athoc_value="x",
        athoc_read_at=T0,
        sending_login="U2",
        sending_value="",
        sent_at=T0,
        suspect_login="U2",
        suspect_until=T0 + timedelta(minutes=30),
        stale_login="OLD",
        stale_value="v",
        repaired_at=T0,
    )
    db.save_desired_states([(desired("1"), "17/06/2025 21:01:02"), (full, "")])
    assert db.desired_states(["1", "2", "3"]) == {"1": desired("1"), "2": full}
    assert db.desired_states().keys() == {"1", "2"} and db.desired_employee_ids() == ["1", "2"]
    assert db.watched_states().keys() == {"2"} and db.sending_states().keys() == {"2"}
    assert db.replay_candidates(None).keys() == {"1", "2"}  # never written; a write in flight
    assert raw(db_path, "SELECT event_at, event_local, desired_value FROM desired_state WHERE employee_id = '1'") == [
        ("2025-06-17T20:01:02+00:00", "2025-06-17T21:01:02", "17/06/2025 21:01:02")
    ]
    db.save_desired_states([])  # nothing to do is fine


def test_last_applied_events_are_carried_over_into_the_desired_state(db_path: Path) -> None:
    from bobosync.database import _migrate_0_to_1, _migrate_1_to_2, _migrate_2_to_3

    db_path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(str(db_path), isolation_level=None)) as conn:
        for migrate in (_migrate_0_to_1, _migrate_1_to_2, _migrate_2_to_3):
            migrate(conn)
        conn.execute("PRAGMA user_version = 3")
        conn.execute(
            "INSERT INTO employee_last_event (employee_id, event_time, transaction_type, login_id, "
            "source_file, applied_at, source_mtime_ns, source_row) VALUES "
            "('1', '2025-06-17T20:01:02+00:00', 'BON', 'U1', 'f.csv', '2025-06-17T20:02:00+00:00', 7, 3), "
            "('2', '2025-06-17T20:01:02+00:00', 'BOF', 'U2', 'f.csv', '2025-06-17T20:02:00+00:00', 7, 4)"
        )
    london = ZoneInfo("Europe/London")
    with BOBODatabase(db_path) as db:
        assert {"employee_last_event", "events_in_flight"}.isdisjoint(tables(db_path))
        assert db.adopt_carried_over(london, lambda st: st.event_local.strftime(FMT) if st.is_book_on else "") == 2
        assert db.adopt_carried_over(london, lambda st: "never asked") == 0
        states = db.desired_states()
    assert states["1"].order == EventOrder(T0, 7, "f.csv", 3)
    assert states["1"].event_local == datetime(2025, 6, 17, 21, 1, 2)  # BST
    assert (states["1"].login_id, states["1"].written_value) == ("U1", "17/06/2025 21:01:02")
    assert (states["2"].transaction, states["2"].written_value) == (Transaction.BOOK_OFF, "")


def test_run_history(db: BOBODatabase) -> None:
    first = db.start_run("pass", T0, pid=4242)
    db.finish_run(first, "ok", T0 + timedelta(seconds=90), counts={"files": 3}, error=None)
    second = db.start_run("mapping_sync", T0 + timedelta(minutes=5))
    db.finish_run(second, "failed", T0 + timedelta(minutes=6), error="AtHoc down")
    third = db.start_run("pass", T0 + timedelta(minutes=10), pid=4343)
    fourth = db.start_run("cleanup", T0 + timedelta(minutes=11))
    assert len({first, second, third, fourth}) == 4

    runs = db.recent_runs()
    assert [run.id for run in runs] == [fourth, third, second, first]
    done = runs[3]
    assert done.kind == "pass" and done.status == "ok" and done.pid == 4242
    assert done.started_at == T0 and done.finished_at == T0 + timedelta(seconds=90)
    assert done.duration_seconds == 90.0
    assert done.counts == {"files": 3}
    assert runs[2].error == "AtHoc down" and runs[2].counts == {}
    assert runs[1].status == "running" and runs[1].finished_at is None

    assert [run.id for run in db.recent_runs(kind="pass")] == [third, first]
    assert [run.id for run in db.recent_runs(limit=2)] == [fourth, third]
    since = T0 + timedelta(minutes=5)
    assert [run.id for run in db.recent_runs(since=since)] == [fourth, third, second]

    now = T0 + timedelta(hours=1)
    assert db.mark_interrupted_runs(now) == 2
    assert db.mark_interrupted_runs(now) == 0
    interrupted = {run.id: run for run in db.recent_runs() if run.status == "interrupted"}
    assert set(interrupted) == {third, fourth}
    assert interrupted[third].finished_at == now
    assert db.recent_runs(kind="pass")[1].status == "ok"

    with pytest.raises(DatabaseError, match="no run"):
        db.finish_run(9999, "ok", now)


def test_pending_moves(db: BOBODatabase) -> None:
    assert db.pending_moves() == []
    db.add_pending_move("in/b.csv", "done/b.csv", "bb", T0 + timedelta(seconds=1))
    db.add_pending_move("in/a.csv", "done/a.csv", "aa", T0)
    db.add_pending_move("in/b.csv", "done/b-1.csv", "bb", T0 + timedelta(seconds=2))
    assert db.pending_moves() == [
        PendingMove("in/a.csv", "done/a.csv", "aa", T0),
        PendingMove("in/b.csv", "done/b-1.csv", "bb", T0 + timedelta(seconds=2)),
    ]
    db.remove_pending_move("in/a.csv")
    db.remove_pending_move("not/there.csv")
    assert [move.src for move in db.pending_moves()] == ["in/b.csv"]


def test_remembered_files_and_purge(db: BOBODatabase) -> None:
    db.remember_file("a.csv", 10, "aa", 111, T0)
    db.remember_file("a.csv", 12, "a2", 222, T0 + timedelta(days=2))
    db.remember_file("b.csv", 5, "bb", None, T0 + timedelta(days=1))
    assert [(r.size, r.sha256) for r in db.remembered_by_name(["a.csv"])["a.csv"]] == [(10, "aa"), (12, "a2")]

    by_name = db.remembered_by_name()
    assert sorted(by_name) == ["a.csv", "b.csv"]
    assert [(f.size, f.sha256, f.mtime_ns) for f in by_name["a.csv"]] == [
        (10, "aa", 111),
        (12, "a2", 222),
    ]
    assert by_name["b.csv"][0].processed_at == T0 + timedelta(days=1)
    assert db.remembered_by_name(["b.csv", "c.csv"]).keys() == {"b.csv"}
    assert db.remembered_by_name([]) == {}

    # remembering again refreshes the time, so the purge keeps it
    db.remember_file("a.csv", 10, "aa", 333, T0 + timedelta(days=3))
    assert db.purge_remembered(T0 + timedelta(days=2, hours=12)) == 2
    assert db.remembered_by_name().keys() == {"a.csv"}
    (left,) = db.remembered_by_name()["a.csv"]
    assert (left.size, left.sha256, left.mtime_ns) == (10, "aa", 333)
    assert db.purge_remembered(T0) == 0


def test_schema_1_gains_the_remembered_fingerprint_and_old_rows_read_without_it(db_path: Path) -> None:
    """Schema 1 remembered a file by size, hash and mtime only; schema 2 adds its change time
    and file ID. Rows from before have none (so the file is hashed once), and a read-only
    reader (status, --dry-run) of a schema-1 file still reads them."""
    with BOBODatabase(db_path) as db:
        db.remember_file("a.csv", 10, "aa", 111, T0)
    with closing(sqlite3.connect(str(db_path), isolation_level=None)) as conn:
        conn.execute("ALTER TABLE remembered_files DROP COLUMN file_id")
        conn.execute("ALTER TABLE remembered_files DROP COLUMN ctime_ns")
        conn.execute("PRAGMA user_version = 1")
    with BOBODatabase(db_path, read_only=True) as reader:
        (old,) = reader.remembered_by_name()["a.csv"]
        assert (old.size, old.sha256, old.mtime_ns, old.ctime_ns, old.file_id) == (10, "aa", 111, None, None)
    with BOBODatabase(db_path) as db:
        assert db.schema_version == SCHEMA_VERSION
        assert {"ctime_ns", "file_id"} <= set(columns(db_path, "remembered_files"))
        (old,) = db.remembered_by_name()["a.csv"]
        assert old.fingerprint == (10, 111, None, None)
        db.refresh_remembered("a.csv", 10, "aa", 112, 113, 114)
        db.remember_file("b.csv", 5, "bb", 1, T0, 2, 3)
        assert db.remembered_by_name()["a.csv"][0].fingerprint == (10, 112, 113, 114)
        assert db.remembered_by_name()["a.csv"][0].processed_at == T0  # a refresh is not a new processing
        assert db.remembered_by_name()["b.csv"][0].fingerprint == (5, 1, 2, 3)


def test_a_schema_5_database_gains_the_audit_and_the_audit_round_trips(db_path: Path) -> None:
    from bobosync.database import _MIGRATIONS
    from bobosync.store import AuditRow

    db_path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(str(db_path), isolation_level=None)) as conn:
        for migrate in _MIGRATIONS[:5]:
            migrate(conn)
        conn.execute("PRAGMA user_version = 5")
        conn.execute("INSERT INTO worker_mapping (employee_id, username) VALUES ('05990', 'J.Doe@force.example')")
    with BOBODatabase(db_path, read_only=True) as old:  # a schema-5 file read as it is: no audit yet
        assert old.audit_rows(["05990"], ["j.doe@force.example"], T0) == []
        assert old.employees_of_login("j.doe@force.example") == ["05990"]
    with BOBODatabase(db_path) as db:
        assert db.schema_version == 6 and "audit_log" in tables(db_path)
        assert db.get_username_by_employee_id("05990") == "J.Doe@force.example"  # kept
        event = AuditRow(
            T0, "event", "sent", "05990", "J.Doe@force.example", "BON", T0 - timedelta(minutes=1), "f.csv", 3
        )
        clear = AuditRow(
            T0 + timedelta(days=2), "write", "applied", None, "J.DOE@force.example", value="", detail="cleanup: OK"
        )
        with db.transaction():
            db.record_audit([event, clear])
        db.record_audit([])  # nothing to do is fine
        # By employee, or by LOGIN_ID in any case (a cleanup of a user bobosync does not map).
        assert db.audit_rows(["05990"], [], T0) == [event]
        assert db.audit_rows([], ["j.doe@force.example"], T0) == [event, clear]
        assert db.audit_rows(["05990"], [], T0 + timedelta(seconds=1)) == []  # older than `since`
        assert db.purge_audit(T0 + timedelta(days=1)) == 1
        assert db.audit_rows(["nobody"], ["j.doe@force.example"], T0) == [clear]

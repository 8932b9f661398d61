"""Intake: files that are locked, growing or changing are never lost, misfiled or skipped.

One test (or a few) per case of issue 9, each a real pass against the AtHoc simulator on
real folders:

1. a file that cannot be opened for a while (a Windows sharing or lock violation, simulated
   by making ``open`` fail N times with the PermissionError and ``winerror`` 32 / 33 Windows
   raises; a real "permission denied" for a CLI run as a non-root user) stays in
   CSV_DIRECTORY with one attempt counted, and only after MAX_RETRY_ATTEMPTS goes to the
   failed folder (or, if it cannot be moved, stays, reported every pass, and ``status`` warns);
2. rows appended, or the file rewritten, while the pass is under way: the file stays;
3. a writer that pauses mid-row: the file waits for the rest of the row;
4. a file renamed away mid-pass and back: no stray note, one processing_log row;
5. MOVE_PROCESSED_FILES=false and a same-size rewrite that keeps the modification time;
6. a remembered file that cannot be read does not stop the pass.

The permission cases run the CLI under :func:`tests.harness.restricted_prefix`: as root (CI)
without the capabilities that let root read any file, so mode 000 really denies reading.
"""

from __future__ import annotations

import builtins
import dataclasses
import errno
import logging
import os
import sqlite3
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import pytest

from bobosync import filestore
from bobosync.client import AtHocClient
from bobosync.database import BOBODatabase
from bobosync.processor import BOBOProcessor, PassReport
from bobosync.settings import Settings
from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from bobosync.status import collect_status
from tests.conftest import TLSCerts
from tests.harness import child_env, cli_command, csv_text, restricted_prefix, sim_env_file

pytestmark = pytest.mark.usefixtures("propagate_logs")  # bobosync's log lines reach caplog

FMT = "%d/%m/%Y %H:%M:%S"
DUTY = "On-Duty-DTG"
NOW = datetime.now().replace(microsecond=0)
T1 = NOW - timedelta(minutes=30)
T2 = NOW - timedelta(minutes=20)
SHARING_VIOLATION = "The process cannot access the file because it is being used by another process"
LOCK_VIOLATION = "The process cannot access the file because another process has locked a portion of the file"


@pytest.fixture
def settings(sim_settings: Settings) -> Settings:
    return dataclasses.replace(sim_settings, move_processed_files=True, auto_cleanup_hours=0, max_retry_attempts=3)


def run(settings: Settings) -> PassReport:
    proc = BOBOProcessor(settings)
    try:
        return proc.run_pass()
    finally:
        proc.close()


def duty(sim: AtHocSimulator, collar: str) -> str:
    user = sim.get_user(f"user{collar}@force.example")
    assert user is not None
    return user.get(DUTY, "")


def rows_for(db_path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return [tuple(r) for r in conn.execute(sql, params)]


def retry_count(settings: Settings, name: str) -> int:
    found = rows_for(settings.db_path, "SELECT retry_count FROM file_retry_tracking WHERE filename = ?", name)
    return int(found[0][0]) if found else 0


def logged(settings: Settings, name: str) -> list[tuple[Any, ...]]:
    return rows_for(settings.db_path, "SELECT status, error_message FROM processing_log WHERE filename = ?", name)


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def bobo(settings: Settings, name: str, *rows: list[str], when: datetime = T1) -> Path:
    return write_bobo_file(settings.csv_directory, list(rows), when, name=name)


def age(path: Path, seconds: float) -> None:
    stamp = datetime.now().timestamp() - seconds
    os.utime(path, (stamp, stamp))


def processed_in_place(settings: Settings, name: str, collar: str) -> tuple[Settings, Path]:
    """MOVE_PROCESSED_FILES=false, and a book-on of ``collar`` at T1 processed and remembered."""
    settings = dataclasses.replace(settings, move_processed_files=False)
    path = bobo(settings, name, export_row("BON", collar, T1))
    assert run(settings).counts.files_done == 1
    return settings, path


def later_book_off(data: bytes, collar: str) -> bytes:
    """The same bytes, but a book-off at T2 instead of a book-on at T1: same size."""
    stamp = T1.strftime("%Y%m%d%H%M%S").encode(), T2.strftime("%Y%m%d%H%M%S").encode()
    return data.replace(f"BON,{collar}".encode(), f"BOF,{collar}".encode()).replace(*stamp)


def fail_open(monkeypatch: pytest.MonkeyPatch, path: Path, times: int, winerror: int = 32) -> list[int]:
    """Make opening ``path`` fail ``times`` times as Windows does when another process holds it
    without sharing (winerror 32) or has locked part of it (33). Returns a one-item counter
    of the failures raised."""
    real_open = builtins.open
    raised = [0]
    target = os.path.abspath(path)

    def fake_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(file) == target and raised[0] < times:
            raised[0] += 1
            exc = PermissionError(errno.EACCES, SHARING_VIOLATION if winerror == 32 else LOCK_VIOLATION, str(file))
            exc.winerror = winerror  # type: ignore[attr-defined]  # set by Windows only
            raise exc
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    return raised


def during_athoc_call(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
    """Run ``action`` once, right after the first duty update reached AtHoc: what another
    program does to the folder while the AtHoc round trip (minutes, with retries) is under way."""
    real = AtHocClient.batch_update_duty_status
    done = [False]

    def wrapper(self: AtHocClient, updates: Any) -> Any:
        result = real(self, updates)
        if not done[0]:
            done[0] = True
            action()
        return result

    monkeypatch.setattr(AtHocClient, "batch_update_duty_status", wrapper)


# ---------------------------------------------------------------- 1. cannot be opened for a while


@pytest.mark.parametrize("winerror", [32, 33], ids=["sharing-violation", "lock-violation"])
def test_a_file_locked_for_one_pass_stays_with_one_attempt_counted_and_is_processed_next_pass(
    simulator: AtHocSimulator,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    winerror: int,
) -> None:
    path = bobo(settings, "locked.csv", export_row("BON", "00001", T1))
    bobo(settings, "free.csv", export_row("BON", "00002", T1))
    raised = fail_open(monkeypatch, path, 1, winerror)
    with caplog.at_level(logging.ERROR, logger="bobosync"):
        first = run(settings)
    assert raised == [1]
    assert first.exit_code == 1 and first.counts.files_retry == 1 and first.counts.files_done == 1
    assert entries(settings.csv_directory) == ["locked.csv"]
    assert entries(settings.failed_files_directory) == []
    assert retry_count(settings, "locked.csv") == 1
    assert duty(simulator, "00001") == "" and duty(simulator, "00002") == T1.strftime(FMT)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        "locked.csv" in m and "another process" in m and f"Windows error {winerror}" in m and "attempt 1 of 3" in m
        for m in errors
    ), errors

    second = run(settings)
    assert second.exit_code == 0 and second.counts.files_done == 1
    assert entries(settings.processed_directory) == ["free.csv", "locked.csv"]
    assert duty(simulator, "00001") == T1.strftime(FMT)
    assert retry_count(settings, "locked.csv") == 0
    assert logged(settings, "locked.csv") == [("success", None)]


def test_a_file_locked_for_max_retry_attempts_goes_to_the_failed_folder_with_the_reason(
    simulator: AtHocSimulator, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = bobo(settings, "locked.csv", export_row("BON", "00001", T1))
    fail_open(monkeypatch, path, 10**6)
    reports = [run(settings) for _ in range(3)]
    assert [r.counts.files_retry for r in reports] == [1, 1, 0]
    assert [r.exit_code for r in reports] == [1, 1, 0]  # the third settles it: failed, moved
    assert reports[2].counts.files_failed == 1
    assert entries(settings.failed_files_directory) == ["locked.csv", "locked.csv.error.txt"]
    note = (settings.failed_files_directory / "locked.csv.error.txt").read_text(encoding="utf-8")
    assert "could not be read in 3 attempts" in note and "another process" in note
    ((status, error),) = logged(settings, "locked.csv")
    assert status == "failed" and "could not be read in 3 attempts" in error
    assert retry_count(settings, "locked.csv") == 0
    assert duty(simulator, "00001") == ""


def test_a_locked_file_that_cannot_be_moved_stays_is_reported_every_pass_and_status_warns(
    simulator: AtHocSimulator, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the failed folder's parent should be\n")
    settings = dataclasses.replace(settings, max_retry_attempts=1, failed_files_directory=blocker / "failed")
    path = bobo(settings, "locked.csv", export_row("BON", "00001", T1))
    fail_open(monkeypatch, path, 10**6)
    for attempt in (1, 2):
        report = run(settings)
        assert report.exit_code == 1
        assert [e for e in report.errors if "locked.csv" in e and "could not move" in e], report.errors
        assert entries(settings.csv_directory) == ["locked.csv"]
        assert retry_count(settings, "locked.csv") == attempt  # the count shows it is stuck
    assert not list(tmp_path.rglob("*.error.txt")), "a note for a file that is not in the failed folder"
    with BOBODatabase(settings.db_path, read_only=True) as db:
        status = collect_status(settings, db, datetime.now())
    messages = [r.message for r in status.reasons]
    stuck = [m for m in messages if "locked.csv" in m and "MAX_RETRY_ATTEMPTS" in m and "could not be moved" in m]
    assert stuck, messages
    assert status.exit_code >= 1


def restricted_or_skip() -> list[str]:
    prefix = restricted_prefix()
    if prefix is None:
        pytest.skip("cannot deny reading a file here (Windows, or root without setpriv)")
    return prefix


def run_restricted(prefix: list[str], env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *cli_command(env_file)],
        cwd=env_file.parent,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_permission_denied_for_a_non_root_user_keeps_the_file_until_it_is_readable(
    simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    prefix = restricted_or_skip()
    env_file = sim_env_file(
        simulator,
        tmp_path,
        tls_certs.ca_pem,
        {"MOVE_PROCESSED_FILES": "true", "AUTO_CLEANUP_HOURS": "0", "MAX_RETRY_ATTEMPTS": "3"},
    )
    csv_dir = tmp_path / "crown_files"
    path = write_bobo_file(csv_dir, [export_row("BON", "00003", T1)], T1, name="acl.csv")
    path.chmod(0)
    try:
        first = run_restricted(prefix, env_file)
    finally:
        path.chmod(0o644)
    assert first.returncode == 1, first.stderr[-2000:]
    assert "ERROR" in first.stderr and "acl.csv: cannot read: Permission denied" in first.stderr
    assert entries(csv_dir) == ["acl.csv"] and entries(tmp_path / "failed_files") == []
    assert rows_for(tmp_path / "bobo_mapping.db", "SELECT filename, retry_count FROM file_retry_tracking") == [
        ("acl.csv", 1)
    ]
    assert duty(simulator, "00003") == ""

    second = run_restricted(prefix, env_file)  # the ACL was fixed
    assert second.returncode == 0, second.stderr[-2000:]
    assert entries(tmp_path / "processed_files") == ["acl.csv"]
    assert duty(simulator, "00003") == T1.strftime(FMT)


# ---------------------------------------------------------------- 2. changed while the pass is under way


@pytest.mark.parametrize("move", [True, False], ids=["moved", "left-in-place"])
def test_rows_appended_during_the_athoc_call_keep_the_file_and_the_next_pass_reads_them(
    simulator: AtHocSimulator, settings: Settings, monkeypatch: pytest.MonkeyPatch, move: bool
) -> None:
    settings = dataclasses.replace(settings, move_processed_files=move)
    path = bobo(settings, "growing.csv", export_row("BON", "00004", T1))

    def append() -> None:
        with open(path, "ab") as f:
            f.write(csv_text([export_row("BON", "00005", T2)]).encode("ascii"))

    during_athoc_call(monkeypatch, append)
    first = run(settings)
    assert first.exit_code == 0 and first.counts.files_left == 1 and first.counts.files_done == 0
    assert entries(settings.csv_directory) == ["growing.csv"] and entries(settings.processed_directory) == []
    assert logged(settings, "growing.csv") == []
    assert rows_for(settings.db_path, "SELECT COUNT(*) FROM remembered_files") == [(0,)]
    assert duty(simulator, "00004") == T1.strftime(FMT) and duty(simulator, "00005") == ""

    second = run(settings)
    assert second.counts.files_done == 1
    assert duty(simulator, "00005") == T2.strftime(FMT)
    assert logged(settings, "growing.csv") == [("success", None)]
    assert entries(settings.processed_directory) == (["growing.csv"] if move else [])


def test_a_file_replaced_by_another_of_the_same_size_and_time_during_the_pass_is_not_moved(
    simulator: AtHocSimulator, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy tool replaces the file: same name, same size, same modification time, a new
    file (new inode / file ID) with other content. Checked by its hash, it stays."""
    path = bobo(settings, "copied.csv", export_row("BON", "00006", T1))
    stamp = path.stat().st_mtime_ns

    def replace() -> None:
        temp = path.with_name("copied.tmp")
        temp.write_bytes(later_book_off(path.read_bytes(), "00006"))
        os.utime(temp, ns=(stamp, stamp))
        os.replace(temp, path)

    during_athoc_call(monkeypatch, replace)
    first = run(settings)
    assert first.counts.files_left == 1 and entries(settings.csv_directory) == ["copied.csv"]
    assert duty(simulator, "00006") == T1.strftime(FMT)
    run(settings)
    assert entries(settings.processed_directory) == ["copied.csv"]
    assert duty(simulator, "00006") == ""


# ---------------------------------------------------------------- 3. a writer that pauses mid-row


def test_a_last_line_cut_short_waits_for_the_writer_and_the_completed_row_is_read(
    simulator: AtHocSimulator, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dataclasses.replace(settings, file_settle_seconds=5)
    done_row = csv_text([export_row("BON", "00007", T1)])
    last_row = csv_text([export_row("BON", "00008", T2)])
    path = settings.csv_directory / "paused.csv"
    path.write_bytes((done_row + last_row[:25]).encode("ascii"))  # BOBO paused mid-row
    age(path, 10)  # older than FILE_SETTLE_SECONDS, younger than 10 x FILE_SETTLE_SECONDS
    with caplog.at_level(logging.INFO, logger="bobosync"):
        first = run(settings)
    assert first.exit_code == 0 and first.counts.files_left == 1 and first.counts.bad_rows == 0
    assert entries(settings.csv_directory) == ["paused.csv"] and logged(settings, "paused.csv") == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "paused.csv" in r.getMessage()]
    assert any("paused.csv" in r.getMessage() and "still being written" in r.getMessage() for r in caplog.records)
    assert duty(simulator, "00007") == T1.strftime(FMT)  # the complete row is used at once

    path.write_bytes((done_row + last_row).encode("ascii"))  # the writer finished
    age(path, 10)
    second = run(settings)
    assert second.exit_code == 0 and second.counts.files_done == 1
    assert entries(settings.processed_directory) == ["paused.csv"]
    assert duty(simulator, "00008") == T2.strftime(FMT)
    assert logged(settings, "paused.csv") == [("success", None)]


def test_a_last_line_cut_short_and_unchanged_for_ten_settle_times_is_a_bad_row(
    simulator: AtHocSimulator, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dataclasses.replace(settings, file_settle_seconds=5)  # 10 x 5 s < the minimum of 60 s
    path = settings.csv_directory / "abandoned.csv"
    path.write_bytes((csv_text([export_row("BON", "00009", T1)]) + "BOF,00010,PAY").encode("ascii"))
    age(path, 45)
    assert run(settings).counts.files_left == 1  # 45 s: still within the minute
    age(path, 61)
    with caplog.at_level(logging.WARNING, logger="bobosync"):
        report = run(settings)
    assert report.counts.files_done == 1 and report.counts.bad_rows == 1
    assert any("abandoned.csv row 2: expected 10 columns" in r.getMessage() for r in caplog.records)
    assert logged(settings, "abandoned.csv") == [("partial", "1 bad row(s)")]
    assert duty(simulator, "00010") == ""


# ---------------------------------------------------------------- 4. renamed away mid-pass and back


def test_a_file_renamed_away_after_listing_and_back_leaves_no_stray_note(
    simulator: AtHocSimulator, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = bobo(settings, "wandering.csv", export_row("BON", "00011", T1))
    bobo(settings, "other.csv", export_row("BON", "00012", T1))
    away = settings.csv_directory.parent / "wandering.away"

    def list_then_rename(*args: Any, **kwargs: Any) -> Any:
        listing = filestore.list_waiting_files(*args, **kwargs)
        os.rename(path, away)  # an operator or a tool takes it, just after the listing
        return listing

    monkeypatch.setattr("bobosync.processor.list_waiting_files", list_then_rename)
    first = run(settings)
    monkeypatch.undo()
    os.rename(away, path)  # ... and puts it back
    assert first.counts.files_left == 1 and first.counts.files_failed == 0
    assert entries(settings.failed_files_directory) == [], "a failure note for a file that never failed"
    assert logged(settings, "wandering.csv") == []

    second = run(settings)
    assert second.exit_code == 0
    assert entries(settings.processed_directory) == ["other.csv", "wandering.csv"]
    assert entries(settings.failed_files_directory) == []
    assert logged(settings, "wandering.csv") == [("success", None)]
    assert duty(simulator, "00011") == T1.strftime(FMT)


def test_a_file_renamed_away_during_the_athoc_call_is_decided_once_when_it_is_back(
    simulator: AtHocSimulator, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = bobo(settings, "wandering.csv", export_row("BON", "00013", T1))
    away = settings.csv_directory.parent / "wandering.away"
    during_athoc_call(monkeypatch, lambda: os.rename(path, away))
    first = run(settings)
    assert first.errors == [] and first.counts.files_left == 1
    os.rename(away, path)
    run(settings)
    assert entries(settings.processed_directory) == ["wandering.csv"]
    assert logged(settings, "wandering.csv") == [("success", None)]  # exactly one decision


# ---------------------------------------------------------------- 5. same size, same mtime, new content


def test_a_remembered_file_rewritten_with_the_same_size_and_modification_time_is_read_again(
    simulator: AtHocSimulator, settings: Settings
) -> None:
    settings, path = processed_in_place(settings, "inplace.csv", "00014")
    assert duty(simulator, "00014") == T1.strftime(FMT)
    stamp = path.stat().st_mtime_ns
    path.write_bytes(later_book_off(path.read_bytes(), "00014"))
    os.utime(path, ns=(stamp, stamp))  # as copy tools do
    report = run(settings)
    assert report.counts.files_done == 1
    assert duty(simulator, "00014") == ""
    assert len(rows_for(settings.db_path, "SELECT * FROM remembered_files WHERE name = 'inplace.csv'")) == 2


def test_a_remembered_file_only_touched_is_hashed_once_and_not_processed_again(
    simulator: AtHocSimulator, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, path = processed_in_place(settings, "inplace.csv", "00015")
    path.chmod(0o600)  # new change time, same content
    age(path, 300)  # new modification time
    hashed: list[Path] = []

    def counted_hash(p: Path) -> str:
        hashed.append(p)
        return filestore.sha256_of(p)

    original = filestore.remembered_match

    def counting(waiting: Any, known: Any) -> Any:
        return original(waiting, known, counted_hash)

    monkeypatch.setattr(filestore, "remembered_match", counting)
    for _ in range(2):
        assert run(settings).counts.files == 0
    assert hashed == [path]  # the new fingerprint is remembered: the second pass reads nothing
    assert logged(settings, "inplace.csv") == [("success", None)]


# ---------------------------------------------------------------- 6. a remembered file that cannot be read


def test_a_remembered_file_that_cannot_be_read_is_reported_by_name_and_the_pass_goes_on(
    simulator: AtHocSimulator, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, path = processed_in_place(settings, "seen.csv", "00016")
    age(path, 120)  # touched: it must be hashed to know it is the same file ...
    fail_open(monkeypatch, path, 10**6)  # ... and a scanner holds it
    bobo(settings, "new.csv", export_row("BON", "00017", T2))
    report = run(settings)
    assert report.exit_code == 1 and report.counts.files_done == 1
    assert duty(simulator, "00017") == T2.strftime(FMT)
    assert [e for e in report.errors if "seen.csv" in e and "another process" in e] == report.errors
    assert not any("cannot list" in e for e in report.errors)
    assert entries(settings.failed_files_directory) == []


def test_a_remembered_file_a_non_root_user_may_not_read_does_not_stop_the_pass(
    simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    prefix = restricted_or_skip()
    env_file = sim_env_file(
        simulator, tmp_path, tls_certs.ca_pem, {"MOVE_PROCESSED_FILES": "false", "AUTO_CLEANUP_HOURS": "0"}
    )
    csv_dir = tmp_path / "crown_files"
    seen = write_bobo_file(csv_dir, [export_row("BON", "00018", T1)], T1, name="seen.csv")
    assert run_restricted(prefix, env_file).returncode == 0
    age(seen, 120)
    seen.chmod(0)
    write_bobo_file(csv_dir, [export_row("BON", "00019", T2)], T2, name="new.csv")
    try:
        result = run_restricted(prefix, env_file)
    finally:
        seen.chmod(0o644)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "seen.csv in CSV_DIRECTORY: cannot read it to compare" in result.stderr
    assert "Permission denied" in result.stderr and "cannot list" not in result.stderr
    assert duty(simulator, "00019") == T2.strftime(FMT)

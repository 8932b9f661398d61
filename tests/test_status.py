"""``bobosync status``: the health verdict and both renderings, from real passes against the
simulator, real folders and real SQLite files, plus run-history states crafted through the
database API (old passes, stuck runs, failed syncs and cleanups)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Optional

import pytest

from bobosync.database import BOBODatabase
from bobosync.processor import BOBOProcessor
from bobosync.settings import Settings
from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from bobosync.status import (
    HEALTHY,
    UNHEALTHY,
    WARNING,
    StatusReport,
    collect_status,
    render_text,
    report_to_dict,
    run_status,
)
from bobosync.timebase import as_utc, show
from tests.legacy_db import create_legacy_database, original_track_file_retry

FMT = "%d/%m/%Y %H:%M:%S"


def shown_json(value: datetime) -> str:
    """A time as the JSON shows it: this machine's local time with its offset."""
    return as_utc(value).astimezone().isoformat(timespec="seconds")


DUTY = "On-Duty-DTG"
REPO = Path(__file__).resolve().parent.parent


def now() -> datetime:
    return datetime.now().replace(microsecond=0)


def user(i: int) -> str:
    return f"user{i:05d}@force.example"


@dataclasses.dataclass
class Shown:
    code: int
    text: str
    data: dict[str, Any]


def status(settings: Settings, at: Optional[datetime] = None, *, live: bool = False) -> Shown:
    """Run the command both ways (text and --json) at one moment; they must agree on the code."""
    at = at or now()
    text_out, json_out = io.StringIO(), io.StringIO()
    code = run_status(settings, live=live, as_json=False, out=text_out, now=at)
    json_code = run_status(settings, live=live, as_json=True, out=json_out, now=at)
    assert code == json_code
    data = json.loads(json_out.getvalue())
    assert data["exit_code"] == code
    return Shown(code, text_out.getvalue(), data)


def run_pass(settings: Settings, at: Optional[datetime] = None) -> None:
    processor = BOBOProcessor(settings)
    try:
        processor.run_pass(at)
    finally:
        processor.close()


def csv_file(settings: Settings, name: str, employee: str = "00001", age: Optional[timedelta] = None) -> Path:
    t = now() - timedelta(minutes=2)
    path = write_bobo_file(settings.csv_directory, [export_row("BON", employee, t)], t, name=name)
    if age is not None:
        stamp = (now() - age).timestamp()
        os.utime(path, (stamp, stamp))
    return path


def healthy_db(settings: Settings, at: datetime) -> None:
    """What a healthy installation holds: a fresh mapping and a recent ok pass and cleanup."""
    with BOBODatabase(settings.db_path) as db:
        db.replace_mappings({"00001": user(1)}, at)
        db.record_sync("success", at - timedelta(minutes=5), 1)
        add_run(db, "pass", at - timedelta(minutes=1), "ok", counts={"files": 0})
        add_run(db, "cleanup", at - timedelta(minutes=1), "ok", counts={"cleared": 0})


def add_run(
    db: BOBODatabase,
    kind: str,
    started: datetime,
    status: str,
    *,
    seconds: float = 2.0,
    counts: Optional[dict[str, Any]] = None,
    error: Optional[str] = None,
) -> None:
    run_id = db.start_run(kind, started, 1234)
    db.finish_run(run_id, status, started + timedelta(seconds=seconds), counts or {}, error)


@pytest.fixture
def settings(sim_settings: Settings) -> Settings:
    return dataclasses.replace(sim_settings, move_processed_files=True)


# ---------------------------------------------------------------- the three states from real passes


def test_no_database_yet_is_unhealthy_and_creates_nothing(settings: Settings) -> None:
    shown = status(settings)
    assert shown.code == 2
    assert shown.data["health"] == UNHEALTHY
    assert shown.data["reasons"] == [
        f"no pass recorded: database {settings.db_path} does not exist yet (has bobosync run here?)"
    ]
    assert shown.text.startswith("bobosync status: UNHEALTHY (exit 2)")
    assert "Last pass       none recorded" in shown.text
    assert "(does not exist yet)" in shown.text
    assert not settings.db_path.exists()  # status only reads


def test_a_real_ok_pass_is_healthy_and_text_and_json_say_the_same(
    simulator: AtHocSimulator, settings: Settings
) -> None:
    csv_file(settings, "a.csv", "00001")
    csv_file(settings, "b.csv", "00002")
    started = now()
    run_pass(settings, started)
    shown = status(settings, started + timedelta(minutes=2))
    assert shown.code == 0, shown.text
    data = shown.data
    assert data["health"] == HEALTHY and data["reasons"] == [] and data["reason_levels"] == []
    last = data["passes"]["last"]
    assert last["status"] == "ok" and last["started_at"] == shown_json(started)
    assert last["counts"]["files_done"] == 2 and last["counts"]["applied"] == 2
    assert data["passes"]["count_24h"] == 1 and data["passes"]["success_rate_24h"] == 1.0
    assert data["mapping_sync"]["status"] == "success" and data["mapping_sync"]["mappings"] == 50
    assert data["mapping_sync"]["due_now"] is False
    assert data["auto_cleanup"]["last_run"]["status"] == "ok"
    assert data["files"]["waiting"] == [] and data["files"]["failed"] == []
    assert data["live"] is None
    # The text shows the same facts, aligned under fixed labels.
    text = shown.text
    assert text.startswith("bobosync status: HEALTHY (exit 0)")
    assert f"Last pass       {show(started)}  ok" in text
    assert "files 2 (done 2, retry 0, failed 0), rows 2 (bad 0), updates 2 (applied 2" in text
    assert "Last 24 h       1 pass: 1 ok; success 100.0 %" in text
    next_due = datetime.fromisoformat(data["mapping_sync"]["next_due"])
    assert f"50 mappings; next due {show(next_due)}" in text
    assert f"Waiting files   none in {settings.csv_directory}" in text
    assert f"Log file        {settings.log_directory / 'bobo_processor.log'}" in text
    assert text.isascii()


def test_a_real_failed_pass_is_unhealthy(simulator: AtHocSimulator, settings: Settings) -> None:
    simulator.fail_next(10, status=400, body='{"error": "invalid_grant"}', path_contains="connect/token")
    started = now()
    run_pass(settings, started)
    shown = status(settings, started)
    assert shown.code == 2
    first = shown.data["reasons"][0]
    assert first.startswith(f"last pass failed at {show(started)}: cannot connect to AtHoc")
    assert f"  UNHEALTHY  {first}" in shown.text
    assert shown.data["errors"][0]["kind"] == "pass" and shown.data["errors"][0]["status"] == "failed"
    assert "Last errors     " in shown.text and "pass failed: cannot connect to AtHoc" in shown.text


def test_retried_and_failed_files_warn_with_retry_counts_and_reasons(
    simulator: AtHocSimulator, settings: Settings
) -> None:
    simulator.row_errors[user(3)] = "Invalid attribute value"
    kept = csv_file(settings, "kept.csv", "00003")
    (settings.csv_directory / "binary.csv").write_bytes(b"\x00\x01junk")
    run_pass(settings)
    run_pass(settings)
    # kept.csv stays for retry (2 attempts so far); binary.csv went to the failed folder at once.
    assert kept.exists() and (settings.failed_files_directory / "binary.csv.error.txt").exists()
    fresh = status(settings)
    assert fresh.code == 1, fresh.text
    # The second pass only had kept.csv, rejected again: "partial" (AtHoc answered).
    assert fresh.data["passes"]["last"]["status"] == "partial"
    assert fresh.data["reasons"] == [
        f"last pass partial at {fresh.data['passes']['last']['started_at'].replace('T', ' ')}: "
        "1 update rejected by AtHoc, 1 file kept for retry",
        "1 file in the failed folder (reasons in <name>.error.txt)",
    ]
    waiting = fresh.data["files"]["waiting"]
    assert [(w["name"], w["retry_count"]) for w in waiting] == [("kept.csv", 2)]
    assert "Invalid attribute value" in waiting[0]["last_error"]
    assert "kept.csv" in fresh.text and "attempt 2 of 5 failed: " in fresh.text
    assert [(e["status"], e["message"]) for e in fresh.data["errors"]] == [
        ("partial", "1 update rejected by AtHoc, 1 file kept for retry"),
        ("partial", "1 update rejected by AtHoc, 1 file kept for retry"),
    ]
    failed = fresh.data["files"]["failed"]
    assert failed[0]["name"] == "binary.csv"
    assert failed[0]["reason"] == "binary content (NUL byte at offset 0)"  # the Reason: line
    assert f"Failed files    1 in {settings.failed_files_directory}" in fresh.text

    stamp = (now() - timedelta(minutes=23)).timestamp()
    os.utime(kept, (stamp, stamp))
    old = status(settings)
    assert old.code == 1
    assert old.data["reasons"][1] == "1 file waiting, oldest 23 min (over 15 min)"
    assert old.data["files"]["oldest_waiting_seconds"] >= 23 * 60
    assert "WARNING    1 file waiting, oldest 23 min (over 15 min)" in old.text


def test_a_failed_file_without_its_note_is_still_listed(settings: Settings) -> None:
    healthy_db(settings, now())
    settings.failed_files_directory.mkdir()
    (settings.failed_files_directory / "lost.csv").write_text("x\n", encoding="utf-8")
    (settings.failed_files_directory / "other.csv.error.txt").write_text("Reason: orphan\n", encoding="utf-8")
    shown = status(settings)
    assert shown.code == 1
    assert shown.data["files"]["failed"] == [{"name": "lost.csv", "failed_at": None, "reason": None}]
    assert "lost.csv" in shown.text and "no .error.txt beside it" in shown.text


def test_processed_files_left_in_place_are_not_waiting(simulator: AtHocSimulator, sim_settings: Settings) -> None:
    assert not sim_settings.move_processed_files
    path = csv_file(sim_settings, "stay.csv")
    run_pass(sim_settings)
    assert path.exists()
    stamp = (now() - timedelta(hours=2)).timestamp()
    os.utime(path, (stamp, stamp))  # a new modification time: recognised by content
    shown = status(sim_settings)
    assert shown.code == 0, shown.text
    assert shown.data["files"]["waiting"] == []
    path.write_text(",".join(export_row("BOF", "00001", now())) + "\n", encoding="utf-8")
    os.utime(path, (stamp, stamp))
    changed = status(sim_settings)
    assert [w["name"] for w in changed.data["files"]["waiting"]] == ["stay.csv"]
    assert changed.code == 1


@pytest.mark.skipif(sys.platform == "win32", reason="Windows file names are always valid text")
def test_a_file_whose_name_is_not_valid_text_warns(settings: Settings) -> None:
    healthy_db(settings, now())
    with open(os.fsencode(settings.csv_directory) + b"/BOBO_caf\xe9.csv", "wb") as handle:
        handle.write(b"x\n")
    shown = status(settings)
    assert shown.code == 1
    assert shown.data["files"]["bad_names"] == ["BOBO_caf\\xe9.csv"]
    assert shown.data["reasons"] == [
        "1 file in CSV_DIRECTORY with a name that is not valid text (rename to process): BOBO_caf\\xe9.csv"
    ]
    assert "1 file named in bytes that are not valid text (rename them): BOBO_caf\\xe9.csv" in shown.text


def test_a_missing_csv_folder_is_unhealthy(simulator: AtHocSimulator, settings: Settings) -> None:
    run_pass(settings)
    settings.csv_directory.rmdir()
    shown = status(settings)
    assert shown.code == 2
    assert shown.data["reasons"][0].startswith(f"CSV_DIRECTORY {settings.csv_directory} cannot be read: ")
    assert shown.data["files"]["csv_error"]
    assert f"Waiting files   cannot read {settings.csv_directory}" in shown.text


# ---------------------------------------------------------------- crafted run histories


@pytest.mark.parametrize(("minutes", "code"), [(9, 0), (11, 2)])
def test_no_pass_for_ten_minutes_is_unhealthy(settings: Settings, minutes: int, code: int) -> None:
    at = now()
    healthy_db(settings, at - timedelta(minutes=minutes - 1))
    shown = status(settings, at)
    assert shown.code == code, shown.text
    if code:
        started = at - timedelta(minutes=minutes)
        assert shown.data["reasons"] == [
            f"no pass for {minutes} min (last at {show(started + timedelta(seconds=2))}; over 10 min)"
        ]


def test_the_pass_gap_follows_a_long_poll_interval(settings: Settings) -> None:
    at = now()
    healthy_db(settings, at - timedelta(minutes=20))
    assert status(settings, at).code == 2
    assert status(dataclasses.replace(settings, poll_interval_seconds=900), at).code == 0


def test_a_running_pass_is_fine_until_it_looks_stuck(settings: Settings) -> None:
    at = now()
    healthy_db(settings, at - timedelta(minutes=1))
    with BOBODatabase(settings.db_path) as db:
        db.start_run("pass", at - timedelta(seconds=30))
    shown = status(settings, at)
    assert shown.code == 0, shown.text
    assert shown.data["passes"]["running_since"] == shown_json(at - timedelta(seconds=30))
    assert shown.data["passes"]["last"]["status"] == "ok"
    assert "a pass is running since" in shown.text
    later = status(settings, at + timedelta(minutes=15))
    assert later.code == 2
    assert "is still recorded as running (stuck, or its process died)" in later.data["reasons"][0]


@pytest.mark.parametrize(
    ("run_status_", "code", "start"),
    [
        ("partial", 1, "last pass partial at "),
        ("interrupted", 1, "last pass interrupted at "),
        ("failed", 2, "last pass failed at "),
    ],
)
def test_the_last_pass_status_sets_the_health(settings: Settings, run_status_: str, code: int, start: str) -> None:
    at = now()
    healthy_db(settings, at - timedelta(minutes=3))
    with BOBODatabase(settings.db_path) as db:
        add_run(db, "pass", at - timedelta(minutes=1), run_status_, error="kept.csv: 1 update(s) failed")
    shown = status(settings, at)
    assert shown.code == code
    when = at - timedelta(minutes=1)
    assert shown.data["reasons"] == [f"{start}{show(when)}: kept.csv: 1 update(s) failed"]
    assert shown.data["reason_levels"] == [WARNING if code == 1 else UNHEALTHY]


def test_passes_of_the_last_24_hours(settings: Settings) -> None:
    at = now()
    with BOBODatabase(settings.db_path) as db:
        db.replace_mappings({"00001": user(1)}, at)
        db.record_sync("success", at - timedelta(hours=1), 1)
        add_run(db, "pass", at - timedelta(hours=30), "failed", seconds=50)  # outside the 24 hours
        add_run(db, "pass", at - timedelta(hours=3), "failed", seconds=4, error="cannot connect to AtHoc: down")
        add_run(db, "pass", at - timedelta(hours=2), "partial", seconds=2, error="mapping sync failed")
        for minutes in (3, 2, 1):
            add_run(db, "pass", at - timedelta(minutes=minutes), "ok", seconds=1)
    shown = status(settings, at)
    assert shown.code == 0, shown.text
    passes = shown.data["passes"]
    assert passes["count_24h"] == 5
    assert passes["statuses_24h"] == {"ok": 3, "partial": 1, "failed": 1}
    assert passes["success_rate_24h"] == 0.6
    assert passes["average_duration_seconds_24h"] == pytest.approx(1.8)
    assert "Last 24 h       5 passes: 3 ok, 1 partial, 1 failed; success 60.0 %, average 1.8 s" in shown.text
    # Last errors: newest first, from the run history.
    assert [e["message"] for e in shown.data["errors"]] == ["mapping sync failed", "cannot connect to AtHoc: down"]


def test_last_errors_are_the_five_newest_of_any_kind(settings: Settings) -> None:
    at = now()
    healthy_db(settings, at - timedelta(hours=2))
    with BOBODatabase(settings.db_path) as db:
        for i in range(7):
            add_run(db, "cleanup" if i % 2 else "pass", at - timedelta(minutes=60 - i), "failed", error=f"problem {i}")
        add_run(db, "pass", at - timedelta(minutes=1), "ok")
    shown = status(settings, at)
    errors = shown.data["errors"]
    assert [e["message"] for e in errors] == [f"problem {i}" for i in (6, 5, 4, 3, 2)]
    assert [e["kind"] for e in errors] == ["pass", "cleanup", "pass", "cleanup", "pass"]
    assert errors[0]["at"] == shown_json(at - timedelta(minutes=54) + timedelta(seconds=2))
    lines = [line for line in shown.text.splitlines() if "failed: problem" in line]
    assert len(lines) == 5 and lines[0].startswith("Last errors     ") and "pass failed: problem 6" in lines[0]
    assert all(line.startswith(" " * 16) for line in lines[1:])
    # The last cleanup failed: a warning, even though the last pass was ok.
    when = at - timedelta(minutes=55)
    assert shown.data["reasons"] == [f"last auto-cleanup failed at {show(when)}: problem 5"]
    assert shown.code == 1


def test_auto_cleanup_counts_the_last_24_hours(settings: Settings) -> None:
    at = now()
    healthy_db(settings, at - timedelta(minutes=2))
    with BOBODatabase(settings.db_path) as db:
        add_run(db, "cleanup", at - timedelta(hours=25), "ok", counts={"cleared": 100})
        add_run(db, "cleanup", at - timedelta(hours=5), "ok", counts={"cleared": 3})
        add_run(db, "cleanup", at - timedelta(minutes=1), "ok", counts={"cleared": 4})
    shown = status(settings, at)
    assert shown.code == 0, shown.text
    cleanup = shown.data["auto_cleanup"]
    assert cleanup["cleared_24h"] == 7 and cleanup["runs_24h"] == 3
    assert cleanup["last_run"]["started_at"] == shown_json(at - timedelta(minutes=1))
    assert "7 users cleared in the last 24 h (values older than 24 h)" in shown.text
    off = status(dataclasses.replace(settings, auto_cleanup_hours=0), at)
    assert off.data["auto_cleanup"]["enabled"] is False
    assert "Auto-cleanup    off (AUTO_CLEANUP_HOURS=0)" in off.text


def test_mapping_sync_failed_overdue_or_off(settings: Settings) -> None:
    at = datetime(2024, 6, 17, 14, 0, 0)
    healthy_db(settings, at)
    assert status(settings, at).code == 0
    with BOBODatabase(settings.db_path) as db:
        db.record_sync("error", at - timedelta(minutes=30))
    failed = status(settings, at)
    assert failed.code == 1
    assert failed.data["reasons"] == [
        f"last mapping sync failed at {show(at - timedelta(minutes=30))} (status error); "
        f"last success {show(at - timedelta(minutes=5))}"
    ]
    assert failed.data["mapping_sync"]["due_now"] is True
    assert f"last attempt {show(at - timedelta(minutes=30))} ended 'error'" in failed.text

    with BOBODatabase(settings.db_path) as db:
        db.record_sync("success", datetime(2024, 6, 16, 9, 0, 0), 1)
    # Due at 20:00 on the 17th (SYNC_HOUR 20): not yet at 14:00, due at 20:30, overdue at 21:30.
    assert status(settings, at).data["mapping_sync"]["next_due"] == shown_json(datetime(2024, 6, 17, 20, 0))
    due = status(settings, datetime(2024, 6, 17, 20, 30))
    assert due.data["mapping_sync"]["due_now"] is True
    assert "mapping sync" not in " ".join(due.data["reasons"])
    overdue = status(settings, datetime(2024, 6, 17, 21, 30))
    assert (
        f"mapping sync overdue: due since {show(datetime(2024, 6, 17, 20, 0))} "
        "(daily sync at 20:00 and none succeeded today)"
    ) in (overdue.data["reasons"])
    off = status(dataclasses.replace(settings, sync_mappings=False), datetime(2024, 6, 17, 21, 30))
    assert "mapping sync" not in " ".join(off.data["reasons"])
    assert "Mapping sync    off (SYNC_MAPPINGS=false); 1 mapping" in off.text


def test_passes_without_any_mapping_warn(settings: Settings) -> None:
    at = now()
    with BOBODatabase(settings.db_path) as db:
        add_run(db, "pass", at - timedelta(minutes=1), "ok")
    shown = status(settings, at)
    assert shown.code == 1
    assert shown.data["reasons"] == [
        "the worker mapping has never been synced from AtHoc",
        "no worker mappings: no employee ID can be matched to an AtHoc user",
    ]
    assert "Mapping sync    never synced; 0 mappings; due now (never synced)" in shown.text


def test_a_legacy_database_is_read_without_being_changed(settings: Settings) -> None:
    create_legacy_database(
        settings.db_path, {"00001": user(1), "00002": user(2)}, last_sync=(now() - timedelta(hours=1), "completed")
    )
    original_track_file_retry(settings.db_path, "stuck.csv")  # the original's table has no last_error
    before = settings.db_path.read_bytes()
    shown = status(settings)
    assert shown.code == 2
    assert shown.data["reasons"] == ["no pass recorded in the run history"]
    assert shown.data["mapping_sync"]["mappings"] == 2
    assert shown.data["mapping_sync"]["status"] == "completed"
    assert "last success" in shown.text  # `completed` is the original's word for success
    assert settings.db_path.read_bytes() == before
    with sqlite3.connect(settings.db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0


def test_an_unreadable_database_is_unhealthy(settings: Settings) -> None:
    settings.db_path.write_bytes(b"this is not an SQLite database, just some text" * 100)
    shown = status(settings)
    assert shown.code == 2
    assert shown.data["reasons"][0].startswith("database cannot be read: database ")
    assert shown.data["database_error"]


def test_collect_status_is_one_structure_for_both_renderings(settings: Settings) -> None:
    at = now()
    healthy_db(settings, at - timedelta(minutes=30))
    with BOBODatabase(settings.db_path, read_only=True) as db:
        report = collect_status(settings, db, at)
    assert isinstance(report, StatusReport)
    assert report.health == UNHEALTHY and report.exit_code == 2
    data = report_to_dict(report)
    assert data["reasons"] == [r.message for r in report.reasons]
    assert list(data) == [
        "generated_at",
        "health",
        "exit_code",
        "reasons",
        "reason_levels",
        "passes",
        "mapping_sync",
        "auto_cleanup",
        "files",
        "errors",
        "live",
        "database",
        "database_exists",
        "database_error",
        "log_file",
        "env_file",
        "bobosync_version",
    ]
    text = render_text(report)
    for reason in report.reasons:
        assert f"  {reason.level.upper():<10} {reason.message}" in text


# ---------------------------------------------------------------- --live


def test_live_counts_on_duty_stale_and_unparseable_values(simulator: AtHocSimulator, settings: Settings) -> None:
    at = now()
    run_pass(settings, at)
    for i, age in (
        (1, timedelta(hours=2)),
        (2, timedelta(minutes=5)),  # fresh
        (3, timedelta(hours=30)),
        (4, timedelta(hours=25)),
        (5, timedelta(days=3)),  # long overdue
        (6, timedelta(hours=24, minutes=2)),
    ):  # stale, cleanup not due yet
        simulator.set_attribute(user(i), DUTY, (at - age).strftime(FMT))
    simulator.set_attribute(user(7), DUTY, "not a date")
    shown = status(settings, at, live=True)
    live = shown.data["live"]
    assert live == {
        "duty_field": DUTY,
        "error": None,
        "users": 50,
        "on_duty": 7,
        "stale": 4,
        "stale_overdue": 3,
        "unparseable": 1,
    }
    assert shown.code == 1
    assert shown.data["reasons"] == [
        "3 users on duty for over 24 h that the auto-cleanup has not cleared",
        "1 user with a On-Duty-DTG value not in ATHOC_DATETIME_FORMAT (the auto-cleanup never clears these)",
    ]
    assert (
        "On duty (live)  7 of 50 users have On-Duty-DTG set; 4 older than 24 h (3 not cleared in time); 1 unparseable"
    ) in shown.text


def test_live_only_reads_athoc(simulator: AtHocSimulator, settings: Settings) -> None:
    healthy_db(settings, now())
    simulator.set_attribute(user(1), DUTY, (now() - timedelta(hours=1)).strftime(FMT))
    simulator.clear_journal()
    shown = status(settings, live=True)
    assert shown.code == 0, shown.text
    assert shown.data["live"]["on_duty"] == 1 and shown.data["live"]["stale"] == 0
    # Only reads: a token and a listing for each of the two runs (text, JSON); nothing written.
    assert simulator.requests_to("SyncByCommonNames") == []
    assert not any(e.method != "GET" and "connect/token" not in e.path for e in simulator.journal)
    assert "On duty (live)  not checked" in status(settings).text  # no --live: no AtHoc call
    assert len(simulator.requests_to("search")) == 2


def test_live_with_athoc_unreachable_is_unhealthy(simulator: AtHocSimulator, settings: Settings) -> None:
    healthy_db(settings, now())
    settings.failed_files_directory.mkdir()
    (settings.failed_files_directory / "x.csv").write_text("x\n", encoding="utf-8")
    simulator.stop()
    shown = status(settings, live=True)
    assert shown.code == 2
    assert shown.data["reason_levels"] == [UNHEALTHY, WARNING]  # worst first
    assert shown.data["reasons"][0].startswith("AtHoc cannot be reached: ")
    assert shown.data["live"]["error"]
    assert "On duty (live)  AtHoc cannot be reached" in shown.text


# ---------------------------------------------------------------- the command


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().endswith("_PROXY") and not k.startswith("BOBO_") and k != "LOG_LEVEL"
    }
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "bobosync", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90
    )


def test_the_command_exits_2_then_0_then_1(simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path) -> None:
    env_file = str(tmp_path / ".env")
    never = run_cli(tmp_path, "--env-file", env_file, "status")
    assert never.returncode == 2, never.stderr
    assert "no pass recorded" in never.stdout
    csv_file_path = write_bobo_file(tmp_path / "crown_files", [export_row("BON", "00001", now())], now(), name="a.csv")
    assert run_cli(tmp_path, "--env-file", env_file).returncode == 0
    assert csv_file_path.exists()  # left in place and remembered (MOVE_PROCESSED_FILES=false)
    ok = run_cli(tmp_path, "status", "--env-file", env_file)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("bobosync status: HEALTHY (exit 0)")
    (tmp_path / "failed_files").mkdir()
    (tmp_path / "failed_files" / "x.csv").write_text("x\n", encoding="utf-8")
    warned = run_cli(tmp_path, "status", "--json", "--env-file", env_file)
    assert warned.returncode == 1, warned.stderr
    data = json.loads(warned.stdout)  # stdout holds only the JSON document
    assert data["health"] == WARNING
    assert data["reasons"] == ["1 file in the failed folder (reasons in <name>.error.txt)"]
    assert data["passes"]["last"]["counts"]["applied"] == 1


def test_a_new_rule_is_one_function_and_text_json_and_exit_code_follow(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bobosync import status as status_module

    at = now()
    healthy_db(settings, at)
    assert status(settings, at).code == 0
    monkeypatch.setattr(status_module, "RULES", list(status_module.RULES))

    @status_module.rule
    def _full_moon(report: StatusReport, settings: Settings) -> Iterator[status_module.Reason]:
        yield status_module.Reason(status_module.WARNING, "the moon is full")

    shown = status(settings, at)
    assert shown.code == 1
    assert "  WARNING    the moon is full" in shown.text
    assert shown.data["reasons"] == ["the moon is full"]


def test_pass_counts_are_read_back_by_their_typed_fields() -> None:
    from bobosync.counts import PassCounts

    counts = PassCounts(files=3, failed=2, files_retry=1)
    assert PassCounts.from_record(dataclasses.asdict(counts)) == counts
    # an old row: a count it never had is 0, one no longer counted or not a number is ignored
    assert PassCounts.from_record({"failed": 4, "gone": 9, "rows": "7", "held": True}) == PassCounts(failed=4)


def test_status_and_the_pass_share_one_decision_of_what_is_waiting(
    simulator: AtHocSimulator, sim_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bobosync import filestore

    path = csv_file(sim_settings, "stay.csv")
    run_pass(sim_settings)
    assert path.exists() and status(sim_settings).data["files"]["waiting"] == []
    processor = BOBOProcessor(sim_settings)
    try:
        assert processor.get_csv_files() == []
        # Change the rule in its one place (no processed file is ever recognised): both follow.
        monkeypatch.setattr(filestore, "remembered_match", lambda waiting, known, hash_of=None: None)
        assert processor.get_csv_files() == [path]
    finally:
        processor.close()
    assert [w["name"] for w in status(sim_settings).data["files"]["waiting"]] == ["stay.csv"]

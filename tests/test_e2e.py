"""End to end: the real CLI in a subprocess, the AtHoc simulator over HTTPS, real folders and
a real SQLite database. Each test follows one numbered step of a pass (see processor.py)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

import pytest

from bobosync.database import SCHEMA_VERSION
from bobosync.locking import SingleInstanceLock
from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from tests.legacy_db import create_legacy_database, original_update_sync_tracking

REPO = Path(__file__).resolve().parent.parent
FMT = "%d/%m/%Y %H:%M:%S"
DUTY = "On-Duty-DTG"


def now() -> datetime:
    return datetime.now().replace(microsecond=0)


def child_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().endswith("_PROXY") and not k.startswith("BOBO_") and k not in ("LOG_LEVEL",)
    }
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def run_cli(
    tmp_path: Path, *args: str, extra: Optional[dict[str, str]] = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bobosync", "--env-file", str(tmp_path / ".env"), *args],
        cwd=tmp_path,
        env=child_env(extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def user(i: int) -> str:
    return f"user{i:05d}@force.example"


def duty(sim: AtHocSimulator, i: int) -> str:
    found = sim.get_user(user(i))
    assert found is not None
    return found.get(DUTY, "")


def query(tmp_path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(tmp_path / "bobo_mapping.db") as conn:
        return list(conn.execute(sql, params))


def csv_dir(tmp_path: Path) -> Path:
    return tmp_path / "crown_files"


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.csv")) if folder.is_dir() else []


# ---------------------------------------------------------------- the main path


def test_first_pass_syncs_mapping_applies_latest_event_and_moves_files(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    t = now()
    f1 = write_bobo_file(
        csv_dir(tmp_path),
        [export_row("BON", "00001", t - timedelta(minutes=10)), export_row("BON", "00002", t - timedelta(minutes=10))],
        t - timedelta(minutes=9),
    )
    f2 = write_bobo_file(
        csv_dir(tmp_path),
        [export_row("BOF", "00001", t - timedelta(minutes=5)), export_row("bon", "00003", t - timedelta(minutes=5))],
        t - timedelta(minutes=4),
    )
    os.utime(f1, (time.time() - 60, time.time() - 60))
    result = run_cli(tmp_path, extra={"MOVE_PROCESSED_FILES": "true"})
    assert result.returncode == 0, result.stderr
    assert duty(simulator, 1) == ""
    assert duty(simulator, 2) == (t - timedelta(minutes=10)).strftime(FMT)
    assert duty(simulator, 3) == (t - timedelta(minutes=5)).strftime(FMT)
    assert names(csv_dir(tmp_path)) == []
    assert names(tmp_path / "processed_files") == sorted([f1.name, f2.name])
    # One token, the user listing, ONE sync call for both files (one batch), the cleanup query.
    syncs = simulator.requests_to("SyncByCommonNames")
    assert len(syncs) == 1
    assert all(e.query.get("syncExistingUsersOnly") == "true" for e in syncs)
    assert all(set(row) == {"LOGIN_ID", DUTY} for row in syncs[0].json_body)
    assert simulator.tokens_issued == 1
    assert query(tmp_path, "SELECT status FROM sync_tracking WHERE sync_type='user_mapping'") == [("success",)]
    assert query(tmp_path, "SELECT COUNT(*) FROM worker_mapping") == [(50,)]
    assert sorted(str(r[0]) for r in query(tmp_path, "SELECT filename FROM processing_log")) == sorted(
        [f1.name, f2.name]
    )
    runs = query(tmp_path, "SELECT kind, status FROM run_history ORDER BY id")
    assert ("pass", "ok") in runs and ("mapping_sync", "ok") in runs and ("cleanup", "ok") in runs
    assert "pass ok: files 2 (done 2, retry 0, failed 0), rows 4" in result.stderr
    assert "superseded 1" in result.stderr
    log_text = (tmp_path / "logs" / "bobo_processor.log").read_text(encoding="utf-8")
    assert f"{f1.name}: 2 rows, 0 bad" in log_text


def test_nothing_to_do_exits_zero_and_still_cleans_up(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    stale = (now() - timedelta(hours=30)).strftime(FMT)
    fresh = (now() - timedelta(hours=2)).strftime(FMT)
    simulator.set_attribute(user(7), DUTY, stale)
    simulator.set_attribute(user(8), DUTY, fresh)
    simulator.set_attribute(user(9), DUTY, "00/00/0000 not a date")
    simulator.criteria_lt_as_text = True  # a server comparing as text returns all sorts
    result = run_cli(tmp_path)
    assert result.returncode == 0, result.stderr
    assert duty(simulator, 7) == "" and duty(simulator, 8) == fresh
    assert duty(simulator, 9) == "00/00/0000 not a date"
    assert "cleared 1" in result.stderr
    assert "00/00/0000 not a date" in result.stderr  # the unparseable value is reported, never cleared


def test_bad_rows_are_reported_and_the_rest_used_bad_files_fail_with_reason(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    t = now() - timedelta(minutes=3)
    mixed = write_bobo_file(
        csv_dir(tmp_path),
        [
            export_row("BON", "00004", t),
            ["XYZ", "00005", "P", "", "", f"{t:%Y%m%d%H%M%S}", "", "", "", ""],
            export_row("BON", "00006", t),
        ],
        t,
        name="mixed.csv",
    )
    all_bad = write_bobo_file(
        csv_dir(tmp_path), [["BON", "00007", "P", "", "", "20240230143000", "", "", "", ""]], t, name="all_bad.csv"
    )
    (csv_dir(tmp_path) / "binary.csv").write_bytes(b"\x00\x01garbage")
    (csv_dir(tmp_path) / "empty.csv").write_bytes(b"")
    result = run_cli(tmp_path, extra={"MOVE_PROCESSED_FILES": "true"})
    assert result.returncode == 0, result.stderr
    assert duty(simulator, 4) and duty(simulator, 6) and duty(simulator, 5) == ""
    assert "mixed.csv row 2: unknown transaction type 'XYZ'" in result.stderr
    assert names(tmp_path / "processed_files") == ["empty.csv", "mixed.csv"]
    assert names(tmp_path / "failed_files") == ["all_bad.csv", "binary.csv"]
    reason = (tmp_path / "failed_files" / "all_bad.csv.error.txt").read_text(encoding="utf-8")
    assert "row 1" in reason and "20240230143000" in reason
    assert "NUL" in (tmp_path / "failed_files" / "binary.csv.error.txt").read_text(encoding="utf-8")
    assert mixed.name not in names(csv_dir(tmp_path)) and all_bad.name not in names(csv_dir(tmp_path))
    statuses = dict((str(r[0]), str(r[1])) for r in query(tmp_path, "SELECT filename, status FROM processing_log"))
    assert statuses == {"mixed.csv": "partial", "empty.csv": "success", "all_bad.csv": "failed", "binary.csv": "failed"}


def test_a_late_file_never_undoes_a_newer_status(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    t = now()
    write_bobo_file(csv_dir(tmp_path), [export_row("BON", "00010", t - timedelta(minutes=1))], t, name="new.csv")
    assert run_cli(tmp_path).returncode == 0
    assert duty(simulator, 10) == (t - timedelta(minutes=1)).strftime(FMT)
    simulator.clear_journal()
    write_bobo_file(csv_dir(tmp_path), [export_row("BOF", "00010", t - timedelta(hours=3))], t, name="late.csv")
    result = run_cli(tmp_path)
    assert result.returncode == 0, result.stderr
    assert duty(simulator, 10) == (t - timedelta(minutes=1)).strftime(FMT)
    assert simulator.requests_to("SyncByCommonNames") == []
    assert "superseded 1" in result.stderr


def test_files_left_in_place_are_remembered_and_changed_content_is_processed_again(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    t = now()
    f = write_bobo_file(csv_dir(tmp_path), [export_row("BON", "00011", t - timedelta(minutes=2))], t, name="stay.csv")
    assert run_cli(tmp_path).returncode == 0  # MOVE_PROCESSED_FILES defaults to false
    assert names(csv_dir(tmp_path)) == ["stay.csv"]
    simulator.clear_journal()
    assert run_cli(tmp_path).returncode == 0
    assert simulator.requests_to("SyncByCommonNames") == []
    assert query(tmp_path, "SELECT COUNT(*) FROM processing_log") == [(1,)]
    f.write_text(",".join(export_row("BOF", "00011", t - timedelta(minutes=1))) + "\n", encoding="utf-8")
    assert run_cli(tmp_path).returncode == 0
    assert duty(simulator, 11) == ""
    assert query(tmp_path, "SELECT COUNT(*) FROM processing_log") == [(2,)]


# ---------------------------------------------------------------- mapping


def test_unmapped_id_triggers_one_resync_when_the_mapping_is_over_an_hour_old(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    assert run_cli(tmp_path, "--sync-users").returncode == 0
    simulator.add_user({"LOGIN_ID": "new.starter@force.example", "Collar-Number": "07777", DUTY: ""})
    write_bobo_file(
        csv_dir(tmp_path), [export_row("BON", "07777", now()), export_row("BON", "88888", now())], now(), name="f.csv"
    )
    # Fresh mapping: the unknown IDs are reported, not synced for.
    simulator.clear_journal()
    result = run_cli(tmp_path, extra={"MOVE_PROCESSED_FILES": "true"})
    assert result.returncode == 0, result.stderr
    assert simulator.requests_to("users/search/basic") == [
        e for e in simulator.requests_to("users/search/basic") if "Criteria" in e.query
    ]
    assert "employee 07777 has no AtHoc user" in result.stderr and "unmapped 2" in result.stderr
    # An hour later: one resync in the pass, and the new starter is found.
    two_hours_ago = (datetime.now() - timedelta(hours=2)).isoformat(timespec="seconds")
    query(tmp_path, "UPDATE sync_tracking SET last_sync_time=? WHERE sync_type='user_mapping'", two_hours_ago)
    write_bobo_file(
        csv_dir(tmp_path), [export_row("BON", "07777", now()), export_row("BON", "88888", now())], now(), name="g.csv"
    )
    result = run_cli(tmp_path, extra={"MOVE_PROCESSED_FILES": "true"})
    assert result.returncode == 0, result.stderr
    assert duty_of(simulator, "new.starter@force.example") == now_like()
    assert "unmapped 1" in result.stderr


def duty_of(sim: AtHocSimulator, login: str) -> str:
    found = sim.get_user(login)
    assert found is not None
    return found.get(DUTY, "")[:10]


def now_like() -> str:
    return now().strftime(FMT)[:10]


def test_mapping_sync_keeps_the_old_mapping_when_athoc_lists_nobody(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    assert run_cli(tmp_path, "--sync-users").returncode == 0
    with simulator.lock:
        saved = dict(simulator.users)
        for login in list(saved):
            simulator.users.pop(login, None)
    assert simulator.users == {} or len(simulator.users) == 0
    result = run_cli(tmp_path, "--sync-users")
    assert result.returncode == 1
    assert "old mapping is kept" in result.stderr
    assert query(tmp_path, "SELECT COUNT(*) FROM worker_mapping") == [(50,)]
    assert query(tmp_path, "SELECT status FROM sync_tracking") == [("no_data",)]


def test_legacy_database_is_upgraded_in_place_with_its_mappings(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    create_legacy_database(tmp_path / "bobo_mapping.db", {"00020": user(20), "LEGACY1": user(21)})
    original_update_sync_tracking(tmp_path / "bobo_mapping.db", datetime.now(), "completed")
    booked_on = now()
    write_bobo_file(csv_dir(tmp_path), [export_row("BON", "LEGACY1", booked_on)], booked_on, name="f.csv")
    # No reconcile in this pass: its listing would refresh the mapping, which is not the point here.
    no_sync = {"SYNC_HOUR": "23"} if datetime.now().hour < 23 else {"SYNC_MAPPINGS": "false"}
    result = run_cli(tmp_path, extra={**no_sync, "RECONCILE_MINUTES": "0"})
    assert result.returncode == 0, result.stderr
    assert duty(simulator, 21) == booked_on.strftime(FMT)  # the event's own reading, whatever the clock does
    assert duty(simulator, 21) != ""
    assert query(tmp_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert ("LEGACY1", user(21)) in query(tmp_path, "SELECT employee_id, username FROM worker_mapping")


# ---------------------------------------------------------------- AtHoc trouble


def test_not_in_athoc_is_done_and_a_failing_update_is_retried_then_failed(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    assert run_cli(tmp_path, "--sync-users").returncode == 0
    with simulator.lock:
        simulator.users.pop(user(30))  # gone from AtHoc since the mapping sync
    simulator.row_errors[user(31)] = "Attribute value rejected"
    write_bobo_file(csv_dir(tmp_path), [export_row("BON", "00030", now())], now(), name="gone.csv")
    write_bobo_file(
        csv_dir(tmp_path),
        [export_row("BON", "00031", now()), export_row("BON", "00032", now())],
        now(),
        name="rejected.csv",
    )
    extra = {"MOVE_PROCESSED_FILES": "true", "MAX_RETRY_ATTEMPTS": "2", "SYNC_MAPPINGS": "false"}
    first = run_cli(tmp_path, extra=extra)
    assert first.returncode == 1
    assert names(tmp_path / "processed_files") == ["gone.csv"]
    assert names(csv_dir(tmp_path)) == ["rejected.csv"]
    assert duty(simulator, 32) != ""  # the good row of the same file was applied
    assert query(tmp_path, "SELECT retry_count FROM file_retry_tracking WHERE filename='rejected.csv'") == [(1,)]
    second = run_cli(tmp_path, extra=extra)
    assert second.returncode == 1
    assert names(tmp_path / "failed_files") == ["rejected.csv"]
    note = (tmp_path / "failed_files" / "rejected.csv.error.txt").read_text(encoding="utf-8")
    assert "Attribute value rejected" in note and user(31) in note


def test_athoc_unreachable_fails_the_pass_and_touches_nothing(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    write_bobo_file(csv_dir(tmp_path), [export_row("BON", "00001", now())], now(), name="f.csv")
    before = (csv_dir(tmp_path) / "f.csv").read_bytes()
    simulator.stop()
    result = run_cli(tmp_path, extra={"MOVE_PROCESSED_FILES": "true"})
    assert result.returncode == 1
    assert "cannot connect to AtHoc" in result.stderr
    assert (csv_dir(tmp_path) / "f.csv").read_bytes() == before
    assert names(tmp_path / "processed_files") == [] and names(tmp_path / "failed_files") == []
    assert query(tmp_path, "SELECT COUNT(*) FROM file_retry_tracking") == [(0,)]
    assert query(tmp_path, "SELECT status FROM run_history WHERE kind='pass'") == [("failed",)]


def test_transient_faults_and_a_revoked_token_mid_pass_are_survived(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    write_bobo_file(csv_dir(tmp_path), [export_row("BON", "00012", now())], now(), name="f.csv")
    simulator.fail_next(1, 401, path_contains="SyncByCommonNames")  # token revoked server-side
    simulator.fail_next(2, 503, path_contains="SyncByCommonNames")
    simulator.fail_next(1, 429, retry_after=1, path_contains="users/search/basic")
    started = time.monotonic()
    result = run_cli(tmp_path, extra={"MOVE_PROCESSED_FILES": "true"})
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 1  # Retry-After honoured
    assert duty(simulator, 12) != ""
    assert simulator.tokens_issued == 2
    assert simulator.pending_faults == 0
    assert names(tmp_path / "processed_files") == ["f.csv"]


def test_athoc_down_mid_pass_keeps_files_without_counting_a_retry(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    assert run_cli(tmp_path, "--sync-users").returncode == 0
    write_bobo_file(csv_dir(tmp_path), [export_row("BON", "00013", now())], now(), name="f.csv")
    simulator.fail_next(10, 503, path_contains="SyncByCommonNames")
    result = run_cli(tmp_path, extra={"MOVE_PROCESSED_FILES": "true", "SYNC_MAPPINGS": "false"})
    assert result.returncode == 1
    assert names(csv_dir(tmp_path)) == ["f.csv"]
    assert query(tmp_path, "SELECT COUNT(*) FROM file_retry_tracking") == [(0,)]
    simulator.clear_faults()
    assert run_cli(tmp_path, extra={"MOVE_PROCESSED_FILES": "true", "SYNC_MAPPINGS": "false"}).returncode == 0
    assert duty(simulator, 13) != ""


# ---------------------------------------------------------------- modes and guards


def test_a_second_run_exits_zero_while_the_lock_is_held(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    write_bobo_file(csv_dir(tmp_path), [export_row("BON", "00001", now())], now(), name="f.csv")
    with SingleInstanceLock(Path(sim_env["DB_PATH"] + ".lock")):
        result = run_cli(tmp_path, extra={"MOVE_PROCESSED_FILES": "true"})
    assert result.returncode == 0
    assert "holds the lock" in result.stderr
    assert names(csv_dir(tmp_path)) == ["f.csv"] and simulator.journal == []


def test_dry_run_prints_the_updates_and_changes_nothing(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    assert run_cli(tmp_path, "--sync-users").returncode == 0
    t = now()
    write_bobo_file(csv_dir(tmp_path), [export_row("BON", "00014", t), export_row("BOF", "00015", t)], t, name="f.csv")
    db_before = (tmp_path / "bobo_mapping.db").read_bytes()
    simulator.clear_journal()
    result = run_cli(tmp_path, "--dry-run", extra={"MOVE_PROCESSED_FILES": "true"})
    assert result.returncode == 0, result.stderr
    assert "2 update(s) would be sent" in result.stdout
    assert user(14) in result.stdout and t.strftime(FMT) in result.stdout and "(clear: off duty)" in result.stdout
    assert names(csv_dir(tmp_path)) == ["f.csv"]
    assert simulator.requests_to("SyncByCommonNames") == []
    assert (tmp_path / "bobo_mapping.db").read_bytes() == db_before
    assert duty(simulator, 14) == ""


def test_watch_mode_processes_arriving_files_and_stops_on_sigterm(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bobosync", "--env-file", str(tmp_path / ".env"), "--watch", "--interval", "0.3"],
        cwd=tmp_path,
        env=child_env({"MOVE_PROCESSED_FILES": "true"}),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        write_bobo_file(csv_dir(tmp_path), [export_row("BON", "00016", now())], now(), name="a.csv")
        while names(tmp_path / "processed_files") != ["a.csv"] and time.monotonic() < deadline:
            time.sleep(0.1)
        write_bobo_file(csv_dir(tmp_path), [export_row("BON", "00017", now())], now(), name="b.csv")
        while len(names(tmp_path / "processed_files")) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert names(tmp_path / "processed_files") == ["a.csv", "b.csv"]
        # A pass started by hand beside it finds the lock taken and leaves.
        beside = run_cli(tmp_path)
        assert beside.returncode == 0 and "holds the lock" in beside.stderr
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stop requested" in err and "stopped after" in err
    assert duty(simulator, 16) != "" and duty(simulator, 17) != ""


def test_configuration_error_exits_2_naming_every_setting(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ATHOC_SERVER_URL=http://athoc.example\nBATCH_SIZE=lots\n", encoding="utf-8")
    result = run_cli(tmp_path)
    assert result.returncode == 2
    for name in (
        "ATHOC_SERVER_URL",
        "BATCH_SIZE='lots'",
        "CLIENT_ID",
        "CLIENT_SECRET",
        "APIUSER",
        "PASSWORD",
        "ORG_CODE",
    ):
        assert name in result.stderr


def test_secrets_never_reach_logs_output_or_database_even_at_debug(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    write_bobo_file(csv_dir(tmp_path), [export_row("BON", "00018", now())], now(), name="f.csv")
    simulator.fail_next(1, 401, path_contains="SyncByCommonNames")
    result = run_cli(tmp_path, extra={"LOG_LEVEL": "DEBUG", "MOVE_PROCESSED_FILES": "true"})
    assert result.returncode == 0, result.stderr
    secrets = [sim_env["PASSWORD"], sim_env["CLIENT_SECRET"]]
    haystacks = [result.stdout, result.stderr, (tmp_path / "logs" / "bobo_processor.log").read_text(encoding="utf-8")]
    haystacks.append((tmp_path / "bobo_mapping.db").read_bytes().decode("latin-1"))
    for secret in secrets:
        for text in haystacks:
            assert secret not in text
    assert "Bearer" not in result.stderr


# ---------------------------------------------------------------- entry points


@pytest.mark.parametrize(
    ("cwd_part", "argv"),
    [
        ("", ["bobosync/bobo_processor.py"]),
        ("bobosync", ["bobo_processor.py"]),
        ("", ["-m", "bobosync"]),
    ],
)
def test_entry_points_do_the_same_thing(cwd_part: str, argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, *argv, "--version"],
        cwd=REPO / cwd_part,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("bobosync 2.")


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / ("bobosync.exe" if os.name == "nt" else "bobosync")
    if not script.exists():
        pytest.skip("bobosync not pip-installed in this environment")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("bobosync 2.")


def test_repl_imports_from_root_and_from_inside_the_package() -> None:
    root = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bobosync import AtHocClient, BOBOProcessor; print(AtHocClient.__name__, BOBOProcessor.__name__)",
        ],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert root.stdout.split() == ["AtHocClient", "BOBOProcessor"], root.stderr
    inside = subprocess.run(
        [
            sys.executable,
            "-c",
            "from athoc_client import AtHocClient; from bobo_processor import BOBOProcessor, "
            "BOBOEntry, BOBODatabase; print(AtHocClient.get_all_users_with_attributes.__name__, "
            "BOBOProcessor.sync_worker_mappings.__name__, BOBOEntry.from_csv_row.__name__, "
            "BOBODatabase.update_mapping.__name__)",
        ],
        cwd=REPO / "bobosync",
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.split() == [
        "get_all_users_with_attributes",
        "sync_worker_mappings",
        "from_csv_row",
        "update_mapping",
    ]


def test_athoc_client_with_no_arguments_is_a_connection_test(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    code = "from bobosync import AtHocClient\nclient = AtHocClient(); print('Connection successful!')"
    ok = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60
    )
    assert ok.stdout.strip() == "Connection successful!", ok.stderr
    bad = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=child_env({"PASSWORD": "wrong-pass"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "Connection successful!" not in bad.stdout
    assert "AtHocAuthError" in bad.stderr and "invalid_grant" in bad.stderr
    assert "wrong-pass" not in bad.stderr


def test_demo_runs_a_real_pass_on_the_simulator_and_exits_zero(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "bobosync", "demo", "--dir", str(folder), "--users", "120"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "On duty in AtHoc now:" in result.stdout
    assert "BOBO_corrupt_output.csv: binary content" in result.stdout
    assert (folder / ".env").exists() and (folder / "bobo_mapping.db").exists()
    assert (folder / "logs" / "bobo_processor.log").exists()
    assert names(folder / "failed_files") == ["BOBO_corrupt_output.csv"]
    assert "BOBO_late_arrival_output.csv" in names(folder / "processed_files")
    assert "unmapped 1" in result.stderr and "bad rows 1" in result.stderr


def test_watch_waits_for_a_run_in_progress_instead_of_exiting(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    write_bobo_file(csv_dir(tmp_path), [export_row("BON", "00019", now())], now(), name="w.csv")
    lock = SingleInstanceLock(Path(sim_env["DB_PATH"] + ".lock"))
    lock.acquire()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bobosync", "--env-file", str(tmp_path / ".env"), "--watch", "--interval", "0.3"],
        cwd=tmp_path,
        env=child_env({"MOVE_PROCESSED_FILES": "true"}),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        assert proc.poll() is None  # still there, waiting
        assert names(csv_dir(tmp_path)) == ["w.csv"]
        lock.release()
        deadline = time.monotonic() + 30
        while names(tmp_path / "processed_files") != ["w.csv"] and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        lock.release()
        if proc.poll() is None:
            proc.kill()
    assert names(tmp_path / "processed_files") == ["w.csv"]
    assert "waiting for it to finish" in err
    assert proc.returncode == 0

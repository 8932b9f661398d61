"""An upgrading site, end to end: a database the original tool made is upgraded, used, rolled back to the
original (written to as the original writes) and upgraded again, with real passes of the CLI
against the HTTPS simulator."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from bobosync.database import SCHEMA_VERSION
from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from tests.legacy_db import (
    create_legacy_database,
    original_log_processing,
    original_sync_mappings,
    original_track_file_retry,
    original_update_sync_tracking,
)
from tests.test_e2e import FMT, csv_dir, duty, now, query, run_cli, user

#: The simulator's 50 users, as the original mapped them, plus 40 leavers it never deleted.
CURRENT = {f"{i:05d}": user(i) for i in range(1, 51)}
LEAVERS = {f"LEAVER{i:02d}": f"leaver{i:02d}@force.example" for i in range(1, 41)}


def mapping_syncs(tmp_path: Path) -> int:
    ((count,),) = query(tmp_path, "SELECT COUNT(*) FROM run_history WHERE kind = 'mapping_sync'")
    return int(str(count))


def test_an_original_database_is_upgraded_used_rolled_back_and_upgraded_again(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "bobo_mapping.db"
    # The original's last sync was three days ago: due now (SYNC_RETRY_DAYS=2).
    create_legacy_database(db, {**CURRENT, **LEAVERS}, last_sync=(datetime.now() - timedelta(days=3), "completed"))
    original_log_processing(db, "BOBO_old.csv", 3, 3, 0)
    original_track_file_retry(db, "stuck_old.csv")
    extra = {"MOVE_PROCESSED_FILES": "true"}

    # 1. The first pass after the upgrade: the leavers do not stop the mapping sync.
    booked_on = now()
    write_bobo_file(csv_dir(tmp_path), [export_row("BON", "00020", booked_on)], booked_on, name="first.csv")
    first = run_cli(tmp_path, extra=extra)
    assert first.returncode == 0, first.stderr
    assert "no record of a previous complete listing; 40 mapping(s)" in first.stderr
    assert "LEAVER01" in first.stderr
    assert duty(simulator, 20) == booked_on.strftime(FMT)
    assert query(tmp_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(tmp_path, "SELECT COUNT(*) FROM worker_mapping") == [(50,)]
    # The original's tables in the original's formats: collar_id filled, its columns written.
    assert query(tmp_path, "SELECT COUNT(*) FROM worker_mapping WHERE collar_id = employee_id") == [(50,)]
    assert query(
        tmp_path,
        "SELECT entries_processed, success_count, error_count, errors FROM processing_log WHERE filename = 'first.csv'",
    ) == [(1, 1, 0, "")]
    assert query(tmp_path, "SELECT status, listing_mappings FROM sync_tracking") == [("success", 50)]
    last_sync_time = str(query(tmp_path, "SELECT last_sync_time FROM sync_tracking")[0][0])
    assert datetime.fromisoformat(last_sync_time).tzinfo is None  # local text, as the original writes it
    assert mapping_syncs(tmp_path) == 1

    # 2. Roll back: the original runs on the upgraded file, as it writes.
    original_sync_mappings(db, {"00051": "user00051@force.example"})
    original_update_sync_tracking(db, datetime.now(), "completed")
    original_log_processing(db, "rollback.csv", 2, 0, 2, "Retry attempt 1/5: Some users failed to update")
    assert original_track_file_retry(db, "rollback.csv") == 1
    assert query(tmp_path, "SELECT collar_id FROM worker_mapping WHERE employee_id = '00051'") == [("00051",)]

    # 3. Upgrade again: "completed" is a success, so no extra listing; the pass works.
    booked_off = now()
    write_bobo_file(csv_dir(tmp_path), [export_row("BOF", "00020", booked_off)], booked_off, name="second.csv")
    no_sync = {"SYNC_HOUR": "23"} if datetime.now().hour < 23 else {"SYNC_MAPPINGS": "false"}
    second = run_cli(tmp_path, extra={**extra, **no_sync, "RECONCILE_MINUTES": "0"})
    assert second.returncode == 0, second.stderr
    assert mapping_syncs(tmp_path) == 1
    assert duty(simulator, 20) == ""
    assert query(tmp_path, "SELECT retry_count FROM file_retry_tracking WHERE filename = 'rollback.csv'") == [(1,)]

    # 4. The original's row replaced bobosync's record of the listing: the next sync is trusted
    # again and removes what AtHoc no longer lists (00051 is nobody in the simulator).
    sync = run_cli(tmp_path, "--sync-users")
    assert sync.returncode == 0, sync.stderr
    assert "1 mapping(s) not in AtHoc's listing are removed: 00051" in sync.stderr
    assert query(tmp_path, "SELECT status, listing_mappings FROM sync_tracking") == [("success", 50)]

    # 5. Now with a record, a listing that loses most users is refused.
    with simulator.lock:
        for i in range(1, 40):
            simulator.users.pop(user(i))
    refused = run_cli(tmp_path, "--sync-users")
    assert refused.returncode != 0
    assert "more than half" in refused.stderr
    assert query(tmp_path, "SELECT COUNT(*) FROM worker_mapping") == [(50,)]


def test_status_and_check_read_an_original_database_without_changing_it(
    sim_env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "bobo_mapping.db"
    create_legacy_database(db, CURRENT, last_sync=(datetime.now() - timedelta(hours=1), "completed"))
    original_track_file_retry(db, "stuck.csv")
    original_log_processing(db, "stuck.csv", 0, 0, 1, "boom")
    before = db.read_bytes()
    shown = run_cli(tmp_path, "status")
    assert "no such column" not in shown.stdout + shown.stderr
    assert "Traceback" not in shown.stderr
    assert "last success" in shown.stdout, shown.stdout
    checked = run_cli(tmp_path, "check")
    assert "no such column" not in checked.stdout + checked.stderr
    assert "Traceback" not in checked.stderr
    assert db.read_bytes() == before
    assert query(tmp_path, "PRAGMA user_version") == [(0,)]

"""The original tool's API at its import paths, run as a site's REPL habits run it: from inside
``bobosync/``, in a subprocess, against the HTTPS simulator."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from tests.test_e2e import REPO, child_env, csv_dir, duty, now, query, user


def run_inside(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO / "bobosync",
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_the_original_readme_manual_testing_snippets_run_as_written(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    write_bobo_file(csv_dir(tmp_path), [export_row("BON", "00003", now())], now(), name="waiting.csv")
    # Verbatim from the original README's "Manual Testing" section.
    snippet = """
        # Test AtHoc connection
        from athoc_client import AtHocClient
        client = AtHocClient()
        print("Connection successful!")

        # Test user mapping
        from bobo_processor import BOBOProcessor
        processor = BOBOProcessor()
        users = processor.athoc_client.get_all_users_with_attributes(['Collar-Number'])
        print(f"Found {len(users)} users")

        # Test batch processing
        batch_files = processor.collect_csv_files()
        print(f"Found {len(batch_files)} files to process")
    """
    result = run_inside(snippet, sim_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Connection successful!", "Found 50 users", "Found 1 files to process"]
    # And "Manual User Mapping Sync", which worked on the original.
    sync = run_inside(
        """
        from bobo_processor import BOBOProcessor
        processor = BOBOProcessor()
        processor.connect_athoc()
        processor.sync_worker_mappings()
    """,
        sim_env,
    )
    assert sync.returncode == 0, sync.stderr
    assert query(tmp_path, "SELECT COUNT(*) FROM worker_mapping WHERE collar_id = employee_id") == [(50,)]


def test_the_original_methods_keep_their_signatures_and_return_shapes(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    code = f"""
        from datetime import datetime
        from athoc_client import AtHocClient
        from bobo_processor import BOBOProcessor, BOBODatabase, BOBOEntry
        import bobosync
        assert bobosync.AtHocClient is not AtHocClient  # the package keeps its own API
        processor = BOBOProcessor()
        assert processor.config["duty_status_field"] == "On-Duty-DTG", processor.config
        assert processor.logger.name == "BOBOProcessor"
        users = processor.athoc_client.get_all_users_with_attributes()
        assert isinstance(users, dict) and users["{user(1)}"]["LOGIN_ID"] == "{user(1)}", users["{user(1)}"]
        field = processor.duty_status_field
        done = processor.athoc_client.batch_update_duty_status(
            [{{"username": "{user(5)}", "datetime": datetime(2026, 1, 2, 3, 4, 5)}},
             {{"username": "nobody@force.example", "datetime": "x"}}], field)
        print(sorted(done.items()))
        print(processor.athoc_client.update_user_duty_status("{user(6)}", "02/01/2026 07:00:00", field))
        print(AtHocClient.format_datetime_for_athoc(datetime(2026, 1, 2, 3, 4, 5)))
        db = BOBODatabase(processor.config["db_path"])
        db.init_database()
        db.update_mapping("00007", "{user(7)}", " 00007")
        print(db.get_all_mappings())
        db.log_processing('f.csv', 3, 3, 0)
        db.log_processing('g.csv', 2, 0, 2, 'Retry attempt 1/5: Some users failed to update')
        print(db.track_file_retry('g.csv'), db.track_file_retry('g.csv'))
        db.clear_file_retry_tracking('g.csv')
        db.update_sync_tracking()
        print(db.get_last_sync_status(), db.get_last_sync_date() == datetime.now().strftime('%Y-%m-%d'))
        print(db.get_username_by_employee_id("00007"))
        print(processor.should_run_user_mapping_sync())
    """
    result = run_inside(code, sim_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"[('nobody@force.example', True), ('{user(5)}', True)]"
    assert lines[1] == "True"
    assert lines[2] == "02/01/2026 03:04:05"
    assert lines[3] == f"[('00007', '{user(7)}', ' 00007')]"
    assert lines[4] == "1 2"
    assert lines[5:] == ["completed True", user(7), "False"]  # "completed" is a success
    assert duty(simulator, 5) == "02/01/2026 03:04:05"
    assert duty(simulator, 6) == "02/01/2026 07:00:00"
    # What the original wrote for log_processing('f.csv', 3, 3, 0), not status='3'.
    assert query(
        tmp_path,
        "SELECT filename, entries_processed, success_count, error_count, errors, status "
        "FROM processing_log ORDER BY id",
    ) == [
        ("f.csv", 3, 3, 0, "", "success"),
        ("g.csv", 2, 0, 2, "Retry attempt 1/5: Some users failed to update", "failed"),
    ]
    assert query(tmp_path, "SELECT COUNT(*) FROM file_retry_tracking") == [(0,)]

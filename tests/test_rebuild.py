"""``bobosync rebuild-state`` and the first pass on a database from the original tool: the
already-processed files of the last hours go into the desired state, nothing is sent by it, and
the reconcile then clears what the original left behind (a book-off's time instead of nothing).
Real files, a real SQLite file from the original's schema, the HTTPS simulator, the real CLI."""

from __future__ import annotations

import dataclasses
import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bobosync.database import BOBODatabase
from bobosync.processor import BOBOProcessor
from bobosync.settings import Settings
from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from tests.legacy_db import create_legacy_database
from tests.test_e2e import run_cli

pytestmark = pytest.mark.usefixtures("propagate_logs")

FMT = "%d/%m/%Y %H:%M:%S"
DUTY = "On-Duty-DTG"


def user(i: int) -> str:
    return f"user{i:05d}@force.example"


def processed_file(folder: Path, rows: list[list[str]], age: timedelta, name: str) -> Path:
    written = datetime.now().replace(microsecond=0) - age
    path = write_bobo_file(folder, rows, written, name=name)
    os.utime(path, (written.timestamp(), written.timestamp()))
    return path


def original_install(settings: Settings, simulator: AtHocSimulator) -> tuple[datetime, datetime]:
    """What a site running the original has: its database, its processed files, and AtHoc
    holding a book-off's time for 00001 (the original wrote it instead of clearing)."""
    create_legacy_database(
        settings.db_path, {"00001": user(1), "00002": user(2)}, last_sync=(datetime.now(), "completed")
    )
    on = datetime.now().replace(microsecond=0) - timedelta(hours=3)
    off = on + timedelta(hours=1)
    processed_file(
        settings.processed_directory,
        [export_row("BON", "00001", on), export_row("BON", "00002", on)],
        timedelta(hours=2, minutes=50),
        "BOBO_a_output.csv",
    )
    processed_file(
        settings.processed_directory,
        [export_row("BOF", "00001", off)],
        timedelta(hours=1, minutes=50),
        "BOBO_b_output.csv",
    )
    # Older than the look-back: never read.
    processed_file(
        settings.processed_directory,
        [export_row("BON", "00001", on - timedelta(days=3))],
        timedelta(days=3),
        "BOBO_old_output.csv",
    )
    simulator.users[user(1)][DUTY] = off.strftime(FMT)  # what the original wrote for the BOF
    simulator.users[user(2)][DUTY] = on.strftime(FMT)
    return on, off


@pytest.fixture
def settings(sim_settings: Settings) -> Settings:
    return dataclasses.replace(sim_settings, move_processed_files=True)


def test_the_first_pass_on_an_original_database_rebuilds_once_and_the_reconcile_clears_the_leftover(
    simulator: AtHocSimulator, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    on, _ = original_install(settings, simulator)
    processor = BOBOProcessor(settings)
    try:
        with caplog.at_level(logging.INFO, logger="bobosync"):
            report = processor.run_pass()
        assert report.exit_code == 0, report.errors
        assert any("comes from the original tool" in r.getMessage() for r in caplog.records)
        assert simulator.users[user(1)][DUTY] == ""  # booked off: cleared at last
        assert simulator.users[user(2)][DUTY] == on.strftime(FMT)  # still on duty: kept
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="bobosync"):
            processor.run_pass()
        assert not any("comes from the original tool" in r.getMessage() for r in caplog.records)  # once only
    finally:
        processor.close()
    with BOBODatabase(settings.db_path, read_only=True) as db:
        assert db.rebuild_due() is None
        states = db.desired_states(["00001", "00002"])
    assert states["00001"].transaction.value == "BOF" and states["00001"].source_file == "BOBO_b_output.csv"
    assert states["00002"].transaction.value == "BON"


def test_rebuild_state_command_reads_the_given_hours_and_sends_nothing(
    simulator: AtHocSimulator, settings: Settings, tmp_path: Path
) -> None:
    original_install(settings, simulator)
    with BOBODatabase(settings.db_path):
        pass  # upgraded; a rebuild is now due, the command does it by hand
    before = len(simulator.requests_to("SyncByCommonNames"))
    folder = settings.processed_directory
    result = run_cli(tmp_path, "rebuild-state", "--from", str(folder), "--hours", "2.5")
    assert result.returncode == 0, result.stderr
    assert "1 file(s) of the last 2.5 h" in result.stdout  # only the BOF file is that recent
    assert "nothing sent" in result.stdout
    assert len(simulator.requests_to("SyncByCommonNames")) == before
    assert simulator.users[user(1)][DUTY] != ""  # the reconcile, not the rebuild, corrects AtHoc
    with BOBODatabase(settings.db_path, read_only=True) as db:
        assert set(db.desired_states(["00001", "00002"])) == {"00001"}
    missing = run_cli(tmp_path, "rebuild-state", "--from", str(tmp_path / "no-such-folder"))
    assert missing.returncode == 1
    assert "no-such-folder" in missing.stderr + missing.stdout

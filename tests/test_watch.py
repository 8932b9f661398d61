"""``--watch`` freshness: a files-only pass as soon as a file has settled, the AtHoc-side work
on its own schedule. Real folders and the HTTPS simulator; the loop's clocks are injected
(``now`` for file ages, ``monotonic`` for the poll schedule)."""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bobosync.processor import BOBOProcessor
from bobosync.settings import Settings
from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from bobosync.worker import Worker

DUTY = "On-Duty-DTG"
T0 = datetime.now(timezone.utc).replace(microsecond=0)

pytestmark = pytest.mark.usefixtures("propagate_logs")


class FakeMonotonic:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def settings(sim_settings: Settings) -> Settings:
    return dataclasses.replace(sim_settings, move_processed_files=True, file_settle_seconds=2.0)


def drop(settings: Settings, employee: str, modified: datetime, name: str) -> Path:
    event = (modified - timedelta(minutes=1)).astimezone().replace(tzinfo=None)
    path = write_bobo_file(settings.csv_directory, [export_row("BON", employee, event)], event, name=name)
    os.utime(path, (modified.timestamp(), modified.timestamp()))
    return path


def duty(sim: AtHocSimulator, i: int) -> str:
    found = sim.get_user(f"user{i:05d}@force.example")
    assert found is not None
    return found.get(DUTY, "")


def api_calls(sim: AtHocSimulator) -> list[str]:
    return [entry.path for entry in sim.journal]


def run_kinds(proc: BOBOProcessor) -> list[str]:
    return [run.kind for run in reversed(proc.db.recent_runs(limit=1000))]


def test_a_settled_file_is_sent_at_once_and_a_settling_one_when_its_settle_time_ends(
    simulator: AtHocSimulator, settings: Settings
) -> None:
    clock = FakeMonotonic()
    proc = BOBOProcessor(settings)
    worker = Worker(proc, 60, monotonic=clock, scan_seconds=10)
    try:
        worker.step(T0)  # the first iteration is a full pass: mapping sync, cleanup, reconcile
        assert worker.passes == 1
        simulator.clear_journal()

        drop(settings, "00001", T0 + timedelta(seconds=1.5), "a.csv")
        clock.value += 2
        wait = worker.step(T0 + timedelta(seconds=2))
        # Too young: nothing ran, and the loop looks again right when it has settled.
        assert worker.passes == 1 and api_calls(simulator) == []
        assert wait == pytest.approx(1.55, abs=0.01)

        clock.value += wait
        worker.step(T0 + timedelta(seconds=2 + wait))
        assert worker.passes == 2
        assert duty(simulator, 1) != ""
        # A files-only pass: one write, the token of the first pass, no listing, no cleanup.
        calls = api_calls(simulator)
        assert len(calls) == 1 and "SyncByCommonNames" in calls[0]
        assert not (settings.csv_directory / "a.csv").exists()

        clock.value += 1
        worker.step(T0 + timedelta(seconds=5))  # nothing new: nothing runs
        assert worker.passes == 2 and len(api_calls(simulator)) == 1
    finally:
        proc.close()


def test_athoc_side_work_keeps_its_schedule_and_a_kept_file_waits_for_the_full_pass(
    simulator: AtHocSimulator, settings: Settings
) -> None:
    clock = FakeMonotonic()
    proc = BOBOProcessor(settings)
    worker = Worker(proc, 60, monotonic=clock)
    try:
        worker.step(T0)
        full_runs = run_kinds(proc)
        assert "cleanup" in full_runs
        tokens = simulator.tokens_issued

        simulator.fail_next(20, 503, path_contains="SyncByCommonNames")
        drop(settings, "00002", T0, "b.csv")
        clock.value += 1
        worker.step(T0 + timedelta(seconds=3))
        assert worker.passes == 2
        assert (settings.csv_directory / "b.csv").exists() and duty(simulator, 2) == ""
        simulator.clear_faults()
        simulator.clear_journal()

        # Kept for the next pass: later looks within the poll interval send nothing more.
        for second in range(4, 30):
            clock.value += 1
            worker.step(T0 + timedelta(seconds=second))
        assert worker.passes == 2 and api_calls(simulator) == []
        # Files-only passes add no cleanup or reconcile run.
        assert [k for k in run_kinds(proc) if k != "pass"] == [k for k in full_runs if k != "pass"]

        clock.value += 60
        worker.step(T0 + timedelta(seconds=90))
        assert worker.passes == 3 and duty(simulator, 2) != ""
        assert not (settings.csv_directory / "b.csv").exists()
        assert run_kinds(proc).count("cleanup") == full_runs.count("cleanup") + 1
        assert simulator.tokens_issued == tokens  # one token for every pass
    finally:
        proc.close()


def test_watch_stops_after_the_pass_in_hand(settings: Settings) -> None:
    clock = FakeMonotonic()
    proc = BOBOProcessor(settings)
    worker = Worker(proc, 60, monotonic=clock)
    try:
        worker.request_stop()
        assert worker.run(watch=True) == 0
        assert worker.passes == 0
    finally:
        proc.close()

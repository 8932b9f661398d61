"""The pass in-process, with a chosen ``now``: resolution across files and batches, mapping
corner cases, crash recovery at the start of a pass, the REPL methods, and the watch loop."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
import threading
import time
from datetime import datetime, timedelta

import pytest

from bobosync.database import BOBODatabase
from bobosync.filestore import sha256_of
from bobosync.processor import BOBOProcessor
from bobosync.settings import Settings
from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from bobosync.worker import Worker

FMT = "%d/%m/%Y %H:%M:%S"
DUTY = "On-Duty-DTG"
NOW = datetime.now().replace(microsecond=0)


pytestmark = pytest.mark.usefixtures("propagate_logs")


@pytest.fixture
def settings(sim_settings: Settings) -> Settings:
    return dataclasses.replace(sim_settings, move_processed_files=True)


def processor_for(settings: Settings) -> BOBOProcessor:
    return BOBOProcessor(settings)


def sqlite(proc: BOBOProcessor) -> BOBODatabase:
    """The processor's store as the SQLite class (for the original tool's database methods)."""
    assert isinstance(proc.db, BOBODatabase)
    return proc.db


def duty(sim: AtHocSimulator, i: int) -> str:
    found = sim.get_user(f"user{i:05d}@force.example")
    assert found is not None
    return found.get(DUTY, "")


def test_ties_go_to_the_later_file_then_the_later_row(simulator: AtHocSimulator, settings: Settings) -> None:
    t = NOW - timedelta(minutes=5)
    csv = settings.csv_directory
    # Same second: file a says ON, file b (later) says OFF -> OFF. Within c: ON then OFF then ON -> ON.
    write_bobo_file(csv, [export_row("BON", "00001", t)], t, name="a.csv")
    write_bobo_file(csv, [export_row("BOF", "00001", t)], t, name="b.csv")
    write_bobo_file(
        csv,
        [export_row("BON", "00002", t), export_row("BOF", "00002", t), export_row("BON", "00002", t)],
        t,
        name="c.csv",
    )
    simulator.set_attribute("user00001@force.example", DUTY, "x")
    proc = processor_for(settings)
    try:
        report = proc.run_pass(NOW)
    finally:
        proc.close()
    assert report.exit_code == 0
    assert duty(simulator, 1) == ""
    assert duty(simulator, 2) == t.strftime(FMT)
    assert report.counts.superseded == 3


def test_a_backlog_sends_each_latest_state_once_and_order_holds(simulator: AtHocSimulator, settings: Settings) -> None:
    csv = settings.csv_directory
    for minute in range(5):
        t = NOW - timedelta(minutes=10 - minute)
        path = write_bobo_file(
            csv, [export_row("BON" if minute % 2 == 0 else "BOF", "00003", t)], t, name=f"f{minute}.csv"
        )
        stamp = (NOW - timedelta(minutes=20 - minute)).timestamp()
        import os

        os.utime(path, (stamp, stamp))
    proc = processor_for(dataclasses.replace(settings, batch_size=2))
    try:
        report = proc.run_pass(NOW)
    finally:
        proc.close()
    assert report.exit_code == 0 and report.counts.files_done == 5
    # More files than BATCH_SIZE: resolved together, the latest state sent once.
    assert len(simulator.requests_to("SyncByCommonNames")) == 1
    assert duty(simulator, 3) == (NOW - timedelta(minutes=6)).strftime(FMT)


def test_a_backlog_sends_each_persons_final_state_once_and_settles_every_file(
    simulator: AtHocSimulator, settings: Settings
) -> None:
    import os

    # Six files, three people in each, every person in several files; BATCH_SIZE=2.
    for n in range(6):
        t = NOW - timedelta(minutes=30 - n)
        rows = [export_row("BON" if (n + i) % 2 == 0 else "BOF", f"{i:05d}", t) for i in (1, 2, 3)]
        path = write_bobo_file(settings.csv_directory, rows, t, name=f"f{n}.csv")
        os.utime(path, (t.timestamp(), t.timestamp()))
    proc = processor_for(dataclasses.replace(settings, batch_size=2, max_users_per_request=2))
    try:
        report = proc.run_pass(NOW)
    finally:
        proc.close()
    with contextlib.closing(sqlite3.connect(settings.db_path)) as conn:
        logged = dict(conn.execute("SELECT filename, status FROM processing_log").fetchall())
    assert report.exit_code == 0 and report.counts.files_done == 6
    # One send of the final states (f5's), in chunks of MAX_USERS_PER_REQUEST; not 3 batches x 3.
    bodies = [e.json_body for e in simulator.requests_to("SyncByCommonNames")]
    assert [len(b) for b in bodies] == [2, 1]
    last = (NOW - timedelta(minutes=25)).strftime(FMT)
    assert [duty(simulator, i) for i in (1, 2, 3)] == [last, "", last]
    # The files wholly superseded by f5 are done too, each recorded once.
    assert logged == {f"f{n}.csv": "success" for n in range(6)}
    assert report.counts.superseded == 15  # 18 events, 3 sent
    assert not list(settings.csv_directory.glob("*.csv"))


def test_batch_size_zero_sends_everything_in_one_batch(simulator: AtHocSimulator, settings: Settings) -> None:
    for i in range(4):
        write_bobo_file(settings.csv_directory, [export_row("BON", f"{i + 1:05d}", NOW)], NOW, name=f"f{i}.csv")
    proc = processor_for(dataclasses.replace(settings, batch_size=0, max_users_per_request=3))
    try:
        assert proc.run_pass(NOW).exit_code == 0
    finally:
        proc.close()
    # One batch, split into chunks of MAX_USERS_PER_REQUEST rows.
    bodies = [e.json_body for e in simulator.requests_to("SyncByCommonNames")]
    assert [len(b) for b in bodies] == [3, 1]


def test_two_employee_ids_mapped_to_one_user_send_only_the_latest(
    simulator: AtHocSimulator, settings: Settings
) -> None:
    proc = processor_for(dataclasses.replace(settings, sync_mappings=False))
    try:
        sqlite(proc).update_mapping("A1", "user00004@force.example")
        sqlite(proc).update_mapping("B2", "user00004@force.example")
        write_bobo_file(
            settings.csv_directory,
            [export_row("BON", "A1", NOW - timedelta(minutes=1)), export_row("BOF", "B2", NOW - timedelta(minutes=2))],
            NOW,
            name="f.csv",
        )
        simulator.clear_journal()
        assert proc.run_pass(NOW).exit_code == 0
    finally:
        proc.close()
    (sync,) = simulator.requests_to("SyncByCommonNames")
    assert sync.json_body == [{"LOGIN_ID": "user00004@force.example", DUTY: (NOW - timedelta(minutes=1)).strftime(FMT)}]


def test_unmapped_ids_are_reported_once_per_pass_across_batches(
    simulator: AtHocSimulator, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(3):
        write_bobo_file(
            settings.csv_directory, [export_row("BON", "99999", NOW - timedelta(minutes=3 - i))], NOW, name=f"f{i}.csv"
        )
    proc = processor_for(dataclasses.replace(settings, batch_size=1))
    try:
        with caplog.at_level(logging.WARNING, logger="bobosync"):
            report = proc.run_pass(NOW)
    finally:
        proc.close()
    assert report.counts.unmapped == 1 and report.exit_code == 0
    assert sum("employee 99999 has no AtHoc user" in r.getMessage() for r in caplog.records) == 1


def test_a_pass_first_completes_moves_a_crashed_run_left(simulator: AtHocSimulator, settings: Settings) -> None:
    src = write_bobo_file(settings.csv_directory, [export_row("BON", "00005", NOW)], NOW, name="done.csv")
    dst = settings.processed_directory / "done.csv"
    with BOBODatabase(settings.db_path) as db:
        run_id = db.start_run("pass", NOW - timedelta(minutes=1), 4242)
        db.add_pending_move(str(src), str(dst), sha256_of(src), NOW - timedelta(minutes=1))
    proc = processor_for(settings)
    try:
        report = proc.run_pass(NOW)
        runs = {r.id: r.status for r in proc.db.recent_runs("pass")}
    finally:
        proc.close()
    assert report.exit_code == 0
    assert dst.exists() and not src.exists()
    assert report.counts.files == 0  # it was already done: not parsed or sent again
    assert runs[run_id] == "interrupted"


def test_repl_methods(simulator: AtHocSimulator, settings: Settings) -> None:
    path = write_bobo_file(settings.csv_directory, [export_row("BON", "00006", NOW), ["bad"]], NOW, name="r.csv")
    proc = processor_for(settings)
    try:
        assert proc.get_csv_files() == [path]
        entries = proc.parse_csv_file(path)
        assert [(e.employee_id, e.is_book_on) for e in entries] == [("00006", True)]
        assert proc.should_run_user_mapping_sync() is True
        assert proc.sync_worker_mappings() is True
        assert proc.should_run_user_mapping_sync() is False
        assert sqlite(proc).get_username_by_employee_id("00006") == "user00006@force.example"
        moved = proc.move_processed_file(path)
        assert moved == settings.processed_directory / "r.csv" and not path.exists()
    finally:
        proc.close()


def test_a_collar_number_shared_by_two_users_resolves_deterministically(
    simulator: AtHocSimulator, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.add_user({"LOGIN_ID": "aaa.duplicate@force.example", "Collar-Number": "00007"})
    proc = processor_for(settings)
    try:
        with caplog.at_level(logging.WARNING, logger="bobosync"):
            assert proc.sync_worker_mappings(NOW)
        assert sqlite(proc).get_username_by_employee_id("00007") == "aaa.duplicate@force.example"
    finally:
        proc.close()
    assert any("collar number 00007 is held by 2 AtHoc users" in r.getMessage() for r in caplog.records)


def test_mapping_sync_refuses_to_drop_more_than_half(simulator: AtHocSimulator, settings: Settings) -> None:
    proc = processor_for(settings)
    try:
        assert proc.sync_worker_mappings(NOW)
        with simulator.lock:
            for i in range(1, 30):
                simulator.users.pop(f"user{i:05d}@force.example")
        assert proc.sync_worker_mappings(NOW) is False
        assert proc.db.mapping_count() == 50
        state = proc.db.get_sync_state()
        assert state is not None and state.status == "error"
    finally:
        proc.close()


def test_incomplete_listing_keeps_the_old_mapping(simulator: AtHocSimulator, settings: Settings) -> None:
    big = [{"LOGIN_ID": f"u{i:05d}@x", "Collar-Number": f"{i:05d}"} for i in range(1, 2501)]
    proc = processor_for(settings)
    try:
        sqlite(proc).update_mapping("12345", "someone@x")
        with simulator.lock:
            for user in big:
                simulator.users[user["LOGIN_ID"]] = dict(user)
        simulator.ignore_offset = True
        assert proc.sync_worker_mappings(NOW) is False
        assert proc.db.all_mappings() == {"12345": "someone@x"}
    finally:
        proc.close()


def test_watch_loop_survives_a_failing_pass_and_stops_on_request(settings: Settings) -> None:
    class Flaky(BOBOProcessor):
        calls = 0

        def run_pass(self, now: object = None, *, files_only: bool = False) -> object:  # type: ignore[override]
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("boom")
            return super().run_pass(files_only=files_only)

    proc = Flaky(settings)
    worker = Worker(proc, interval=0.05)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(worker.run(watch=True)))
    thread.start()
    deadline = time.monotonic() + 20
    while Flaky.calls < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.request_stop()
    thread.join(20)
    proc.close()
    assert codes == [0] and Flaky.calls >= 3


def test_pass_purges_old_logs_processed_files_and_forgets_only_files_that_are_gone(
    simulator: AtHocSimulator, settings: Settings
) -> None:
    import os

    old = (NOW - timedelta(days=31)).timestamp()
    settings.processed_directory.mkdir(parents=True)
    stale = settings.processed_directory / "old.csv"
    stale.write_text("x")
    os.utime(stale, (old, old))
    recent = settings.processed_directory / "recent.csv"
    recent.write_text("x")
    settings.log_directory.mkdir(parents=True, exist_ok=True)
    old_log = settings.log_directory / f"bobo_processor.log.{(NOW - timedelta(days=11)):%Y-%m-%d}"
    old_log.write_text("x")
    proc = processor_for(settings)
    try:
        assert proc.run_pass(NOW).exit_code == 0
    finally:
        proc.close()
    assert not stale.exists() and recent.exists() and not old_log.exists()

    in_place = dataclasses.replace(settings, move_processed_files=False)
    still_here = write_bobo_file(settings.csv_directory, [export_row("BON", "00008", NOW)], NOW, name="here.csv")
    gone = write_bobo_file(settings.csv_directory, [export_row("BON", "00009", NOW)], NOW, name="gone.csv")
    proc = processor_for(in_place)
    try:
        assert proc.run_pass(NOW).counts.files_done == 2
        gone.unlink()
        report = proc.run_pass(NOW + timedelta(days=31))
        remembered = proc.db.remembered_by_name()
    finally:
        proc.close()
    assert report.counts.files == 0  # here.csv is still remembered: not processed again
    assert list(remembered) == [still_here.name]


def test_an_event_dated_far_in_the_future_is_held_back_not_applied(
    simulator: AtHocSimulator, settings: Settings
) -> None:
    write_bobo_file(
        settings.csv_directory,
        [
            export_row("BON", "00010", NOW + timedelta(days=400)),
            export_row("BON", "00011", NOW + timedelta(minutes=30)),
        ],
        NOW,
        name="f.csv",
    )
    proc = processor_for(dataclasses.replace(settings, max_retry_attempts=2))
    try:
        first = proc.run_pass(NOW)
        second = proc.run_pass(NOW)
        last = proc.db.desired_states(["00010", "00011"])
    finally:
        proc.close()
    assert first.counts.applied == 1 and first.counts.files_retry == 1 and first.exit_code == 1
    assert duty(simulator, 10) == "" and duty(simulator, 11) != ""  # 30 min ahead: a skewed clock, used
    assert list(last) == ["00011"]
    assert second.counts.files_failed == 1
    note = (settings.failed_files_directory / "f.csv.error.txt").read_text(encoding="utf-8")
    assert "ahead of this server's clock" in note

"""Single-instance concurrency: passes started together, and passes started beside ``--watch``.

The lock is the only thing keeping two bobosync processes from working the same folder; these
tests start real processes against one simulator and prove from the simulator's journal that
every update went out exactly once. Each employee appears in exactly one input row, so any
LOGIN_ID sent twice is a duplicate send, whatever the order of the passes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from bobosync.simulator import AtHocSimulator
from tests.conftest import TLSCerts
from tests.harness import (
    Event,
    InputBook,
    collar_map,
    duty_values,
    expected_duty_values,
    folder_problems,
    query,
    release_barrier,
    run_cli,
    sim_env_file,
    start_cli,
    sync_sends,
    wrapped_command,
)

USERS = 120


@pytest.fixture
def slow_sim(tls_certs: TLSCerts) -> Iterator[AtHocSimulator]:
    """A simulator slow enough (latency per request) that a pass holds the lock for a while."""
    sim = tls_certs.simulator(USERS)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def _write_files(book: InputBook, first: int, files: int, per_file: int) -> int:
    """``files`` files of ``per_file`` rows, employee IDs from ``first`` on, each used once."""
    employee = first
    for _ in range(files):
        events = []
        for _ in range(per_file):
            events.append(Event("BON" if employee % 3 else "BOF", f"{employee:05d}", book.clock.fresh()))
            employee += 1
        book.add(events)
    return employee


def _duplicates(sim: AtHocSimulator) -> dict[str, int]:
    counts = Counter(login for login, _ in sync_sends(sim))
    return {login: n for login, n in counts.items() if n > 1}


def _wait_for_first_run(db_path: Path, proc: subprocess.Popen[str]) -> None:
    """Until ``proc`` has recorded a run (so it holds the lock)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if db_path.exists():
            try:
                if query(db_path, "SELECT 1 FROM run_history WHERE pid = ?", proc.pid):
                    return
            except sqlite3.Error:
                pass  # being created
        time.sleep(0.02)
    raise AssertionError("the watch never started a pass")


def _check_outcome(sim: AtHocSimulator, book: InputBook, root: Path) -> None:
    assert _duplicates(sim) == {}
    sent = {login for login, _ in sync_sends(sim)}
    expected_logins = {f"user{int(e.employee_id):05d}@force.example" for e in book.events()}
    assert sent == expected_logins
    assert (
        folder_problems(
            book.files, root / "crown_files", root / "processed_files", root / "failed_files", move_processed=True
        )
        == []
    )
    logged = Counter(str(r[0]) for r in query(root / "bobo_mapping.db", "SELECT filename FROM processing_log"))
    assert logged == Counter(f.name for f in book.files)
    expected = expected_duty_values(
        book.events(), collar_map(sim), {login: "" for login in duty_values(sim)}, now=datetime.now(), cleanup_hours=0
    )
    assert duty_values(sim) == expected


def test_five_passes_started_at_the_same_instant_one_works_the_others_leave_at_once(
    slow_sim: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    root = tmp_path / "work"
    env_file = sim_env_file(
        slow_sim, root, tls_certs.ca_pem, {"MOVE_PROCESSED_FILES": "true", "BATCH_SIZE": "3", "AUTO_CLEANUP_HOURS": "0"}
    )
    book = InputBook(root / "crown_files")
    _write_files(book, 1, files=20, per_file=5)
    slow_sim.latency = 0.1  # the winner's pass takes a second or more: the others meet the lock
    barrier = tmp_path / "barrier" / "go"
    barrier.parent.mkdir()
    procs = [start_cli(wrapped_command(env_file, wait_for=barrier), root) for _ in range(5)]
    try:
        release_barrier(barrier, len(procs))
        order: list[int] = []  # indexes of the processes, in the order they ended
        deadline = time.monotonic() + 90
        while len(order) < len(procs) and time.monotonic() < deadline:
            order += [i for i, p in enumerate(procs) if i not in order and p.poll() is not None]
            time.sleep(0.005)
        outputs = [p.communicate(timeout=30) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * 5, [err[-2000:] for _, err in outputs]
    workers = [i for i, (_, err) in enumerate(outputs) if "pass ok" in err]
    assert len(workers) == 1, [err[-1000:] for _, err in outputs]
    winner = workers[0]
    for i, (_, err) in enumerate(outputs):
        if i != winner:
            assert "holds the lock" in err and "pass " not in err, err
    # The others left while the winner was still working (they never waited for the lock).
    assert order[-1] == winner, order
    assert slow_sim.tokens_issued == 1  # only the winner even talked to AtHoc
    runs = query(root / "bobo_mapping.db", "SELECT kind, status, pid FROM run_history WHERE kind = 'pass'")
    assert runs == [("pass", "ok", procs[winner].pid)]
    _check_outcome(slow_sim, book, root)


def test_passes_started_by_hand_beside_watch_never_send_anything_twice(
    slow_sim: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    root = tmp_path / "work"
    env_file = sim_env_file(
        slow_sim, root, tls_certs.ca_pem, {"MOVE_PROCESSED_FILES": "true", "BATCH_SIZE": "2", "AUTO_CLEANUP_HOURS": "0"}
    )
    book = InputBook(root / "crown_files")
    slow_sim.latency = 0.02
    watch = start_cli(wrapped_command(env_file, "--watch", "--interval", "0.2"), root)
    manual: list[subprocess.CompletedProcess[str]] = []
    employee = 1
    try:
        _wait_for_first_run(root / "bobo_mapping.db", watch)
        for _ in range(4):  # files arrive in waves; each time someone also runs a pass by hand
            employee = _write_files(book, employee, files=4, per_file=6)
            manual.append(run_cli(env_file))
        deadline = time.monotonic() + 60
        while list((root / "crown_files").glob("*.csv")) and time.monotonic() < deadline:
            time.sleep(0.05)
        manual.append(run_cli(env_file))
        watch.send_signal(signal.SIGTERM)
        _, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, err[-3000:]
    for result in manual:
        assert result.returncode == 0 and "holds the lock" in result.stderr, result.stderr[-2000:]
        assert "pass " not in result.stderr
    pids = {r[0] for r in query(root / "bobo_mapping.db", "SELECT DISTINCT pid FROM run_history")}
    assert pids == {watch.pid}
    _check_outcome(slow_sim, book, root)


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL does not exist on Windows")
def test_a_pass_killed_while_others_wait_lets_the_next_one_finish_the_work(
    slow_sim: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    """A dead process's lock is gone with it: the next pass takes it at once and completes
    what the dead one left, without sending what was already recorded as applied."""
    root = tmp_path / "work"
    env_file = sim_env_file(
        slow_sim, root, tls_certs.ca_pem, {"MOVE_PROCESSED_FILES": "true", "BATCH_SIZE": "2", "AUTO_CLEANUP_HOURS": "0"}
    )
    book = InputBook(root / "crown_files")
    _write_files(book, 1, files=8, per_file=4)
    slow_sim.latency = 0.05
    first = start_cli(wrapped_command(env_file), root)
    deadline = time.monotonic() + 60
    while len(list((root / "processed_files").glob("*.csv"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    second = run_cli(env_file)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "holds the lock" not in second.stderr
    statuses = dict(
        (r[0], r[1]) for r in query(root / "bobo_mapping.db", "SELECT pid, status FROM run_history WHERE kind = 'pass'")
    )
    assert statuses[first.pid] == "interrupted"
    # Files settled before the kill were never sent again; at most the batch in flight was.
    sent = Counter(login for login, _ in sync_sends(slow_sim))
    assert sum(1 for n in sent.values() if n > 1) <= 8  # one batch of 2 files x 4 rows
    slow_sim.clear_journal()
    assert run_cli(env_file).returncode == 0
    assert sync_sends(slow_sim) == []
    assert (
        folder_problems(
            book.files, root / "crown_files", root / "processed_files", root / "failed_files", move_processed=True
        )
        == []
    )

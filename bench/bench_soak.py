"""Benchmark: a ``--watch`` soak with files arriving every few seconds and faults injected.

Runs ``python -m bobosync --watch --interval 2`` as a real child process against an AtHoc
simulator in this process (plain HTTP on loopback, 50 ms added to every request) for
``--minutes`` (default 30). Meanwhile:

* a writer thread drops a BOBO export file (1..ROWS rows, random employees, event times
  moving forward) into CSV_DIRECTORY every ``--every`` seconds on average (uniform 1..2x-1 s);
* every ``--fault-every`` seconds the next fault of a fixed cycle is injected: 503 x2 with
  Retry-After on SyncByCommonNames (absorbed by the retries), a dropped connection, every token
  expired (401, new token), a 503 storm that outlasts the retries (the pass gives up, the
  files wait), a response cut short mid-body, AtHoc down for 10 s (stopped and restarted on the
  same port), a row AtHoc rejects for 3 s (the file is kept for retry);
* the child's resident memory (``VmRSS`` from ``/proc/<pid>/status``) is sampled every
  ``--sample`` seconds.

At the end the writer stops, the faults are cleared, the child is given time to process what
is left, then gets SIGTERM (it finishes its pass and exits 0). Checked:

* memory flat: median RSS of the last 5 minutes minus median RSS of the first 5 minutes
  after a 1-minute warm-up (both windows scaled down for short runs) <= 5 MiB;
* no loss: every file written is in the processed folder (none failed, none left), the
  processing_log rows add up to every row written, and every employee's duty value in AtHoc
  equals their latest event (book on: its time; book off: empty).

Run: ``python bench/bench_soak.py [--minutes 30]``; ``--quick`` is ``--minutes 2``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Optional, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import child_env, machine_line, median, verdict, write_env

from bobosync.simulator import AtHocSimulator, export_row, make_users, write_bobo_file

DUTY = "On-Duty-DTG"
FORMAT = "%d/%m/%Y %H:%M:%S"


def login(i: int) -> str:
    return f"user{i:05d}@force.example"


@dataclass
class Writer:
    """Drops BOBO files into ``folder`` and remembers the latest event per employee."""

    folder: Path
    users: int
    every: float
    max_rows: int
    seed: int = 1
    files: int = 0
    rows: int = 0
    latest: dict[int, tuple[datetime, str]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    error: Optional[BaseException] = None

    def run(self) -> None:
        rnd = random.Random(self.seed)
        try:
            while not self.stop.wait(rnd.uniform(1.0, max(1.0, 2 * self.every - 1.0))):
                self.write_one(rnd)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def write_one(self, rnd: random.Random) -> None:
        now = datetime.now().replace(microsecond=0)
        rows = []
        for _ in range(rnd.randint(1, self.max_rows)):
            employee = rnd.randint(1, self.users)
            last = self.latest.get(employee)
            # Strictly later than the employee's previous event, so "latest" is never a tie.
            when = now if last is None or last[0] < now else last[0] + timedelta(seconds=1)
            on_duty = last is not None and last[1] == "BON"
            transaction = ("BOF" if on_duty else "BON") if rnd.random() < 0.9 else ("BON" if on_duty else "BOF")
            rows.append(export_row(transaction, f"{employee:05d}", when))
            self.latest[employee] = (when, transaction)
        write_bobo_file(self.folder, rows, now)
        self.files += 1
        self.rows += len(rows)


class Faults:
    """The fault cycle; ``inject()`` applies the next one and returns its name."""

    def __init__(self, sim: AtHocSimulator, users: int) -> None:
        self.sim = sim
        self.users = users
        self.index = 0
        self.injected: list[str] = []
        self._cycle: list[tuple[str, Callable[[], None]]] = [
            ("503 x2 with Retry-After on SyncByCommonNames", self._retry_after),
            ("dropped connection on SyncByCommonNames", self._drop),
            ("every token expired", self._expire),
            ("503 storm outlasting the retries", self._storm),
            ("response cut short mid-body (users/search)", self._truncate),
            ("AtHoc down for 10 s", self._outage),
            ("a row rejected for 3 s", self._row_error),
        ]

    def inject(self) -> str:
        name, action = self._cycle[self.index % len(self._cycle)]
        self.index += 1
        action()
        self.injected.append(name)
        return name

    def _retry_after(self) -> None:
        self.sim.fail_next(2, 503, retry_after=0.5, path_contains="SyncByCommonNames")

    def _drop(self) -> None:
        self.sim.fail_next(1, drop=True, path_contains="SyncByCommonNames")

    def _expire(self) -> None:
        self.sim.expire_tokens()

    def _storm(self) -> None:
        self.sim.fail_next(12, 503)

    def _truncate(self) -> None:
        self.sim.fail_next(1, 200, truncate=True, path_contains="users/search")

    def _outage(self) -> None:
        self.sim.stop()
        time.sleep(10)
        self.sim.start()

    def _row_error(self) -> None:
        victim = login(random.Random(self.index).randint(1, self.users))
        with self.sim.lock:
            self.sim.row_errors[victim] = "Simulated: attribute value rejected"
        time.sleep(3)
        with self.sim.lock:
            self.sim.row_errors.pop(victim, None)


def rss_mib(pid: int) -> Optional[float]:
    """The process's resident set (``VmRSS``) in MiB, or None (gone, or no /proc)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@contextmanager
def watch_process(env_file: Path, interval: float, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bobosync", "--env-file", str(env_file), "--watch", "--interval", f"{interval:g}"],
            cwd=env_file.parent,
            env=child_env(),
            stdout=sink,
            stderr=sink,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def wait_until_drained(csv_dir: Path, proc: subprocess.Popen[bytes], limit: float, settle: float) -> bool:
    """True once CSV_DIRECTORY has held no ``*.csv`` for ``settle`` seconds."""
    deadline = time.monotonic() + limit
    empty_since: Optional[float] = None
    while time.monotonic() < deadline and proc.poll() is None:
        if any(csv_dir.glob("*.csv")):
            empty_since = None
        elif empty_since is None:
            empty_since = time.monotonic()
        elif time.monotonic() - empty_since >= settle:
            return True
        time.sleep(0.5)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="soak length (default 30)")
    parser.add_argument("--quick", action="store_true", help="a 2-minute smoke run")
    parser.add_argument("--users", type=int, default=500, help="AtHoc users / employees (default 500)")
    parser.add_argument("--interval", type=float, default=2.0, help="--watch interval (default 2 s)")
    parser.add_argument("--every", type=float, default=3.0, help="mean seconds between files (default 3)")
    parser.add_argument("--rows", type=int, default=20, help="at most this many rows per file (default 20)")
    parser.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults (default 60)")
    parser.add_argument("--sample", type=float, default=10.0, help="RSS sampling period (default 10 s)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added per request (default 0.05)")
    parser.add_argument("--workdir", type=Path, help="keep the working folder here (default: a temporary one)")
    args = parser.parse_args()
    if args.quick:
        args.minutes = 2.0
        args.fault_every = min(args.fault_every, 12.0)
    out = sys.stdout
    duration = args.minutes * 60
    # Windows scaled to the run: 1 min warm-up and 5 min windows for 30 min.
    warmup = min(60.0, duration / 10)
    window = min(300.0, duration / 4)
    out.write(f"{machine_line()}\n")
    out.write(
        f"soak: {args.minutes:g} min, --watch --interval {args.interval:g}, a file every ~{args.every:g} s "
        f"(1..{args.rows} rows, {args.users} employees), a fault every {args.fault_every:g} s, "
        f"simulator latency {args.latency * 1000:.0f} ms, RSS every {args.sample:g} s\n"
    )
    out.flush()

    folder = args.workdir or Path(tempfile.mkdtemp(prefix="bobo-soak-"))
    folder.mkdir(parents=True, exist_ok=True)
    sim = AtHocSimulator(users=make_users(args.users), latency=args.latency)
    sim.start()
    try:
        return soak(args, out, folder, sim, duration, warmup, window)
    finally:
        sim.stop()
        if args.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)


def soak(
    args: argparse.Namespace,
    out: TextIO,
    folder: Path,
    sim: AtHocSimulator,
    duration: float,
    warmup: float,
    window: float,
) -> int:
    env_file = write_env(
        folder,
        sim.url,
        FILE_SETTLE_SECONDS="1",
        HTTP_RETRY_ATTEMPTS="3",
        HTTP_RETRY_BACKOFF_SECONDS="0.2",
        REQUEST_TIMEOUT_SECONDS="10",
    )
    csv_dir = folder / "crown_files"
    writer = Writer(csv_dir, args.users, args.every, args.rows)
    faults = Faults(sim, args.users)
    samples: list[tuple[float, float]] = []
    with watch_process(env_file, args.interval, folder / "child.log") as proc:
        started = time.monotonic()
        writer_thread = threading.Thread(target=writer.run, name="bobo-writer", daemon=True)
        writer_thread.start()
        next_sample = started
        next_fault = started + args.fault_every
        fault_thread: Optional[threading.Thread] = None
        while time.monotonic() - started < duration and proc.poll() is None:
            now = time.monotonic()
            if now >= next_sample:
                rss = rss_mib(proc.pid)
                if rss is not None:
                    samples.append((now - started, rss))
                next_sample += args.sample
            if now >= next_fault and (fault_thread is None or not fault_thread.is_alive()):
                fault_thread = threading.Thread(target=faults.inject, name="bobo-fault", daemon=True)
                fault_thread.start()
                next_fault = now + args.fault_every
            time.sleep(0.2)
        writer.stop.set()
        writer_thread.join(30)
        if fault_thread is not None:
            fault_thread.join(30)
        sim.clear_faults()
        with sim.lock:
            sim.row_errors.clear()
        if proc.poll() is not None:
            out.write(f"MISS  the --watch process ended early with exit code {proc.returncode}\n")
            return 1
        drained = wait_until_drained(csv_dir, proc, limit=180, settle=3 * args.interval)
        final_rss = rss_mib(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            code = -1
    if writer.error is not None:
        raise writer.error
    return judge(out, folder, sim, writer, faults, samples, final_rss, code, drained, duration, warmup, window)


def judge(
    out: TextIO,
    folder: Path,
    sim: AtHocSimulator,
    writer: Writer,
    faults: Faults,
    samples: list[tuple[float, float]],
    final_rss: Optional[float],
    code: int,
    drained: bool,
    duration: float,
    warmup: float,
    window: float,
) -> int:
    ok = True
    processed = sorted((folder / "processed_files").glob("*.csv"))
    failed = sorted((folder / "failed_files").glob("*.csv"))
    waiting = sorted((folder / "crown_files").glob("*.csv"))
    with sqlite3.connect(folder / "bobo_mapping.db") as conn:
        logged_files, logged_rows = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(records_processed), 0) FROM processing_log"
        ).fetchone()
        passes = dict(
            conn.execute("SELECT status, COUNT(*) FROM run_history WHERE kind = 'pass' GROUP BY status").fetchall()
        )
    journal = sim.journal
    out.write(
        f"written: {writer.files} files, {writer.rows} rows; faults injected: {len(faults.injected)} "
        f"({', '.join(sorted(set(faults.injected)))})\n"
        f"passes: {sum(passes.values())} ({', '.join(f'{k} {v}' for k, v in sorted(passes.items()))}); "
        f"AtHoc requests: {len(journal)} ({sum(1 for e in journal if e.status != 200)} not 200); "
        f"child exit code {code}\n"
    )
    ok &= verdict(
        out,
        "files accounted for",
        f"{len(processed)} processed + {len(failed)} failed + {len(waiting)} waiting",
        f"{writer.files} written",
        None,
        "all processed, none failed or left",
        len(processed) == writer.files and not failed and not waiting,
    )
    ok &= verdict(
        out,
        "rows accounted for (processing_log)",
        f"{logged_rows} rows in {logged_files} files",
        f"{writer.rows} rows in {writer.files} files",
        None,
        "equal",
        (logged_rows, logged_files) == (writer.rows, writer.files),
    )
    wrong = []
    with sim.lock:
        for i in range(1, writer.users + 1):
            event = writer.latest.get(i)
            expected = "" if event is None or event[1] == "BOF" else event[0].strftime(FORMAT)
            actual = sim.users[login(i)].get(DUTY, "")
            if actual != expected:
                wrong.append(f"{login(i)}: {actual!r} != {expected!r}")
    ok &= verdict(
        out,
        "AtHoc duty values",
        f"{writer.users - len(wrong)} of {writer.users} as expected",
        "latest event of each employee",
        None,
        "all",
        not wrong,
    )
    for line in wrong[:10]:
        out.write(f"      {line}\n")
    ok &= verdict(
        out, "clean stop", f"exit code {code}, drained: {drained}", "SIGTERM", None, "0, drained", code == 0 and drained
    )

    if not samples:
        out.write("RSS not sampled (needs /proc/<pid>/status: Linux)\n")
        return 0 if ok else 1
    steady = [(t, r) for t, r in samples if t >= warmup]
    first = [r for t, r in steady if t < warmup + window]
    last = [r for t, r in steady if t >= duration - window]
    growth = median(last) - median(first)
    out.write(
        f"RSS samples: {len(samples)}; start {samples[0][1]:.1f} MiB, after warm-up min "
        f"{min(r for _, r in steady):.1f} max {max(r for _, r in steady):.1f} MiB, final "
        f"{final_rss if final_rss is not None else float('nan'):.1f} MiB\n"
        f"RSS over time (min: MiB): "
        + " ".join(f"{t / 60:.0f}:{r:.1f}" for t, r in samples[:: max(1, len(samples) // 30)])
        + "\n"
    )
    ok &= verdict(
        out,
        "RSS growth",
        f"{growth:+.2f} MiB (median of last {window / 60:g} min {median(last):.1f} MiB)",
        f"median of first {window / 60:g} min after {warmup / 60:g} min warm-up {median(first):.1f} MiB",
        median(last) / median(first),
        "growth <= 5 MiB",
        growth <= 5.0,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: freshness in ``--watch`` and the AtHoc requests of an idle hour.

Runs ``python -m bobosync --watch`` as a real child process (POLL_INTERVAL_SECONDS=60,
FILE_SETTLE_SECONDS=2) against an AtHoc simulator in this process (plain HTTP on loopback,
``--latency`` added to every request). After the first full pass, ``--files`` BOBO files (one
book-on each, a different employee each) are dropped 2 to 5 s apart; a thread reads AtHoc every
20 ms and notes when each value appears. The figure is the file-to-AtHoc latency (from the file
written to its value readable in AtHoc), median and max; the baseline is the physical limit,
FILE_SETTLE_SECONDS plus one request, and the latency of the loop before issue 13 (a pass every
POLL_INTERVAL_SECONDS: on average half of it, at worst all of it, on top).

Then the idle load: a second child with short schedules (POLL_INTERVAL_SECONDS=5,
RECONCILE_MINUTES=0.25, a 40 s token) idles for ``--idle`` seconds; its AtHoc requests are
counted by kind and compared with the formula

    requests per idle hour = tokens + cleanups + reconcile listing pages
      tokens  = ceil(3600 / (token lifetime - renewal margin))   (margin: max(30 s, 10 %))
      cleanups = 3600 / POLL_INTERVAL_SECONDS - reconciles       (a reconcile's listing serves the cleanup;
                 each reads ceil(users on duty / 1000) pages, here 1)
      pages   = reconciles x ceil(users / 1000),  reconciles = 60 / RECONCILE_MINUTES

and the formula is printed for the defaults (60 s, 15 min, a 1 h token). The 1-second scans
between passes ask nothing of AtHoc.

Run: ``python bench/bench_freshness.py`` (about 2 min); ``--quick`` drops 8 files and idles 30 s.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import child_env, machine_line, median, verdict, write_env

from bobosync.simulator import AtHocSimulator, export_row, make_users, write_bobo_file
from bobosync.simulator.server import JournalEntry

DUTY = "On-Duty-DTG"
PAGE_SIZE = 1000


def login(i: int) -> str:
    return f"user{i:05d}@force.example"


def start_watch(env_file: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "bobosync", "--env-file", str(env_file), "--watch"],
            cwd=env_file.parent,
            env=child_env(),
            stdout=sink,
            stderr=sink,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(check: Callable[[], bool], limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def renewal_period(lifetime: float) -> float:
    return lifetime - max(30.0, 0.1 * lifetime)


def idle_formula(hours: float, poll: float, reconcile_minutes: float, lifetime: float, users: int) -> dict[str, float]:
    seconds = hours * 3600
    reconciles = seconds / 60 / reconcile_minutes
    return {
        "token": math.ceil(seconds / renewal_period(lifetime)),
        "cleanup": seconds / poll - reconciles,
        "listing": reconciles * math.ceil(users / PAGE_SIZE),
    }


def kind(entry: JournalEntry) -> str:
    if "token" in entry.path.lower():
        return "token"
    if "search" in entry.path:
        criteria = next((v for k, v in entry.query.items() if k.lower() == "criteria"), "")
        # The cleanup reads the users holding a duty value ("<field> pr"); the reconcile, everyone.
        return "cleanup" if criteria else "listing"
    return "other"


def freshness(out: TextIO, folder: Path, args: argparse.Namespace) -> bool:
    sim = AtHocSimulator(users=make_users(args.users), latency=args.latency)
    sim.start()
    proc: Optional[subprocess.Popen[bytes]] = None
    try:
        env_file = write_env(folder, sim.url, POLL_INTERVAL_SECONDS="60", FILE_SETTLE_SECONDS="2")
        proc = start_watch(env_file, folder / "child.log")
        if not wait_for(lambda: bool(sim.requests_to("search")), 60):
            out.write("the first full pass did not list AtHoc's users within 60 s\n")
            return False
        time.sleep(3)  # the first full pass ends
        written: dict[int, float] = {}
        seen: dict[int, float] = {}
        done = threading.Event()

        def watch_athoc() -> None:
            while not done.is_set():
                for i in list(written):
                    if i not in seen and (sim.get_user(login(i)) or {}).get(DUTY):
                        seen[i] = time.time()
                time.sleep(0.02)

        reader = threading.Thread(target=watch_athoc, daemon=True)
        reader.start()
        rnd = random.Random(13)
        for n in range(args.files):
            employee = n + 1
            now = datetime.now().replace(microsecond=0)
            write_bobo_file(folder / "crown_files", [export_row("BON", f"{employee:05d}", now)], now)
            written[employee] = time.time()
            time.sleep(rnd.uniform(2.0, 5.0))
        wait_for(lambda: len(seen) == len(written), 70)
        done.set()
        reader.join()
        latencies = [seen[i] - written[i] for i in written if i in seen]
        missing = len(written) - len(latencies)
        med, worst = median(latencies), max(latencies, default=math.inf)
        limit = 2 + args.latency
        ok = verdict(
            out,
            "freshness: file written -> value in AtHoc, median",
            f"{med:.2f} s over {len(written)} files ({missing} never arrived)",
            f"physical limit {limit:.2f} s; a pass every 60 s: {limit + 30:.0f} s",
            med / limit,
            "<= 4 s",
            med <= 4 and missing == 0,
        )
        ok &= verdict(
            out,
            "freshness: max",
            f"{worst:.2f} s",
            f"a pass every 60 s: {limit + 60:.0f} s",
            worst / limit,
            "<= 7 s",
            worst <= 7,
        )
        return ok
    finally:
        if proc is not None:
            stop(proc)
        sim.stop()


def idle_load(out: TextIO, folder: Path, args: argparse.Namespace) -> bool:
    lifetime, poll, reconcile = 40.0, 5.0, 0.25
    sim = AtHocSimulator(users=make_users(args.users), latency=0.0, token_lifetime=lifetime)
    sim.start()
    proc: Optional[subprocess.Popen[bytes]] = None
    try:
        env_file = write_env(
            folder,
            sim.url,
            POLL_INTERVAL_SECONDS=f"{poll:g}",
            FILE_SETTLE_SECONDS="2",
            RECONCILE_MINUTES=f"{reconcile:g}",
        )
        proc = start_watch(env_file, folder / "child.log")
        if not wait_for(lambda: bool(sim.requests_to("search")), 60):
            out.write("the idle child did not list AtHoc's users within 60 s\n")
            return False
        time.sleep(1)
        sim.clear_journal()
        time.sleep(args.idle)
        measured = Counter(kind(entry) for entry in sim.journal)
        hours = args.idle / 3600
        expected = idle_formula(hours, poll, reconcile, lifetime, args.users)
        total, formula = sum(measured.values()), sum(expected.values())
        shown = ", ".join(f"{k} {measured.get(k, 0)}" for k in ("token", "cleanup", "listing", "other"))
        wanted = ", ".join(f"{k} {v:.1f}" for k, v in expected.items())
        # Phase: the window may hold one full pass or token more or less than its average.
        ok = verdict(
            out,
            f"idle --watch, {args.idle:g} s at POLL 5 s, RECONCILE 0.25 min, 40 s token: requests",
            f"{total} ({shown})",
            f"formula {formula:.1f} ({wanted})",
            total / formula,
            "= formula (+-2 for the window's phase)",
            abs(total - formula) <= 2 and not measured["other"],
        )
        defaults = idle_formula(1, 60, 15, 3600, args.users)
        out.write(
            f"      formula at the defaults (POLL 60 s, RECONCILE 15 min, 1 h token, {args.users} users): "
            f"{sum(defaults.values()):.0f} requests per idle hour "
            f"({', '.join(f'{k} {v:.0f}' for k, v in defaults.items())})\n"
        )
        return ok
    finally:
        if proc is not None:
            stop(proc)
        sim.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--files", type=int, default=20, help="files dropped (default 20)")
    parser.add_argument("--users", type=int, default=500, help="AtHoc users / employees (default 500)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added per request (default 0.05)")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of the idle window (default 60)")
    parser.add_argument("--quick", action="store_true", help="8 files, 30 s idle")
    parser.add_argument("--workdir", type=Path, help="keep the working folders here (default: temporary)")
    args = parser.parse_args()
    if args.quick:
        args.files, args.idle = 8, 30.0
    out = sys.stdout
    out.write(f"{machine_line()}\n")
    out.flush()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bobo-fresh-"))
    try:
        ok = freshness(out, root / "fresh", args)
        ok &= idle_load(out, root / "idle", args)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

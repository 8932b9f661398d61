"""Benchmark: the closed loop at 10,000 users, as whole processes.

An organization of USERS users, every one a BOBO employee with a desired state (one file books
them all on, a third of them off again), then:

* **a reconcile pass**: RECONCILE_MINUTES has passed, so the pass reads every user (one paged
  listing, which also refreshes the mapping), compares all of them with the desired state and
  repairs the few that an "operator" changed by hand; the auto-cleanup shares that listing;
* **an ordinary pass** with nothing to do: no reconcile due, so the auto-cleanup asks AtHoc
  only who has a duty value (``FIELD pr``) and judges the values itself.

Figures: wall and CPU time of each child (``os.wait4``), its AtHoc requests (from the
simulator's journal) against ceil(users / 1000), and the repairs. Targets: a reconcile pass of
10,000 users costs 10 listing requests (ceil(users / 1000)) plus one request per 1,000
repairs, and at most 5 s of CPU; an ordinary pass at most 1.5 s of CPU.

Run: ``python bench/bench_reconcile.py [--users 10000] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sqlite3
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import ChildRun, machine_line, median, run_cli, verdict, write_env

from bobosync.simulator import AtHocSimulator, export_row, make_users, write_bobo_file

FMT = "%d/%m/%Y %H:%M:%S"
DUTY = "On-Duty-DTG"
EDITED = 25  # users an "operator" changes by hand before each reconcile


def search_requests(sim: AtHocSimulator, since: int) -> tuple[int, int, int]:
    """(full listing pages, Criteria listings, SyncByCommonNames) in the journal since ``since``."""
    entries = sim.journal[since:]
    pages = sum(1 for e in entries if "search/basic" in e.path and "Criteria" not in e.query)
    criteria = sum(1 for e in entries if "search/basic" in e.path and "Criteria" in e.query)
    syncs = sum(1 for e in entries if "SyncByCommonNames" in e.path)
    return pages, criteria, syncs


def force_reconcile_due(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE run_history SET started_at = '2000-01-01T00:00:00.000000+00:00' WHERE kind = 'reconcile'")


def main(out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    out.write(f"bench_reconcile: {args.users} users; {machine_line()}\n")
    folder = Path(tempfile.mkdtemp(prefix="bobosync-bench-reconcile-"))
    sim = AtHocSimulator(make_users(args.users))
    ok = True
    try:
        sim.start()
        env = write_env(folder, sim.url, BATCH_SIZE="0", RECONCILE_MINUTES="15")
        now = datetime.now().replace(microsecond=0)
        on = now - timedelta(minutes=30)
        rows = [export_row("BON", f"{i:05d}", on) for i in range(1, args.users + 1)]
        rows += [export_row("BOF", f"{i:05d}", on + timedelta(minutes=1)) for i in range(1, args.users + 1, 3)]
        write_bobo_file(folder / "crown_files", rows, now - timedelta(minutes=5), name="all.csv")
        first = run_cli(env, log_to=folder / "setup.log")
        if first.returncode != 0:
            out.write(f"setup pass failed ({first.returncode}); see {folder / 'setup.log'}\n")
            return 1

        reconciles: list[ChildRun] = []
        ordinary: list[ChildRun] = []
        counted: list[tuple[int, int, int]] = []
        repaired_ok = True
        for run in range(args.runs):
            for i in range(1, EDITED + 1):
                sim.set_attribute(f"user{i * 7 + run:05d}@force.example", DUTY, "01/01/2026 09:00:00")
            force_reconcile_due(folder / "bobo_mapping.db")
            before = len(sim.journal)
            reconciles.append(run_cli(env, log_to=folder / "reconcile.log"))
            counted.append(search_requests(sim, before))
            repaired_ok &= all(
                (sim.get_user(f"user{i * 7 + run:05d}@force.example") or {}).get(DUTY) != "01/01/2026 09:00:00"
                for i in range(1, EDITED + 1)
            )
            before = len(sim.journal)
            ordinary.append(run_cli(env, log_to=folder / "ordinary.log"))
            pages, criteria, syncs = search_requests(sim, before)
            ok &= pages == 0 and syncs == 0
        pages_wanted = math.ceil(args.users / 1000)
        pages, criteria, syncs = counted[-1]
        on_duty = args.users - len(range(1, args.users + 1, 3))
        rec_cpu = median([r.cpu for r in reconciles])
        ord_cpu = median([r.cpu for r in ordinary])
        out.write(
            f"reconcile pass: wall median {median([r.wall for r in reconciles]):.2f} s, CPU median "
            f"{rec_cpu:.2f} s, max RSS {max(r.maxrss_mib for r in reconciles):.0f} MiB; requests: {pages} "
            f"listing page(s), {criteria} Criteria listing(s), {syncs} SyncByCommonNames; "
            f"{EDITED} edits repaired: {repaired_ok}\n"
        )
        out.write(
            f"ordinary pass: wall median {median([r.wall for r in ordinary]):.2f} s, CPU median "
            f"{ord_cpu:.2f} s; cleanup listing of {on_duty} duty values: "
            f"{math.ceil(on_duty / 1000)} page(s)\n"
        )
        ok &= verdict(
            out,
            "reconcile listing requests",
            f"{pages}",
            f"ceil({args.users}/1000) = {pages_wanted}",
            None,
            f"== {pages_wanted} and no Criteria listing",
            pages == pages_wanted and criteria == 0,
        )
        ok &= verdict(
            out,
            "reconcile repairs",
            f"{syncs} request(s), all repaired: {repaired_ok}",
            f"{EDITED} edits",
            None,
            "1 request, every edit repaired",
            syncs == 1 and repaired_ok,
        )
        ok &= verdict(out, "reconcile pass CPU", f"{rec_cpu:.2f} s", "-", None, "<= 5 s", rec_cpu <= 5.0)
        ok &= verdict(out, "ordinary pass CPU", f"{ord_cpu:.2f} s", "-", None, "<= 1.5 s", ord_cpu <= 1.5)
    finally:
        sim.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

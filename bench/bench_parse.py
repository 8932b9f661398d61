"""Benchmark: parsing + resolution of BOBO files against a bare ``csv.reader`` loop.

Generates FILES files of ROWS rows each (20,000 employees) in a temporary folder, then times,
over the same files:

* ``bare``: ``for row in csv.reader(f): pass`` for every file (opened as UTF-8 text, as the
  floor any CSV-based reader has to pay);
* ``read``: ``for item in read_bobo_file(path): pass`` (parsing alone);
* ``read+resolve``: ``read_bobo_file`` + ``LatestEvents.add`` with the loop the processor uses
  (``isinstance(item, BadRow)`` per item, ``add`` per entry). This is the figure the target
  (at most 1.5x ``bare``) is about.

Each is run REPEAT times, interleaved, and the best time of each is kept (the least disturbed
by the rest of the machine). Memory: the ``tracemalloc`` peak of one read+resolve run (Python
allocations; it must not grow with the number of rows) and the process ``ru_maxrss``.

Run: ``python bench/bench_parse.py [--files 1000] [--rows 1000] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import random
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bobosync.bobo_csv import BadRow, read_bobo_file
from bobosync.resolution import LatestEvents

EMPLOYEES = 20_000


def generate(folder: Path, files: int, rows: int, seed: int = 1) -> list[Path]:
    """Files shaped like the real export: no header, CRLF, 10 columns, ASCII.

    File ``i`` covers the hour starting ``i`` minutes after a fixed start (rows in time
    order, as the export writes them), so neighbouring files overlap in time, as after an
    outage, and most events are newer than the one held for their employee.
    """
    rnd = random.Random(seed)
    ids = [f"{n:05d}" for n in range(1, EMPLOYEES + 1)]
    start = datetime(2025, 6, 17, 6, 0, 0)
    paths = []
    for i in range(files):
        base = start + timedelta(minutes=i)
        offsets = sorted(rnd.randrange(3600) for _ in range(rows))
        lines = []
        for offset in offsets:
            stamp = (base + timedelta(seconds=offset)).strftime("%Y%m%d%H%M%S")
            lines.append(
                f"{'BON' if rnd.random() < 0.5 else 'BOF'},{rnd.choice(ids)},"
                f"PAY{rnd.randrange(100000):05d},{stamp[:8]},{stamp[8:]},{stamp},"
                f"{rnd.randrange(6)},{rnd.uniform(50, 55):.4f},{rnd.uniform(-3, 1):.4f},"
                f"{rnd.uniform(1, 50):.1f}\r\n"
            )
        path = folder / f"BOBO_{base:%Y%m%d_%H%M%S}_{i:04d}_output.csv"
        path.write_bytes("".join(lines).encode("ascii"))
        paths.append(path)
    return paths


def bare(paths: list[Path]) -> None:
    for path in paths:
        with open(path, encoding="utf-8", newline="") as f:
            for _row in csv.reader(f):
                pass


def bare_latest(paths: list[Path]) -> None:
    """Issue 13's baseline: a bare csv.reader loop that keeps the latest row per person
    (ordered by DateTime_Created, as text: the stamps are fixed-width)."""
    latest: dict[str, list[str]] = {}
    for path in paths:
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.reader(f):
                held = latest.get(row[1])
                if held is None or row[5] >= held[5]:
                    latest[row[1]] = row


def read(paths: list[Path]) -> None:
    for path in paths:
        for _item in read_bobo_file(path):
            pass


def read_resolve(paths: list[Path]) -> LatestEvents:
    latest = LatestEvents()
    for index, path in enumerate(paths):
        for item in read_bobo_file(path):
            if isinstance(item, BadRow):
                raise AssertionError(f"unexpected bad row {item}")
            latest.add(item, index)
    return latest


def timed(fn: Callable[[list[Path]], object], paths: list[Path]) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of this process) of one run."""
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    fn(paths)
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    out = sys.stdout
    total = args.files * args.rows

    with tempfile.TemporaryDirectory(prefix="bobo-bench-") as tmp:
        t0 = time.perf_counter()
        paths = generate(Path(tmp), args.files, args.rows)
        out.write(
            f"python {sys.version.split()[0]}; {args.files} files x {args.rows} rows = "
            f"{total:,} rows, {EMPLOYEES:,} employees (generated in "
            f"{time.perf_counter() - t0:.1f}s)\n"
        )

        # Correctness first, untimed: every row is an entry, every employee resolved.
        latest = read_resolve(paths)
        assert len(latest) + latest.superseded == total, "rows lost"
        with open(paths[0], encoding="utf-8", newline="") as f:
            assert sum(1 for _ in csv.reader(f)) == args.rows

        jobs = {"bare": bare, "bare+latest": bare_latest, "read": read, "read+resolve": read_resolve}
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in jobs}
        for _ in range(args.repeat):
            for name, job in jobs.items():
                runs[name].append(timed(job, paths))
        wall = {name: min(w for w, _ in times) for name, times in runs.items()}
        cpu = {name: min(c for _, c in times) for name, times in runs.items()}
        out.write("best of each; CPU time is less disturbed by other processes on the machine\n")
        for name in jobs:
            out.write(
                f"{name:13s} wall {wall[name]:6.3f}s {total / wall[name]:10,.0f} rows/s "
                f"{wall[name] / wall['bare']:5.2f}x | cpu {cpu[name]:6.3f}s "
                f"{total / cpu[name]:10,.0f} rows/s {cpu[name] / cpu['bare']:5.2f}x | walls: "
                + " ".join(f"{w:.2f}" for w, _ in runs[name])
                + "\n"
            )
        out.write(
            f"ratio read+resolve / bare = {wall['read+resolve'] / wall['bare']:.2f}x wall, "
            f"{cpu['read+resolve'] / cpu['bare']:.2f}x cpu (target <= 1.5x)\n"
        )
        cpu_ratio = cpu["read+resolve"] / cpu["bare+latest"]
        out.write(
            f"ratio read+resolve / bare+latest = {cpu_ratio:.2f}x cpu (issue 13 target <= 3.0x: "
            f"{'PASS' if cpu_ratio <= 3.0 else 'MISS'})\n"
        )

        tracemalloc.start()
        read_resolve(paths)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out.write(
            f"tracemalloc peak, one read+resolve run: {peak / 2**20:.1f} MiB "
            f"(LatestEvents holds {len(latest):,} employees)\n"
        )
        try:
            import resource
        except ImportError:  # Windows
            return
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
        out.write(f"ru_maxrss (whole process): {rss * scale / 2**20:.1f} MiB\n")


if __name__ == "__main__":
    main()

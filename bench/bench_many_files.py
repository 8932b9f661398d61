"""Benchmark: 10,000 waiting files, per-file overhead of a pass excluding AtHoc.

FILES small files (default 10,000, ROWS rows each, default 3) wait in CSV_DIRECTORY; one pass
(``python -m bobosync``, a real child process, default BATCH_SIZE=10, auto-cleanup on)
processes them. AtHoc is taken out of the figure by the data: a seed file, processed first,
books every employee on *after* every event in the waiting files, so each of their events is
older than the last one applied ("not newer"), and the pass sends no update at all (its only
AtHoc requests are the token and the cleanup page, as in an idle pass). Everything else a file
costs is in: listing, hashing, parsing, resolution, the database reads and writes, the
journalled move, the log line.

Per-file overhead = (pass - idle pass) / FILES, wall time (the target) and the child's own CPU
time (``os.wait4``). The idle pass is measured on the same configuration and database just
before the files are put in place, and is the baseline each figure is compared with.

Variants:

* ``moved``: MOVE_PROCESSED_FILES=true, no update sent -- the target's figure;
* ``in place``: MOVE_PROCESSED_FILES=false (the default), no update sent; then one more pass
  with the FILES files still there, all remembered: what each processed file left in place
  costs every later pass;
* ``with AtHoc``: MOVE_PROCESSED_FILES=true, every file's events newer, so each batch sends
  one SyncByCommonNames (simulator on loopback, no added latency). The simulator runs in this
  process, so the child's CPU excludes AtHoc's work; its wall time includes it.

Run: ``python bench/bench_many_files.py [--files 10000]``; ``--quick`` is 1,000 files.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import ChildRun, machine_line, run_cli, verdict, write_env

from bobosync.simulator import AtHocSimulator, export_row, make_users

EMPLOYEES = 1000


def generate(folder: Path, files: int, rows: int, start: datetime, seed: int = 3) -> list[Path]:
    """``files`` files of ``rows`` rows; file ``i`` holds events from ``start + i`` seconds."""
    rnd = random.Random(seed)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    epoch = time.time() - files - 60
    paths = []
    for i in range(files):
        when = start + timedelta(seconds=i)
        lines = [
            ",".join(export_row("BON" if rnd.random() < 0.5 else "BOF", f"{rnd.randint(1, EMPLOYEES):05d}", when))
            + "\r\n"
            for _ in range(rows)
        ]
        path = folder / f"BOBO_{when:%Y%m%d_%H%M%S}_{i:05d}_output.csv"
        path.write_bytes("".join(lines).encode("ascii"))
        os.utime(path, (epoch + i * 0.001, epoch + i * 0.001))
        paths.append(path)
    return paths


def seed_file(folder: Path, when: datetime) -> None:
    """Every employee booked on at ``when`` (newer than every waiting file's events)."""
    lines = [",".join(export_row("BON", f"{n:05d}", when)) + "\r\n" for n in range(1, EMPLOYEES + 1)]
    (folder / "BOBO_seed_output.csv").write_bytes("".join(lines).encode("ascii"))


def per_file(out: TextIO, label: str, run: ChildRun, idle: ChildRun, files: int, target_ms: float) -> bool:
    wall_ms = (run.wall - idle.wall) / files * 1000
    cpu_ms = (run.cpu - idle.cpu) / files * 1000
    out.write(
        f"      {label}: pass wall {run.wall:.2f} s, CPU {run.cpu:.2f} s, exit code {run.returncode}; "
        f"idle pass wall {idle.wall:.2f} s, CPU {idle.cpu:.2f} s; per file: wall {wall_ms:.3f} ms, "
        f"CPU {cpu_ms:.3f} ms\n"
    )
    return verdict(
        out,
        f"{label}: per-file overhead (wall)",
        f"{wall_ms:.3f} ms per file",
        f"idle pass {idle.wall * 1000:.0f} ms",
        run.wall / idle.wall,
        f"<= {target_ms:g} ms per file",
        wall_ms <= target_ms and run.returncode == 0,
    )


def variant(
    out: TextIO, name: str, workdir: Path, source: list[Path], *, move: bool, seed: bool, remembered_pass: bool
) -> bool:
    folder = workdir / name.replace(" ", "_")
    shutil.rmtree(folder, ignore_errors=True)
    with AtHocSimulator(users=make_users(EMPLOYEES)) as sim:
        env = write_env(folder, sim.url, MOVE_PROCESSED_FILES="true" if move else "false", REQUEST_TIMEOUT_SECONDS="60")
        csv_dir = folder / "crown_files"
        if seed:
            seed_file(csv_dir, datetime.now().replace(microsecond=0) - timedelta(minutes=1))
            first = run_cli(env, log_to=folder / "seed.out")
        else:
            first = run_cli(env, "--sync-users", log_to=folder / "seed.out")
        if first.returncode != 0:
            out.write(f"MISS  {name}: the preparing pass failed (exit code {first.returncode}); see {folder}\n")
            return False
        if not move:
            # The seed file stays in place (remembered); keep the idle pass truly idle.
            (csv_dir / "BOBO_seed_output.csv").unlink(missing_ok=True)
        idle = run_cli(env, log_to=folder / "idle.out")
        for path in source:
            shutil.copy2(path, csv_dir / path.name)
        sim.clear_journal()
        run = run_cli(env, log_to=folder / "pass.out")
        syncs = len(sim.requests_to("SyncByCommonNames"))
        out.write(
            f"\n-- {name}: {len(source)} files, MOVE_PROCESSED_FILES={'true' if move else 'false'}, "
            f"{syncs} SyncByCommonNames request(s), {len(sim.journal)} AtHoc requests in all\n"
        )
        ok = per_file(out, name, run, idle, len(source), 2.0)
        if move:
            left = len(list(csv_dir.glob("*.csv")))
            ok &= verdict(
                out, f"{name}: files moved", f"{len(source) - left} of {len(source)}", "all", None, "all", left == 0
            )
        if remembered_pass:
            again = run_cli(env, log_to=folder / "again.out")
            ok &= per_file(out, f"{name}, next pass (all {len(source)} remembered)", again, idle, len(source), 2.0)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1,000 files")
    parser.add_argument("--variants", default="moved,in place,with AtHoc", help="comma-separated subset")
    parser.add_argument("--workdir", type=Path, help="keep the working folders here (default: temporary)")
    args = parser.parse_args()
    if args.quick:
        args.files = 1000
    out = sys.stdout
    out.write(f"{machine_line()}\n")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bobo-many-"))
    wanted = {v.strip() for v in args.variants.split(",")}
    try:
        # Events from a day ago, before any seed; all within AUTO_CLEANUP_HOURS of now.
        start = datetime.now().replace(microsecond=0) - timedelta(hours=20)
        source = generate(workdir / "source", args.files, args.rows, start)
        out.write(f"{args.files} files x {args.rows} rows, {EMPLOYEES} employees, BATCH_SIZE=10\n")
        ok = True
        if "moved" in wanted:
            ok &= variant(out, "moved", workdir, source, move=True, seed=True, remembered_pass=False)
        if "in place" in wanted:
            ok &= variant(out, "in place", workdir, source, move=False, seed=True, remembered_pass=True)
        if "with AtHoc" in wanted:
            ok &= variant(out, "with AtHoc", workdir, source, move=True, seed=False, remembered_pass=False)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

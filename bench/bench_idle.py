"""Benchmark: an idle pass (no files, auto-cleanup on) as a whole process.

What Task Scheduler pays every minute when BOBO has written nothing: ``python -m bobosync``
starts, reads its settings, opens the database, gets a token, finds no file, asks AtHoc for
stale duty values (none), records the run and exits. Baseline: ``python -c "import requests,
sqlite3"``, the floor of any Python tool that talks HTTP and keeps SQLite.

The simulator runs in this process with no added latency (plain HTTP on loopback), so the
figure is bobosync's own start-up and pass cost. One unmeasured pass first does the mapping
sync, which is then not due again today. Then RUNS runs of each command, interleaved; each
child is measured on its own with ``os.wait4`` (wall time, and its CPU time, which is less
disturbed by other load on the machine). The target compares median wall times.

Then ``-X importtime`` of one idle pass lists what it imports: none of the modules a pass never
uses (the simulator, keyring, http.server, test tools, the status/check/demo commands) may be
among them, and ``import bobosync`` alone must stay light.

Run: ``python bench/bench_idle.py [--runs 20]``; ``--quick`` is ``--runs 5``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import ChildRun, child_env, machine_line, median, run_child, verdict, write_env

from bobosync.simulator import AtHocSimulator, make_users

BASELINE = [sys.executable, "-c", "import requests, sqlite3"]

#: Modules an ordinary pass never uses; importing any of them is a defect.
NOT_FOR_A_PASS = (
    "bobosync.simulator",
    "bobosync.status",
    "bobosync.check",
    "bobosync.demo",
    "bobosync.secret_store",
    "keyring",
    "http.server",
    "socketserver",
    "hypothesis",
    "trustme",
    "pytest",
    "cryptography",
    "asyncio",
    "multiprocessing",
    "xml.etree",
    "tkinter",
    "unittest",
)


def imported_modules(argv: list[str], cwd: Path) -> dict[str, tuple[int, int]]:
    """module -> (self, cumulative) import time in microseconds, from ``-X importtime``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    modules: dict[str, tuple[int, int]] = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line[len("import time:") :].split("|")
        modules[name.strip()] = (int(self_us), int(cumulative))
    return modules


def summarise(out: TextIO, name: str, runs: list[ChildRun]) -> None:
    walls = [r.wall * 1000 for r in runs]
    cpus = [r.cpu * 1000 for r in runs]
    out.write(
        f"  {name:22s} wall median {median(walls):6.0f} ms (min {min(walls):4.0f}, max {max(walls):4.0f}) | "
        f"CPU median {median(cpus):5.0f} ms (min {min(cpus):4.0f}) | "
        f"max RSS {median([r.maxrss_mib for r in runs]):.1f} MiB\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each command (default 20)")
    parser.add_argument("--users", type=int, default=1000, help="AtHoc users in the simulator (default 1000)")
    parser.add_argument("--quick", action="store_true", help="5 runs of each")
    args = parser.parse_args()
    if args.quick:
        args.runs = 5
    out = sys.stdout
    out.write(f"{machine_line()}\n")
    folder = Path(tempfile.mkdtemp(prefix="bobo-idle-"))
    try:
        with AtHocSimulator(users=make_users(args.users)) as sim:
            env_file = write_env(folder, sim.url, AUTO_CLEANUP_HOURS="24")
            argv = ["-m", "bobosync", "--env-file", str(env_file)]
            run_child(BASELINE, cwd=folder, env=child_env())  # warm the bytecode cache
            first = run_child([sys.executable, *argv], cwd=folder, env=child_env())
            if first.returncode != 0:
                out.write(f"the first pass failed (exit code {first.returncode}); see {folder}/logs\n")
                return 1
            sim.clear_journal()
            base: list[ChildRun] = []
            idle: list[ChildRun] = []
            for _ in range(args.runs):
                base.append(run_child(BASELINE, cwd=folder, env=child_env()))
                idle.append(run_child([sys.executable, *argv], cwd=folder, env=child_env()))
            requests_per_pass = len(sim.journal) / args.runs
            paths = sorted({e.path.rsplit("/", 1)[-1] for e in sim.journal})
            codes = sorted({r.returncode for r in idle})
            pass_modules = imported_modules(argv, folder)
            package_modules = imported_modules(["-c", "import bobosync"], folder)
            base_modules = imported_modules(BASELINE[1:], folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    out.write(
        f"{args.runs} runs of each, interleaved; idle pass exit codes {codes}; "
        f"{requests_per_pass:g} AtHoc requests per pass ({', '.join(paths)})\n"
    )
    summarise(out, "import requests, sqlite3", base)
    summarise(out, "idle pass", idle)
    ok = codes == [0]
    wall_base, wall_idle = median([r.wall for r in base]), median([r.wall for r in idle])
    cpu_base, cpu_idle = median([r.cpu for r in base]), median([r.cpu for r in idle])
    ok &= verdict(
        out,
        "idle pass wall time (median)",
        f"{wall_idle * 1000:.0f} ms",
        f"{wall_base * 1000:.0f} ms",
        wall_idle / wall_base,
        "<= 1.5x",
        wall_idle / wall_base <= 1.5,
    )
    out.write(
        f"      CPU time (median): {cpu_idle * 1000:.0f} ms vs {cpu_base * 1000:.0f} ms, "
        f"ratio {cpu_idle / cpu_base:.2f}x; best runs: wall {min(r.wall for r in idle) * 1000:.0f} vs "
        f"{min(r.wall for r in base) * 1000:.0f} ms, ratio "
        f"{min(r.wall for r in idle) / min(r.wall for r in base):.2f}x (for information)\n"
    )

    heavy = sorted(
        m
        for m in pass_modules
        if m.split(".")[0] in NOT_FOR_A_PASS
        or m in NOT_FOR_A_PASS
        or any(m.startswith(p + ".") for p in NOT_FOR_A_PASS)
    )
    ok &= verdict(
        out,
        "modules a pass never uses, imported by an idle pass",
        ", ".join(heavy) or "none",
        f"{len(pass_modules)} modules imported",
        None,
        "none",
        not heavy,
    )
    added = {m: t for m, t in pass_modules.items() if m not in base_modules}
    out.write(
        f"      {len(added)} modules beyond the baseline's {len(base_modules)}; "
        f"import time of those (self, this run): {sum(s for s, _ in added.values()) / 1000:.0f} ms; heaviest:\n"
    )
    for name, (self_us, _) in sorted(added.items(), key=lambda kv: -kv[1][0])[:12]:
        out.write(f"        {self_us / 1000:6.1f} ms  {name}\n")
    light = sorted(m for m in package_modules if m.startswith("bobosync"))
    foreign = sorted(
        m
        for m in package_modules
        if m.split(".")[0] in ("requests", "urllib3", "sqlite3", "tenacity", "filelock", "dotenv")
    )
    ok &= verdict(
        out,
        "`import bobosync` alone",
        f"imports {', '.join(light)}; third-party: {', '.join(foreign) or 'none'}",
        "-",
        None,
        "no third-party module",
        not foreign,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

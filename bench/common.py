"""Shared helpers of the benchmarks in ``bench/`` (run by hand, never collected by pytest).

* :func:`write_env` writes a complete ``.env`` pointing at an in-process AtHoc simulator;
* :func:`run_cli` runs ``python -m bobosync ...`` as a real child process and measures its
  wall time and its own CPU time (``os.wait4``: the child's rusage alone, so the simulator
  thread in this process is not counted);
* :func:`verdict` prints one figure, its baseline, the ratio and PASS/MISS.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Optional, TextIO, Union

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bobosync.simulator import SIM_CREDENTIALS  # noqa: E402

#: Settings every benchmark starts from (the simulator's credentials come on top).
BASE_SETTINGS: dict[str, str] = {
    "CSV_DIRECTORY": "crown_files",
    "PROCESSED_DIRECTORY": "processed_files",
    "FAILED_FILES_DIRECTORY": "failed_files",
    "LOG_DIRECTORY": "logs",
    "DB_PATH": "bobo_mapping.db",
    "MOVE_PROCESSED_FILES": "true",
    "FILE_SETTLE_SECONDS": "0",
    "AUTO_CLEANUP_HOURS": "24",
    "HTTP_RETRY_ATTEMPTS": "4",
    "HTTP_RETRY_BACKOFF_SECONDS": "0.2",
    "REQUEST_TIMEOUT_SECONDS": "30",
    "LOG_LEVEL": "INFO",
}


def write_env(folder: Path, url: str, **settings: str) -> Path:
    """``folder/.env`` for the simulator at ``url``; relative paths resolve against ``folder``."""
    values = {
        "ATHOC_SERVER_URL": url,
        "CLIENT_ID": SIM_CREDENTIALS["client_id"],
        "CLIENT_SECRET": SIM_CREDENTIALS["client_secret"],
        "APIUSER": SIM_CREDENTIALS["username"],
        "PASSWORD": SIM_CREDENTIALS["password"],
        "ORG_CODE": SIM_CREDENTIALS["org_code"],
        **BASE_SETTINGS,
        **settings,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "crown_files").mkdir(exist_ok=True)
    env = folder / ".env"
    env.write_text("".join(f"{key}={value}\n" for key, value in values.items()), encoding="utf-8")
    return env


#: Where children keep compiled bytecode (outside the repository).
PYCACHE = Path(tempfile.gettempdir()) / "bobosync-bench-pycache"


def child_env(extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """This process's environment for a bobosync child: no proxies (the simulator is on
    loopback), no BOBO_* or LOG_LEVEL leaking in, the repository importable.

    Bytecode is cached (in :data:`PYCACHE`, not in the repository) even when this shell sets
    PYTHONDONTWRITEBYTECODE: an installed bobosync has its ``.pyc`` files, and compiling every
    module from source at each start would be measured otherwise."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().endswith("_PROXY")
        and not key.startswith("BOBO_")
        and key not in ("LOG_LEVEL", "PYTHONDONTWRITEBYTECODE")
    }
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class ChildRun:
    """A finished child process and what it cost."""

    returncode: int
    wall: float  # seconds, start to exit
    user: float  # CPU seconds of the child alone (NaN where rusage is not available)
    system: float
    maxrss_mib: float

    @property
    def cpu(self) -> float:
        return self.user + self.system


def run_child(
    argv: Sequence[str],
    *,
    cwd: Optional[Path] = None,
    env: Optional[Mapping[str, str]] = None,
    stdout: Union[int, IO[bytes], None] = subprocess.DEVNULL,
    stderr: Union[int, IO[bytes], None] = subprocess.DEVNULL,
    timeout: float = 3600.0,
) -> ChildRun:
    """Run ``argv`` and measure it. On POSIX ``os.wait4`` gives the child's own rusage (not
    that of this process's threads, nor of other children); elsewhere CPU is NaN."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env) if env is not None else None, stdout=stdout, stderr=stderr
    )
    wait4 = getattr(os, "wait4", None)
    if wait4 is None:  # Windows: wall time only
        code = proc.wait(timeout)
        return ChildRun(code, time.perf_counter() - started, math.nan, math.nan, math.nan)
    deadline = started + timeout
    while True:
        pid, status, usage = wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = wait4(proc.pid, 0)
            break
        time.sleep(0.002)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped here; keep Popen from waiting again
    scale = 1 if sys.platform == "darwin" else 1024
    return ChildRun(code, wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss * scale / 2**20)


def run_cli(env_file: Path, *args: str, log_to: Optional[Path] = None, timeout: float = 3600.0) -> ChildRun:
    """``python -m bobosync --env-file ENV ARGS...`` as a child; output to ``log_to`` or nowhere."""
    argv = [sys.executable, "-m", "bobosync", "--env-file", str(env_file), *args]
    if log_to is None:
        return run_child(argv, cwd=env_file.parent, env=child_env(), timeout=timeout)
    with open(log_to, "ab") as sink:
        return run_child(argv, cwd=env_file.parent, env=child_env(), stdout=sink, stderr=sink, timeout=timeout)


def machine_line() -> str:
    load = ""
    if hasattr(os, "getloadavg"):
        one, five, fifteen = os.getloadavg()
        load = f" load average {one:.2f} {five:.2f} {fifteen:.2f};"
    return (
        f"{datetime.now():%Y-%m-%d %H:%M}; {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPU(s);{load} Python {platform.python_version()}"
    )


def verdict(
    out: TextIO, label: str, measured: str, baseline: str, ratio: Optional[float], target: str, ok: bool
) -> bool:
    """One result line: ``label: measured (baseline ..., ratio ...x) target ... PASS|MISS``."""
    shown = f", ratio {ratio:.2f}x" if ratio is not None else ""
    out.write(f"{'PASS' if ok else 'MISS'}  {label}: {measured} (baseline {baseline}{shown}); target {target}\n")
    out.flush()
    return ok


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

"""Shared helpers for the proof suites (crash safety, concurrency, secrets, and any other).

Three kinds of help:

* **running the CLI** as a real subprocess against the simulator: :func:`child_env`,
  :func:`run_cli`, :func:`start_cli`; and :func:`wrapped_command`, which runs the CLI under
  :func:`child_main`, a wrapper that can kill the process at a chosen instant (``--kill
  PHASE:N``: SIGKILL on the Nth occurrence of PHASE), make every move between folders look
  like a move between volumes (``--cross-device``) or wait at a barrier before starting
  (``--wait-for FILE``). Production code has no hook for any of this: the wrapper patches
  functions in the child process before it calls :func:`bobosync.cli.main`.
* **an independent model of the input**: :class:`InputBook` writes BOBO files and remembers
  every row it wrote, and :func:`expected_duty_values` computes from those rows alone (not
  with bobosync's resolution code) what AtHoc must hold once every file is dealt with.
* **checks** that return lists of problems (empty = fine), so a test can report them all at
  once: :func:`folder_problems`, :func:`run_history_problems`, :func:`backwards_sends`;
  and readers: :func:`duty_values`, :func:`sync_sends`, :func:`query`, :func:`integrity_check`.

SIGKILL does not exist on Windows: the kill machinery is POSIX only (tests using it skip
there); the rest works everywhere.
"""

from __future__ import annotations

import csv
import errno
import io
import itertools
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file

REPO = Path(__file__).resolve().parent.parent
FMT = "%d/%m/%Y %H:%M:%S"
DUTY = "On-Duty-DTG"
COLLAR = "Collar-Number"
SYNC_PATH_PART = "SyncByCommonNames"

# =========================================================================== running the CLI


def child_env(extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment for a child bobosync: this one without proxies, BOBO_* or LOG_LEVEL
    (the .env file decides), with the repository on PYTHONPATH; plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().endswith("_PROXY") and not k.startswith("BOBO_") and k != "LOG_LEVEL"
    }
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def write_env_file(path: Path, values: Mapping[str, str]) -> Path:
    """Write a ``.env`` file, every value double-quoted (so ``#``, spaces and ``=`` are safe)."""
    lines = []
    for key, value in values.items():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key}="{escaped}"\n')
    path.write_text("".join(lines), encoding="utf-8")
    return path


def sim_env_file(sim: AtHocSimulator, root: Path, ca_pem: Path, extra: Optional[Mapping[str, str]] = None) -> Path:
    """A complete ``root/.env`` for a bobosync working on ``root`` (crown_files,
    processed_files, failed_files, logs, bobo_mapping.db) against ``sim``; ``extra`` adds or
    overrides settings. Creates the CSV folder; returns the .env path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "crown_files").mkdir(exist_ok=True)
    values = {
        "ATHOC_SERVER_URL": sim.url,
        "CLIENT_ID": sim.credentials["client_id"],
        "CLIENT_SECRET": sim.credentials["client_secret"],
        "APIUSER": sim.credentials["username"],
        "PASSWORD": sim.credentials["password"],
        "ORG_CODE": sim.org_code,
        "SSL_CERT_PATH": str(ca_pem),
        "CSV_DIRECTORY": str(root / "crown_files"),
        "PROCESSED_DIRECTORY": str(root / "processed_files"),
        "FAILED_FILES_DIRECTORY": str(root / "failed_files"),
        "LOG_DIRECTORY": str(root / "logs"),
        "DB_PATH": str(root / "bobo_mapping.db"),
        "FILE_SETTLE_SECONDS": "0",
        "HTTP_RETRY_ATTEMPTS": "2",
        "HTTP_RETRY_BACKOFF_SECONDS": "0.01",
        "REQUEST_TIMEOUT_SECONDS": "10",
        **(extra or {}),
    }
    return write_env_file(root / ".env", values)


def restricted_prefix() -> Optional[list[str]]:
    """Command prefix under which a file of mode 000 really cannot be read, as for any user
    but root: none for an ordinary user; for root (CI), ``setpriv`` dropping the
    capabilities that let root read and write any file. None when that cannot be arranged
    (Windows, or root without ``setpriv``): the caller skips, saying so."""
    if os.name == "nt":
        return None
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe"
        probe.write_bytes(b"x")
        probe.chmod(0)
        try:
            result = subprocess.run(
                [*prefix, sys.executable, "-c", f"open({str(probe)!r}, 'rb')"], capture_output=True, timeout=30
            )
        except OSError:
            return None
    return prefix if result.returncode != 0 and b"PermissionError" in result.stderr else None


def cli_command(env_file: Path, *args: str) -> list[str]:
    """``python -m bobosync --env-file ENV ARGS...``."""
    return [sys.executable, "-m", "bobosync", "--env-file", str(env_file), *args]


def run_cli(
    env_file: Path,
    *args: str,
    extra: Optional[Mapping[str, str]] = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to the end (cwd = the .env file's folder) and capture its output."""
    return subprocess.run(
        cli_command(env_file, *args),
        cwd=env_file.parent,
        env=child_env(extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass(frozen=True)
class KillPlan:
    """Kill the child with SIGKILL on the ``nth`` occurrence of ``phase`` (see KILL_PHASES)."""

    phase: str
    nth: int

    def __post_init__(self) -> None:
        if self.phase not in KILL_PHASES:
            raise ValueError(f"unknown kill phase {self.phase!r}")
        if self.nth < 1:
            raise ValueError("nth must be at least 1")

    def __str__(self) -> str:
        return f"{self.phase}:{self.nth}"


#: Where a child can be killed, and the occurrence counted for each.
KILL_PHASES: dict[str, str] = {
    "parse": "before a CSV row is handed to the pass (rows counted across files)",
    "request": "after an HTTP request to AtHoc got its answer (token, listing, update, cleanup)",
    "athoc_before": "on entering a batch's AtHoc update call (nothing sent yet)",
    "athoc_after": "after a batch's AtHoc update returned, before its decisions are committed",
    "db_uncommitted": "just before a database COMMIT (the transaction's writes are staged)",
    "db_committed": "just after a database COMMIT",
    "move_start": "on entering a file rename (the move is journalled, nothing moved yet)",
    "move_linked": "after os.link made the new name (the file is in both folders)",
    "move_unlinked": "after os.unlink removed a name (source gone; journal not yet cleared)",
    "copy_synced": "after a cross-volume copy was written and fsync'ed (partial file present)",
    "error_note": "on entering the writing of a failed file's .error.txt note (the file is in the failed folder)",
    "unchanged_checked": "after a file was found unchanged since it was read, before its decision is committed",
    "mapping_listed": "after the mapping sync read AtHoc's users, before storing them",
    "mapping_written": "after the new mapping was written inside its transaction, before COMMIT",
    "cleanup_queried": "after the cleanup's listing of duty values (FIELD pr), before judging them",
    "cleanup_cleared": "after replays, repairs or clears were sent and settled, before the run is recorded",
    "read_back": "after the users whose write lost its answer were read back, before judging them",
    "judged": "after AtHoc's values were judged against the desired state, before anything is sent",
}


def wrapped_command(
    env_file: Path,
    *args: str,
    kill: Optional[KillPlan] = None,
    cross_device: bool = False,
    wait_for: Optional[Path] = None,
) -> list[str]:
    """The CLI run under :func:`child_main` (see the module docstring)."""
    options: list[str] = []
    if kill is not None:
        options += ["--kill", str(kill)]
    if cross_device:
        options.append("--cross-device")
    if wait_for is not None:
        options += ["--wait-for", str(wait_for)]
    code = "import tests.harness as h; h.child_main()"
    return [sys.executable, "-c", code, *options, "--", "--env-file", str(env_file), *args]


def start_cli(
    command: Sequence[str],
    cwd: Path,
    *,
    extra: Optional[Mapping[str, str]] = None,
    capture: bool = True,
) -> subprocess.Popen[str]:
    """Start a CLI command (from :func:`cli_command` or :func:`wrapped_command`) without waiting."""
    pipe = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(list(command), cwd=cwd, env=child_env(extra), stdout=pipe, stderr=pipe, text=True)


def release_barrier(barrier: Path, children: int, timeout: float = 60) -> None:
    """Wait until ``children`` wrapped children started with ``wait_for=barrier`` are ready
    (everything imported, options installed), then let them all go at once."""
    deadline = time.monotonic() + timeout
    while len(list(barrier.parent.glob("ready-*"))) < children:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(barrier.parent.glob('ready-*')))} of {children} children ready")
        time.sleep(0.01)
    barrier.touch()


# --------------------------------------------------------------------------- the child side


def _die() -> NoReturn:
    """SIGKILL this process: no handler, no cleanup, no flush, like a power cut for the process."""
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("still alive after SIGKILL")  # pragma: no cover


def child_main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of :func:`wrapped_command`'s child. Never returns (sys.exit)."""
    args = list(sys.argv[1:] if argv is None else argv)
    split = args.index("--") if "--" in args else len(args)
    options, cli_args = args[:split], args[split + 1 :]
    kill: Optional[KillPlan] = None
    cross_device = False
    wait_for: Optional[Path] = None
    items = iter(options)
    for option in items:
        if option == "--kill":
            phase, _, nth = next(items).partition(":")
            kill = KillPlan(phase, int(nth))
        elif option == "--cross-device":
            cross_device = True
        elif option == "--wait-for":
            wait_for = Path(next(items))
        else:
            raise SystemExit(f"child_main: unknown option {option!r}")
    # Import everything a pass uses before any barrier, so released children race for real.
    import bobosync.cli
    import bobosync.processor

    if cross_device:
        _install_cross_device()
    if kill is not None:
        _install_kill(kill)
    if wait_for is not None:
        (wait_for.parent / f"ready-{os.getpid()}").touch()  # see release_barrier()
        while not wait_for.exists():
            time.sleep(0.001)
    sys.exit(bobosync.cli.main(cli_args))


def _install_cross_device() -> None:
    """Make every hard link between two different folders fail with EXDEV, as between two
    volumes, so the copy-verify-rename path of the file mover is used. Links inside one
    folder (the partial file to its final name) still work."""
    real_link = os.link

    def link(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if os.path.dirname(os.path.abspath(src)) != os.path.dirname(os.path.abspath(dst)):
            raise OSError(errno.EXDEV, "Invalid cross-device link (simulated)", str(src))
        real_link(src, dst, *args, **kwargs)

    os.link = link


def _install_kill(plan: KillPlan) -> None:
    """Patch the function behind ``plan.phase`` so that its Nth occurrence kills the process."""
    import bobosync.filestore as filestore
    import bobosync.processor as processor
    from bobosync.client import AtHocClient
    from bobosync.database import BOBODatabase
    from bobosync.transport import Transport

    counter = itertools.count(1)

    def due() -> bool:
        return next(counter) == plan.nth

    def before(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if due():
                _die()
            return original(*args, **kwargs)

        return wrapper

    def after(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if due():
                _die()
            return result

        return wrapper

    def rows(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for item in original(*args, **kwargs):
                if due():
                    _die()
                yield item

        return wrapper

    def connections(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return _KillingConnection(original(*args, **kwargs), due, plan.phase == "db_committed")

        return wrapper

    targets: dict[str, tuple[object, str, Callable[[Callable[..., Any]], Callable[..., Any]]]] = {
        "parse": (processor, "read_bobo_file", rows),
        "request": (Transport, "request_json", after),
        "athoc_before": (AtHocClient, "batch_update_duty_status", before),
        "athoc_after": (AtHocClient, "batch_update_duty_status", after),
        "db_uncommitted": (BOBODatabase, "_connect", connections),
        "db_committed": (BOBODatabase, "_connect", connections),
        "move_start": (filestore, "_rename_no_clobber", before),
        "move_linked": (os, "link", after),
        "move_unlinked": (os, "unlink", after),
        "copy_synced": (os, "fsync", after),
        "error_note": (processor, "write_error_note", before),
        "unchanged_checked": (processor, "changed_since", after),
        "mapping_listed": (AtHocClient, "get_all_users_with_attributes", after),
        "mapping_written": (BOBODatabase, "replace_mappings", after),
        "cleanup_queried": (AtHocClient, "list_duty_values", after),
        "cleanup_cleared": (processor.BOBOProcessor, "_execute", after),
        "read_back": (AtHocClient, "read_users", after),
        "judged": (processor, "judge", after),
    }
    owner, name, wrap = targets[plan.phase]
    setattr(owner, name, wrap(getattr(owner, name)))


class _KillingConnection:
    """A sqlite3 connection that dies just before (or just after) its Nth COMMIT."""

    def __init__(self, conn: sqlite3.Connection, due: Callable[[], bool], after_commit: bool) -> None:
        self._conn = conn
        self._due = due
        self._after_commit = after_commit

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        commit = sql.strip().upper() == "COMMIT"
        if commit and not self._after_commit and self._due():
            _die()
        cursor = self._conn.execute(sql, *args)
        if commit and self._after_commit and self._due():
            _die()
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


# =========================================================================== the input model


@dataclass(frozen=True)
class Event:
    """One valid row as written: BON/BOF, employee ID, DateTime_Created."""

    transaction: str
    employee_id: str
    when: datetime

    @property
    def is_book_on(self) -> bool:
        return self.transaction.upper() == "BON"


@dataclass
class InputFile:
    """A file the test wrote: its name, exact bytes, and its valid events in row order."""

    name: str
    data: bytes
    events: list[Event]
    #: No valid row at all (or unreadable): must end in the failed folder.
    bad: bool = False
    bad_rows: int = 0
    #: Rows were appended after it was first written (it may have been read, and decided
    #: about, before): every row must still land, and it may be logged more than once.
    grown: bool = False


class EventClock:
    """Hands out event times that are never repeated, so every employee's latest event is
    unambiguous whatever the batching: ``fresh()`` within the last few hours, ``stale()``
    well beyond any AUTO_CLEANUP_HOURS a test uses (over a day and a half old)."""

    def __init__(self, now: Optional[datetime] = None) -> None:
        base = (now or datetime.now()).replace(microsecond=0)
        self._fresh = base - timedelta(hours=4)
        self._stale = base - timedelta(hours=44)
        self._n = 0

    def fresh(self) -> datetime:
        self._n += 1
        return self._fresh + timedelta(seconds=self._n)

    def stale(self) -> datetime:
        self._n += 1
        return self._stale + timedelta(seconds=self._n)


class InputBook:
    """Writes BOBO files into a folder and remembers exactly what it wrote.

    Names are unique (``in_00001.csv``...), so a file can be followed through the folders by
    name; file modification times are left as written (now), in writing order.
    """

    def __init__(self, folder: Path, clock: Optional[EventClock] = None) -> None:
        self.folder = folder
        self.clock = clock or EventClock()
        self.files: list[InputFile] = []
        self._names = itertools.count(1)

    def _name(self) -> str:
        return f"in_{next(self._names):05d}.csv"

    def _record(self, path: Path, events: list[Event], bad: bool, bad_rows: int) -> InputFile:
        item = InputFile(path.name, path.read_bytes(), events, bad, bad_rows)
        self.files.append(item)
        return item

    def add(self, events: Sequence[Event], *, bad_rows: Sequence[Sequence[str]] = ()) -> InputFile:
        """A file with ``events`` (in order) and then ``bad_rows`` (rows bobosync must reject)."""
        rows = [export_row(e.transaction, e.employee_id, e.when) for e in events]
        rows.extend(list(r) for r in bad_rows)
        path = write_bobo_file(self.folder, rows, datetime.now(), name=self._name())
        return self._record(path, list(events), bad=not events, bad_rows=len(bad_rows))

    def add_unreadable(self) -> InputFile:
        """A file that cannot be read at all (NUL bytes): must fail."""
        path = self.folder / self._name()
        temp = self.folder / f".{path.name}.tmp"
        temp.write_bytes(b"BON,00001,\x00\x00garbage\r\n")
        os.rename(temp, path)
        return self._record(path, [], bad=True, bad_rows=0)

    @staticmethod
    def bad_row(employee_id: str, kind: int) -> list[str]:
        """A row bobosync must reject: an unknown transaction type, or an impossible date."""
        if kind % 2 == 0:
            return ["XYZ", employee_id, "P", "", "", "20240617143000", "", "", "", ""]
        return ["BON", employee_id, "P", "", "", "20240230143000", "", "", "", ""]

    def events(self) -> list[Event]:
        """Every valid event written, in file order then row order."""
        return [e for f in self.files for e in f.events]

    def append(self, item: InputFile, events: Sequence[Event]) -> None:
        """Add rows to the end of a file already written (BOBO still writing, or a file put
        back with more rows), as ``item`` records them."""
        rows = csv_text([export_row(e.transaction, e.employee_id, e.when) for e in events]).encode("ascii")
        path = self.folder / item.name
        with open(path, "ab") as f:
            f.write(rows)
        item.data += rows
        item.events.extend(events)
        item.grown = True

    def by_name(self) -> dict[str, InputFile]:
        return {f.name: f for f in self.files}


def expected_duty_values(
    events: Iterable[Event],
    collar_to_login: Mapping[str, str],
    initial: Mapping[str, str],
    *,
    now: datetime,
    cleanup_hours: float,
    rejected: Iterable[str] = (),
    fmt: str = FMT,
) -> dict[str, str]:
    """What the duty field of every AtHoc user must hold once every file has been dealt with.

    Computed from the rows alone: for each employee ID that maps to a user (the collar number
    held by that user), the event with the latest DateTime_Created wins (ties: the later one
    in ``events`` order); book on -> the time in ``fmt``, book off -> ``""``. A value older
    than ``cleanup_hours`` at ``now`` is then cleared (when cleanup is on), as is such a value
    in ``initial``. Users in ``rejected`` (AtHoc refuses every write to them) keep their
    ``initial`` value. Users without events keep ``initial`` (or lose it to the cleanup).
    """
    refused = set(rejected)
    latest: dict[str, Event] = {}
    for event in events:
        held = latest.get(event.employee_id)
        if held is None or event.when >= held.when:
            latest[event.employee_id] = event
    values = dict(initial)
    for employee_id, event in latest.items():
        login = collar_to_login.get(employee_id)
        if login is None or login in refused:
            continue
        values[login] = event.when.strftime(fmt) if event.is_book_on else ""
    if cleanup_hours > 0:
        cutoff = now - timedelta(hours=cleanup_hours)
        for login, value in values.items():
            if login in refused or not value:
                continue
            try:
                when = datetime.strptime(value, fmt)
            except ValueError:
                continue  # not a time: never cleared
            if when < cutoff:
                values[login] = ""
    return values


# =========================================================================== readers


def duty_values(sim: AtHocSimulator, field_name: str = DUTY) -> dict[str, str]:
    """LOGIN_ID -> the duty field as the simulator holds it now."""
    with sim.lock:
        return {login: user.get(field_name, "") for login, user in sim.users.items()}


def collar_map(sim: AtHocSimulator, field_name: str = COLLAR) -> dict[str, str]:
    """Collar number -> LOGIN_ID, as AtHoc holds them (users without one are left out)."""
    with sim.lock:
        return {user[field_name]: login for login, user in sim.users.items() if user.get(field_name)}


def sync_sends(sim: AtHocSimulator, field_name: str = DUTY, *, since: int = 0) -> list[tuple[str, str]]:
    """(LOGIN_ID, value) of every row of every SyncByCommonNames request AtHoc answered 200,
    in order, from journal entry ``since`` on."""
    sends: list[tuple[str, str]] = []
    for entry in sim.journal[since:]:
        if SYNC_PATH_PART not in entry.path or entry.status != 200 or not isinstance(entry.json_body, list):
            continue
        for row in entry.json_body:
            if isinstance(row, dict) and "LOGIN_ID" in row:
                sends.append((str(row["LOGIN_ID"]), str(row.get(field_name, ""))))
    return sends


def query(db_path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Run one statement in autocommit mode (a change is committed at once); return the rows."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        return [tuple(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def integrity_check(db_path: Path) -> str:
    rows = query(db_path, "PRAGMA integrity_check")
    return "; ".join(str(r[0]) for r in rows)


# =========================================================================== checks


def folder_problems(
    files: Iterable[InputFile],
    csv_dir: Path,
    processed_dir: Path,
    failed_dir: Path,
    *,
    move_processed: bool,
    may_fail: Callable[[InputFile], bool] = lambda f: False,
) -> list[str]:
    """Every input file is in exactly one of the three folders, byte-identical; nothing else
    is there (no stray CSV, no half-made ``.partial`` copy); every failed file has its
    ``.error.txt`` note. Bad files must be in the failed folder; the others in the processed
    folder (or left in the CSV folder when ``move_processed`` is false) unless ``may_fail``
    says the file may legitimately have failed (AtHoc refused one of its updates)."""
    problems: list[str] = []
    folders = {"csv": csv_dir, "processed": processed_dir, "failed": failed_dir}
    known: set[tuple[str, str]] = set()
    for item in files:
        where = [label for label, folder in folders.items() if (folder / item.name).exists()]
        if len(where) != 1:
            problems.append(f"{item.name}: found in {where or 'no folder'} (expected exactly one)")
            continue
        label = where[0]
        known.add((label, item.name))
        if (folders[label] / item.name).read_bytes() != item.data:
            problems.append(f"{item.name}: content in {label} differs from what was written")
        done_label = "processed" if move_processed else "csv"
        if item.bad:
            allowed = {"failed"}
        elif may_fail(item):
            allowed = {done_label, "failed"}
        else:
            allowed = {done_label}
        if label not in allowed:
            problems.append(f"{item.name}: in the {label} folder, expected {sorted(allowed)}")
        if label == "failed" and not (failed_dir / (item.name + ".error.txt")).exists():
            problems.append(f"{item.name}: in the failed folder without its .error.txt note")
    for label, folder in folders.items():
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.endswith(".partial"):
                problems.append(f"{label}/{path.name}: half-made copy left behind")
            elif path.name.lower().endswith(".csv") and (label, path.name) not in known:
                problems.append(f"{label}/{path.name}: a file that was never written there")
    return problems


def run_history_problems(
    db_path: Path,
    killed_pids: Iterable[int],
    finished_pids: Iterable[int],
    killed_mid_pass: Iterable[int] = (),
) -> list[str]:
    """The run history tells the interrupted runs sensibly: none is left ``running``; only
    runs of killed processes say ``interrupted``, each with an end time and the reason; a
    process killed in the middle of its pass (``killed_mid_pass``) has exactly one interrupted
    pass. Runs a killed process finished before it died keep their real status."""
    problems: list[str] = []
    rows = query(db_path, "SELECT id, kind, status, pid, finished_at, error FROM run_history")
    killed, finished = set(killed_pids), set(finished_pids)
    interrupted_passes: dict[int, int] = {}
    for run_id, kind, status, pid, finished_at, error in rows:
        if status == "running":
            problems.append(f"run {run_id} ({kind}, pid {pid}) is still 'running'")
        if status != "interrupted":
            continue
        if pid in finished or pid not in killed:
            problems.append(f"run {run_id} ({kind}) of pid {pid}, which was not killed, says interrupted")
        if finished_at is None or not error:
            problems.append(f"interrupted run {run_id} has no end time or no reason")
        if kind == "pass":
            interrupted_passes[pid] = interrupted_passes.get(pid, 0) + 1
    for pid in killed_mid_pass:
        if interrupted_passes.get(pid, 0) != 1:
            problems.append(f"pid {pid} was killed mid-pass: {interrupted_passes.get(pid, 0)} interrupted passes")
    return problems


def backwards_sends(sends: Iterable[tuple[str, str]], fmt: str = FMT, *, ignore: Iterable[str] = ()) -> list[str]:
    """Book-on times sent to one user must never go back in time (a late or replayed file
    must not undo a newer status). Re-sending the same value is allowed. Users in ``ignore``
    (AtHoc refuses their updates, so nothing newer was ever applied) are not checked."""
    problems: list[str] = []
    last: dict[str, datetime] = {}
    skipped = set(ignore)
    for login, value in sends:
        if not value or login in skipped:
            continue
        try:
            when = datetime.strptime(value, fmt)
        except ValueError:
            continue
        previous = last.get(login)
        if previous is not None and when < previous:
            problems.append(f"{login}: sent {value} after {previous:{fmt}}")
        last[login] = max(when, previous or when)
    return problems


def csv_text(rows: Iterable[Sequence[str]]) -> str:
    """Rows as CSV text with CRLF line ends (for building odd files by hand)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(list(r) for r in rows)
    return buffer.getvalue()


@dataclass
class Tally:
    """Counts by key, for reporting what a long run did."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))

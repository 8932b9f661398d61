"""The bad-input corpus (tests/corpus/): every file through ONE real pass.

The whole corpus is put in one CSV folder and run through the real CLI in a subprocess
against the AtHoc simulator over HTTPS (MOVE_PROCESSED_FILES=true, FILE_SETTLE_SECONDS=30,
AUTO_CLEANUP_HOURS=0 because the corpus event times are fixed dates in 2024). Then, for every
file, what its ``.expected.json`` says is checked: which folder it ended in (unchanged), the
``.error.txt`` reason, its processing_log row, the bad-row log lines naming file, row and
reason, and every employee's resulting duty value in AtHoc. The format of the expected files
is described in tests/corpus/README.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import unicodedata
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import pytest

from bobosync.processor import BOBOProcessor
from bobosync.settings import Settings
from bobosync.simulator import SIM_CREDENTIALS, AtHocSimulator
from tests.conftest import TLSCerts
from tests.corpus.make_corpus import GENERATORS, generate, index_line
from tests.harness import restricted_prefix
from tests.test_e2e import child_env

CORPUS = Path(__file__).resolve().parent / "corpus"
SUFFIX = ".expected.json"
FMT = "%d/%m/%Y %H:%M:%S"
DUTY = "On-Duty-DTG"
USERS = 100  # collars 00001..00100; the corpus uses 00001..00075 and some unmapped IDs
OUTCOMES = ("processed", "failed", "retry", "left", "waiting", "ignored")
KEYS = {
    "about",
    "outcome",
    "rows",
    "bad_rows",
    "failed_reason_contains",
    "athoc_before",
    "updates",
    "log_contains",
    "pass_error_contains",
    "generate",
    "mtime",
}


@dataclasses.dataclass(frozen=True)
class Case:
    """One corpus file and what must become of it."""

    name: str  # NN_name.csv: the input beside the expected file, or the generated one's stem
    about: str
    outcome: str
    rows: Optional[int]
    bad_rows: tuple[tuple[int, str], ...]
    failed_reason_contains: Optional[str]
    athoc_before: dict[str, str]
    updates: dict[str, str]
    log_contains: tuple[str, ...]
    pass_error_contains: Optional[str]
    generate: Optional[str]
    #: "mtime": "now" (0) or "now-N" (N seconds before the pass); None: an hour ago
    age: Optional[float]

    @property
    def static(self) -> Optional[Path]:
        return None if self.generate else CORPUS / self.name


def _state(value: Any, where: str) -> str:
    """Check one 'on YYYY-MM-DD HH:MM:SS' / 'off' value of an expected file."""
    assert isinstance(value, str), where
    if value != "off":
        assert value.startswith("on "), f"{where}: {value!r} is neither 'off' nor 'on YYYY-MM-DD HH:MM:SS'"
        datetime.strptime(value[3:], "%Y-%m-%d %H:%M:%S")
    return value


def _load(expected: Path) -> Case:
    data = json.loads(expected.read_text(encoding="utf-8"))
    name = expected.name[: -len(SUFFIX)]
    assert isinstance(data, dict), name
    assert set(data) <= KEYS, f"{name}: unknown keys {sorted(set(data) - KEYS)}"
    assert data.get("about"), f"{name}: say what the file is about"
    outcome = data["outcome"]
    assert outcome in OUTCOMES, f"{name}: outcome {outcome!r}"
    if outcome in ("processed", "failed", "left"):
        assert isinstance(data.get("rows"), int) and isinstance(data.get("bad_rows"), list), name
    mtime = data.get("mtime")
    assert mtime is None or re.fullmatch(r"now(-\d+)?", mtime), f"{name}: mtime {mtime!r}"
    assert (outcome == "failed") == ("failed_reason_contains" in data), name
    kind = data.get("generate")
    assert kind is None or kind in GENERATORS, f"{name}: no generator {kind!r}"
    assert (kind is None) == (CORPUS / name).exists(), f"{name}: an input file beside it, or 'generate'"
    return Case(
        name=name,
        about=str(data["about"]),
        outcome=str(outcome),
        rows=data.get("rows"),
        bad_rows=tuple((int(b["row"]), str(b["reason_contains"])) for b in data.get("bad_rows", [])),
        failed_reason_contains=data.get("failed_reason_contains"),
        athoc_before={k: _state(v, name) for k, v in data.get("athoc_before", {}).items()},
        updates={k: _state(v, name) for k, v in data.get("updates", {}).items()},
        log_contains=tuple(data.get("log_contains", ())),
        pass_error_contains=data.get("pass_error_contains"),
        generate=kind,
        age=None if mtime is None else float(mtime[4:] or 0),
    )


def load_corpus() -> list[Case]:
    return [_load(p) for p in sorted(CORPUS.glob("*" + SUFFIX))]


def athoc_value(state: str) -> str:
    """'on 2024-06-17 14:30:00' -> '17/06/2024 14:30:00'; 'off' -> ''."""
    return "" if state == "off" else datetime.strptime(state[3:], "%Y-%m-%d %H:%M:%S").strftime(FMT)


def login(collar: str) -> str:
    return f"user{collar}@force.example"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


# ---------------------------------------------------------------- the corpus itself


def test_corpus_is_complete_and_readable() -> None:
    cases = load_corpus()
    assert len(cases) >= 40
    inputs = {p.name for p in CORPUS.iterdir() if p.is_file() and p.name.lower().endswith(".csv")}
    assert inputs == {c.name for c in cases if c.generate is None}, "every input has its .expected.json"
    # The latest event per employee across the whole corpus wins, so an employee whose
    # resulting state a case states belongs to that case alone.
    owners: dict[str, str] = {}
    for case in cases:
        for collar in case.updates:
            assert collar not in owners, f"{collar} in {owners.get(collar)} and {case.name}"
            owners[collar] = case.name
            assert int(collar) <= USERS
        assert set(case.athoc_before) <= set(case.updates), f"{case.name}: say what becomes of them"
    readme = (CORPUS / "README.md").read_text(encoding="utf-8").splitlines()
    stale = [line for line in map(index_line, sorted(CORPUS.glob("*" + SUFFIX))) if line not in readme]
    assert not stale, "tests/corpus/README.md: the table of cases is out of date (make_corpus.py --index):\n" + (
        "\n".join(stale)
    )
    for case in cases:
        if case.static is not None:
            assert case.static.stat().st_size < 64 * 1024, f"{case.name}: big inputs are generated"


# ---------------------------------------------------------------- one pass over everything


@pytest.fixture
def corpus_simulator(tls_certs: TLSCerts) -> Iterator[AtHocSimulator]:
    sim = tls_certs.simulator(USERS)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def write_env(sim: AtHocSimulator, ca_pem: Path, base: Path, **extra: str) -> dict[str, str]:
    env = {
        "ATHOC_SERVER_URL": sim.url,
        "CLIENT_ID": SIM_CREDENTIALS["client_id"],
        "CLIENT_SECRET": SIM_CREDENTIALS["client_secret"],
        "APIUSER": SIM_CREDENTIALS["username"],
        "PASSWORD": SIM_CREDENTIALS["password"],
        "ORG_CODE": SIM_CREDENTIALS["org_code"],
        "SSL_CERT_PATH": str(ca_pem),
        "CSV_DIRECTORY": str(base / "crown_files"),
        "PROCESSED_DIRECTORY": str(base / "processed_files"),
        "FAILED_FILES_DIRECTORY": str(base / "failed_files"),
        "LOG_DIRECTORY": str(base / "logs"),
        "DB_PATH": str(base / "bobo_mapping.db"),
        "HTTP_RETRY_ATTEMPTS": "3",
        "HTTP_RETRY_BACKOFF_SECONDS": "0.01",
        "REQUEST_TIMEOUT_SECONDS": "10",
        "MOVE_PROCESSED_FILES": "true",
        "FILE_SETTLE_SECONDS": "30",
        "AUTO_CLEANUP_HOURS": "0",
        **extra,
    }
    (base / "crown_files").mkdir(parents=True, exist_ok=True)
    (base / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
    return env


@dataclasses.dataclass
class Installed:
    case: Case
    path: Path  # where the input was put in the CSV folder
    sha256: Optional[str]  # None for a directory, or a file this test may not read either


def install(cases: list[Case], csv_dir: Path) -> tuple[list[Installed], list[str]]:
    """Copy or generate every input into ``csv_dir``; old modification times (one second
    apart, in name order) except for the files 'still being written'."""
    installed, left_out = [], []
    old = time.time() - 3600
    for n, case in enumerate(cases):
        if case.static is not None:
            path = csv_dir / case.name
            shutil.copyfile(case.static, path)
        else:
            assert case.generate is not None
            made = generate(csv_dir, case.name, case.generate)
            if made is None:
                left_out.append(case.name)
                continue
            path = made
        stamp = old + n if case.age is None else time.time() - case.age
        os.utime(path, (stamp, stamp))
        digest = None
        if path.is_file():
            try:
                digest = sha256(path)
            except PermissionError:
                digest = None
        installed.append(Installed(case, path, digest))
    return installed, left_out


def in_folder(folder: Path, name: str) -> Optional[Path]:
    """The entry of ``folder`` called ``name`` (compared in NFC: some file systems decompose)."""
    if not folder.is_dir():
        return None
    for entry in folder.iterdir():
        if nfc(entry.name) == nfc(name):
            return entry
    return None


def test_whole_corpus_in_one_pass(corpus_simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path) -> None:
    sim = corpus_simulator
    cases = load_corpus()
    wrapper = restricted_prefix()
    if wrapper is None:
        cases = [c for c in cases if c.generate != "no_read_permission"]
    write_env(sim, tls_certs.ca_pem, tmp_path)
    csv_dir, processed, failed = tmp_path / "crown_files", tmp_path / "processed_files", tmp_path / "failed_files"
    installed, left_out = install(cases, csv_dir)
    if wrapper is None:
        left_out.append("no_read_permission (cannot deny reading here)")
    if left_out:
        warnings.warn(f"corpus cases not possible on this platform: {left_out}", stacklevel=1)
    for item in installed:
        for collar, state in item.case.athoc_before.items():
            sim.set_attribute(login(collar), DUTY, athoc_value(state))

    result = subprocess.run(
        [*(wrapper or []), sys.executable, "-m", "bobosync", "--env-file", str(tmp_path / ".env")],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    for item in installed:  # let the test's clean-up remove it wherever it went
        for folder in (csv_dir, processed, failed):
            entry = in_folder(folder, item.path.name)
            if entry is not None and entry.is_file():
                entry.chmod(0o600)
    log_text = (tmp_path / "logs" / "bobo_processor.log").read_text(encoding="utf-8")
    problems: list[str] = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    # -- the pass as a whole
    pass_errors = [i.case.pass_error_contains for i in installed if i.case.pass_error_contains]
    outcomes = [i.case.outcome for i in installed]
    expected_exit = 1 if pass_errors or "retry" in outcomes else 0
    check(result.returncode == expected_exit, f"exit code {result.returncode}, expected {expected_exit}")
    for text in pass_errors:
        check(text in result.stderr and text in log_text, f"the pass does not report {text!r}")
    check("Traceback" not in result.stderr and "Logging error" not in result.stderr, "a traceback in stderr")
    moved = [i for i in installed if i.case.outcome in ("processed", "failed")]
    read = [i for i in installed if i.case.outcome in ("processed", "failed", "retry", "left")]
    summary = (
        f"files {len(read)} (done {outcomes.count('processed')}, retry {outcomes.count('retry')}, "
        f"failed {outcomes.count('failed')}), rows {sum(i.case.rows or 0 for i in read)}, "
        f"bad rows {sum(len(i.case.bad_rows) for i in read)}"
    )
    check(summary in log_text, f"no summary line with {summary!r}")

    with sqlite3.connect(tmp_path / "bobo_mapping.db") as conn:
        logged: dict[str, list[tuple[Any, ...]]] = {}
        for filename, records, status, error in conn.execute(
            "SELECT filename, records_processed, status, error_message FROM processing_log"
        ):
            logged.setdefault(nfc(filename), []).append((records, status, error))
        retries = {nfc(f): int(n) for f, n in conn.execute("SELECT filename, retry_count FROM file_retry_tracking")}
    check(len(logged) == len(moved), f"processing_log has {sorted(logged)}")

    # -- each file
    for item in installed:
        case, name = item.case, item.path.name
        where = {
            label: in_folder(folder, name)
            for label, folder in (("csv", csv_dir), ("processed", processed), ("failed", failed))
        }
        target = {
            "processed": "processed",
            "failed": "failed",
            "retry": "csv",
            "left": "csv",
            "waiting": "csv",
            "ignored": "csv",
        }[case.outcome]
        here = [label for label, entry in where.items() if entry is not None]
        check(here == [target], f"{name}: found in {here}, expected in {target} ({case.about})")
        entry = where[target]
        if entry is not None and item.sha256 is not None and entry.is_file():
            check(sha256(entry) == item.sha256, f"{name}: content changed")
        if case.outcome == "ignored":
            check(entry is not None and entry.is_dir() and any(entry.iterdir()), f"{name}: directory disturbed")
        rows = logged.get(nfc(name), [])
        note = failed / (name + ".error.txt")
        if case.outcome == "processed":
            status = "partial" if case.bad_rows else "success"
            error = f"{len(case.bad_rows)} bad row(s)" if case.bad_rows else None
            check(
                rows == [(case.rows, status, error)],
                f"{name}: processing_log {rows}, expected {[(case.rows, status, error)]}",
            )
            check(f"{name}: {case.rows} rows, {len(case.bad_rows)} bad" in log_text, f"{name}: no done line")
        elif case.outcome == "failed":
            reason = case.failed_reason_contains or ""
            check(
                len(rows) == 1 and rows[0][:2] == (case.rows, "failed") and reason in str(rows[0][2]),
                f"{name}: processing_log {rows}, expected failed with {reason!r}",
            )
            check(
                note.is_file() and reason in note.read_text(encoding="utf-8"),
                f"{name}: {note.name} missing or without {reason!r}",
            )
            check(
                re.search(rf"ERROR .*{re.escape(name)}: moved to .*{re.escape(reason)}", log_text) is not None,
                f"{name}: no ERROR line saying why it failed",
            )
        else:
            check(rows == [], f"{name}: in processing_log although it was not processed: {rows}")
            check(not note.exists(), f"{name}: has an error note")
            attempts = 1 if case.outcome == "retry" else 0
            check(
                retries.get(nfc(name), 0) == attempts,
                f"{name}: {retries.get(nfc(name), 0)} attempts counted, expected {attempts}",
            )
        # Bad rows: one WARNING line each, naming the file, the row and the reason; no others.
        reported = re.findall(rf": {re.escape(name)} row (\d+): (.*)", log_text)
        expected_rows = [r for r, _ in case.bad_rows]
        check(
            [int(r) for r, _ in reported] == expected_rows,
            f"{name}: bad rows reported {reported}, expected rows {expected_rows}",
        )
        for (row, contains), (_, reason) in zip(case.bad_rows, reported):
            check(contains in reason, f"{name} row {row}: reason {reason!r} lacks {contains!r}")
        for text in case.log_contains:
            check(text in log_text, f"{name}: the log lacks {text!r}")

    # -- AtHoc: every employee's duty value, the ones no case mentions untouched
    expected_state = {f"{n:05d}": "" for n in range(1, USERS + 1)}
    for item in installed:
        expected_state.update({collar: athoc_value(s) for collar, s in item.case.updates.items()})
    for collar, value in expected_state.items():
        user = sim.get_user(login(collar))
        assert user is not None
        check(user.get(DUTY, "") == value, f"AtHoc {collar}: {user.get(DUTY, '')!r}, expected {value!r}")
    sent = [row["LOGIN_ID"] for e in sim.requests_to("SyncByCommonNames") for row in e.json_body]
    check(len(sent) == len(set(sent)), f"an employee was sent twice: {sent}")

    assert not problems, "\n".join(problems) + f"\n--- stderr ---\n{result.stderr[-4000:]}"


# ---------------------------------------------------------------- a defect the corpus found


def test_a_file_name_that_is_not_utf8_is_reported_and_does_not_block_the_batch(
    simulator: AtHocSimulator, sim_settings: Settings
) -> None:
    """A name of cp1252 bytes (a Windows share mounted on Linux without a character set)
    used to crash the batch after AtHoc had applied its updates, every pass: nothing was
    recorded and no file of the batch ever moved."""
    if GENERATORS["cp1252_file_name"](sim_settings.csv_directory, "x_cp1252_file_name.csv") is None:
        pytest.skip("this file system takes only valid names")
    good = sim_settings.csv_directory / "good.csv"
    good.write_bytes(b"BON,00002,P,20240617,143000,20240617143000,1,2,3,4\r\n")
    settings = dataclasses.replace(sim_settings, move_processed_files=True, auto_cleanup_hours=0)
    proc = BOBOProcessor(settings)
    try:
        first = proc.run_pass()
        second = proc.run_pass()
    finally:
        proc.close()
    assert (simulator.get_user(login("00002")) or {}).get(DUTY) == "17/06/2024 14:30:00"
    assert (settings.processed_directory / "good.csv").is_file()
    assert [p.name for p in settings.csv_directory.iterdir()] == ["x_BOBO_Zo\udceb.csv"]
    for report in (first, second):
        assert report.exit_code == 1
        assert [e for e in report.errors if "x_BOBO_Zo\\xeb.csv" in e and "rename" in e] == report.errors
        assert not any("unexpected" in e for e in report.errors)
    assert first.counts.files_done == 1 and second.counts.files == 0

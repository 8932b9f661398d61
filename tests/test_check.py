"""``bobosync check``: every check against the real HTTPS simulator, real folders, a real SQLite
file, a real lock, a real CONNECT proxy and a real TLS 1.1 server; the CLI by subprocess."""

from __future__ import annotations

import base64
import io
import os
import re
import socket
import socketserver
import sqlite3
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import pytest
import trustme

from bobosync.check import (
    Checker,
    CheckResult,
    Status,
    check_duty_values,
    run_check,
)
from bobosync.check.tls import decode_certificate, open_connection
from bobosync.database import SCHEMA_VERSION, BOBODatabase
from bobosync.locking import SingleInstanceLock
from bobosync.settings import Settings
from bobosync.simulator import SIM_CREDENTIALS, AtHocSimulator, make_users
from tests.conftest import TLSCerts
from tests.legacy_db import create_legacy_database, original_track_file_retry
from tests.test_transport import _ConnectProxy, _probe_tls11, _tls11_server_context

REPO = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^\[(?P<status> OK |WARN|FAIL|SKIP)\] (?P<name>[^:]+):\s+(?P<detail>.*)$")
FIX = re.compile(r"^\s+fix:\s+(?P<fix>.*)$")
SECRETS = (SIM_CREDENTIALS["password"], SIM_CREDENTIALS["client_secret"])


@dataclass
class Line:
    status: str
    name: str
    detail: str
    fix: str = ""


@dataclass
class Outcome:
    code: int
    text: str
    lines: list[Line]

    def named(self, name: str) -> list[Line]:
        return [line for line in self.lines if line.name == name]

    def one(self, name: str) -> Line:
        found = self.named(name)
        assert len(found) == 1, (name, self.text)
        return found[0]

    def statuses(self) -> dict[str, str]:
        return {line.name: line.status for line in self.lines}

    def with_status(self, status: str) -> list[Line]:
        return [line for line in self.lines if line.status == status]


def parse(text: str) -> list[Line]:
    lines: list[Line] = []
    for raw in text.splitlines()[1:-1]:  # the title and the summary
        match = LINE.match(raw)
        if match:
            lines.append(Line(match["status"].strip(), match["name"], match["detail"]))
            continue
        fix = FIX.match(raw)
        assert fix is not None and lines, f"unexpected line {raw!r}"
        lines[-1].fix = fix["fix"]
    return lines


def write_env(tmp_path: Path, env: dict[str, str], **changes: Optional[str]) -> Path:
    values: dict[str, str] = dict(env)
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    path = tmp_path / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


def check(tmp_path: Path, env: dict[str, str], **changes: Optional[str]) -> Outcome:
    """Write tmp_path/.env (sim_env with ``changes``; None removes) and run the check on it
    with an empty process environment."""
    return check_in(tmp_path, env, {}, **changes)


def check_in(tmp_path: Path, env: dict[str, str], environ: dict[str, str], **changes: Optional[str]) -> Outcome:
    path = write_env(tmp_path, env, **changes)
    out = io.StringIO()
    code = run_check(path, out, environ=environ)
    text = out.getvalue()
    for secret in SECRETS:
        assert secret not in text
    assert text.splitlines()[-1].startswith("summary: ")
    return Outcome(code, text, parse(text))


def all_ok(outcome: Outcome, *, except_for: tuple[str, ...] = ()) -> None:
    bad = [line for line in outcome.lines if line.status != "OK" and line.name not in except_for]
    assert bad == [], outcome.text


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(autouse=True)
def _no_proxy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(key)


def _simulator(tls_certs: TLSCerts, users: list[dict[str, str]], **kwargs: Any) -> AtHocSimulator:
    return AtHocSimulator(users=users, certfile=tls_certs.certfile, keyfile=tls_certs.keyfile, **kwargs)


# --------------------------------------------------------------------------- all OK


def test_all_ok_against_the_simulator(simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path) -> None:
    before = tree(tmp_path)
    outcome = check(tmp_path, sim_env)
    assert outcome.code == 0
    all_ok(outcome)
    names = [line.name for line in outcome.lines]
    assert names == [
        "configuration",
        "unknown settings",
        "environment overrides",
        "DISABLE_SSL_VERIFY",
        "CSV_DIRECTORY",
        "PROCESSED_DIRECTORY",
        "FAILED_FILES_DIRECTORY",
        "LOG_DIRECTORY",
        "DB_PATH folder",
        "file moves",
        "database",
        "lock",
        "proxy",
        "DNS",
        "TCP",
        "TLS",
        "certificate",
        "authentication",
        "clock",
        "users",
        "COLLAR_ID_FIELD",
        "DUTY_STATUS_FIELD",
        "shared collars",
        "e-mail",
        "METRICS_FILE",
    ]
    assert f"read from {tmp_path / '.env'} (--env-file)" in outcome.one("configuration").detail
    clock = outcome.one("clock").detail  # the simulator's Date header: the same clock
    assert "in step with AtHoc's" in clock or "AtHoc's (offset" in clock
    assert "BOBO_TIMEZONE" in clock and "ATHOC_TIMEZONE" in clock
    assert "TLSv1.2" in outcome.one("TLS").detail or "TLSv1.3" in outcome.one("TLS").detail
    cert = outcome.one("certificate").detail
    assert "issuer O=trustme" in cert and "days left" in cert and "SSL_CERT_PATH" in cert
    assert "50 of 50 user(s)" in outcome.one("users").detail
    assert "50 of 50 users have one (50 x 5 digits)" in outcome.one("COLLAR_ID_FIELD").detail
    assert "empty for all 50 users" in outcome.one("DUTY_STATUS_FIELD").detail
    assert "same volume" in outcome.one("file moves").detail
    assert outcome.text.splitlines()[-1].startswith("summary: 25 OK, 0 WARN, 0 FAIL, 0 skipped - ready")
    # It looked, and changed nothing: no files, no folders, no database, no AtHoc update.
    assert tree(tmp_path) == before
    assert simulator.requests_to("SyncByCommonNames") == []
    assert len(simulator.requests_to("search/basic")) == 1
    assert simulator.tokens_issued == 1


def test_lines_are_aligned_and_fixes_indented(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "crown_files").rmdir()
    lines = check(tmp_path, sim_env).text.splitlines()
    assert lines[0].startswith("bobosync ") and lines[0].endswith(" check")
    starts = set()
    for line in lines:
        match = re.match(r"^(\[....\] [^:]+:|\s+fix:)\s+", line)
        if match:
            starts.add(len(match.group(0)))
    assert len(starts) == 1, lines  # every detail and fix starts in the same column
    (fix,) = [line for line in lines if "fix:" in line]
    assert fix.index("fix:") == len("[FAIL] ")


# --------------------------------------------------------------------------- the CLI


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY") and not k.startswith("BOBO_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bobosync", *args],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_check_ok_exits_zero(simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(tmp_path, "check", "--env-file", str(tmp_path / ".env"))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = parse(result.stdout)
    assert [line for line in lines if line.status != "OK"] == []
    assert result.stdout.splitlines()[-1].startswith("summary: 25 OK")
    assert result.stderr == ""
    for secret in SECRETS:
        assert secret not in result.stdout


def test_cli_check_env_file_before_the_command_and_fail_exits_one(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    write_env(tmp_path, sim_env, PASSWORD="not-the-password")
    result = run_cli(tmp_path, "--env-file", str(tmp_path / ".env"), "check")
    assert result.returncode == 1, result.stdout + result.stderr
    (auth,) = [line for line in parse(result.stdout) if line.name == "authentication"]
    assert auth.status == "FAIL" and "invalid_grant" in auth.detail
    assert "not-the-password" not in result.stdout + result.stderr
    assert "NOT ready" in result.stdout.splitlines()[-1]


def test_cli_check_reports_a_run_in_progress(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    with SingleInstanceLock(tmp_path / "bobo_mapping.db.lock"):
        result = run_cli(tmp_path, "check", "--env-file", str(tmp_path / ".env"))
    assert result.returncode == 0, result.stdout + result.stderr
    (lock,) = [line for line in parse(result.stdout) if line.name == "lock"]
    assert lock.status == "WARN" and "run is in progress" in lock.detail and lock.fix


# --------------------------------------------------------------------------- configuration


def test_invalid_configuration_lists_every_problem_and_skips_the_rest(sim_env: dict[str, str], tmp_path: Path) -> None:
    outcome = check(
        tmp_path, sim_env, ORG_CODE=None, BATCH_SIZE="-3", ATHOC_SERVER_URL="http://athoc.example", LOG_LEVEL="LOUD"
    )
    assert outcome.code == 1
    problems = outcome.named("configuration")
    assert [p.status for p in problems] == ["FAIL"] * 4
    text = " | ".join(p.detail for p in problems)
    for word in ("ORG_CODE", "BATCH_SIZE", "ATHOC_SERVER_URL", "LOG_LEVEL"):
        assert word in text
    assert all(str(tmp_path / ".env") in p.fix for p in problems)
    skipped = outcome.with_status("SKIP")
    assert [s.name for s in skipped] == [
        "folders",
        "database",
        "lock",
        "network",
        "TLS",
        "authentication",
        "users",
        "e-mail",
        "metrics",
    ]
    assert all(s.detail == "not checked: configuration failed" for s in skipped)


def test_missing_env_file(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_check(tmp_path / "nowhere.env", out, environ={}) == 1
    (line,) = [x for x in parse(out.getvalue()) if x.status == "FAIL"]
    assert "not found" in line.detail


def test_unknown_and_overridden_settings_warn(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    outcome = check_in(
        tmp_path,
        sim_env,
        {"LOG_LEVEL": "DEBUG", "BATCH_SIZE": "10"},
        COLLAR_ID_FEILD="Collar-Number",
        batch_size="5",
        LOG_LEVEL="INFO",
        BATCH_SIZE="10",
    )
    assert outcome.code == 0
    unknown = outcome.one("unknown settings")
    assert unknown.status == "WARN" and "2 setting(s)" in unknown.detail
    assert "COLLAR_ID_FEILD, batch_size" in unknown.detail
    overrides = outcome.one("environment overrides")
    assert overrides.status == "WARN" and "LOG_LEVEL" in overrides.detail
    assert "BATCH_SIZE" not in overrides.detail  # same value: no confusion possible


def test_disable_ssl_verify_warns_twice_but_works(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    outcome = check(tmp_path, sim_env, DISABLE_SSL_VERIFY="true", SSL_CERT_PATH=None)
    assert outcome.code == 0
    assert outcome.one("DISABLE_SSL_VERIFY").status == "WARN"
    cert = outcome.one("certificate")
    assert cert.status == "WARN" and "NOT verified" in cert.detail
    assert "would NOT pass verification" in cert.detail and "issuer O=trustme" in cert.detail
    assert outcome.one("authentication").status == "OK"
    all_ok(outcome, except_for=("DISABLE_SSL_VERIFY", "certificate"))


def test_disable_ssl_verify_says_when_verification_would_pass(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    outcome = check(tmp_path, sim_env, DISABLE_SSL_VERIFY="true")
    assert "WOULD pass verification against SSL_CERT_PATH" in outcome.one("certificate").detail


# --------------------------------------------------------------------------- folders


def test_csv_folder_missing_fails_but_athoc_is_still_checked(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "crown_files").rmdir()
    outcome = check(tmp_path, sim_env)
    assert outcome.code == 1
    csv = outcome.one("CSV_DIRECTORY")
    assert csv.status == "FAIL" and "does not exist" in csv.detail and "never creates" in csv.fix
    assert not (tmp_path / "crown_files").exists()
    assert outcome.one("authentication").status == "OK"
    assert "file moves" not in outcome.statuses()


def test_csv_folder_counts_waiting_files(simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path) -> None:
    for name in ("a.csv", "b.CSV", "notes.txt"):
        (tmp_path / "crown_files" / name).write_text("x", encoding="utf-8")
    assert "2 CSV file(s) waiting" in check(tmp_path, sim_env).one("CSV_DIRECTORY").detail


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="needs POSIX permissions that apply (not root)"
)
def test_folder_not_writable_fails(simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path) -> None:
    failed = tmp_path / "failed_files"
    failed.mkdir()
    failed.chmod(0o555)
    csv = tmp_path / "crown_files"
    csv.chmod(0o555)
    try:
        outcome = check(tmp_path, sim_env)
    finally:
        failed.chmod(0o755)
        csv.chmod(0o755)
    assert outcome.one("FAILED_FILES_DIRECTORY").status == "FAIL"
    assert "not writable" in outcome.one("FAILED_FILES_DIRECTORY").detail
    assert outcome.one("CSV_DIRECTORY").status == "FAIL"
    assert "cannot be moved out" in outcome.one("CSV_DIRECTORY").detail


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (read-only even for root)")
def test_folders_on_a_read_only_file_system_fail(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    outcome = check(
        tmp_path,
        sim_env,
        CSV_DIRECTORY="/proc",
        FAILED_FILES_DIRECTORY="/proc/self",
        LOG_DIRECTORY="/proc/bobosync-check-logs",
    )
    csv = outcome.one("CSV_DIRECTORY")
    assert csv.status == "FAIL" and "readable but not writable" in csv.detail and "modify" in csv.fix
    failed = outcome.one("FAILED_FILES_DIRECTORY")
    assert failed.status == "FAIL" and "not writable (cannot create a file" in failed.detail
    logs = outcome.one("LOG_DIRECTORY")
    assert logs.status == "FAIL" and "does not exist and cannot be created in /proc" in logs.detail
    assert outcome.code == 1


def test_a_file_where_a_folder_should_be(simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("not a folder", encoding="utf-8")
    outcome = check(
        tmp_path,
        sim_env,
        FAILED_FILES_DIRECTORY=str(blocker),
        LOG_DIRECTORY=str(blocker / "logs"),
        DB_PATH=str(blocker / "db" / "bobo.db"),
    )
    assert outcome.code == 1
    failed = outcome.one("FAILED_FILES_DIRECTORY")
    assert failed.status == "FAIL" and "is a file, not a folder" in failed.detail
    logs = outcome.one("LOG_DIRECTORY")
    assert logs.status == "FAIL" and f"cannot be created: {blocker} is a file" in logs.detail
    assert outcome.one("DB_PATH folder").status == "FAIL"
    assert blocker.read_text(encoding="utf-8") == "not a folder"


def test_processed_folder_matters_only_when_files_are_moved(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("", encoding="utf-8")
    kept = check(tmp_path, sim_env, PROCESSED_DIRECTORY=str(blocker))
    assert kept.one("PROCESSED_DIRECTORY").status == "WARN"
    assert "not used while MOVE_PROCESSED_FILES=false" in kept.one("PROCESSED_DIRECTORY").detail
    assert kept.code == 0
    moved = check(tmp_path, sim_env, PROCESSED_DIRECTORY=str(blocker), MOVE_PROCESSED_FILES="true")
    assert moved.one("PROCESSED_DIRECTORY").status == "FAIL"
    assert moved.code == 1


def test_moves_to_another_volume_are_explained(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second volume to try")
    outcome = check(
        tmp_path,
        sim_env,
        MOVE_PROCESSED_FILES="true",
        FAILED_FILES_DIRECTORY=str(shm / f"bobosync-check-test-{os.getpid()}"),
    )
    moves = outcome.one("file moves")
    assert moves.status == "OK"
    assert "PROCESSED_DIRECTORY on the same volume" in moves.detail
    assert "FAILED_FILES_DIRECTORY on another volume than CSV_DIRECTORY: each move is copy, verify" in moves.detail
    assert not (shm / f"bobosync-check-test-{os.getpid()}").exists()


# --------------------------------------------------------------------------- database and lock


def test_existing_database_is_described_read_only(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    db_path = tmp_path / "bobo_mapping.db"
    with BOBODatabase(db_path) as db:
        db.replace_mappings(
            {"00001": "user00001@force.example", "00002": "user00002@force.example"}, datetime(2025, 6, 1, 20, 0)
        )
        db.record_sync("success", datetime(2025, 6, 1, 20, 0), 2)
    before = db_path.read_bytes()
    outcome = check(tmp_path, sim_env)
    detail = outcome.one("database").detail
    assert outcome.one("database").status == "OK"
    assert f"schema {SCHEMA_VERSION}," in detail and "2 worker mapping(s)" in detail
    assert "last mapping sync 2025-06-01 20:00 (success)" in detail
    assert db_path.read_bytes() == before


def test_the_originals_database_is_described_without_being_upgraded(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    db_path = tmp_path / "bobo_mapping.db"
    create_legacy_database(
        db_path, {"00001": "user00001@force.example"}, last_sync=(datetime(2025, 6, 1, 20, 0, 0, 5), "completed")
    )
    original_track_file_retry(db_path, "stuck.csv")
    before = db_path.read_bytes()
    outcome = check(tmp_path, sim_env)
    database = outcome.one("database")
    assert database.status != "FAIL", database.detail
    assert "1 worker mapping(s)" in database.detail
    assert "last mapping sync 2025-06-01 20:00 (completed)" in database.detail
    assert db_path.read_bytes() == before
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0


def test_unreadable_or_newer_database_fails(simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path) -> None:
    db_path = tmp_path / "bobo_mapping.db"
    db_path.write_bytes(b"this is not an SQLite database, just some text" * 100)
    garbage = check(tmp_path, sim_env).one("database")
    assert garbage.status == "FAIL" and "move it aside" in garbage.fix
    db_path.unlink()
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    newer = check(tmp_path, sim_env).one("database")
    assert newer.status == "FAIL" and "newer bobosync" in newer.detail


def test_lock_held_in_this_process_warns_and_free_lock_is_left_alone(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    lock_path = tmp_path / "bobo_mapping.db.lock"
    with SingleInstanceLock(lock_path):
        held = check(tmp_path, sim_env)
    assert held.one("lock").status == "WARN" and held.code == 0
    free = check(tmp_path, sim_env)  # the file exists now; nobody holds it
    assert free.one("lock").status == "OK" and free.one("lock").detail.startswith("free")
    with SingleInstanceLock(lock_path):
        pass  # the check released what it took


# --------------------------------------------------------------------------- network


def test_unreachable_server_fails_tcp_and_skips_the_rest(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    simulator.stop()
    outcome = check(tmp_path, sim_env)
    assert outcome.code == 1
    tcp = outcome.one("TCP")
    assert tcp.status == "FAIL" and "cannot connect" in tcp.detail and "firewall" in tcp.fix
    assert {n: outcome.one(n).status for n in ("TLS", "authentication", "users")} == {
        "TLS": "SKIP",
        "authentication": "SKIP",
        "users": "SKIP",
    }
    assert outcome.one("users").detail == "not checked: TCP failed"


def test_unknown_host_fails_dns(sim_env: dict[str, str], tmp_path: Path) -> None:
    outcome = check(tmp_path, sim_env, ATHOC_SERVER_URL="https://athoc.bobosync-check.invalid")
    dns = outcome.one("DNS")
    assert dns.status == "FAIL" and "cannot be resolved" in dns.detail and "HTTPS_PROXY" in dns.fix
    assert "TCP" not in outcome.statuses()


def test_everything_through_a_connect_proxy(simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path) -> None:
    proxy = _ConnectProxy()
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        port = proxy.server_address[1]
        outcome = check(tmp_path, sim_env, HTTPS_PROXY=f"http://user:proxy-secret@127.0.0.1:{port}")
    finally:
        proxy.shutdown()
        proxy.server_close()
    all_ok(outcome)
    assert "proxy-secret" not in outcome.text
    assert f"http://***@127.0.0.1:{port} (from HTTPS_PROXY/HTTP_PROXY setting)" in outcome.one("proxy").detail
    assert outcome.one("TCP").detail.startswith(f"connected to proxy 127.0.0.1:{port}")
    sim_port = simulator.url.rsplit(":", 1)[1]
    # the TLS probe and the client both went through the tunnel
    assert len([t for t in proxy.tunnels if t.endswith(":" + sim_port)]) >= 2


def test_unreachable_proxy_fails(simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    outcome = check(tmp_path, sim_env, HTTPS_PROXY=f"http://user:proxy-secret@127.0.0.1:{free_port}")
    tcp = outcome.one("TCP")
    assert tcp.status == "FAIL" and f"proxy 127.0.0.1:{free_port}" in tcp.detail and "HTTPS_PROXY" in tcp.fix
    assert "proxy-secret" not in outcome.text


# --------------------------------------------------------------------------- TLS and certificate


def test_certificate_not_trusted_without_ssl_cert_path(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    outcome = check(tmp_path, sim_env, SSL_CERT_PATH=None)
    assert outcome.code == 1
    cert = outcome.one("certificate")
    assert cert.status == "FAIL"
    assert "not trusted" in cert.detail and "issuer O=trustme" in cert.detail
    assert "default CA bundle" in cert.detail
    assert "SSL_CERT_PATH" in cert.fix and "do not set DISABLE_SSL_VERIFY" in cert.fix
    assert outcome.one("TLS").status == "OK"  # the protocol itself is fine
    assert outcome.one("authentication").detail == "not checked: certificate failed"
    assert simulator.tokens_issued == 0


def _server_with_cert(tls_certs: TLSCerts, tmp_path: Path, *names: str, **cert_args: Any) -> AtHocSimulator:
    """A simulator whose certificate comes from a new CA, written to tmp_path/ca2.pem."""
    ca = trustme.CA()
    leaf = ca.issue_cert(*names, **cert_args)
    ca.cert_pem.write_to_path(str(tmp_path / "ca2.pem"))
    certfile, keyfile = tmp_path / "cert2.pem", tmp_path / "key2.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(keyfile))
    return AtHocSimulator(users=make_users(5), certfile=certfile, keyfile=keyfile).start()


def test_certificate_for_another_host_fails(tls_certs: TLSCerts, sim_env: dict[str, str], tmp_path: Path) -> None:
    sim = _server_with_cert(tls_certs, tmp_path, "athoc.example")
    try:
        outcome = check(tmp_path, sim_env, ATHOC_SERVER_URL=sim.url, SSL_CERT_PATH=str(tmp_path / "ca2.pem"))
    finally:
        sim.stop()
    cert = outcome.one("certificate")
    assert cert.status == "FAIL" and "127.0.0.1" in cert.detail
    assert "host name the certificate is issued for" in cert.fix


def test_certificate_expiring_soon_warns_and_expired_fails(
    tls_certs: TLSCerts, sim_env: dict[str, str], tmp_path: Path
) -> None:
    now = datetime.now(timezone.utc)
    soon = _server_with_cert(tls_certs, tmp_path, "127.0.0.1", not_after=now + timedelta(days=10, hours=1))
    try:
        outcome = check(tmp_path, sim_env, ATHOC_SERVER_URL=soon.url, SSL_CERT_PATH=str(tmp_path / "ca2.pem"))
    finally:
        soon.stop()
    cert = outcome.one("certificate")
    assert cert.status == "WARN" and "(10 days left)" in cert.detail and "renew" in cert.fix
    assert outcome.code == 0

    expired = _server_with_cert(
        tls_certs, tmp_path, "127.0.0.1", not_before=now - timedelta(days=30), not_after=now - timedelta(days=2)
    )
    try:
        outcome = check(tmp_path, sim_env, ATHOC_SERVER_URL=expired.url, SSL_CERT_PATH=str(tmp_path / "ca2.pem"))
    finally:
        expired.stop()
    cert = outcome.one("certificate")
    assert cert.status == "FAIL" and "expired" in cert.detail and "renew" in cert.fix
    assert f"expires {(now - timedelta(days=2)):%Y-%m-%d}" in cert.detail


def test_tls11_only_server_fails(tls_certs: TLSCerts, sim_env: dict[str, str], tmp_path: Path) -> None:
    try:
        context = _tls11_server_context(tls_certs.certfile, tls_certs.keyfile)
    except (ssl.SSLError, ValueError) as exc:
        pytest.skip(f"this OpenSSL cannot build a TLS 1.1 server context: {exc}")
    sim = AtHocSimulator(make_users(3), ssl_context=context).start()
    try:
        try:
            version = _probe_tls11(sim.url)
        except (ssl.SSLError, OSError) as exc:
            pytest.skip(f"this OpenSSL will not speak TLS 1.1 even at SECLEVEL=0: {exc}")
        if version != "TLSv1.1":
            pytest.skip(f"the TLS 1.1 server negotiated {version!r}")
        outcome = check(tmp_path, sim_env, ATHOC_SERVER_URL=sim.url)
    finally:
        sim.stop()
    tls = outcome.one("TLS")
    assert tls.status == "FAIL" and "offers only TLSv1.1" in tls.detail and "TLS 1.2" in tls.fix
    assert outcome.one("certificate").status == "SKIP"
    assert outcome.one("authentication").detail == "not checked: TLS failed"
    assert sim.tokens_issued == 0


def test_certificate_decoder_agrees_with_the_ssl_module(simulator: AtHocSimulator, tls_certs: TLSCerts) -> None:
    host, port = simulator.url.split("://", 1)[1].rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(tls_certs.ca_pem))
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        decoded = tls.getpeercert()
    assert der is not None and decoded is not None
    info = decode_certificate(der)
    expected = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(decoded["notAfter"])), timezone.utc)
    assert info.not_after == expected
    subject = dict(pair[0] for pair in decoded["subject"])  # type: ignore[misc]
    issuer = dict(pair[0] for pair in decoded["issuer"])  # type: ignore[misc]
    assert info.subject == f"O={subject['organizationName']}, OU={subject['organizationalUnitName']}"
    assert info.issuer == f"O={issuer['organizationName']}, OU={issuer['organizationalUnitName']}"
    with pytest.raises(ValueError):
        decode_certificate(der[: len(der) // 2])
    with pytest.raises(ValueError):
        decode_certificate(b"\x30\x03\x02\x01\x00")


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    ("change", "error", "first"),
    [
        ({"PASSWORD": "wrong-password"}, "invalid_grant", "APIUSER and PASSWORD"),
        ({"APIUSER": "someone-else"}, "invalid_grant", "APIUSER and PASSWORD"),
        ({"ORG_CODE": "OTHERORG"}, "tenant", "ORG_CODE"),
        ({"CLIENT_SECRET": "wrong-client-secret"}, "invalid_client", "CLIENT_ID and CLIENT_SECRET"),
    ],
)
def test_authentication_refused(
    simulator: AtHocSimulator,
    sim_env: dict[str, str],
    tmp_path: Path,
    change: dict[str, str],
    error: str,
    first: str,
) -> None:
    outcome = check(tmp_path, sim_env, **change)
    assert outcome.code == 1
    auth = outcome.one("authentication")
    assert auth.status == "FAIL" and error in auth.detail
    assert auth.fix.startswith(f"check {first}")
    for name in ("APIUSER", "PASSWORD", "CLIENT_ID", "ORG_CODE"):
        assert name in auth.fix
    assert outcome.one("users").status == "SKIP"
    for value in change.values():
        if "wrong" in value:
            assert value not in outcome.text


def test_operator_without_permission_to_read_users(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    simulator.fail_next(
        status=403, path_contains="search/basic", body='{"Message": "Authorization has been denied for this request."}'
    )
    outcome = check(tmp_path, sim_env)
    users = outcome.one("users")
    assert users.status == "FAIL" and "403" in users.detail and "User Manager" in users.fix
    assert "COLLAR_ID_FIELD" not in outcome.statuses()


# --------------------------------------------------------------------------- the page of users


def _users_check(
    tls_certs: TLSCerts, sim_env: dict[str, str], tmp_path: Path, users: list[dict[str, str]], **changes: Optional[str]
) -> Outcome:
    sim = _simulator(tls_certs, users).start()
    try:
        return check(tmp_path, sim_env, ATHOC_SERVER_URL=sim.url, **changes)
    finally:
        sim.stop()


def test_collar_field_misnamed_fails(simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path) -> None:
    outcome = check(tmp_path, sim_env, COLLAR_ID_FIELD="Badge-No")
    assert outcome.code == 1
    collar = outcome.one("COLLAR_ID_FIELD")
    assert collar.status == "FAIL" and "Badge-No" in collar.detail and "no such attribute" in collar.detail
    assert "COLLAR_ID_FIELD" in collar.fix
    assert outcome.one("shared collars").status == "SKIP"


def test_collar_field_present_but_empty_everywhere_fails(
    tls_certs: TLSCerts, sim_env: dict[str, str], tmp_path: Path
) -> None:
    users = make_users(4)
    for user in users:
        user["Collar-Number"] = " "
    collar = _users_check(tls_certs, sim_env, tmp_path, users).one("COLLAR_ID_FIELD")
    assert collar.status == "FAIL" and "every value is empty" in collar.detail


def test_odd_collar_values_warn(tls_certs: TLSCerts, sim_env: dict[str, str], tmp_path: Path) -> None:
    users = make_users(6)
    users[0]["Collar-Number"] = "PC 1234"
    users[1]["Collar-Number"] = "Ünal-7"
    users[2]["Collar-Number"] = "A1234"
    outcome = _users_check(tls_certs, sim_env, tmp_path, users)
    collar = outcome.one("COLLAR_ID_FIELD")
    assert collar.status == "WARN"
    assert "2 cannot match a BOBO Employee_ID" in collar.detail
    assert "'PC 1234'" in collar.detail and "'\\xdcnal-7'" in collar.detail
    assert "A1234" not in collar.detail.split("Employee_ID", 1)[1]
    assert "3 x 5 digits" in collar.detail and "1 x 5 letters/digits" in collar.detail
    assert outcome.code == 0


def test_shared_collar_numbers_warn_with_examples(tls_certs: TLSCerts, sim_env: dict[str, str], tmp_path: Path) -> None:
    users = make_users(10)
    users[4]["Collar-Number"] = "00001"
    users[7]["Collar-Number"] = "00001"
    users[9]["Collar-Number"] = "00003"
    outcome = _users_check(tls_certs, sim_env, tmp_path, users)
    shared = outcome.one("shared collars")
    assert shared.status == "WARN"
    assert "2 collar number(s) belong to several users" in shared.detail
    assert "'00001' held by user00001@force.example, user00005@force.example, user00008@force.example" in shared.detail
    assert "'00003' held by user00003@force.example, user00010@force.example" in shared.detail
    assert "only the first" in shared.fix
    assert outcome.code == 0


def test_duty_values_in_another_format_warn(tls_certs: TLSCerts, sim_env: dict[str, str], tmp_path: Path) -> None:
    users = make_users(5)
    users[0]["On-Duty-DTG"] = "2025-06-17 14:30"
    users[1]["On-Duty-DTG"] = "2025-06-18 07:00"
    outcome = _users_check(tls_certs, sim_env, tmp_path, users)
    duty = outcome.one("DUTY_STATUS_FIELD")
    assert duty.status == "WARN"
    assert "all 2 value(s) do not match ATHOC_DATETIME_FORMAT '%d/%m/%Y %H:%M:%S'" in duty.detail
    assert "'2025-06-17 14:30'" in duty.detail and "ATHOC_DATETIME_FORMAT" in duty.fix
    fixed = _users_check(tls_certs, sim_env, tmp_path, users, ATHOC_DATETIME_FORMAT="%Y-%m-%d %H:%M")
    assert fixed.one("DUTY_STATUS_FIELD").status == "OK"


def test_duty_field_not_returned_at_all_warns(tls_certs: TLSCerts, sim_env: dict[str, str], tmp_path: Path) -> None:
    outcome = _users_check(tls_certs, sim_env, tmp_path, make_users(5), DUTY_STATUS_FIELD="On-Duty-Time")
    duty = outcome.one("DUTY_STATUS_FIELD")
    assert duty.status == "WARN" and "no such attribute" in duty.detail and "DUTY_STATUS_FIELD" in duty.fix


def test_duty_value_checks() -> None:
    now = datetime(2025, 6, 18, 12, 0, 0)
    fmt = "%d/%m/%Y %H:%M:%S"

    def result(*values: str) -> CheckResult:
        users = [{"LOGIN_ID": f"u{i}", "On-Duty-DTG": v} for i, v in enumerate(values)]
        return check_duty_values(users, "On-Duty-DTG", fmt, 24.0, now)

    fine = result("18/06/2025 08:00:00", "16/06/2025 08:00:00", "")
    assert fine.status is Status.OK
    assert "2 of 3 users have a value" in fine.detail
    assert "1 are older than AUTO_CLEANUP_HOURS=24" in fine.detail
    mixed = result("18/06/2025 08:00:00", "18/06/2025 8am")
    assert mixed.status is Status.WARN and "1 of 2 value(s)" in mixed.detail
    swapped = result("06/12/2025 08:00:00")  # 6 December: day and month swapped for 12 June?
    assert swapped.status is Status.WARN and "future" in swapped.detail
    assert result("", "").status is Status.OK


# --------------------------------------------------------------------------- robustness


def test_a_check_that_crashes_is_a_fail_line_not_a_traceback(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Checker) -> Iterator[CheckResult]:
        raise RuntimeError("boom")

    monkeypatch.setattr(Checker, "check_database", broken)
    outcome = check(tmp_path, sim_env)
    database = outcome.one("database")
    assert database.status == "FAIL" and "RuntimeError: boom" in database.detail
    assert outcome.one("authentication").status == "OK"  # the other checks still ran
    assert outcome.code == 1


def test_output_survives_a_stream_that_cannot_encode(
    tls_certs: TLSCerts, sim_env: dict[str, str], tmp_path: Path
) -> None:
    users = make_users(3)
    users[0]["LOGIN_ID"] = "zoë@force.example"
    users[0]["Collar-Number"] = "00002"
    sim = _simulator(tls_certs, users).start()
    try:
        path = write_env(tmp_path, sim_env, ATHOC_SERVER_URL=sim.url)
        raw = io.BytesIO()
        stream = io.TextIOWrapper(raw, encoding="ascii", newline="\n")
        code = run_check(path, stream, environ={})
        stream.flush()
    finally:
        sim.stop()
    text = raw.getvalue().decode("ascii")
    assert code == 0
    assert "zo\\xeb@force.example" in text


def test_settings_secrets_never_printed_even_if_a_message_held_one(sim_settings: Settings) -> None:
    from bobosync.check import _redact

    assert _redact(f"x {SIM_CREDENTIALS['password']} y https://u:p@h", sim_settings.secret_values()) == (
        "x *** y https://***@h"
    )
    assert _redact("abc", ("a",)) == "abc"  # a one-letter secret would garble every line


def test_a_proxy_refusing_the_tunnel_is_named_without_its_credentials() -> None:
    heads: list[bytes] = []

    class Refusing(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = self.request.recv(4096)
                if not chunk:
                    return
                head += chunk
            heads.append(head)
            self.request.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Refusing) as proxy:
        thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            port = proxy.server_address[1]
            with pytest.raises(OSError) as caught:
                open_connection("athoc.example.invalid", 443, f"http://user:proxy-secret@127.0.0.1:{port}", 5)
        finally:
            proxy.shutdown()
    message = str(caught.value)
    assert "refused the tunnel to athoc.example.invalid:443" in message and "407" in message
    assert "proxy-secret" not in message
    assert heads and heads[0].startswith(b"CONNECT athoc.example.invalid:443 HTTP/1.")
    assert b"Proxy-Authorization: Basic " + base64.b64encode(b"user:proxy-secret") in heads[0]


def test_an_original_installations_leftovers_are_named_with_what_to_change(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "myenv" / "Scripts").mkdir(parents=True)
    outcome = check(tmp_path, sim_env, GRANT_TYPE="password", MOVE_PROCESSED_FILES="yes", AUTO_CLEANUP_HOURS="0")
    grant = outcome.one("GRANT_TYPE")
    assert grant.status == "WARN" and "ignored" in grant.detail and "delete the GRANT_TYPE line" in grant.fix
    assert "GRANT_TYPE" not in outcome.one("unknown settings").detail  # not taken for a misspelling
    move = outcome.one("MOVE_PROCESSED_FILES")
    assert move.status == "WARN" and "read this as false" in move.detail and "reads 'yes' as true" in move.detail
    cleanup = outcome.one("AUTO_CLEANUP_HOURS")
    assert cleanup.status == "WARN" and "cleared EVERY duty value" in cleanup.detail and "off" in cleanup.detail
    old_venv = outcome.one("myenv")
    assert old_venv.status == "WARN" and str(tmp_path / "myenv") in old_venv.detail
    assert outcome.code == 0  # leftovers are warnings: nothing here stops a pass
    # A value the original took and bobosync refuses: the FAIL, and what changed beside it.
    refused = check(tmp_path, sim_env, SYNC_MAPPINGS="maybe")
    assert refused.code == 1 and refused.one("configuration").status == "FAIL"
    assert "invalid (refused)" in refused.one("SYNC_MAPPINGS").detail

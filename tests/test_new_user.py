"""What a new user trips over, each tried as a new user would: the CLI as a real subprocess,
against the HTTPS simulator, real folders and databases."""

from __future__ import annotations

import contextlib
import csv
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from bobosync.locking import SingleInstanceLock
from bobosync.simulator import SIM_CREDENTIALS, AtHocSimulator, export_row, write_bobo_file
from tests.conftest import TLSCerts
from tests.harness import child_env, run_cli, sim_env_file, write_env_file

TOKEN_PATH = "/AuthServices/Auth/connect/token"


def site(simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path, **extra: str) -> Path:
    return sim_env_file(simulator, tmp_path / "site", tls_certs.ca_pem, extra)


def bobosync(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bobosync", *args],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ---------------------------------------------------------------- the simulator


def test_generated_files_end_about_now_so_no_event_is_held_as_future(
    simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    env = site(simulator, tls_certs, tmp_path)
    folder = env.parent / "crown_files"
    started = datetime.now().replace(microsecond=0)
    result = subprocess.run(
        [sys.executable, "-m", "bobosync.simulator", "generate", str(folder), "--files", "70"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    stamps = []
    for path in folder.glob("*.csv"):
        with path.open(newline="", encoding="utf-8") as handle:
            stamps += [datetime.strptime(row[5], "%Y%m%d%H%M%S") for row in csv.reader(handle)]
    assert len(list(folder.glob("*.csv"))) == 70
    assert max(stamps) <= datetime.now() and max(stamps) >= started - timedelta(minutes=2)
    assert min(stamps) >= started - timedelta(minutes=71)
    passed = run_cli(env)
    assert passed.returncode == 0, passed.stderr
    assert "held 0" in passed.stderr and "ahead of this server's clock" not in passed.stderr


def test_simulator_tls_makes_a_throwaway_ca_and_prints_it(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bobosync.simulator", "--tls", "--tls-dir", str(tmp_path / "tls")],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        block = {}
        while "SSL_CERT_PATH" not in block:
            line = proc.stdout.readline()
            assert line, "the simulator ended before printing its .env block"
            key, _, value = line.strip().partition("=")
            if value:
                block[key] = value
        assert block["ATHOC_SERVER_URL"].startswith("https://127.0.0.1:")
        assert Path(block["SSL_CERT_PATH"]) == tmp_path / "tls" / "ca.pem"
        answer = requests.post(
            block["ATHOC_SERVER_URL"] + TOKEN_PATH,
            verify=block["SSL_CERT_PATH"],
            timeout=10,
            data={
                "grant_type": "password",
                "client_id": SIM_CREDENTIALS["client_id"],
                "client_secret": SIM_CREDENTIALS["client_secret"],
                "username": SIM_CREDENTIALS["username"],
                "password": SIM_CREDENTIALS["password"],
                "acr_values": f"tenant:{SIM_CREDENTIALS['org_code']}",
                "scope": "athoc.iws.web.api",
            },
        )
        assert answer.status_code == 200 and "access_token" in answer.json()
        with pytest.raises(requests.exceptions.SSLError):  # not trusted by default: it is throwaway
            requests.get(block["ATHOC_SERVER_URL"], timeout=10)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


# ---------------------------------------------------------------- the demo


def test_demo_shows_everyone_on_duty_who_booked_off_and_refuses_an_old_folder(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    first = bobosync("demo", "--dir", str(folder), "--users", "80", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    on_duty = int(re.search(r"On duty in AtHoc now: (\d+) user\(s\)", out).group(1))  # type: ignore[union-attr]
    listed = re.findall(r"^  \d{5} +user\d{5}@force\.example +On-Duty-DTG = ", out, re.MULTILINE)
    assert on_duty > 15 and len(listed) == on_duty  # every one of them, not the first 15
    booked_off = re.search(r"--- a second pass, after (\d{5}) and (\d{5}) booked off ---", out)
    assert booked_off is not None
    assert f"Booked off by the second pass: {booked_off[1]} (off duty), {booked_off[2]} (off duty)" in out
    assert re.search(
        r"BOBO_late_arrival_output\.csv: 1 rows, 0 bad, 0 update\(s\), 1 superseded "
        r"\(a newer event for the same person exists\): done",
        first.stderr,
    )
    assert "left for you to look at" not in out  # a folder the user chose is theirs

    again = bobosync("demo", "--dir", str(folder), cwd=tmp_path)
    assert again.returncode == 2
    assert f"demo: {folder} is not empty (a demo ran there before?)" in again.stdout
    assert "Pass exit code" not in again.stdout


def test_a_temporary_demo_folder_is_named_as_left_behind(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bobosync", "demo", "--users", "80"],
        cwd=tmp_path,
        env=child_env({"TMPDIR": str(tmp_path)}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    [folder] = list(tmp_path.glob("bobosync-demo-*"))
    assert f"The demo folder {folder} is left for you to look at; delete it when you are done." in result.stdout


# ---------------------------------------------------------------- --watch waiting for the lock


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_watch_waiting_for_the_lock_stops_cleanly_on_the_first_signal(
    simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path, stop: signal.Signals
) -> None:
    env = site(simulator, tls_certs, tmp_path)
    log_file = env.parent / "logs" / "bobo_processor.log"
    with SingleInstanceLock(env.parent / "bobo_mapping.db.lock"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "bobosync", "--env-file", str(env), "--watch"],
            cwd=env.parent,
            env=child_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not (log_file.exists() and "waiting for it to finish" in log_file.read_text(encoding="utf-8")):
                assert time.monotonic() < deadline and proc.poll() is None, "never started waiting"
                time.sleep(0.05)
            proc.send_signal(stop)
            _, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    assert "stop requested while waiting for the lock; no pass was run" in err
    assert "interrupted" not in err and "Traceback" not in err


# ---------------------------------------------------------------- configuration


def test_configuration_errors_say_which_env_file_was_read_or_where_none_was_found(tmp_path: Path) -> None:
    env = write_env_file(tmp_path / "my.env", {"ATHOC_SERVER_URL": "https://athoc.example"})
    named = bobosync("--env-file", str(env), cwd=tmp_path)
    assert named.returncode == 2
    assert f"(settings: read from {env} (--env-file); the process environment wins over it)" in named.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    nowhere = bobosync(cwd=empty)
    assert nowhere.returncode == 2
    assert "(settings: no .env file found (looked for: --env-file, the BOBO_ENV_FILE variable, " in nowhere.stderr
    assert str(empty / ".env") in nowhere.stderr


def test_unknown_and_repeated_settings_are_warned_about_once_per_pass(
    simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    env = site(simulator, tls_certs, tmp_path, MOVE_PROCESSED_FILE="true")
    with env.open("a", encoding="utf-8") as handle:
        handle.write("BATCH_SIZE=5\nBATCH_SIZE=7\n")
    result = run_cli(env)
    assert result.returncode == 0, result.stderr
    unknown = [line for line in result.stderr.splitlines() if "MOVE_PROCESSED_FILE: not a bobosync setting" in line]
    assert len(unknown) == 1 and "WARNING" in unknown[0] and "misspelt?" in unknown[0]
    assert result.stderr.count("BATCH_SIZE is written 2 times; only the last one is used") == 1
    dry = run_cli(env, "--dry-run")
    assert dry.stderr.count("MOVE_PROCESSED_FILE: not a bobosync setting") == 1


def test_a_misspelt_host_is_named_and_not_retried(
    simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    env = site(
        simulator,
        tls_certs,
        tmp_path,
        ATHOC_SERVER_URL="https://athoc.exmaple.invalid",
        HTTP_RETRY_ATTEMPTS="4",
        HTTP_RETRY_BACKOFF_SECONDS="2",
    )
    started = time.monotonic()
    result = run_cli(env)
    assert result.returncode == 1
    assert time.monotonic() - started < 8  # 4 tries 2 s apart would take far longer
    assert "the host name 'athoc.exmaple.invalid' does not resolve" in result.stderr
    assert "check the host in ATHOC_SERVER_URL" in result.stderr
    assert "retrying" not in result.stderr


def test_a_refused_connection_names_the_setting(simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path) -> None:
    with socketless_port() as port:
        env = site(simulator, tls_certs, tmp_path, ATHOC_SERVER_URL=f"https://127.0.0.1:{port}")
        result = run_cli(env)
    assert result.returncode == 1
    line = next(line for line in result.stderr.splitlines() if f"connection refused by 127.0.0.1:{port} (" in line)
    assert "): nothing accepts connections there; check the host and port in ATHOC_SERVER_URL" in line


@contextlib.contextmanager
def socketless_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, never listening, so no one else takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


# ---------------------------------------------------------------- the command line


def test_log_level_any_case_interval_only_with_watch_and_an_optional_command(
    simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    env = site(simulator, tls_certs, tmp_path)
    debug = run_cli(env, "--log-level", "debug")
    assert debug.returncode == 0 and " DEBUG " in debug.stderr
    critical = run_cli(env, "--log-level", "CRITICAL")
    assert critical.returncode == 0 and critical.stderr == ""
    interval = run_cli(env, "--interval", "5")
    assert interval.returncode == 2 and "--interval works only with --watch" in interval.stderr
    usage = bobosync("--help", cwd=tmp_path)
    assert usage.stdout.startswith("usage: bobosync [OPTIONS] [COMMAND ...]")
    assert "Without a COMMAND: one pass" in " ".join(usage.stdout.split())


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("status", "Exit codes: 0 healthy, 1 warning, 2 unhealthy"),
        ("check", "Exit codes: 0 nothing FAILed (read any WARN lines), 1 at least one check FAILed"),
        ("set-secret", "Store a secret in the operating system's credential store"),
        ("notify-test", "Exit codes: 0 sent, 1 not sent"),
    ],
)
def test_help_of_each_command_says_what_it_needs_to(tmp_path: Path, command: str, expected: str) -> None:
    result = bobosync(command, "--help", cwd=tmp_path)
    assert result.returncode == 0 and expected in " ".join(result.stdout.split())


def test_events_held_back_as_future_are_named_as_held(
    simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    env = site(simulator, tls_certs, tmp_path)
    now = datetime.now().replace(microsecond=0)
    write_bobo_file(
        env.parent / "crown_files",
        [export_row("BON", "00001", now + timedelta(hours=3)), export_row("BON", "00002", now)],
        now,
        name="ahead.csv",
    )
    result = run_cli(env)
    assert result.returncode == 1
    assert "ahead.csv: 1 event(s) held back as dated in the future; kept for retry (attempt 1 of 5)" in result.stderr
    assert "update(s) failed" not in result.stderr
    assert "failed 0, held 1, unmapped 0" in result.stderr


def test_a_dry_run_that_cannot_finish_says_why_and_creates_nothing(
    simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    env = site(simulator, tls_certs, tmp_path, CSV_DIRECTORY=str(tmp_path / "no-such-folder"))
    result = run_cli(env, "--dry-run")
    assert result.returncode == 1
    missing = tmp_path / "no-such-folder"
    assert result.stdout.startswith(f"Dry run could not finish: cannot list CSV_DIRECTORY {missing}")
    assert "nothing was changed" in result.stdout
    assert not (env.parent / "logs").exists() and not (env.parent / "bobo_mapping.db").exists()

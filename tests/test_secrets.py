"""Secret hygiene: the password, the client secret and every access token AtHoc issued never
appear in output, logs, the database, error notes or exception texts, at LOG_LEVEL=DEBUG.

The credentials are distinctive values holding characters that URL- and form-encoding change
(``/ + & = # %`` and a space), and every scan looks for the raw value and its encoded forms,
so a request body or URL logged anywhere would be caught too. The tokens are the ones the
simulator really issued (recorded as it answered the token requests). Each scenario runs the
real CLI in a subprocess against the simulator; a few exception texts are produced in-process.
"""

from __future__ import annotations

import importlib.util
import json
import traceback
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import quote, quote_plus

import pytest

from bobosync.client import AtHocClient
from bobosync.errors import AtHocError
from bobosync.settings import load_settings
from bobosync.simulator import AtHocSimulator, make_users
from tests.conftest import TLSCerts
from tests.harness import DUTY, FMT, Event, InputBook, run_cli, sim_env_file

PASSWORD = "Pw-7f3a9c/DISTINCT+&=x"
CLIENT_SECRET = "Cs-91be22 DISTINCT#%y"
WRONG_PASSWORD = "Wrong-4d1e0b/DISTINCT+&z"


class RecordingSimulator(AtHocSimulator):
    """The simulator, remembering every access token it hands out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.issued_tokens: list[str] = []

    def _token(self, request: Any, form: Mapping[str, str]) -> Any:
        response = super()._token(request, form)
        if response.status == 200:
            self.issued_tokens.append(json.loads(response.body)["access_token"])
        return response


def forms_of(secret: str) -> set[str]:
    """The ways a secret could be written down: raw, URL-encoded, form-encoded, JSON-escaped."""
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), json.dumps(secret)[1:-1]}


def hits(texts: Mapping[str, str], secrets: Iterable[str]) -> list[str]:
    """``where: which form`` for every secret form found in any of ``texts``."""
    found = []
    for secret in secrets:
        for form in sorted(forms_of(secret)):
            for where, text in texts.items():
                if form in text:
                    found.append(f"{where}: contains {form!r}")
    return found


def files_under(root: Path, skip: Iterable[Path] = ()) -> dict[str, str]:
    """Every file below ``root`` (logs, database and its -wal/-shm, notes, moved files...), as
    text decoded byte for byte."""
    skipped = {p.resolve() for p in skip}
    texts = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.resolve() not in skipped:
            texts[str(path.relative_to(root))] = path.read_bytes().decode("latin-1")
    return texts


@pytest.fixture
def secret_sim(tls_certs: TLSCerts) -> Iterator[RecordingSimulator]:
    sim = RecordingSimulator(
        users=make_users(30),
        certfile=tls_certs.certfile,
        keyfile=tls_certs.keyfile,
        password=PASSWORD,
        client_secret=CLIENT_SECRET,
    )
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


Runs = list[tuple[str, ...]]
#: Prepares the simulator and the files; returns the CLI runs to make and settings to override.
Scenario = Callable[[RecordingSimulator, InputBook], tuple[Runs, dict[str, str]]]


def _normal(sim: RecordingSimulator, book: InputBook) -> tuple[Runs, dict[str, str]]:
    """A pass with a mapping sync, updates, a bad file, and a stale value to clean up."""
    book.add([Event("BON", "00001", book.clock.fresh()), Event("BOF", "00002", book.clock.fresh())])
    book.add([], bad_rows=[InputBook.bad_row("00003", 0)])
    sim.set_attribute("user00009@force.example", DUTY, book.clock.stale().strftime(FMT))
    return [()], {}


def _refresh_after_401(sim: RecordingSimulator, book: InputBook) -> tuple[Runs, dict[str, str]]:
    book.add([Event("BON", "00004", book.clock.fresh())])
    sim.fail_next(1, 401, path_contains="SyncByCommonNames")
    sim.fail_next(1, 401, path_contains="users/search/basic")
    return [()], {}


def _expired_tokens(sim: RecordingSimulator, book: InputBook) -> tuple[Runs, dict[str, str]]:
    """Tokens that live one second: renewed again and again."""
    book.add([Event("BON", "00005", book.clock.fresh())])
    sim.token_lifetime = 1.0
    return [()], {}


def _wrong_password(sim: RecordingSimulator, book: InputBook) -> tuple[Runs, dict[str, str]]:
    book.add([Event("BON", "00006", book.clock.fresh())])
    return [(), ("--sync-users",), ("--cleanup-only",)], {"PASSWORD": WRONG_PASSWORD}


def _server_echoes_the_credentials(sim: RecordingSimulator, book: InputBook) -> tuple[Runs, dict[str, str]]:
    """A badly behaved server quoting the credentials back in its error bodies."""
    book.add([Event("BON", "00007", book.clock.fresh())])
    echo = json.dumps({"error": "invalid_client", "error_description": f"password={PASSWORD} {CLIENT_SECRET}"})
    sim.fail_next(1, 400, path_contains="connect/token", body=echo)
    sim.fail_next(1, 500, path_contains="connect/token", body=echo)
    sim.fail_next(
        1, 200, path_contains="connect/token", body=f"<html>{PASSWORD} {CLIENT_SECRET}</html>", content_type="text/html"
    )
    return [(), (), ()], {}


def _transport_failure(sim: RecordingSimulator, book: InputBook) -> tuple[Runs, dict[str, str]]:
    book.add([Event("BON", "00008", book.clock.fresh())])
    sim.fail_next(3, drop=True, path_contains="connect/token")
    return [()], {}


def _dry_run_and_other_modes(sim: RecordingSimulator, book: InputBook) -> tuple[Runs, dict[str, str]]:
    book.add([Event("BON", "00010", book.clock.fresh())])
    runs: Runs = [("--sync-users",), ("--dry-run",), (), ("--cleanup-only",), ("--version",)]
    if importlib.util.find_spec("bobosync.status") is not None:
        runs += [("status",), ("status", "--json"), ("status", "--live")]
    if importlib.util.find_spec("bobosync.check") is not None:
        runs.append(("check",))
    return runs, {}


SCENARIOS: dict[str, Scenario] = {
    "normal pass": _normal,
    "401 then a new token": _refresh_after_401,
    "tokens expiring at once": _expired_tokens,
    "wrong password": _wrong_password,
    "server echoes the credentials": _server_echoes_the_credentials,
    "transport failure": _transport_failure,
    "dry run, sync, cleanup, status, check": _dry_run_and_other_modes,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_no_secret_anywhere_after_a_scenario_at_debug(
    name: str, secret_sim: RecordingSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    (tmp_path / "ca.pem").write_bytes(tls_certs.ca_pem.read_bytes())
    root = tmp_path / "work"
    book = InputBook(root / "crown_files")
    runs, overrides = SCENARIOS[name](secret_sim, book)
    env_file = sim_env_file(
        secret_sim,
        root,
        tmp_path / "ca.pem",
        {
            "LOG_LEVEL": "DEBUG",
            "MOVE_PROCESSED_FILES": "true",
            "AUTO_CLEANUP_HOURS": "24",
            "HTTP_RETRY_ATTEMPTS": "1",
            **overrides,
        },
    )
    texts: dict[str, str] = {}
    codes = []
    for i, args in enumerate(runs):
        result = run_cli(env_file, *args)
        codes.append(result.returncode)
        texts[f"run {i} {args} stdout"] = result.stdout
        texts[f"run {i} {args} stderr"] = result.stderr
    texts.update(files_under(root, skip=[env_file]))
    assert any("DEBUG" in text for text in texts.values()), "nothing was logged at DEBUG"
    tokens = list(secret_sim.issued_tokens)
    found = hits(texts, [PASSWORD, CLIENT_SECRET, WRONG_PASSWORD, *tokens])
    assert found == [], "\n".join(found)
    if name in ("normal pass", "401 then a new token", "tokens expiring at once"):
        assert codes == [0] and tokens, texts  # the scenario really ran against AtHoc
    if name == "401 then a new token":
        assert len(tokens) >= 2
    if name == "dry run, sync, cleanup, status, check":
        assert codes[:5] == [0] * 5, list(zip(runs, codes))
        assert not any("usage:" in text for text in texts.values())  # every command really ran
    if name == "wrong password":
        assert codes == [1, 1, 1] and tokens == []


def test_exception_texts_and_reprs_hold_no_secret(
    secret_sim: RecordingSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    """Errors raised in-process (what a REPL user or a traceback shows), with their chains."""
    env_file = sim_env_file(secret_sim, tmp_path / "work", tls_certs.ca_pem, {"HTTP_RETRY_ATTEMPTS": "1"})
    texts: dict[str, str] = {}

    def capture(label: str, action: Callable[[], object]) -> Optional[BaseException]:
        try:
            action()
        except AtHocError as exc:
            texts[f"{label} str"] = str(exc)
            texts[f"{label} repr"] = repr(exc)
            texts[f"{label} traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            return exc
        return None

    good = load_settings(env_file=env_file, environ={})
    texts["settings repr"] = repr(good)
    with AtHocClient(good) as client:
        texts["auth repr"] = repr(client.transport.auth)
        texts["client vars"] = repr(vars(client))
        client.get_all_users_with_attributes()
    bad = load_settings(
        env_file=sim_env_file(secret_sim, tmp_path / "bad", tls_certs.ca_pem, {"PASSWORD": WRONG_PASSWORD}), environ={}
    )
    assert capture("wrong password", lambda: AtHocClient(bad)) is not None
    echo = json.dumps({"error": "invalid_grant", "error_description": f"{PASSWORD} {CLIENT_SECRET}"})
    secret_sim.fail_next(1, 400, path_contains="connect/token", body=echo)
    assert capture("echoing server", lambda: AtHocClient(good)) is not None
    secret_sim.fail_next(1, 200, path_contains="connect/token", body=f"not json {PASSWORD}", content_type="text/plain")
    assert capture("token body not JSON", lambda: AtHocClient(good)) is not None
    secret_sim.stop()
    assert capture("server down", lambda: AtHocClient(good)) is not None
    found = hits(texts, [PASSWORD, CLIENT_SECRET, WRONG_PASSWORD, *secret_sim.issued_tokens])
    assert found == [], "\n".join(found)
    assert secret_sim.issued_tokens  # the successful client really got a token to leak


def test_the_scan_finds_a_secret_when_there_is_one(tmp_path: Path) -> None:
    """The detector itself: raw and encoded forms are found, in files and in text."""
    (tmp_path / "a.log").write_text(f"form: password={quote_plus(PASSWORD)}\n", encoding="utf-8")
    (tmp_path / "b.db").write_bytes(b"\x00\x01" + CLIENT_SECRET.encode() + b"\x00")
    found = hits(files_under(tmp_path), [PASSWORD, CLIENT_SECRET])
    assert len(found) >= 2
    assert hits({"x": "nothing here " + str(timedelta(0))}, [PASSWORD]) == []


def test_a_server_echoing_the_form_encoded_request_leaks_nothing(
    secret_sim: RecordingSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    """A proxy or a server that quotes the request body it refused (``client_secret=...``,
    form-encoded) in its error page."""
    root = tmp_path / "work"
    env_file = sim_env_file(secret_sim, root, tls_certs.ca_pem, {"LOG_LEVEL": "DEBUG", "HTTP_RETRY_ATTEMPTS": "1"})
    body = f"Bad request: grant_type=password&client_secret={quote_plus(CLIENT_SECRET)}&password={quote_plus(PASSWORD)}"
    secret_sim.fail_next(1, 400, path_contains="connect/token", body=body, content_type="text/plain")
    result = run_cli(env_file)
    assert result.returncode == 1
    texts = {"stdout": result.stdout, "stderr": result.stderr, **files_under(root, skip=[env_file])}
    assert hits(texts, [PASSWORD, CLIENT_SECRET]) == []


def test_redaction_rules_are_one_set_for_logs_errors_check_and_mail() -> None:
    from bobosync.redaction import redact_url_credentials, redact_urls, redact_values

    # longest first: a secret inside another never leaves a fragment behind
    assert redact_values("pw=hunter2hunter2", ["hunter2", "hunter2hunter2"]) == "pw=***"
    assert redact_values("a cat", ["a"]) == "a cat"  # a one-letter value would garble the line
    assert redact_values("key abc", ["abc"], min_length=1) == "key ***"
    assert redact_url_credentials("via http://bob:s3cret@proxy:8080/x") == "via http://***@proxy:8080/x"
    assert redact_urls("GET https://h/p?access_token=tok failed") == "GET https://h/p failed"

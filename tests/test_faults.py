"""The fault matrix (issue 4 section 2): every AtHoc call a pass makes, times every way AtHoc
(or the network in front of it) can fail; then the local environment failing under a pass.

Each case runs the real CLI in a subprocess against the HTTPS simulator with a prepared folder
(the mapping already synced when the call under test comes later in the pass; one waiting file
that books user 1 on and user 2 off; a stale duty value on user 40 for the cleanup), injects
the fault into one call and checks the outcome :data:`MATRIX` promises. A failing case then
clears the fault and runs the next pass, which must complete the work: exit 0, the file in the
processed folder byte-identical, AtHoc right, mapping synced, no retry count left.

Outcomes (what "correct" is, decided per cell):

``RETRIED_OK``      the transport retried (or renewed the token once) and the pass did all the
                    work: exit 0. Cells of one fault are checked together in ONE pass that hits
                    every call of the row (each call's retries are counted in the journal).
``FAILS_CLEANLY``   exit 1 and an ERROR line naming the call and the cause; nothing lost:
                    token   - nothing touched: no API call, the file stays byte-identical,
                              AtHoc unchanged, no retry count, the pass recorded as failed;
                    listing - the mapping sync failed: the old mapping is kept and
                              sync_tracking says 'error' (the next pass syncs again); the pass
                              goes on with the old mapping (file done, cleanup done);
                    cleanup - (the stale-duty query) the file work stands (file done and
                              moved); the stale value stays for the next pass; run_history
                              records the cleanup failed;
                    clear   - (the cleanup's SyncByCommonNames, no file waiting) the same: a
                              value not cleared is a failed cleanup, cleared by the next pass.
``KEPT_UNCOUNTED``  sync, an outage (AtHoc never judged the rows: unreachable, or still failing
                    after the retries): exit 1, the file stays byte-identical, its retry count
                    is NOT increased (an outage never pushes files into the failed folder), and
                    the rest of the pass, the auto-cleanup included, waits for the next pass.
``KEPT_COUNTED``    sync, AtHoc refused the request outright (a non-retryable status, not
                    retried) or answered without saying each row was applied: exit 1, the file
                    stays, retry count + 1 (after MAX_RETRY_ATTEMPTS passes it would go to the
                    failed folder with the reasons). Sending the rows again is harmless: a
                    SyncByCommonNames row sets a value, it does not add to one.

Fault names: "xN" hits the call N times, fewer than the HTTP_RETRY_ATTEMPTS=3 tries;
"persistent" queues exactly as many faults as the pass should make tries, so a test also fails
when the code retries what it must not, or gives up early. "refused" stops the simulator (for
an API call: while the call's first request is parked in the server, so the call sees its
connection go and every retry refused). "timeout" parks requests longer than
REQUEST_TIMEOUT_SECONDS. "cut mid-body" sends the headers and half the body, then closes.

The whole matrix runs with ``BOBOSYNC_FULL_FAULTS=1`` (about 2 minutes more); by default only
the failing cells marked CORE run (every fault, and every outcome of every call, at least once),
to keep the suite fast. The retried cells always run (one pass per fault).

After the matrix: the database locked by another process (briefly, longer than the busy
timeout, and mid-pass), the CSV folder missing or unreadable, the processed folder on another
volume or not writable, the disk full while moving, and the clock going backwards.
"""

from __future__ import annotations

import enum
import errno
import http.client
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlencode, urlsplit

import pytest

from bobosync.database import BOBODatabase
from bobosync.simulator import SIM_CREDENTIALS, AtHocSimulator, export_row, make_users, write_bobo_file
from tests.test_e2e import DUTY, FMT, child_env, csv_dir, names, now, query, run_cli, user

FULL = os.environ.get("BOBOSYNC_FULL_FAULTS", "") not in ("", "0")

# --------------------------------------------------------------------------- the calls

CALLS = ("token", "listing", "sync", "cleanup", "clear")
#: Substring of the request target (path and query) that picks out each call's requests.
CALL_TARGET = {
    "token": "connect/token",
    "listing": "Collar-Number",  # the mapping listing asks for Fields=LOGIN_ID,Collar-Number,...
    "sync": "SyncByCommonNames",  # the file's updates come before the cleanup's clear
    "cleanup": "Criteria=",  # the stale-duty query is the only listing with a Criteria
    "clear": "SyncByCommonNames",  # the cleanup's clear: tested with no file waiting
}
API = "/api/v2/orgs/SIMORG/users"
#: Phrases of the ERROR line each call's failure must produce (the cause comes on top).
CALL_ERROR = {
    "token": ("cannot connect to AtHoc: ", "token"),
    "listing": ("mapping sync failed: GET ", "users/search/basic"),
    "sync": (f"AtHoc update failed for chunk 1/1 (2 users): POST {API}/SyncByCommonNames",),
    "cleanup": ("auto-cleanup failed: GET ", "users/search/basic"),
    "clear": ("auto-cleanup failed: POST users/SyncByCommonNames: 1 of 1 stale On-Duty-DTG value(s) not cleared",),
}

ATTEMPTS = 3  # HTTP_RETRY_ATTEMPTS in sim_env
TIMEOUT_ENV = {"REQUEST_TIMEOUT_SECONDS": "0.5"}
TIMEOUT_DELAY = 1.0  # longer than that
PARK = 0.4  # seconds a request is parked while the test acts on the server
FILE_NAME = "BOBO_20250617_134615_output.csv"
HTML = "<html><head><title>Gateway</title></head><body><h1>Service unavailable</h1></body></html>"


def call_requests(sim: AtHocSimulator, call: str) -> int:
    """Requests the simulator has journaled for one call."""
    count = 0
    for entry in sim.journal:
        path = entry.path.lower()
        if call == "token":
            count += "connect/token" in path
        elif call in ("sync", "clear"):  # the file's updates or the cleanup's clear
            count += "syncbycommonnames" in path and user(1 if call == "sync" else 40) in str(entry.json_body)
        elif "search/basic" in path:
            count += ("Criteria" in entry.query) == (call == "cleanup")
    return count


def wait_for_requests(sim: AtHocSimulator, call: str, expected: int) -> int:
    """A request parked in a delay is journaled only when the delay ends: wait for it."""
    deadline = time.monotonic() + 10
    while call_requests(sim, call) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.05)
    return call_requests(sim, call)


# --------------------------------------------------------------------------- the faults


def park_then(sim: AtHocSimulator, targets: Sequence[str], action: Callable[[], None]) -> threading.Thread:
    """Park the next request to each target in turn (in pass order) for PARK seconds and run
    ``action`` as soon as it arrives; the request is then answered normally (or not at all,
    if the action stopped the server)."""

    def watch() -> None:
        for target in targets:
            sim.fail_next(1, 200, delay=PARK, path_contains=target)
            deadline = time.monotonic() + 60
            while sim.pending_faults and time.monotonic() < deadline:
                time.sleep(0.002)
            action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


#: Injects a fault into the calls whose request targets are given.
Inject = Callable[[AtHocSimulator, Sequence[str]], Optional[threading.Thread]]


def queued(status: int, count: int, **kwargs: object) -> Inject:
    def inject(sim: AtHocSimulator, targets: Sequence[str]) -> None:
        for target in targets:
            sim.fail_next(count, status, path_contains=target, **kwargs)  # type: ignore[arg-type]

    return inject


def refuse(sim: AtHocSimulator, targets: Sequence[str]) -> Optional[threading.Thread]:
    if list(targets) == [CALL_TARGET["token"]]:
        sim.stop()
        return None
    return park_then(sim, targets, sim.stop)


def expire_token(sim: AtHocSimulator, targets: Sequence[str]) -> threading.Thread:
    return park_then(sim, targets, sim.expire_tokens)


def drop_rows(sim: AtHocSimulator, targets: Sequence[str]) -> None:
    sim.drop_response_rows = 1


def no_injection(sim: AtHocSimulator, targets: Sequence[str]) -> None:
    return None


WRONG_SHAPE = {
    "token": '{"token_type": "Bearer", "expires_in": 3600}',
    "listing": '{"Users": "nope", "TotalUsers": 50}',
    "sync": '{"Message": "Accepted"}',
    "cleanup": '{"Users": [1, 2], "TotalUsers": 2}',
    "clear": '{"Message": "Accepted"}',
}
WRONG_SHAPE_CAUSE = {
    "token": "without an access_token (keys present: expires_in, token_type)",
    "listing": 'no "Users" list in the response',
    "sync": "not a list of rows",
    "cleanup": '"Users" holds something other than objects',
    "clear": "not a list of rows",
}


def wrong_shape(sim: AtHocSimulator, targets: Sequence[str]) -> None:
    for target in targets:
        call = next(c for c, t in CALL_TARGET.items() if t == target)  # sync before clear
        sim.fail_next(1, 200, body=WRONG_SHAPE[call], path_contains=target)


@dataclass(frozen=True)
class FaultSpec:
    inject: Inject
    #: Phrase the ERROR line carries (failing cells); "" for wrong-shape (see WRONG_SHAPE_CAUSE).
    cause: str = ""
    #: How a retry WARNING names the fault (retried cells), e.g. "HTTP 503".
    retried_as: str = ""
    #: Faults queued per call; a retried call then sends this many requests plus one.
    count: int = 0
    #: Requests the failing call sends in the faulted pass (None: not checked).
    requests: Optional[int] = None
    env: dict[str, str] = field(default_factory=dict)
    #: AtHoc applied the file's rows although the client saw the call fail.
    applied_anyway: bool = False
    #: The server is gone from this call on, so every later call fails too.
    server_down: bool = False


def transient(status: int, count: int, retried_as: str, **kwargs: object) -> FaultSpec:
    return FaultSpec(
        queued(status, count, **kwargs),
        retried_as=retried_as,
        count=count,
        env=TIMEOUT_ENV if "delay" in kwargs else {},
    )


def persistent(status: int, cause: str, count: int = ATTEMPTS, **kwargs: object) -> FaultSpec:
    env = dict(TIMEOUT_ENV) if "delay" in kwargs else {}
    if count != ATTEMPTS and status in (0, 429, 500, 502, 503, 504):
        env["HTTP_RETRY_ATTEMPTS"] = str(count)
    return FaultSpec(
        queued(status, count, **kwargs),
        cause=cause,
        requests=count,
        env=env,
        applied_anyway=bool(kwargs.get("truncate")),
    )


FAULTS: dict[str, FaultSpec] = {
    "refused": FaultSpec(refuse, cause="Connection refused", server_down=True, applied_anyway=True),
    "drop x2": transient(0, 2, "AtHocTransportError", drop=True),
    "drop persistent": persistent(0, "connection failed", drop=True),
    "cut mid-body x2": transient(200, 2, "AtHocTransportError", truncate=True),
    "cut mid-body persistent": persistent(200, "response cut short", truncate=True),
    "timeout x1": transient(503, 1, "timeout", delay=TIMEOUT_DELAY),
    "timeout persistent": persistent(503, "timed out", delay=TIMEOUT_DELAY),
    "429 Retry-After x1": transient(429, 1, "HTTP 429", retry_after=1),
    "429 Retry-After persistent": persistent(429, "HTTP 429 Too Many Requests", count=2, retry_after=1),
    "429 x2": transient(429, 2, "HTTP 429"),
    "429 persistent": persistent(429, "HTTP 429 Too Many Requests"),
    "500 x2": transient(500, 2, "HTTP 500"),
    "500 persistent": persistent(500, "HTTP 500 Internal Server Error"),
    "502 HTML x2": transient(502, 2, "HTTP 502", body=HTML, content_type="text/html"),
    "502 HTML persistent": persistent(
        502, "HTTP 502 Bad Gateway: Service unavailable", body=HTML, content_type="text/html"
    ),
    "503 x2": transient(503, 2, "HTTP 503"),
    "503 persistent": persistent(503, "HTTP 503 Service Unavailable"),
    "504 x2": transient(504, 2, "HTTP 504"),
    "504 persistent": persistent(504, "HTTP 504 Gateway Timeout"),
    # A token that expired at AtHoc: one 401, a new token, the request sent once more.
    "401 expired token": FaultSpec(expire_token, count=1),
    # Every token refused by the API: the request and its one re-send with a new token.
    "401 persistent": persistent(401, "HTTP 401 Unauthorized", count=2),
    # The token endpoint's own refusals, from the simulator's real credential checks.
    "401 invalid_client": FaultSpec(
        no_injection, cause="(HTTP 401): invalid_client", requests=1, env={"CLIENT_SECRET": "not-the-secret"}
    ),
    "400 invalid_grant": FaultSpec(
        no_injection, cause="(HTTP 400): invalid_grant", requests=1, env={"PASSWORD": "not-the-password"}
    ),
    "400": persistent(400, "HTTP 400 Bad Request", count=1),
    "403": persistent(403, "HTTP 403 Forbidden", count=1),
    "404": persistent(404, "HTTP 404 Not Found", count=1),
    "non-JSON 200": persistent(
        200, "HTTP 200 but the body is not JSON (Content-Type text/html)", count=1, body=HTML, content_type="text/html"
    ),
    "wrong-shape 200": FaultSpec(wrong_shape, requests=1),
    "missing rows": FaultSpec(drop_rows, cause="missing from AtHoc's response", requests=1, applied_anyway=True),
}


class Outcome(enum.Enum):
    RETRIED_OK = "retried, then succeeded"
    FAILS_CLEANLY = "failed cleanly; the next pass completes"
    KEPT_UNCOUNTED = "file kept, retry count unchanged"
    KEPT_COUNTED = "file kept, retry count + 1"


OK, FAILS, OUTAGE, REJECTED = (Outcome.RETRIED_OK, Outcome.FAILS_CLEANLY, Outcome.KEPT_UNCOUNTED, Outcome.KEPT_COUNTED)
CORE, HEAVY = True, False  # failing cells run by default / only with BOBOSYNC_FULL_FAULTS=1

# --------------------------------------------------------------------------- THE MATRIX

MATRIX: list[tuple[str, str, Outcome, bool]] = [
    # ---- token: POST /AuthServices/Auth/connect/token, the first call of every pass
    ("token", "refused", FAILS, CORE),
    ("token", "drop x2", OK, CORE),
    ("token", "drop persistent", FAILS, HEAVY),
    ("token", "cut mid-body x2", OK, CORE),
    ("token", "cut mid-body persistent", FAILS, HEAVY),
    ("token", "timeout x1", OK, CORE),
    ("token", "timeout persistent", FAILS, HEAVY),
    ("token", "429 Retry-After x1", OK, CORE),
    ("token", "429 Retry-After persistent", FAILS, HEAVY),
    ("token", "429 x2", OK, CORE),
    ("token", "429 persistent", FAILS, HEAVY),
    ("token", "500 x2", OK, CORE),
    ("token", "500 persistent", FAILS, CORE),
    ("token", "502 HTML x2", OK, CORE),
    ("token", "502 HTML persistent", FAILS, HEAVY),
    ("token", "503 x2", OK, CORE),
    ("token", "503 persistent", FAILS, HEAVY),
    ("token", "504 x2", OK, CORE),
    ("token", "504 persistent", FAILS, HEAVY),
    ("token", "401 invalid_client", FAILS, CORE),  # not retried: credentials do not heal
    ("token", "400 invalid_grant", FAILS, CORE),
    ("token", "403", FAILS, HEAVY),
    ("token", "404", FAILS, HEAVY),
    ("token", "non-JSON 200", FAILS, CORE),  # not retried; the body is never quoted
    ("token", "wrong-shape 200", FAILS, HEAVY),  # no access_token
    # ---- listing: GET users/search/basic for the mapping sync (due: sync_tracking 'error')
    ("listing", "refused", FAILS, HEAVY),  # AtHoc gone: the updates then fail too (kept, not counted)
    ("listing", "drop x2", OK, CORE),
    ("listing", "drop persistent", FAILS, HEAVY),
    ("listing", "cut mid-body x2", OK, CORE),
    ("listing", "cut mid-body persistent", FAILS, CORE),
    ("listing", "timeout x1", OK, CORE),
    ("listing", "timeout persistent", FAILS, HEAVY),
    ("listing", "429 Retry-After x1", OK, CORE),
    ("listing", "429 Retry-After persistent", FAILS, HEAVY),
    ("listing", "429 x2", OK, CORE),
    ("listing", "429 persistent", FAILS, HEAVY),
    ("listing", "500 x2", OK, CORE),
    ("listing", "500 persistent", FAILS, HEAVY),
    ("listing", "502 HTML x2", OK, CORE),
    ("listing", "502 HTML persistent", FAILS, HEAVY),
    ("listing", "503 x2", OK, CORE),
    ("listing", "503 persistent", FAILS, HEAVY),
    ("listing", "504 x2", OK, CORE),
    ("listing", "504 persistent", FAILS, HEAVY),
    ("listing", "401 expired token", OK, CORE),
    ("listing", "401 persistent", FAILS, CORE),
    ("listing", "400", FAILS, HEAVY),
    ("listing", "403", FAILS, CORE),
    ("listing", "404", FAILS, HEAVY),
    ("listing", "non-JSON 200", FAILS, HEAVY),
    ("listing", "wrong-shape 200", FAILS, CORE),
    # ---- sync: POST users/SyncByCommonNames?syncExistingUsersOnly=true with the file's updates
    ("sync", "refused", OUTAGE, CORE),
    ("sync", "drop x2", OK, CORE),
    ("sync", "drop persistent", OUTAGE, CORE),
    ("sync", "cut mid-body x2", OK, CORE),  # AtHoc applied the rows each time; sending again is harmless
    ("sync", "cut mid-body persistent", OUTAGE, HEAVY),
    ("sync", "timeout x1", OK, CORE),
    ("sync", "timeout persistent", OUTAGE, HEAVY),
    ("sync", "429 Retry-After x1", OK, CORE),
    ("sync", "429 Retry-After persistent", OUTAGE, CORE),
    ("sync", "429 x2", OK, CORE),
    ("sync", "429 persistent", OUTAGE, HEAVY),
    ("sync", "500 x2", OK, CORE),
    ("sync", "500 persistent", OUTAGE, HEAVY),
    ("sync", "502 HTML x2", OK, CORE),
    ("sync", "502 HTML persistent", OUTAGE, HEAVY),
    ("sync", "503 x2", OK, CORE),
    ("sync", "503 persistent", OUTAGE, HEAVY),
    ("sync", "504 x2", OK, CORE),
    ("sync", "504 persistent", OUTAGE, CORE),
    ("sync", "401 expired token", OK, CORE),
    # A whole-request refusal (credentials, permission, organization) or a page that is not
    # AtHoc's says nothing about the rows: kept without spending an attempt, like an outage.
    ("sync", "401 persistent", OUTAGE, HEAVY),
    ("sync", "400", REJECTED, CORE),  # not retried
    ("sync", "403", OUTAGE, CORE),
    ("sync", "404", OUTAGE, HEAVY),
    ("sync", "non-JSON 200", OUTAGE, CORE),
    ("sync", "wrong-shape 200", REJECTED, HEAVY),
    ("sync", "missing rows", REJECTED, CORE),  # the row present is done; the missing one is sent again
    # ---- cleanup: GET users/search/basic with Criteria "On-Duty-DTG pr and On-Duty-DTG lt '...'"
    ("cleanup", "refused", FAILS, HEAVY),
    ("cleanup", "drop x2", OK, CORE),
    ("cleanup", "drop persistent", FAILS, HEAVY),
    ("cleanup", "cut mid-body x2", OK, CORE),
    ("cleanup", "cut mid-body persistent", FAILS, HEAVY),
    ("cleanup", "timeout x1", OK, CORE),
    ("cleanup", "timeout persistent", FAILS, CORE),
    ("cleanup", "429 Retry-After x1", OK, CORE),
    ("cleanup", "429 Retry-After persistent", FAILS, HEAVY),
    ("cleanup", "429 x2", OK, CORE),
    ("cleanup", "429 persistent", FAILS, CORE),
    ("cleanup", "500 x2", OK, CORE),
    ("cleanup", "500 persistent", FAILS, HEAVY),
    ("cleanup", "502 HTML x2", OK, CORE),
    ("cleanup", "502 HTML persistent", FAILS, CORE),
    ("cleanup", "503 x2", OK, CORE),
    ("cleanup", "503 persistent", FAILS, HEAVY),
    ("cleanup", "504 x2", OK, CORE),
    ("cleanup", "504 persistent", FAILS, HEAVY),
    ("cleanup", "401 expired token", OK, CORE),
    ("cleanup", "401 persistent", FAILS, HEAVY),
    ("cleanup", "400", FAILS, HEAVY),
    ("cleanup", "403", FAILS, HEAVY),
    ("cleanup", "404", FAILS, CORE),
    ("cleanup", "non-JSON 200", FAILS, HEAVY),
    ("cleanup", "wrong-shape 200", FAILS, HEAVY),
    # ---- clear: POST users/SyncByCommonNames clearing the stale values the query found (no
    # file waiting). The same request as "sync", so only a few cells: a clear that fails is a
    # failed cleanup (exit 1), the value stays and the next pass clears it.
    ("clear", "refused", FAILS, HEAVY),
    ("clear", "503 x2", OK, CORE),
    ("clear", "503 persistent", FAILS, CORE),
    ("clear", "401 expired token", OK, CORE),
    ("clear", "400", FAILS, HEAVY),
    ("clear", "wrong-shape 200", FAILS, HEAVY),
    ("clear", "missing rows", FAILS, HEAVY),
]

#: The retried cells, one pass per fault hitting every call of its row; the cleanup's calls in a
#: pass of their own (no file waits): "clear"'s request is the same as "sync"'s, and with a
#: mapping sync due the cleanup shares its listing instead of asking with a Criteria.
RETRIED = sorted({(f, c in ("cleanup", "clear")) for c, f, o, _ in MATRIX if o is OK})
FAILING = [(c, f, o) for c, f, o, core in MATRIX if o is not OK and (core or FULL)]


def test_the_matrix_is_complete() -> None:
    """Every call meets every fault that applies to it, once, and the default run covers every
    fault and every outcome of every call."""
    cells = [(c, f) for c, f, _, _ in MATRIX]
    assert len(cells) == len(set(cells))
    for call in CALLS[:4]:
        faults = {f for c, f, _, _ in MATRIX if c == call}
        not_for_call = {
            "token": {"401 expired token", "401 persistent", "400", "missing rows"},
            "sync": {"401 invalid_client", "400 invalid_grant"},
        }.get(call, {"401 invalid_client", "400 invalid_grant", "missing rows"})
        assert faults == set(FAULTS) - not_for_call, call
    core = {(c, f) for c, f, _, is_core in MATRIX if is_core}
    assert {f for _, f in core} == set(FAULTS)
    assert {(c, o) for c, f, o, _ in MATRIX} == {(c, o) for c, f, o, _ in MATRIX if (c, f) in core}


# --------------------------------------------------------------------------- the folder


@dataclass
class Folder:
    tmp: Path
    file: Optional[Path]
    content: bytes
    on_since: str  # user 1's duty value once the file is applied
    was_on: str  # user 2's duty value before the file books them off
    stale: str  # user 40's duty value, older than AUTO_CLEANUP_HOURS


def prepare(sim: AtHocSimulator, tmp_path: Path, *, listing_due: bool = False, with_file: bool = True) -> Folder:
    """The mapping (synced now, or an older one with the sync due) and a reconcile just done,
    one waiting file (book user 1 on, book user 2 off) and a stale duty value on user 40 for
    the cleanup."""
    t = now()
    mapping = {f"{i:05d}": user(i) for i in range(1, 51)}
    if listing_due:
        del mapping["00050"]  # an older mapping; sync_tracking 'error' makes the sync due
    with BOBODatabase(tmp_path / "bobo_mapping.db") as db, db.transaction():
        db.replace_mappings(mapping, t)
        db.record_sync("error" if listing_due else "success", t, len(mapping))
        db.finish_run(db.start_run("reconcile", t), "ok", t, {"drift": 0, "repaired": 0})
    was_on = (t - timedelta(hours=1)).strftime(FMT)
    stale = (t - timedelta(hours=30)).strftime(FMT)
    sim.set_attribute(user(2), DUTY, was_on)
    sim.set_attribute(user(40), DUTY, stale)
    on_at = t - timedelta(minutes=10)
    if not with_file:
        sim.set_attribute(user(1), DUTY, on_at.strftime(FMT))
        sim.set_attribute(user(2), DUTY, "")
        return Folder(tmp_path, None, b"", on_at.strftime(FMT), "", stale)
    path = write_bobo_file(
        csv_dir(tmp_path),
        [export_row("BON", "00001", on_at), export_row("BOF", "00002", t - timedelta(minutes=5))],
        t - timedelta(minutes=4),
        name=FILE_NAME,
    )
    return Folder(tmp_path, path, path.read_bytes(), on_at.strftime(FMT), was_on, stale)


def duties(sim: AtHocSimulator) -> tuple[str, str, str]:
    """Users 1, 2 and 40's duty values."""
    values = []
    for i in (1, 2, 40):
        found = sim.get_user(user(i))
        assert found is not None
        values.append(found.get(DUTY, ""))
    return values[0], values[1], values[2]


def retry_rows(tmp_path: Path) -> list[tuple[object, ...]]:
    return query(tmp_path, "SELECT filename, retry_count FROM file_retry_tracking")


def last_run(tmp_path: Path, kind: str) -> str:
    rows = query(tmp_path, "SELECT status FROM run_history WHERE kind = ? ORDER BY id DESC LIMIT 1", kind)
    return str(rows[0][0]) if rows else ""


def assert_file_kept(f: Folder) -> None:
    assert f.file is not None
    assert names(csv_dir(f.tmp)) == [FILE_NAME]
    assert f.file.read_bytes() == f.content
    assert names(f.tmp / "processed_files") == [] and names(f.tmp / "failed_files") == []


def assert_file_done(f: Folder, processed: Optional[Path] = None) -> None:
    folder = processed or f.tmp / "processed_files"
    assert names(csv_dir(f.tmp)) == []
    if f.file is not None:
        assert (folder / FILE_NAME).read_bytes() == f.content
        assert [p.name for p in folder.iterdir()] == [FILE_NAME]  # no partial copy left beside it
    assert retry_rows(f.tmp) == []


def assert_work_done(sim: AtHocSimulator, f: Folder, processed: Optional[Path] = None) -> None:
    assert_file_done(f, processed)
    assert duties(sim) == (f.on_since, "", "")
    assert query(f.tmp, "SELECT status FROM sync_tracking WHERE sync_type = 'user_mapping'") == [("success",)]
    assert query(f.tmp, "SELECT COUNT(*) FROM worker_mapping") == [(50,)]
    assert last_run(f.tmp, "pass") == "ok"


def error_line(stderr: str, *phrases: str) -> str:
    """The first ERROR line holding every phrase."""
    for line in stderr.splitlines():
        if " ERROR " in line and all(p in line for p in phrases):
            return line
    raise AssertionError(f"no ERROR line with {phrases!r} in:\n{stderr}")


def next_pass_completes(sim: AtHocSimulator, f: Folder, **extra: str) -> subprocess.CompletedProcess[str]:
    """Clear every fault, bring AtHoc back, run the next pass: it must complete the work."""
    sim.clear_faults()
    sim.drop_response_rows = 0
    if not sim.running:
        sim.start()
    again = run_cli(f.tmp, extra={**BASE_ENV, **extra})
    assert again.returncode == 0, again.stderr
    assert_work_done(sim, f, Path(extra["PROCESSED_DIRECTORY"]) if "PROCESSED_DIRECTORY" in extra else None)
    return again


# --------------------------------------------------------------------------- the simulator's cut


def test_simulator_cut_mid_body_sends_the_headers_and_half_the_body() -> None:
    """``fail_next(truncate=True)``: the request is served (here a token is issued), the status
    line and headers promise the whole body, half of it comes, then the connection closes."""
    form = urlencode(
        {
            "grant_type": "password",
            "client_id": SIM_CREDENTIALS["client_id"],
            "client_secret": SIM_CREDENTIALS["client_secret"],
            "username": SIM_CREDENTIALS["username"],
            "password": SIM_CREDENTIALS["password"],
            "scope": SIM_CREDENTIALS["scope"],
            "acr_values": f"tenant:{SIM_CREDENTIALS['org_code']}",
        }
    )
    with AtHocSimulator(make_users(3)) as sim:
        sim.fail_next(1, 200, truncate=True, path_contains="connect/token")
        sim.fail_next(1, 503, body='{"Message": "' + "x" * 100 + '"}', truncate=True)
        parts = urlsplit(sim.url)
        for status in (200, 503):
            conn = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=10)
            try:
                conn.request(
                    "POST",
                    "/AuthServices/Auth/connect/token",
                    body=form,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                response = conn.getresponse()
                assert response.status == status
                length = int(response.getheader("Content-Length") or 0)
                with pytest.raises(http.client.IncompleteRead) as cut:
                    response.read()
                assert 0 < len(cut.value.partial) < length
            finally:
                conn.close()
        assert sim.tokens_issued == 1  # the first request was served; only its answer was cut
        assert [e.status for e in sim.journal] == [200, 503]


# --------------------------------------------------------------------------- the matrix tests

BASE_ENV = {"MOVE_PROCESSED_FILES": "true"}


@pytest.mark.parametrize(
    ("fault", "clear"), RETRIED, ids=[f.replace(" ", "_") + ("-cleanup" if c else "") for f, c in RETRIED]
)
def test_retried_faults_are_survived_by_every_call_in_one_pass(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path, fault: str, clear: bool
) -> None:
    spec = FAULTS[fault]
    calls = [c for c, f, o, _ in MATRIX if f == fault and o is OK and (c in ("cleanup", "clear")) == clear]
    folder = prepare(simulator, tmp_path, listing_due="listing" in calls, with_file=not clear)
    thread = spec.inject(simulator, [CALL_TARGET[c] for c in calls])
    started = time.monotonic()
    result = run_cli(tmp_path, extra={**BASE_ENV, **spec.env})
    elapsed = time.monotonic() - started
    if thread is not None:
        thread.join(30)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and " ERROR " not in result.stderr, result.stderr
    assert simulator.pending_faults == 0
    for call in calls:  # each call was tried once per fault, then once more
        assert wait_for_requests(simulator, call, spec.count + 1) == spec.count + 1, call
    if fault == "401 expired token":
        assert result.stderr.count("getting a new token and sending it once more") == len(calls)
        assert simulator.tokens_issued == 1 + len(calls)
    else:
        assert result.stderr.count(f"failed ({spec.retried_as}), attempt") == spec.count * len(calls)
    if "Retry-After" in fault:
        assert elapsed >= len(calls)  # each Retry-After: 1 was honoured
    assert_work_done(simulator, folder)


@pytest.mark.parametrize(
    ("call", "fault", "outcome"), FAILING, ids=[f"{c}-{f.replace(' ', '_')}" for c, f, _ in FAILING]
)
def test_failing_fault_fails_cleanly_and_the_next_pass_completes(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path, call: str, fault: str, outcome: Outcome
) -> None:
    spec = FAULTS[fault]
    folder = prepare(simulator, tmp_path, listing_due=call == "listing", with_file=call != "clear")
    thread = spec.inject(simulator, [CALL_TARGET[call]])
    result = run_cli(tmp_path, extra={**BASE_ENV, **spec.env})
    if thread is not None:
        thread.join(30)
    stderr = result.stderr
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert simulator.pending_faults == 0, "a queued fault was not consumed: the call gave up early"
    if spec.requests is not None:
        assert wait_for_requests(simulator, call, spec.requests) == spec.requests
    cause = spec.cause or WRONG_SHAPE_CAUSE[call]

    if call == "token":
        error_line(stderr, *CALL_ERROR["token"], cause)
        assert_file_kept(folder)
        assert duties(simulator) == ("", folder.was_on, folder.stale)
        assert all("connect/token" in e.path for e in simulator.journal)  # no API call at all
        assert retry_rows(tmp_path) == []
        assert last_run(tmp_path, "pass") == "failed"
    elif call == "listing":
        error_line(stderr, *CALL_ERROR["listing"], cause)
        assert query(tmp_path, "SELECT status FROM sync_tracking") == [("error",)]
        assert query(tmp_path, "SELECT COUNT(*) FROM worker_mapping") == [(49,)]  # the old mapping, kept
        assert last_run(tmp_path, "mapping_sync") == "failed"
        if spec.server_down:  # the updates met the same outage
            assert_file_kept(folder)
            assert retry_rows(tmp_path) == []
        else:  # the pass went on with the old mapping
            assert_file_done(folder)
            assert duties(simulator) == (folder.on_since, "", "")
    elif call in ("cleanup", "clear"):
        error_line(stderr, *CALL_ERROR[call], cause)
        assert_file_done(folder)  # the file work stands
        cleared_anyway = call == "clear" and spec.applied_anyway
        assert duties(simulator) == (folder.on_since, "", "" if cleared_anyway else folder.stale)
        assert last_run(tmp_path, "cleanup") == "failed"
    else:
        assert_file_kept(folder)
        if outcome is Outcome.KEPT_UNCOUNTED:
            error_line(stderr, *CALL_ERROR["sync"], cause)
            error_line(stderr, "AtHoc is not accepting updates", "left for the next pass")
            assert "auto-cleanup skipped" in stderr
            assert call_requests(simulator, "cleanup") == 0  # the rest of the pass waits
            assert duties(simulator)[2] == folder.stale
            assert retry_rows(tmp_path) == []  # an outage never spends an attempt
        else:
            error_line(stderr, cause)
            assert "kept for retry (attempt 1 of 5)" in stderr
            assert retry_rows(tmp_path) == [(FILE_NAME, 1)]
        if not spec.applied_anyway:
            assert duties(simulator)[:2] == ("", folder.was_on)
    next_pass_completes(simulator, folder)


# --------------------------------------------------------------------------- the environment
#
# Faults of the machine rather than of AtHoc. Where a fault cannot be made real here, the CLI
# runs through ``python -c`` with a small patch applied first (named in each test); production
# code is never changed for a test.


def run_patched(
    tmp_path: Path, prelude: str, extra: Optional[dict[str, str]] = None
) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess, with ``prelude`` run before it."""
    code = f"{prelude}\nfrom bobosync.cli import main\nraise SystemExit(main())\n"
    return subprocess.run(
        [sys.executable, "-c", code, "--env-file", str(tmp_path / ".env")],
        cwd=tmp_path,
        env=child_env({**BASE_ENV, **(extra or {})}),
        capture_output=True,
        text=True,
        timeout=90,
    )


#: The database busy timeout is 30 s (BOBODatabase's default, not a setting): right for a pass
#: every minute, where the other holders (``status``, a monitoring query, a backup) are brief.
#: The tests that wait it out shorten it to 1 s.
SHORT_BUSY_TIMEOUT = "import bobosync.database as d\nd.BOBODatabase.__init__.__kwdefaults__['busy_timeout'] = 1.0"


def lock_database(tmp_path: Path) -> sqlite3.Connection:
    """Another process's write lock on the database (WAL mode: readers still read)."""
    conn = sqlite3.connect(tmp_path / "bobo_mapping.db", isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def release(conn: sqlite3.Connection) -> None:
    conn.execute("ROLLBACK")
    conn.close()


def test_database_locked_for_a_moment_the_pass_waits_and_completes(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    folder = prepare(simulator, tmp_path)
    conn = lock_database(tmp_path)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bobosync", "--env-file", str(tmp_path / ".env")],
            cwd=tmp_path,
            env=child_env(BASE_ENV),
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.0)
        assert proc.poll() is None  # still waiting for the database...
        assert simulator.journal == []  # ...before doing anything
    finally:
        release(conn)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert_work_done(simulator, folder)


def test_database_locked_longer_than_the_busy_timeout_fails_cleanly(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    folder = prepare(simulator, tmp_path)
    conn = lock_database(tmp_path)
    try:
        result = run_patched(tmp_path, SHORT_BUSY_TIMEOUT)
    finally:
        release(conn)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    error_line(
        result.stderr, "bobo_mapping.db is locked: another process holds the database", "still busy after waiting 1 s"
    )
    assert_file_kept(folder)
    assert simulator.journal == []  # AtHoc untouched
    next_pass_completes(simulator, folder)


def test_database_locked_mid_pass_after_athoc_applied_nothing_is_lost(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    """The lock is taken while the updates are in AtHoc: the pass cannot record what it did.
    The file stays; the next pass sends the same values again (harmless) and completes."""
    folder = prepare(simulator, tmp_path)
    held: list[sqlite3.Connection] = []
    thread = park_then(simulator, [CALL_TARGET["sync"]], lambda: held.append(lock_database(tmp_path)))
    try:
        result = run_patched(tmp_path, SHORT_BUSY_TIMEOUT)
        thread.join(30)
    finally:
        for conn in held:
            release(conn)
    assert held, "the sync call never came"
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    error_line(result.stderr, "bobo_mapping.db is locked", "still busy after waiting 1 s")
    assert_file_kept(folder)
    assert duties(simulator)[:2] == (folder.on_since, "")  # AtHoc has it; the database does not know
    simulator.clear_journal()
    next_pass_completes(simulator, folder)
    (sent,) = [e for e in simulator.requests_to("SyncByCommonNames") if user(1) in str(e.json_body)]
    assert sorted(sent.json_body, key=str) == sorted(
        [{"LOGIN_ID": user(1), DUTY: folder.on_since}, {"LOGIN_ID": user(2), DUTY: ""}], key=str
    )


@pytest.mark.parametrize("how", ["missing", "a file in its place", "no permission"])
def test_csv_folder_missing_or_unreadable_fails_cleanly(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path, how: str
) -> None:
    if how == "no permission" and (os.name == "nt" or os.geteuid() == 0):
        pytest.skip("permissions do not stop root (or work this way on Windows)")
    folder = prepare(simulator, tmp_path)
    away = tmp_path / "crown_files.away"
    if how == "no permission":
        csv_dir(tmp_path).chmod(0)
    else:
        csv_dir(tmp_path).rename(away)
        if how == "a file in its place":
            csv_dir(tmp_path).write_text("not a folder\n", encoding="utf-8")
    try:
        result = run_cli(tmp_path, extra=BASE_ENV)
    finally:
        if how == "no permission":
            csv_dir(tmp_path).chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    cause = {
        "missing": "No such file or directory",
        "a file in its place": "Not a directory",
        "no permission": "Permission denied",
    }[how]
    error_line(result.stderr, f"cannot list CSV_DIRECTORY {csv_dir(tmp_path)}", cause)
    assert duties(simulator) == ("", folder.was_on, "")  # the cleanup still ran
    if how != "no permission":
        csv_dir(tmp_path).unlink(missing_ok=True)
        away.rename(csv_dir(tmp_path))
    assert folder.file is not None and folder.file.read_bytes() == folder.content
    next_pass_completes(simulator, folder)


def other_volume() -> Optional[Path]:
    """A writable folder on another file system than the temporary folder (/dev/shm here)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != Path(tempfile.gettempdir()).stat().st_dev:
        return shm
    return None


@pytest.fixture
def far_folder() -> Iterator[Path]:
    volume = other_volume()
    if volume is None:
        pytest.skip("no second file system available")
    with tempfile.TemporaryDirectory(dir=volume, prefix="bobosync-faults-") as far:
        yield Path(far)


def test_processed_folder_on_another_volume_copies_verifies_and_deletes(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path, far_folder: Path
) -> None:
    folder = prepare(simulator, tmp_path)
    processed = far_folder / "processed_files"
    assert processed.parent.stat().st_dev != csv_dir(tmp_path).stat().st_dev
    result = run_cli(tmp_path, extra={**BASE_ENV, "PROCESSED_DIRECTORY": str(processed)})
    assert result.returncode == 0, result.stderr
    assert_work_done(simulator, folder, processed)  # byte-identical there, gone here, no partial
    assert f"done, moved to {processed / FILE_NAME}" in result.stderr


def test_processed_folder_not_writable_keeps_the_file_and_the_next_pass_moves_it(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    """A file where the processed folder should be (a folder that cannot be written to, even
    by root). The updates are applied and recorded; only the move waits."""
    folder = prepare(simulator, tmp_path)
    blocker = tmp_path / "processed_files"
    blocker.write_text("in the way\n", encoding="utf-8")
    result = run_cli(tmp_path, extra=BASE_ENV)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    error_line(result.stderr, f"{FILE_NAME}: could not move to {blocker}", "it stays for the next pass")
    assert names(csv_dir(tmp_path)) == [FILE_NAME] and folder.file is not None
    assert folder.file.read_bytes() == folder.content
    assert duties(simulator) == (folder.on_since, "", "")
    assert query(tmp_path, "SELECT COUNT(*) FROM pending_moves") == [(0,)]
    blocker.unlink()
    simulator.clear_journal()
    again = next_pass_completes(simulator, folder)
    assert simulator.requests_to("SyncByCommonNames") == []  # already applied: nothing sent twice
    assert "superseded 2" in again.stderr


TMPFS_SIZE = 64 * 1024


@contextmanager
def tiny_volume(where: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (root on Linux only)."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(where)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


#: Without a volume to fill, the copy between volumes is made to fail like a full disk does:
#: the first block is written, then ENOSPC.
DISK_FULL_PATCH = """
import errno, bobosync.filestore as fs
def copyfileobj(src, dst, length=0):
    dst.write(src.read(16))
    raise OSError(errno.ENOSPC, "No space left on device")
fs.shutil.copyfileobj = copyfileobj
"""


@pytest.mark.parametrize("how", ["a full tmpfs", "patched copy"])
def test_disk_full_while_moving_keeps_the_file_and_leaves_no_partial_copy(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path, how: str
) -> None:
    folder = prepare(simulator, tmp_path)
    with ExitStack() as stack:
        if how == "a full tmpfs":
            if sys.platform != "linux" or os.geteuid() != 0:
                pytest.skip("mounting a tmpfs needs root on Linux")
            volume = stack.enter_context(tiny_volume(tmp_path / "tiny"))
            processed = volume / "processed_files"
            processed.mkdir()
            filler = volume / "filler"
            with open(filler, "wb", buffering=0) as handle:  # fill it up
                try:
                    while True:
                        handle.write(b"x" * 1024)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
        else:
            far = other_volume()
            if far is None:
                pytest.skip("no second file system available")
            volume = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=far, prefix="bobosync-faults-")))
            processed = volume / "processed_files"
        extra = {"PROCESSED_DIRECTORY": str(processed)}
        if how == "a full tmpfs":
            result = run_cli(tmp_path, extra={**BASE_ENV, **extra})
        else:
            result = run_patched(tmp_path, DISK_FULL_PATCH, extra)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        error_line(
            result.stderr,
            f"{FILE_NAME}: could not move to {processed}",
            "No space left on device",
            "it stays for the next pass",
        )
        assert folder.file is not None and folder.file.read_bytes() == folder.content
        assert names(csv_dir(tmp_path)) == [FILE_NAME]
        assert not processed.exists() or list(processed.iterdir()) == []  # no partial copy left
        assert duties(simulator) == (folder.on_since, "", "")
        if how == "a full tmpfs":
            filler.unlink()  # space again
        next_pass_completes(simulator, folder, **extra)


#: The pass's clock three hours behind the machine's (the processor takes its clock as a
#: parameter; datetime.now itself cannot be patched).
CLOCK_BACK = (
    "import datetime as dt, bobosync.processor as p\n"
    "p.BOBOProcessor.__init__.__kwdefaults__['clock'] = lambda: dt.datetime.now() - dt.timedelta(hours=3)"
)


def test_clock_going_backwards_is_reported_and_keeps_event_order_schedule_and_run_history(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    folder = prepare(simulator, tmp_path)
    t = now()
    assert run_cli(tmp_path, extra=BASE_ENV).returncode == 0
    assert_work_done(simulator, folder)
    # Then the clock goes back three hours. A value 25 h old by the real clock is 22 h old by
    # the pass's; a late file books user 1 off at a time BEFORE the book-on applied.
    aging = (t - timedelta(hours=25)).strftime(FMT)
    simulator.set_attribute(user(41), DUTY, aging)
    write_bobo_file(
        csv_dir(tmp_path),
        [export_row("BOF", "00001", t - timedelta(minutes=20)), export_row("BON", "00003", t - timedelta(minutes=2))],
        t - timedelta(minutes=1),
        name="late.csv",
    )
    simulator.clear_journal()
    back = run_patched(tmp_path, CLOCK_BACK)
    # AtHoc's Date header says this clock is 3 h behind: ERROR, exit 1, and the pass skips what
    # reads this clock (the hold on "future" events, the cleanup) while files are processed.
    assert back.returncode == 1, back.stderr
    assert "Traceback" not in back.stderr
    assert "3 h 0 min behind AtHoc's" in back.stderr and "CLOCK_TOLERANCE_MINUTES" in back.stderr
    assert "ahead of this server's clock" not in back.stderr
    assert duties(simulator)[0] == folder.on_since  # the older book-off did not undo the book-on
    on3 = simulator.get_user(user(3))
    assert on3 is not None and on3[DUTY] == (t - timedelta(minutes=2)).strftime(FMT)  # BOBO's time: applied
    aging_now = simulator.get_user(user(41))
    assert aging_now is not None and aging_now[DUTY] == aging  # no cleanup by a clock AtHoc contradicts
    assert call_requests(simulator, "listing") == 1  # the last mapping sync is "in the future": due
    assert names(tmp_path / "processed_files") == sorted([FILE_NAME, "late.csv"]) and names(csv_dir(tmp_path)) == []
    runs = query(
        tmp_path, "SELECT id, started_at, status, duration_seconds FROM run_history WHERE kind = 'pass' ORDER BY id"
    )
    assert [r[2] for r in runs] == ["ok", "partial"]
    assert str(runs[1][1]) < str(runs[0][1])  # it started "before" the first pass...
    assert all(r[3] is not None and float(str(r[3])) >= 0 for r in runs)
    with BOBODatabase(tmp_path / "bobo_mapping.db", read_only=True) as db:
        assert db.recent_runs("pass", limit=1)[0].id == runs[1][0]  # ...and is still the latest run
    # The clock is right again: the value now over 24 h old is cleared, and nothing else is sent.
    simulator.clear_journal()
    again = run_cli(tmp_path, extra=BASE_ENV)
    assert again.returncode == 0, again.stderr
    cleared = simulator.get_user(user(41))
    assert cleared is not None and cleared[DUTY] == ""
    assert [e.json_body for e in simulator.requests_to("SyncByCommonNames")] == [[{"LOGIN_ID": user(41), DUTY: ""}]]
    assert names(tmp_path / "processed_files") == sorted([FILE_NAME, "late.csv"])

"""A small BlackBerry AtHoc server, faithful to ``reference/athoc-api.md``, for tests and demos.

Standard library only. It serves, over HTTPS (given a certificate or an ``ssl.SSLContext``)
or plain HTTP on loopback:

* ``POST /AuthServices/Auth/connect/token`` — OAuth2 password grant for one organization;
* ``GET  /api/v2/orgs/{ORG}/users/search/basic`` — paging (``Offset`` is a PAGE INDEX),
  ``Fields``, ``Criteria`` (see :mod:`.criteria`);
* ``POST /api/v2/orgs/{ORG}/users/SyncByCommonNames`` — per-row results inside a 200.

Everything a test needs to provoke is a knob on :class:`AtHocSimulator`: queued faults
(:meth:`~AtHocSimulator.fail_next`), writes applied after the client gave up (``hold``, then
:meth:`~AtHocSimulator.apply_late_writes`), users changing between the pages of a listing
(:meth:`~AtHocSimulator.after_page`), forced row errors, a server that repeats a page, a
missing ``TotalUsers``, Criteria that compare dates as text or refuse untrimmed values,
expired tokens, latency. Every request is journaled.

Path matching is case-insensitive (AtHoc runs on IIS); the organization code is not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional, Union, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from .criteria import Criteria, CriteriaError

__all__ = ["SIM_CREDENTIALS", "AtHocSimulator", "Fault", "JournalEntry", "make_users"]

log = logging.getLogger("bobosync.simulator")

#: The credentials the simulator accepts unless overridden in the constructor.
SIM_CREDENTIALS: dict[str, str] = {
    "client_id": "bobosync-sim",
    "client_secret": "sim-client-secret",
    "username": "sim-operator",
    "password": "sim-password",
    "org_code": "SIMORG",
    "scope": "athoc.iws.web.api",
}

TOKEN_PATH = "/AuthServices/Auth/connect/token"
_TOKEN_RE = re.compile(r"^/authservices/auth/connect/token/?$", re.IGNORECASE)
_SEARCH_RE = re.compile(r"^/api/v2/orgs/([^/]+)/users/search/basic/?$", re.IGNORECASE)
_SYNC_RE = re.compile(r"^/api/v2/orgs/([^/]+)/users/syncbycommonnames/?$", re.IGNORECASE)
_ORG_RE = re.compile(r"^/api/v2/orgs/([^/]+)(/.*)?$", re.IGNORECASE)
_API_PREFIX = "/api/v2/"
_REDACTED_FORM_KEYS = frozenset({"password", "client_secret"})
_DEFAULT_FIELDS = ("LOGIN_ID", "FIRSTNAME", "LASTNAME")
_FIRST_USER_ID = 2060001
_HANDSHAKE_TIMEOUT = 10.0
_MAX_BODY = 64 * 1024 * 1024

_FIRST_NAMES = (
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Amir",
    "Priya",
    "Kwame",
    "Aoife",
    "Mateusz",
    "Siobhan",
    "Oluwaseun",
    "Ffion",
    "Rhys",
    "Niamh",
    "Callum",
    "Isla",
    "Declan",
    "Zara",
    "Tomasz",
)
_LAST_NAMES = (
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Patel",
    "Khan",
    "O'Brien",
    "Nowak",
    "Okafor",
    "MacLeod",
    "Hughes",
    "Edwards",
    "Murphy",
    "Kowalski",
    "Singh",
    "Ahmed",
    "Campbell",
    "Kelly",
    "Morgan",
)


def make_users(
    n: int,
    *,
    start: int = 1,
    with_collar: bool = True,
    domain: str = "force.example",
) -> list[dict[str, str]]:
    """``n`` deterministic users: ``user00001@force.example``, collar ``00001``, fake names.

    Every user has ``LOGIN_ID``, ``FIRSTNAME``, ``LASTNAME``, ``On-Duty-DTG`` (empty) and,
    unless ``with_collar`` is false, ``Collar-Number`` (five digits, zero-padded).
    """
    users: list[dict[str, str]] = []
    for i in range(start, start + n):
        user = {
            "LOGIN_ID": f"user{i:05d}@{domain}",
            "FIRSTNAME": _FIRST_NAMES[i % len(_FIRST_NAMES)],
            "LASTNAME": _LAST_NAMES[(i * 7 + i // len(_FIRST_NAMES)) % len(_LAST_NAMES)],
            "On-Duty-DTG": "",
        }
        if with_collar:
            user["Collar-Number"] = f"{i:05d}"
        users.append(user)
    return users


@dataclass(frozen=True)
class JournalEntry:
    """One request as the simulator saw it.

    ``status`` is the status sent (0 when the connection was dropped on purpose). ``form`` is
    the token request's form with ``password`` and ``client_secret`` replaced by ``"***"``.
    ``json_body`` is the parsed JSON body of an API call (None when absent or not JSON).
    ``auth_ok``: for the token endpoint, whether the credentials were accepted; elsewhere,
    whether a valid bearer token was presented.
    """

    time: float
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    json_body: Any
    status: int
    auth_ok: bool


@dataclass
class Fault:
    """A queued fault (see :meth:`AtHocSimulator.fail_next`)."""

    status: int = 503
    retry_after: Union[float, str, None] = None
    body: Optional[str] = None
    content_type: str = "application/json"
    path_contains: Optional[str] = None
    delay: float = 0.0
    drop: bool = False
    #: Send the status line, the headers (full Content-Length) and half the body, then close.
    truncate: bool = False
    #: A SyncByCommonNames request is kept, not applied, and applied by apply_late_writes().
    hold: bool = False

    def matches(self, target: str) -> bool:
        return self.path_contains is None or self.path_contains in target


@dataclass
class _Request:
    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]  # names in lower case
    body: bytes


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    truncate: bool = False


def _json_response(status: int, payload: Any, headers: Optional[dict[str, str]] = None) -> _Response:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return _Response(status, body, headers=dict(headers or {}))


def _message(status: int, message: str, headers: Optional[dict[str, str]] = None) -> _Response:
    """An ASP.NET Web API style error body: ``{"Message": "..."}``."""
    return _json_response(status, {"Message": message}, headers)


def _oauth_error(status: int, error: str, description: str) -> _Response:
    """An OAuth2 error body: ``{"error": ..., "error_description": ...}``."""
    return _json_response(status, {"error": error, "error_description": description})


def _format_retry_after(value: Union[float, str]) -> str:
    if isinstance(value, str):
        return value
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class AtHocSimulator:
    """An AtHoc server on a background thread. See the module docstring and the README.

    ``users`` is the live state, ``LOGIN_ID -> {common name: value}``; read and change it
    under :attr:`lock` (or with :meth:`get_user` / :meth:`set_attribute`).
    """

    def __init__(
        self,
        users: Optional[Iterable[Mapping[str, str]]] = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: Union[str, Path, None] = None,
        keyfile: Union[str, Path, None] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        token_lifetime: float = 3600.0,
        datetime_format: str = "%d/%m/%Y %H:%M:%S",
        datetime_attributes: Sequence[str] = ("On-Duty-DTG",),
        max_limit: int = 1000,
        latency: float = 0.0,
        **credentials: str,
    ) -> None:
        unknown = set(credentials) - set(SIM_CREDENTIALS)
        if unknown:
            raise TypeError(f"unknown credential keyword(s): {', '.join(sorted(unknown))}")
        if keyfile is not None and certfile is None:
            raise ValueError("keyfile given without certfile")
        self.credentials: dict[str, str] = {**SIM_CREDENTIALS, **credentials}
        self.host = host
        self.port = port
        self.certfile = certfile
        self.keyfile = keyfile
        self.ssl_context = ssl_context
        self.token_lifetime = token_lifetime
        self.datetime_format = datetime_format
        self.datetime_attributes = tuple(datetime_attributes)
        self.max_limit = max_limit
        #: Seconds added to every request.
        self.latency = latency

        # Behaviour knobs, settable by tests at any time.
        #: SyncByCommonNames: leave the last N rows out of the response (rows still applied).
        self.drop_response_rows = 0
        #: LOGIN_ID -> forced ``:SyncDetails``; the row is not applied.
        self.row_errors: dict[str, str] = {}
        #: LOGIN_ID -> ``:SyncStatus`` for a forced row error ("Error" when absent).
        self.row_status: dict[str, str] = {}
        #: users/search/basic answers page 0 whatever the Offset.
        self.ignore_offset = False
        #: users/search/basic leaves ``TotalUsers`` out.
        self.omit_total_users = False
        #: users/search/basic leaves out attributes whose value is "".
        self.omit_empty_fields = False
        #: lt/le/gt/ge on date-time attributes compare as text.
        self.criteria_lt_as_text = False
        #: lt/le/gt/ge parse date-time values as stored: one with a stray space never matches.
        self.criteria_untrimmed_dates = False
        #: SyncByCommonNames answers 413 when a request holds more rows (None: no limit).
        self.max_sync_rows: Optional[int] = None
        #: AtHoc's clock (the ``Date`` header) runs this far ahead of the real one.
        self.clock_offset = timedelta(0)
        #: Answers carry a ``Date`` header.
        self.send_date = True
        #: SyncByCommonNames answers OK for these attributes but does not keep them (an attribute
        #: of the wrong type that AtHoc accepts and drops).
        self.discard_attributes: set[str] = set()

        self.lock = threading.RLock()
        self._users: dict[str, dict[str, str]] = {}
        self._user_ids: dict[str, int] = {}
        self._next_user_id = _FIRST_USER_ID
        for user in users or ():
            login = user.get("LOGIN_ID")
            if not login:
                raise ValueError(f"user without LOGIN_ID: {dict(user)!r}")
            self._users[login] = dict(user)
            self._user_id(login)
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._tokens_issued = 0
        self._connections_accepted = 0
        self._journal: list[JournalEntry] = []
        self._faults: list[Fault] = []
        #: SyncByCommonNames bodies held by a ``hold`` fault: (rows, syncExistingUsersOnly).
        self._held_writes: list[tuple[list[dict[str, Any]], bool]] = []
        #: One-shot changes run after a listing page is served: (Offset, with Criteria, change).
        self._page_hooks: list[tuple[int, bool, Callable[[AtHocSimulator], None]]] = []

        self._state_lock = threading.Lock()
        self._server: Optional[_SimHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._bound_port: Optional[int] = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def org_code(self) -> str:
        return self.credentials["org_code"]

    @property
    def scheme(self) -> str:
        tls = self.ssl_context is not None or self.certfile is not None
        return "https" if tls else "http"

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT`` (or ``http://``), without a trailing slash."""
        port = self._bound_port if self._bound_port is not None else self.port
        if not port:
            raise RuntimeError("the simulator has not been started yet (port 0 = chosen at start)")
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def _build_ssl_context(self) -> Optional[ssl.SSLContext]:
        if self.ssl_context is not None:
            return self.ssl_context
        if self.certfile is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.certfile), str(self.keyfile) if self.keyfile is not None else None)
        return context

    def start(self) -> AtHocSimulator:
        """Bind, listen and serve on a daemon thread; returns once connections are accepted.

        After :meth:`stop`, ``start`` again binds the same port (a server that came back).
        """
        with self._state_lock:
            if self._server is not None:
                raise RuntimeError("the simulator is already running")
            context = self._build_ssl_context()
            port = self._bound_port if self._bound_port is not None else self.port
            self._stopping.clear()
            server = _SimHTTPServer((self.host, port), self, context)
            self._bound_port = server.server_address[1]
            thread = threading.Thread(
                target=server.run,
                name=f"athoc-simulator-{self._bound_port}",
                daemon=True,
            )
            thread.start()
            if not server.ready.wait(10):
                server.server_close()
                raise RuntimeError("the simulator did not start serving within 10 s")
            self._server = server
            self._thread = thread
        log.info("AtHoc simulator listening on %s (org %s)", self.url, self.org_code)
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections, close the listening socket. Idempotent."""
        with self._state_lock:
            server, thread = self._server, self._thread
            self._server = None
            self._thread = None
            if server is None:
                return
            server.shutdown()
            server.close_connections()
            server.server_close()
            # Only now wake requests parked in a delay: their connections are gone, so a
            # stopped server never answers late.
            self._stopping.set()
            if thread is not None:
                thread.join(5)
        log.debug("AtHoc simulator on port %s stopped", self._bound_port)

    def __enter__(self) -> AtHocSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ state helpers

    @property
    def users(self) -> dict[str, dict[str, str]]:
        """The live users (not a copy). Hold :attr:`lock` while changing it from a test."""
        return self._users

    def get_user(self, login_id: str) -> Optional[dict[str, str]]:
        """A copy of one user's attributes, or None."""
        with self.lock:
            user = self._users.get(login_id)
            return dict(user) if user is not None else None

    def set_attribute(self, login_id: str, name: str, value: str) -> None:
        """Set one attribute of an existing user (KeyError when there is no such user)."""
        with self.lock:
            self._users[login_id][name] = value

    def add_user(self, attributes: Mapping[str, str]) -> None:
        """Add (or replace) a user; ``attributes`` must hold ``LOGIN_ID``."""
        login = attributes["LOGIN_ID"]
        with self.lock:
            self._users[login] = dict(attributes)
            self._user_id(login)

    def remove_user(self, login_id: str) -> None:
        """Delete a user (a leaver); KeyError when there is no such user."""
        with self.lock:
            del self._users[login_id]

    def rename_user(self, old_login_id: str, new_login_id: str) -> None:
        """Change a user's LOGIN_ID, keeping every other attribute and the USER_ID."""
        with self.lock:
            if new_login_id in self._users:
                raise ValueError(f"a user {new_login_id!r} already exists")
            user = self._users.pop(old_login_id)
            user["LOGIN_ID"] = new_login_id
            self._users[new_login_id] = user
            self._user_ids[new_login_id] = self._user_ids.pop(old_login_id)

    def move_attribute(self, name: str, from_login_id: str, to_login_id: str) -> None:
        """Give ``to_login_id`` the value of ``name`` that ``from_login_id`` holds, and clear it
        there (a collar number moved from one account to another)."""
        with self.lock:
            source = self._users[from_login_id]
            self._users[to_login_id][name] = source.get(name, "")
            source[name] = ""

    def after_page(self, offset: int, change: Callable[[AtHocSimulator], None], *, with_criteria: bool = False) -> None:
        """Run ``change(self)`` once, just after page ``offset`` of a users/search/basic listing
        has been served (listings without Criteria, unless ``with_criteria``): the users change
        between two pages, and the later pages shift like a real server's."""
        with self.lock:
            self._page_hooks.append((offset, with_criteria, change))

    @property
    def held_writes(self) -> int:
        """SyncByCommonNames requests held by a ``hold`` fault, not yet applied."""
        with self.lock:
            return len(self._held_writes)

    def apply_late_writes(self) -> int:
        """Apply the held SyncByCommonNames requests now, oldest first, as AtHoc finishing
        work the client gave up on. Returns the number of rows applied."""
        with self.lock:
            held, self._held_writes = self._held_writes, []
            applied = 0
            for rows, existing_only in held:
                for row in rows:
                    applied += self._sync_row(dict(row), existing_only)[":SyncStatus"] == "OK"
            return applied

    def _user_id(self, login_id: str) -> int:
        with self.lock:
            user_id = self._user_ids.get(login_id)
            if user_id is None:
                user_id = self._next_user_id
                self._next_user_id += 1
                self._user_ids[login_id] = user_id
            return user_id

    @property
    def journal(self) -> list[JournalEntry]:
        """A copy of every request seen so far, oldest first."""
        with self.lock:
            return list(self._journal)

    def clear_journal(self) -> None:
        with self.lock:
            self._journal.clear()

    def requests_to(self, path_contains: str) -> list[JournalEntry]:
        """Journal entries whose path contains ``path_contains``."""
        return [e for e in self.journal if path_contains in e.path]

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted since the first start (keep-alive reuse shows here)."""
        with self.lock:
            return self._connections_accepted

    def _count_connection(self) -> None:
        with self.lock:
            self._connections_accepted += 1

    @property
    def tokens_issued(self) -> int:
        with self.lock:
            return self._tokens_issued

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far: the next API call with one gets 401."""
        with self.lock:
            self._tokens.clear()

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        retry_after: Union[float, str, None] = None,
        body: Optional[str] = None,
        content_type: str = "application/json",
        path_contains: Optional[str] = None,
        delay: float = 0.0,
        drop: bool = False,
        truncate: bool = False,
        hold: bool = False,
    ) -> None:
        """Queue ``count`` faults; each request matching ``path_contains`` consumes one.

        ``path_contains`` is searched in the request target (path and query); None matches
        every request. ``drop``: close the connection without answering. ``truncate``: answer
        (the fault's status and body, or with ``status=200`` and no ``body`` the real answer,
        the request being served) but close the connection half way through the body, after
        the headers promised all of it. ``delay``: wait that
        long first (the wait ends early when the simulator stops). ``status=200`` with
        ``body`` answers 200 with that body; ``status=200`` without ``body`` only delays, then
        the request is served normally. Otherwise the answer is ``status`` with ``body`` (a
        small JSON error by default) and ``Retry-After`` when given. ``hold``: a
        SyncByCommonNames request that meets the fault is not applied but kept, and applied
        when :meth:`apply_late_writes` is called: a write that lands after the client gave up
        (combine it with ``drop``, a ``delay`` or a 5xx ``status``; a held pure delay then drops).
        """
        fault = Fault(status, retry_after, body, content_type, path_contains, delay, drop, truncate, hold)
        with self.lock:
            self._faults.extend(Fault(**vars(fault)) for _ in range(count))

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        with self.lock:
            return len(self._faults)

    # ------------------------------------------------------------------ request handling

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _take_fault(self, target: str) -> Optional[Fault]:
        with self.lock:
            for i, fault in enumerate(self._faults):
                if fault.matches(target):
                    return self._faults.pop(i)
        return None

    def _bearer_ok(self, headers: Mapping[str, str]) -> bool:
        value = headers.get("authorization") or ""
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        with self.lock:
            expiry = self._tokens.get(token.strip())
            if expiry is None:
                return False
            if expiry <= time.monotonic():
                del self._tokens[token.strip()]
                return False
            return True

    def handle(self, request: _Request) -> _Response:
        """Answer one request (called on the connection's thread). Journals it."""
        self._wait(self.latency)
        form: dict[str, str] = {}
        json_body: Any = None
        is_token = bool(_TOKEN_RE.match(request.path))
        if is_token:
            form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
            auth_ok = self._token_error(request, form) is None
        else:
            auth_ok = self._bearer_ok(request.headers)
            if request.body:
                try:
                    json_body = json.loads(request.body.decode("utf-8-sig"))
                except ValueError:
                    json_body = None

        fault = self._take_fault(request.target)
        if fault is not None and fault.hold:
            self._hold(request, json_body, auth_ok)
        if fault is not None:
            response = self._fault_response(fault)
            if response is None:  # a pure delay: serve normally
                response = self._route(request, form, is_token)
            response.truncate = fault.truncate
        else:
            response = self._route(request, form, is_token)

        redacted = {k: ("***" if k in _REDACTED_FORM_KEYS else v) for k, v in form.items()}
        entry = JournalEntry(
            time=time.time(),
            method=request.method,
            path=request.path,
            query=dict(request.query),
            form=redacted,
            json_body=json_body,
            status=0 if response.drop else response.status,
            auth_ok=auth_ok,
        )
        with self.lock:
            self._journal.append(entry)
        return response

    def _hold(self, request: _Request, json_body: Any, auth_ok: bool) -> None:
        """Keep a SyncByCommonNames body that a ``hold`` fault met, to apply it later."""
        if not (auth_ok and _SYNC_RE.match(request.path) and isinstance(json_body, list)):
            return
        params = {k.lower(): v for k, v in request.query.items()}
        existing_only = params.get("syncexistingusersonly", "").strip().lower() == "true"
        rows = [dict(row) for row in json_body if isinstance(row, dict)]
        with self.lock:
            self._held_writes.append((rows, existing_only))

    def _fault_response(self, fault: Fault) -> Optional[_Response]:
        self._wait(fault.delay)
        if fault.drop:
            return _Response(0, drop=True)
        if fault.status == 200 and fault.body is None:
            if fault.hold:  # held, so not served: the client is left without an answer
                return _Response(0, drop=True)
            return None
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = _format_retry_after(fault.retry_after)
        if fault.body is None:
            phrase = _phrase(fault.status)
            body = json.dumps({"Message": f"Simulated fault: {fault.status} {phrase}"}).encode()
            return _Response(fault.status, body, "application/json; charset=utf-8", headers)
        return _Response(fault.status, fault.body.encode("utf-8"), fault.content_type, headers)

    def _route(self, request: _Request, form: dict[str, str], is_token: bool) -> _Response:
        path = request.path
        if is_token:
            if request.method != "POST":
                return _message(405, "Method not allowed", {"Allow": "POST"})
            return self._token(request, form)
        if not path.lower().startswith(_API_PREFIX):
            return _message(404, f"No resource at {path}")
        if not self._bearer_ok(request.headers):
            return _message(
                401,
                "Authorization has been denied for this request.",
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        org_match = _ORG_RE.match(path)
        if org_match is not None and org_match.group(1) != self.org_code:
            return _message(404, f"Organization '{org_match.group(1)}' not found")
        if _SEARCH_RE.match(path):
            if request.method != "GET":
                return _message(405, "The requested resource does not support this method.", {"Allow": "GET"})
            return self._search(request)
        if _SYNC_RE.match(path):
            if request.method != "POST":
                return _message(405, "The requested resource does not support this method.", {"Allow": "POST"})
            return self._sync(request)
        return _message(404, f"No HTTP resource was found that matches the request URI '{path}'.")

    # --- token

    def _token_error(self, request: _Request, form: Mapping[str, str]) -> Optional[_Response]:
        creds = self.credentials
        content_type = request.headers.get("content-type") or ""
        if "application/x-www-form-urlencoded" not in content_type.lower():
            return _oauth_error(400, "invalid_request", "form-encoded body expected")
        if form.get("client_id") != creds["client_id"] or form.get("client_secret") != creds["client_secret"]:
            return _oauth_error(401, "invalid_client", "unknown client or wrong client secret")
        if form.get("grant_type") != "password":
            return _oauth_error(400, "unsupported_grant_type", "only the password grant")
        scopes = (form.get("scope") or "").split()
        if creds["scope"] not in scopes:
            return _oauth_error(400, "invalid_scope", f"scope must include {creds['scope']}")
        if form.get("username") != creds["username"] or form.get("password") != creds["password"]:
            return _oauth_error(400, "invalid_grant", "invalid username or password")
        if form.get("acr_values") != f"tenant:{creds['org_code']}":
            return _oauth_error(400, "invalid_grant", "the user is not valid in this tenant")
        return None

    def _token(self, request: _Request, form: Mapping[str, str]) -> _Response:
        error = self._token_error(request, form)
        if error is not None:
            return error
        token = secrets.token_urlsafe(32)
        with self.lock:
            self._tokens[token] = time.monotonic() + self.token_lifetime
            self._tokens_issued += 1
        return _json_response(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": int(self.token_lifetime),
                "scope": form.get("scope", ""),
            },
        )

    # --- users/search/basic

    def _search(self, request: _Request) -> _Response:
        params = {k.lower(): v for k, v in request.query.items()}
        try:
            limit = int(params.get("limit", "100"))
            offset = int(params.get("offset", "0"))
        except ValueError:
            return _message(400, "Limit and Offset must be whole numbers")
        if limit < 1 or offset < 0:
            return _message(400, "Limit must be at least 1 and Offset at least 0")
        limit = min(limit, self.max_limit)
        if self.ignore_offset:
            offset = 0
        fields_param = params.get("fields")
        fields = [f.strip() for f in fields_param.split(",") if f.strip()] if fields_param else list(_DEFAULT_FIELDS)
        criteria: Optional[Criteria] = None
        text = (params.get("criteria") or "").strip()
        if text:
            try:
                criteria = Criteria(
                    text,
                    datetime_attributes=self.datetime_attributes,
                    datetime_format=self.datetime_format,
                    dates_as_text=self.criteria_lt_as_text,
                    untrimmed_dates=self.criteria_untrimmed_dates,
                )
            except CriteriaError as exc:
                return _message(400, f"Invalid Criteria: {exc}")
        with self.lock:
            matching = []
            for login in sorted(self._users):
                user = self._users[login]
                view = {**user, "LOGIN_ID": login}
                if criteria is None or criteria.matches(view):
                    matching.append((login, view))
            page = matching[offset * limit : (offset + 1) * limit]
            users_out = []
            for login, view in page:
                row: dict[str, Any] = {}
                for name in fields:
                    if name in view:
                        value = view[name]
                        if value == "" and self.omit_empty_fields:
                            continue
                        row[name] = value
                    elif name == "USER_ID":
                        row[name] = self._user_id(login)
                users_out.append(row)
            self._run_page_hooks(offset, criteria is not None)
        payload: dict[str, Any] = {"Users": users_out}
        if not self.omit_total_users:
            payload["TotalUsers"] = len(matching)
        payload["FetchedRecords"] = len(users_out)
        return _json_response(200, payload)

    def _run_page_hooks(self, offset: int, with_criteria: bool) -> None:
        due = [h for h in self._page_hooks if h[0] == offset and h[1] == with_criteria]
        self._page_hooks = [h for h in self._page_hooks if h not in due]
        for _, _, change in due:
            change(self)

    # --- users/SyncByCommonNames

    def _sync(self, request: _Request) -> _Response:
        content_type = (request.headers.get("content-type") or "").lower()
        if content_type and "json" not in content_type:
            return _message(415, f"Content-Type {content_type!r} is not supported; send JSON")
        try:
            rows = json.loads(request.body.decode("utf-8-sig"))
        except ValueError:
            return _message(400, "The request body is not valid JSON")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return _message(400, "The request body must be a JSON array of objects")
        if self.max_sync_rows is not None and len(rows) > self.max_sync_rows:
            return _message(413, f"At most {self.max_sync_rows} users per request")
        params = {k.lower(): v for k, v in request.query.items()}
        existing_only = params.get("syncexistingusersonly", "").strip().lower() == "true"
        with self.lock:
            results = [self._sync_row(cast("dict[str, Any]", row), existing_only) for row in rows]
            if self.drop_response_rows > 0:
                results = results[: max(0, len(results) - self.drop_response_rows)]
        return _json_response(200, results)

    def _sync_row(self, row: dict[str, Any], existing_only: bool) -> dict[str, Any]:
        out = dict(row)

        def result(status: str, details: str, user_id: Optional[int]) -> dict[str, Any]:
            out[":SyncStatus"] = status
            out[":SyncDetails"] = details
            out["USER_ID"] = user_id
            return out

        login = row.get("LOGIN_ID")
        if not isinstance(login, str) or not login:
            return result("Error", "LOGIN_ID is required", None)
        exists = login in self._users
        if login in self.row_errors:
            return result(
                self.row_status.get(login, "Error"),
                self.row_errors[login],
                self._user_id(login) if exists else None,
            )
        if not exists and existing_only:
            return result("Error", f"User: {login} does not exists in the Organization", None)
        values: dict[str, str] = {}
        for key, value in row.items():
            if key.startswith(":") or key in ("LOGIN_ID", "USER_ID"):
                continue
            if isinstance(value, (dict, list)):
                return result(
                    "Error",
                    f"Invalid value for attribute {key}",
                    self._user_id(login) if exists else None,
                )
            if value is None:
                values[key] = ""
            elif isinstance(value, bool):
                values[key] = "true" if value else "false"
            else:
                values[key] = str(value)
        if values.get("STATUS", "").strip().upper() == "DEL":
            if not exists:
                return result("Error", f"User: {login} does not exists in the Organization", None)
            user_id = self._user_id(login)
            del self._users[login]
            return result("OK", "Deleted", user_id)
        if exists:
            self._users[login].update({k: v for k, v in values.items() if k not in self.discard_attributes})
            return result("OK", "Updated", self._user_id(login))
        self._users[login] = {"LOGIN_ID": login, **values}
        return result("OK", "Created", self._user_id(login))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class _SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        simulator: AtHocSimulator,
        context: Optional[ssl.SSLContext],
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.simulator = simulator
        self.ssl_context = context
        self.ready = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def run(self) -> None:
        # The socket is already listening (connections queue from here on); say so and serve.
        self.ready.set()
        self.serve_forever(poll_interval=0.05)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can be slow; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        self.simulator._count_connection()
        conn = cast(socket.socket, request)
        # Headers and body go out in separate writes: without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every keep-alive response.
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            conn.settimeout(_HANDSHAKE_TIMEOUT)
            try:
                conn = self.ssl_context.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError, ValueError) as exc:
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                return
        with self._connections_lock:
            self._connections.add(conn)
        try:
            _Handler(conn, client_address, self)
        finally:
            with self._connections_lock:
                self._connections.discard(conn)
            if conn is not request:
                conn.close()

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            # The plain socket's shutdown, also for an SSLSocket (no TLS close_notify).
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AtHocSimulator/1.0"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are closed after this

    @property
    def sim_server(self) -> _SimHTTPServer:
        return cast(_SimHTTPServer, self.server)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def date_time_string(self, timestamp: Optional[float] = None) -> str:
        """The ``Date`` header: the simulator's clock, ``clock_offset`` from the real one."""
        offset = self.sim_server.simulator.clock_offset.total_seconds()
        return super().date_time_string((time.time() if timestamp is None else timestamp) + offset)

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "date" and not self.sim_server.simulator.send_date:
            return
        super().send_header(keyword, value)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > _MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        length = int(length_text)
        if length < 0 or length > _MAX_BODY:
            raise ValueError(f"bad Content-Length {length}")
        return self.rfile.read(length)

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._send(_message(400, "Bad request body"))
            return
        parts = urlsplit(self.path)
        request = _Request(
            method=self.command,
            target=self.path,
            path=unquote(parts.path),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        try:
            response = self.sim_server.simulator.handle(request)
        except Exception:
            log.exception("simulator failed on %s %s", self.command, parts.path)
            response = _message(500, "An error has occurred.")
        self._send(response)

    def _send(self, response: _Response) -> None:
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self.connection, socket.SHUT_RDWR)
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if response.truncate:  # a response cut short mid-body
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.wfile.write(response.body[: len(response.body) // 2])
                self.wfile.flush()
                socket.socket.shutdown(self.connection, socket.SHUT_RDWR)
            return
        self.wfile.write(response.body)

"""``bobosync check``: verify the configuration, the folders and AtHoc before going live.

Each check gives one line: ``[ OK ]``, ``[WARN]``, ``[FAIL]`` or ``[SKIP]``, the name of the
check (mostly the setting it is about) and what was found; a WARN or FAIL line is followed by
an indented ``fix:`` line saying what to do. A summary line ends the output. The exit code is 0
when nothing FAILed, 1 otherwise.

The checks run in steps; a step whose prerequisite failed is reported as one SKIP line (no
folder or AtHoc checks with an invalid configuration, no TLS without a TCP connection, no user
listing without a token...):

1. configuration: every :class:`~bobosync.errors.ConfigError` problem as its own FAIL line;
   which ``.env`` file was read; settings in the ``.env`` file bobosync does not know
   (misspelt?); settings the process environment overrides with another value;
   DISABLE_SSL_VERIFY.
2. folders: CSV_DIRECTORY must exist (bobosync never creates BOBO's folder), be listable and
   writable (files are moved out of it); PROCESSED_DIRECTORY, FAILED_FILES_DIRECTORY,
   LOG_DIRECTORY and the DB_PATH folder must exist or be creatable, and be writable. Writing
   is tested by creating and deleting a temporary file; nothing is created or left behind.
   Whether file moves are renames (same volume) or copy-verify-delete (another volume).
3. the database, opened read-only: schema version, worker mappings, last mapping sync.
4. the single-instance lock: free, or held by a run in progress.
5. network: the proxy that applies (as requests chooses it), DNS, a TCP connection.
6. TLS, with the :mod:`ssl` module and the client's trust (SSL_CERT_PATH, or the CA bundle
   requests uses): negotiated version (TLS 1.2 or later), the certificate's subject, issuer,
   expiry (WARN under 30 days), host name match.
7. authentication: a token, through :class:`~bobosync.client.AtHocClient`.
8. one page of users with LOGIN_ID, COLLAR_ID_FIELD and DUTY_STATUS_FIELD: collar numbers
   present and shaped like a BOBO Employee_ID; duty values readable with
   ATHOC_DATETIME_FORMAT; collar numbers held by several users.

Nothing is written to AtHoc, the database or the folders. No password, client secret or
token is ever printed.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Optional, TextIO
from urllib.parse import urlsplit

from dotenv import dotenv_values

from .bobo_csv import EMPLOYEE_ID_PATTERN
from .errors import (
    AtHocAuthError,
    AtHocError,
    AtHocHTTPError,
    AtHocResponseError,
    ConfigError,
    DatabaseError,
    LockHeld,
    MailError,
)
from .redaction import redact_url_credentials, redact_values
from .settings import (
    Settings,
    describe_env_source,
    find_env_file,
    known_setting_names,
    load_settings,
    repeated_setting_names,
    unknown_setting_names,
)
from .timebase import ClockOffset, describe_offset, show, utc_now
from .tls_probe import (
    TLSHandshake,
    client_tls_context,
    default_ca_bundle,
    effective_proxy,
    legacy_version,
    tls_handshake,
    unverified_context,
    verify_message,
)
from .transport import proxies_setting
from .version import __version__

log = logging.getLogger(__name__)

#: A certificate expiring within this many days is a WARN.
CERT_WARN_DAYS = 30
#: Longest wait for a TCP connection or TLS handshake made by the check itself, seconds.
PROBE_TIMEOUT_CAP_SECONDS = 15.0
#: Examples shown in one line.
MAX_EXAMPLES = 3
#: Width of the name column.
NAME_WIDTH = 22



class Status(str, enum.Enum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"

    @property
    def label(self) -> str:
        return "[ OK ]" if self is Status.OK else f"[{self.value}]"


@dataclass(frozen=True)
class CheckResult:
    """One line of the check's output (and its fix, for WARN and FAIL)."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        head = f"{self.status.label} {(self.name + ':'):<{NAME_WIDTH + 1}} {self.detail}"
        if self.fix and self.status in (Status.WARN, Status.FAIL):
            return [head, f"{'':6} {'fix:':<{NAME_WIDTH + 1}} {self.fix}"]
        return [head]


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.OK, detail)


def warn(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, Status.WARN, detail, fix)


def fail(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, Status.FAIL, detail, fix)


def skip(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.SKIP, detail)


@dataclass(frozen=True)
class _Step:
    key: str  # named by the SKIP line when it cannot run
    run: Callable[[], Iterable[CheckResult]]
    requires: tuple[str, ...]


# =========================================================================== the checker


class Checker:
    """Runs the checks in order; :meth:`run` yields each result as soon as it is known.

    ``environ`` replaces the process environment for reading the settings (tests); proxies
    from the environment are always taken from the process environment, as requests does.
    """

    def __init__(self, env_file: Optional[Path] = None, environ: Optional[Mapping[str, str]] = None) -> None:
        self.env_file = env_file
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.settings: Optional[Settings] = None
        self._client: Any = None  # AtHocClient once authenticated
        self._proxy: Optional[str] = None
        self._tls_probe_possible = True

    # -- orchestration --------------------------------------------------------------------

    def steps(self) -> list[_Step]:
        return [
            _Step("configuration", self.check_configuration, ()),
            _Step("folders", self.check_folders, ("configuration",)),
            _Step("database", self.check_database, ("configuration",)),
            _Step("lock", self.check_lock, ("configuration",)),
            _Step("network", self.check_network, ("configuration",)),
            _Step("TLS", self.check_tls, ("network",)),
            _Step("authentication", self.check_authentication, ("TLS",)),
            _Step("users", self.check_users, ("authentication",)),
            _Step("e-mail", self.check_email, ("configuration",)),
            _Step("metrics", self.check_metrics, ("configuration",)),
        ]

    def run(self) -> Iterator[CheckResult]:
        failed: dict[str, str] = {}  # step key -> the check whose FAIL stopped it
        try:
            for step in self.steps():
                blocked = [failed[key] for key in step.requires if key in failed]
                if blocked:
                    failed[step.key] = blocked[0]
                    yield skip(step.key, f"not checked: {blocked[0]} failed")
                    continue
                first_failure: Optional[str] = None
                try:
                    for result in step.run():
                        if result.status is Status.FAIL and first_failure is None:
                            first_failure = result.name
                        yield result
                except Exception as exc:  # a bug in a check must not hide the other results
                    log.debug("check step %s raised", step.key, exc_info=True)
                    first_failure = first_failure or step.key
                    yield fail(
                        step.key,
                        f"the check itself failed: {type(exc).__name__}: {exc}",
                        "report this to the bobosync maintainers with the output above",
                    )
                if first_failure is not None:
                    failed[step.key] = first_failure
        finally:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _settings(self) -> Settings:
        assert self.settings is not None, "configuration step not run"
        return self.settings

    # -- 1. configuration -----------------------------------------------------------------

    def check_configuration(self) -> Iterator[CheckResult]:
        name = "configuration"
        try:
            path = find_env_file(self.env_file, self.environ)
        except OSError as exc:  # Path.cwd() gone
            yield fail(name, f"cannot look for the .env file: {exc}", "run bobosync from an existing folder")
            return
        source = self._env_source(path)
        try:
            self.settings = load_settings(self.env_file, self.environ)
        except ConfigError as exc:
            where = (f"in {path} (or in the environment, which wins over the file)" if path is not None
                     else "in the environment or a .env file")
            for problem in exc.problems:
                yield fail(name, problem, f"correct it {where}")
            return
        settings = self.settings
        yield ok(name, f"valid; {source}")
        file_values: dict[str, Optional[str]] = {}
        if path is not None:
            file_values = dict(dotenv_values(path))
        yield from self._unknown_settings(path, file_values)
        yield from self._overridden_settings(path, file_values)
        if settings.disable_ssl_verify:
            yield warn(
                "DISABLE_SSL_VERIFY",
                "true: the AtHoc server's certificate is NOT checked (anyone in the network path "
                "could pose as AtHoc and read the password)",
                "set DISABLE_SSL_VERIFY=false; if the certificate is not trusted, put the CA "
                "certificate (PEM) in a file and set SSL_CERT_PATH to it",
            )
        else:
            trust = (
                f"SSL_CERT_PATH {settings.ssl_cert_path}"
                if settings.ssl_cert_path is not None
                else f"default CA bundle {default_ca_bundle()}"
            )
            yield ok("DISABLE_SSL_VERIFY", f"false: certificates are verified against {trust}")

    def _env_source(self, path: Optional[Path]) -> str:
        return describe_env_source(path, self.env_file, self.environ)

    def _unknown_settings(
        self, path: Optional[Path], file_values: Mapping[str, Optional[str]]
    ) -> Iterator[CheckResult]:
        name = "unknown settings"
        if path is None:
            return
        unknown = unknown_setting_names(file_values)
        if unknown:
            yield warn(
                name,
                f"{len(unknown)} setting(s) in {path.name} that bobosync does not use: "
                + ", ".join(unknown),
                "correct the spelling (setting names are case-sensitive) or remove them; see "
                "the settings table in the README",
            )
        else:
            yield ok(name, f"none: every setting in {path.name} is one bobosync reads")
        repeated = repeated_setting_names(path)
        if repeated:
            yield warn(
                "repeated settings",
                f"written more than once in {path.name}: "
                + ", ".join(f"{key} ({count} times)" for key, count in repeated.items())
                + "; only the last one is used",
                "keep one line per setting, so that the value you read is the value bobosync uses",
            )

    def _overridden_settings(
        self, path: Optional[Path], file_values: Mapping[str, Optional[str]]
    ) -> Iterator[CheckResult]:
        name = "environment overrides"
        if path is None:
            return
        known = known_setting_names() - {"USERNAME", "BOBO_ENV_FILE"}
        differ = sorted(
            key
            for key, value in file_values.items()
            if key in known
            and key in self.environ
            and (self.environ[key] or "").strip() != (value or "").strip()
        )
        if differ:
            yield warn(
                name,
                f"the process environment sets {', '.join(differ)} to another value than "
                f"{path.name}, and the environment wins",
                "remove them from the environment (or from the .env file) so that there is one "
                "place to look",
            )
        else:
            yield ok(name, f"none: no setting of {path.name} is overridden by the environment")

    # -- 2. folders -----------------------------------------------------------------------

    def check_folders(self) -> Iterator[CheckResult]:
        settings = self._settings()
        yield self._csv_folder(settings.csv_directory)
        processed = self._output_folder("PROCESSED_DIRECTORY", settings.processed_directory)
        if not settings.move_processed_files:  # a problem there does not stop bobosync today
            processed = dataclasses.replace(
                processed,
                status=Status.WARN if processed.status is Status.FAIL else processed.status,
                detail=processed.detail + " (not used while MOVE_PROCESSED_FILES=false)",
            )
        yield processed
        yield self._output_folder("FAILED_FILES_DIRECTORY", settings.failed_files_directory)
        yield self._output_folder("LOG_DIRECTORY", settings.log_directory)
        yield self._output_folder("DB_PATH folder", settings.db_path.parent)
        yield from self._volumes(settings)

    def _csv_folder(self, folder: Path) -> CheckResult:
        name = "CSV_DIRECTORY"
        fix_missing = (
            "correct CSV_DIRECTORY (relative paths are relative to the .env file's folder) or "
            "create the folder BOBO writes its files to; bobosync never creates it"
        )
        if not folder.exists():
            return fail(name, f"{folder} does not exist", fix_missing)
        if not folder.is_dir():
            return fail(name, f"{folder} is a file, not a folder", fix_missing)
        try:
            csv_files = sum(1 for entry in folder.iterdir() if entry.name.lower().endswith(".csv"))
        except OSError as exc:
            return fail(
                name,
                f"{folder} cannot be listed: {_os_error(exc)}",
                "give the account that runs bobosync read access to the folder (on a share: "
                "share and folder permissions)",
            )
        problem = _write_test(folder)
        if problem is not None:
            return fail(
                name,
                f"{folder} is readable but not writable ({problem}): processed and failed files "
                "cannot be moved out of it",
                "give the account that runs bobosync modify (write and delete) access to the folder",
            )
        return ok(name, f"{folder}: exists, readable, writable; {csv_files} CSV file(s) waiting")

    def _output_folder(self, name: str, folder: Path) -> CheckResult:
        fix = (
            f"correct {name.split()[0]} or make the folder (or its parent) writable for the account "
            "that runs bobosync"
        )
        if folder.exists():
            if not folder.is_dir():
                return fail(name, f"{folder} is a file, not a folder", fix)
            problem = _write_test(folder)
            if problem is not None:
                return fail(name, f"{folder} is not writable ({problem})", fix)
            return ok(name, f"{folder}: exists, writable")
        ancestor = _nearest_existing(folder)
        if ancestor is None:
            return fail(name, f"{folder} does not exist and no parent folder exists either", fix)
        if not ancestor.is_dir():
            return fail(name, f"{folder} cannot be created: {ancestor} is a file, not a folder", fix)
        problem = _write_test(ancestor)
        if problem is not None:
            return fail(
                name, f"{folder} does not exist and cannot be created in {ancestor} ({problem})", fix
            )
        return ok(name, f"{folder}: does not exist yet; the first run creates it (in {ancestor}, writable)")

    def _volumes(self, settings: Settings) -> Iterator[CheckResult]:
        name = "file moves"
        try:
            csv_dev = settings.csv_directory.stat().st_dev
        except OSError:
            return  # the CSV_DIRECTORY line already says why
        targets = [("FAILED_FILES_DIRECTORY", settings.failed_files_directory)]
        if settings.move_processed_files:
            targets.insert(0, ("PROCESSED_DIRECTORY", settings.processed_directory))
        same: list[str] = []
        other: list[str] = []
        for setting, folder in targets:
            ancestor = _nearest_existing(folder)
            if ancestor is None or not ancestor.is_dir():
                continue
            try:
                dev = ancestor.stat().st_dev
            except OSError:
                continue
            (same if dev == csv_dev else other).append(setting)
        parts = []
        if same:
            parts.append(
                f"{' and '.join(same)} on the same volume as CSV_DIRECTORY: moves are instant renames"
            )
        if other:
            parts.append(
                f"{' and '.join(other)} on another volume than CSV_DIRECTORY: each move is copy, "
                "verify (SHA-256), then delete the original - slower, equally safe"
            )
        if parts:
            yield ok(name, "; ".join(parts))

    # -- 3. database ----------------------------------------------------------------------

    def check_database(self) -> Iterator[CheckResult]:
        from .database import SCHEMA_VERSION, BOBODatabase

        name = "database"
        path = self._settings().db_path
        if not path.exists():
            yield ok(name, f"{path} does not exist yet; the first run creates it")
            return
        if not path.is_file():
            yield fail(name, f"{path} is not a file", "correct DB_PATH: it names the SQLite file")
            return
        try:
            with BOBODatabase(path, read_only=True) as db:
                version = db.schema_version
                mappings = db.mapping_count()
                sync = db.get_sync_state()
                pending = len(db.pending_moves())
        except DatabaseError as exc:
            yield fail(
                name,
                f"{path} cannot be read: {exc}",
                "restore the file from a backup, or move it aside: the next run creates a new "
                "database and syncs the worker mapping from AtHoc again",
            )
            return
        parts = [f"{path}: schema {version}"]
        if version < SCHEMA_VERSION:
            parts[0] += f" (upgraded to {SCHEMA_VERSION} by the next run)"
        parts.append(f"{mappings} worker mapping(s)")
        if sync is not None and sync.last_sync_time is not None:
            parts.append(f"last mapping sync {sync.last_sync_time:%Y-%m-%d %H:%M} ({sync.status or '?'})")
        else:
            parts.append("no mapping sync yet")
        if pending:
            parts.append(f"{pending} interrupted file move(s), finished by the next run")
        yield ok(name, ", ".join(parts))

    # -- 4. lock --------------------------------------------------------------------------

    def check_lock(self) -> Iterator[CheckResult]:
        from .locking import SingleInstanceLock

        name = "lock"
        path = self._settings().lock_path
        if not path.exists():
            yield ok(name, f"free ({path} does not exist)")
            return
        lock = SingleInstanceLock(path)
        try:
            lock.acquire()
        except LockHeld:
            yield warn(
                name,
                f"held: a bobosync run is in progress ({path})",
                "nothing to do if Task Scheduler or the service is running bobosync; otherwise "
                "find the bobosync process that is still running",
            )
            return
        except OSError as exc:
            yield warn(name, f"cannot be tested: {_os_error(exc)}", f"check access to {path.parent}")
            return
        lock.release()
        yield ok(name, f"free ({path})")

    # -- 5. network -----------------------------------------------------------------------

    def check_network(self) -> Iterator[CheckResult]:
        settings = self._settings()
        parts = urlsplit(settings.athoc_server_url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        timeout = self._timeout()
        self._proxy = effective_proxy(settings)
        if self._proxy is None:
            yield ok("proxy", f"none: bobosync connects to {host}:{port} directly")
            target_host, target_port = host, port
            role = ""
        else:
            shown = redact_url_credentials(self._proxy)
            origin = (
                "HTTPS_PROXY/HTTP_PROXY setting"
                if proxies_setting(settings)
                else "the environment (https_proxy/all_proxy)"
            )
            proxy_parts = urlsplit(self._proxy)
            yield ok("proxy", f"{shown} (from {origin}); the proxy resolves and connects to {host}")
            if proxy_parts.scheme != "http" or proxy_parts.hostname is None:
                self._tls_probe_possible = False  # the tunnel through it is not built here
            target_host = proxy_parts.hostname or ""
            target_port = proxy_parts.port or (443 if proxy_parts.scheme == "https" else 1080 if
                                               proxy_parts.scheme.startswith("socks") else 80)
            role = "proxy "

        fix_host = (
            "check the proxy URL in HTTPS_PROXY"
            if role
            else "check the host name in ATHOC_SERVER_URL; if this machine reaches the internet "
            "through a proxy, set HTTPS_PROXY"
        )
        try:
            addresses = _resolve(target_host, target_port)
        except OSError as exc:
            yield fail("DNS", f"{role}{target_host} cannot be resolved: {_os_error(exc)}", fix_host)
            return
        if _is_ip_address(target_host):
            yield ok("DNS", f"{role}{target_host} is an IP address: nothing to look up")
        else:
            more = f" (+{len(addresses) - MAX_EXAMPLES} more)" if len(addresses) > MAX_EXAMPLES else ""
            yield ok("DNS", f"{role}{target_host} -> {', '.join(addresses[:MAX_EXAMPLES])}{more}")

        started = time.monotonic()
        try:
            with socket.create_connection((target_host, target_port), timeout=timeout):
                pass
        except OSError as exc:
            yield fail(
                "TCP",
                f"cannot connect to {role}{target_host}:{target_port}: {_os_error(exc)}",
                (f"check the port in {'HTTPS_PROXY' if role else 'ATHOC_SERVER_URL'} and that the "
                 f"firewall allows this machine to open connections to {target_host}:{target_port}"),
            )
            return
        elapsed = (time.monotonic() - started) * 1000
        yield ok("TCP", f"connected to {role}{target_host}:{target_port} in {elapsed:.0f} ms")

    def _timeout(self) -> float:
        return min(self._settings().request_timeout_seconds, PROBE_TIMEOUT_CAP_SECONDS)

    # -- 6. TLS ---------------------------------------------------------------------------

    def check_tls(self) -> Iterator[CheckResult]:
        settings = self._settings()
        parts = urlsplit(settings.athoc_server_url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.scheme != "https":
            yield warn(
                "TLS",
                f"none: {settings.athoc_server_url} is plain http (allowed for a loopback test "
                "server such as the simulator only)",
                "use the https:// URL of the real AtHoc server",
            )
            return
        if not self._tls_probe_possible:
            yield skip("TLS", f"not probed through the {urlsplit(self._proxy or '').scheme} proxy; "
                              "the authentication check below covers the connection")
            return
        timeout = self._timeout()
        context, trust = client_tls_context(settings)
        try:
            handshake = tls_handshake(host, port, self._proxy, context, timeout)
        except ssl.SSLCertVerificationError as exc:
            yield from self._untrusted(host, port, timeout, trust, exc)
            return
        except ssl.SSLError as exc:
            yield self._tls_refused(host, port, timeout, exc)
            yield skip("certificate", "not checked: no TLS connection")
            return
        except OSError as exc:
            yield fail(
                "TLS",
                f"handshake with {host}:{port} failed: {_os_error(exc)}",
                "check that ATHOC_SERVER_URL is the AtHoc server's https:// address (and port), "
                "and the proxy settings",
            )
            return
        yield self._tls_version_result(handshake)
        yield self._certificate_result(handshake, host, trust, verified=not settings.disable_ssl_verify)

    def _tls_version_result(self, handshake: TLSHandshake) -> CheckResult:
        return ok("TLS", f"{handshake.version} ({handshake.cipher}); bobosync accepts TLS 1.2 or later")

    def _certificate_result(
        self, handshake: TLSHandshake, host: str, trust: str, *, verified: bool
    ) -> CheckResult:
        name = "certificate"
        info = handshake.certificate
        if info is None:
            described = "the server's certificate could not be decoded"
            days_left: Optional[int] = None
        else:
            days_left = info.days_left()
            described = f"{info.describe()} ({days_left} days left)"
        if not verified:
            return warn(
                name,
                f"{described}; NOT verified (DISABLE_SSL_VERIFY=true){self._would_verify(host)}",
                "set DISABLE_SSL_VERIFY=false (and SSL_CERT_PATH to the issuing CA's PEM file if "
                "it is not trusted by default)",
            )
        if days_left is not None and days_left < CERT_WARN_DAYS:
            return warn(
                name,
                f"{described}; trusted via {trust}; expires in under {CERT_WARN_DAYS} days",
                "ask the AtHoc server's administrators to renew the certificate in time (bobosync "
                "stops working the moment it expires)",
            )
        return ok(name, f"{described}; trusted via {trust}; valid for {host}")

    def _would_verify(self, host: str) -> str:
        """With verification disabled: would the certificate pass if it were enabled?"""
        settings = dataclasses.replace(self._settings(), disable_ssl_verify=False)
        context, trust = client_tls_context(settings)
        port = urlsplit(settings.athoc_server_url).port or 443
        try:
            tls_handshake(host, port, self._proxy, context, self._timeout())
        except ssl.SSLCertVerificationError as exc:
            return f"; it would NOT pass verification against {trust}: {verify_message(exc)}"
        except (ssl.SSLError, OSError):
            return ""
        return f"; it WOULD pass verification against {trust}"

    def _untrusted(
        self, host: str, port: int, timeout: float, trust: str, exc: ssl.SSLCertVerificationError
    ) -> Iterator[CheckResult]:
        reason = verify_message(exc)
        insecure = unverified_context()
        described = ""
        try:
            handshake: Optional[TLSHandshake] = tls_handshake(host, port, self._proxy, insecure, timeout)
        except (ssl.SSLError, OSError):
            handshake = None
        if handshake is not None:
            yield self._tls_version_result(handshake)
            if handshake.certificate is not None:
                described = f" ({handshake.certificate.describe()})"
        else:
            yield skip("TLS", "version not known: no handshake succeeded")
        lowered = reason.lower()
        if "expired" in lowered:
            fix = "the certificate has expired: ask the AtHoc server's administrators to renew it"
        elif "hostname" in lowered or "not valid for" in lowered or "ip address mismatch" in lowered:
            fix = (f"use the host name the certificate is issued for in ATHOC_SERVER_URL (not {host}), "
                   "or ask for a certificate that names it")
        else:
            fix = ("get the certificate of the CA that issued it (the issuer above; your IT team or "
                   "the proxy's administrators have it), save it as a PEM file and set SSL_CERT_PATH to "
                   "it - do not set DISABLE_SSL_VERIFY=true")
        yield fail("certificate", f"not trusted: {reason}{described}; trust used: {trust}", fix)

    def _tls_refused(self, host: str, port: int, timeout: float, exc: ssl.SSLError) -> CheckResult:
        legacy = legacy_version(host, port, self._proxy, timeout)
        if legacy is not None:
            return fail(
                "TLS",
                f"{host}:{port} offers only {legacy}; bobosync requires TLS 1.2 or later",
                "ask the AtHoc server's (or the proxy's) administrators to enable TLS 1.2 or 1.3",
            )
        return fail(
            "TLS",
            f"handshake with {host}:{port} failed: {exc.reason or exc}",
            "check that ATHOC_SERVER_URL is the AtHoc server's https:// address and that the "
            "server offers TLS 1.2 or later",
        )

    # -- 7. authentication ----------------------------------------------------------------

    def check_authentication(self) -> Iterator[CheckResult]:
        from .client import AtHocClient

        settings = self._settings()
        name = "authentication"
        who = f"APIUSER {settings.apiuser} in organization {settings.org_code}"
        try:
            client = AtHocClient(settings)
        except AtHocAuthError as exc:
            yield fail(name, f"refused for {who}: {exc}", _auth_fix(str(exc)))
            return
        except AtHocHTTPError as exc:
            yield fail(
                name,
                f"token request failed: {exc}",
                "ATHOC_SERVER_URL must be the AtHoc server's root address (no /api or "
                "/AuthServices path)" if exc.status == 404 else
                "check ATHOC_SERVER_URL; if it persists, ask the AtHoc administrators",
            )
            return
        except AtHocResponseError as exc:
            yield fail(
                name,
                f"unexpected answer to the token request: {exc}",
                "ATHOC_SERVER_URL may point at something other than AtHoc (a proxy's login page?)",
            )
            return
        except AtHocError as exc:
            yield fail(name, f"token request failed: {exc}",
                       "check the network, TLS and proxy lines above and ATHOC_SERVER_URL")
            return
        self._client = client
        seconds = client.transport.auth.seconds_left()
        yield ok(name, f"token obtained for {who} (valid for {seconds:.0f} s)")
        yield self._clock_result(settings, client.clock_offset)

    @staticmethod
    def _clock_result(settings: Settings, reading: Optional[ClockOffset]) -> CheckResult:
        """This machine's clock against AtHoc's (the token answer's Date header), and the zones."""
        name = "clock"
        zones = f"BOBO_TIMEZONE {settings.bobo_timezone}, ATHOC_TIMEZONE {settings.athoc_zone}"
        if reading is None:
            return skip(name, f"AtHoc's answer has no Date header: clocks not compared; {zones}")
        now = utc_now()
        offset = reading.offset_at(now)
        detail = (f"this machine ({show(now)}) is {describe_offset(offset)} "
                  f"(offset {offset.total_seconds():+.1f} s, "
                  f"give or take {reading.uncertainty.total_seconds():.1f} s); "
                  f"{zones}")
        tolerance = settings.clock_tolerance
        if tolerance is not None and reading.beyond(offset, tolerance):
            return fail(name, detail, f"set this machine's clock right (NTP); beyond CLOCK_TOLERANCE_MINUTES="
                                      f"{settings.clock_tolerance_minutes:g} every pass skips the auto-cleanup "
                                      "and the other decisions that read this clock")
        return ok(name, detail)

    # -- 8. users -------------------------------------------------------------------------

    def check_users(self) -> Iterator[CheckResult]:
        from .client import SEARCH_PATH, AtHocClient

        settings = self._settings()
        client = self._client
        assert client is not None
        collar_field = settings.collar_id_field
        duty_field = settings.duty_status_field
        fields = list(dict.fromkeys(["LOGIN_ID", collar_field, duty_field]))
        name = "users"
        params = {"Fields": ",".join(fields), "Limit": AtHocClient.page_size, "Offset": 0}
        try:
            data = client.transport.request_json("GET", SEARCH_PATH, params=params)
            rows, total = AtHocClient._check_page(data, 0)
        except AtHocHTTPError as exc:
            if exc.status == 403:
                fix = f"give the AtHoc operator {settings.apiuser} a role that may read users (User Manager)"
            elif exc.status == 404:
                fix = "check ORG_CODE (and that ATHOC_SERVER_URL is the server's root address)"
            else:
                fix = "try again later; if it persists, ask the AtHoc administrators"
            yield fail(name, f"reading users failed: {exc}", fix)
            return
        except AtHocError as exc:
            yield fail(name, f"reading users failed: {exc}",
                       "try again later; if it persists, ask the AtHoc administrators")
            return
        users = [row for row in rows if str(row.get("LOGIN_ID") or "").strip()]
        if not users:
            yield fail(
                name,
                f"the first page of users in organization {settings.org_code} is empty",
                "check ORG_CODE, and that APIUSER may see the organization's users",
            )
            return
        of_total = f" of {total}" if total is not None else ""
        yield ok(name, f"read the first page: {len(users)}{of_total} user(s), fields {', '.join(fields)}")
        yield from check_collar_values(users, collar_field)
        yield check_duty_values(users, duty_field, settings.athoc_datetime_format,
                                settings.auto_cleanup_hours, datetime.now(settings.athoc_zone).replace(tzinfo=None),
                                self._recent_book_ons())
        yield check_shared_collars(users, collar_field)


    def _recent_book_ons(self) -> int:
        """How many people bobosync's own records say it booked on within AUTO_CLEANUP_HOURS
        (24 h when that is off) and not off since: AtHoc should show them on duty."""
        from .database import BOBODatabase

        settings = self._settings()
        if not settings.db_path.exists():
            return 0
        hours = settings.auto_cleanup_hours or 24.0
        try:
            with BOBODatabase(settings.db_path, read_only=True) as db:
                return db.count_book_ons_applied_since(utc_now() - timedelta(hours=hours))
        except DatabaseError:
            return 0  # the database line says why

    # -- 9. e-mail and metrics ---------------------------------------------------------

    def check_email(self) -> Iterator[CheckResult]:
        from .notify import Mailer

        settings = self._settings()
        if not settings.notify_enabled:
            yield ok("e-mail", "off: NOTIFY_EMAIL_TO is not set, so health changes are not mailed")
            return
        mailer = Mailer(settings)
        try:
            described = mailer.verify()
        except MailError as exc:
            yield fail("SMTP", str(exc), "correct the setting named above, then send a test mail with "
                                         "bobosync notify-test")
            return
        yield ok("SMTP", f"{described}; nothing sent (bobosync notify-test sends a test mail); health "
                         f"e-mails from {settings.notify_email_from} to {', '.join(settings.notify_email_to)}")
        if settings.smtp_security == "none" and settings.smtp_username and not _is_loopback_host(settings.smtp_host):
            yield warn("SMTP_SECURITY", f"none: SMTP_PASSWORD for {settings.smtp_username} crosses the network "
                                        "unencrypted", "set SMTP_SECURITY=starttls (or ssl) if the server offers it")

    def check_metrics(self) -> Iterator[CheckResult]:
        name = "METRICS_FILE"
        path = self._settings().metrics_file
        if path is None:
            yield ok(name, "off: no metrics file is written")
            return
        folder = path.parent
        if not folder.is_dir():
            yield fail(name, f"the folder {folder} does not exist (bobosync does not create it: it is the "
                             "textfile collector's folder)",
                       "create it, or set METRICS_FILE to a file in the folder node_exporter's "
                       "--collector.textfile.directory or windows_exporter's textfile directory names")
            return
        problem = _write_test(folder)
        if problem is not None:
            yield fail(name, f"{folder} is not writable ({problem})",
                       "give the account that runs bobosync write access to the folder")
            return
        if path.suffix != ".prom":
            yield warn(name, f"{path}: the textfile collectors read only files ending in .prom",
                       f"rename it, e.g. METRICS_FILE={path.with_suffix('.prom')}")
            return
        yield ok(name, f"{path}: folder writable; written after every pass")


# =========================================================================== user page checks


def _value(row: Mapping[str, Any], field: str) -> str:
    value = row.get(field)
    return "" if value is None else str(value).strip()


def _show(value: str, limit: int = 40) -> str:
    """A value for one output line: quoted, non-ASCII escaped, shortened."""
    shown = ascii(value)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def _shape(value: str) -> str:
    if value.isdigit() and value.isascii():
        return f"{len(value)} digits"
    if value.isalnum() and value.isascii():
        return f"{len(value)} letters/digits"
    return "other"


def check_collar_values(users: Sequence[Mapping[str, Any]], field: str) -> Iterator[CheckResult]:
    """FAIL when no user has a value; WARN when some values cannot match a BOBO Employee_ID."""
    name = "COLLAR_ID_FIELD"
    values = [_value(u, field) for u in users]
    present = [v for v in values if v]
    returned = any(field in u for u in users)
    if not present:
        why = "AtHoc returned no such attribute" if not returned else "every value is empty"
        yield fail(
            name,
            f"{field}: none of the {len(users)} users on the first page has a value ({why}); "
            "the name is probably wrong",
            "set COLLAR_ID_FIELD to the common name of the AtHoc attribute that holds the BOBO "
            "Employee_ID (e.g. Collar-Number; names are case-sensitive)",
        )
        return
    odd = [v for v in present if not EMPLOYEE_ID_PATTERN.fullmatch(v)]
    shapes = Counter(_shape(v) for v in present)
    shape_text = ", ".join(f"{count} x {shape}" for shape, count in shapes.most_common(MAX_EXAMPLES))
    summary = f"{field}: {len(present)} of {len(users)} users have one ({shape_text})"
    if odd:
        examples = ", ".join(_show(v) for v in list(dict.fromkeys(odd))[:MAX_EXAMPLES])
        yield warn(
            name,
            f"{summary}; {len(odd)} cannot match a BOBO Employee_ID (letters, digits, . _ -): {examples}",
            f"correct those values in AtHoc, or check that {field} is the attribute holding "
            "the BOBO Employee_ID",
        )
        return
    yield ok(name, summary)


def check_duty_values(
    users: Sequence[Mapping[str, Any]],
    field: str,
    fmt: str,
    cleanup_hours: float,
    now: datetime,
    recent_book_ons: int = 0,
) -> CheckResult:
    """Duty values must read back with ATHOC_DATETIME_FORMAT (WARN with samples otherwise).
    ``recent_book_ons``: people bobosync booked on lately (its own records); with those, an
    attribute AtHoc never returns is a FAIL: the name must be wrong."""
    name = "DUTY_STATUS_FIELD"
    values = [_value(u, field) for u in users]
    present = [v for v in values if v]
    if not present:
        if any(field in u for u in users):
            return ok(name, f"{field}: empty for all {len(users)} users on the first page "
                            "(nobody marked on duty yet)")
        if recent_book_ons:
            hours = cleanup_hours or 24.0
            return fail(
                name,
                f"{field}: AtHoc returned no such attribute for any of the {len(users)} users on the first "
                f"page, yet bobosync's records show {recent_book_ons} person(s) booked on in the last {hours:g} h "
                "and not off since: the name is wrong",
                "set DUTY_STATUS_FIELD to the common name of the AtHoc date-time attribute (e.g. On-Duty-DTG; "
                "names are case-sensitive)",
            )
        return warn(
            name,
            f"{field}: AtHoc returned no such attribute for any of the {len(users)} users on the "
            "first page: either nobody is on duty, or the name is wrong",
            "check that DUTY_STATUS_FIELD is the common name of the AtHoc date-time attribute "
            "(e.g. On-Duty-DTG; names are case-sensitive)",
        )
    parsed: list[datetime] = []
    bad: list[str] = []
    for value in present:
        try:
            parsed.append(datetime.strptime(value, fmt))
        except ValueError:
            bad.append(value)
    if bad:
        examples = ", ".join(_show(v) for v in list(dict.fromkeys(bad))[:MAX_EXAMPLES])
        how_many = f"all {len(present)}" if not parsed else f"{len(bad)} of {len(present)}"
        return warn(
            name,
            f"{field}: {how_many} value(s) do not match ATHOC_DATETIME_FORMAT {fmt!r}: {examples}",
            "set ATHOC_DATETIME_FORMAT to the organization's date-time format in AtHoc (Python "
            "strftime codes, e.g. %d/%m/%Y %H:%M:%S); the auto-cleanup never clears a value it "
            "cannot read",
        )
    future = [p for p in parsed if p > now + timedelta(days=1)]
    if future:
        return warn(
            name,
            f"{field}: {len(future)} of {len(present)} value(s) are more than a day in the future "
            f"(e.g. {min(future).strftime(fmt)}): day and month swapped in ATHOC_DATETIME_FORMAT?",
            "compare ATHOC_DATETIME_FORMAT with the organization's date format in AtHoc",
        )
    detail = f"{field}: {len(present)} of {len(users)} users have a value; all match {fmt!r}"
    if cleanup_hours > 0:
        stale = sum(1 for p in parsed if p < now - timedelta(hours=cleanup_hours))
        if stale:
            detail += (f"; {stale} are older than AUTO_CLEANUP_HOURS={cleanup_hours:g} and will be "
                       "cleared by the next auto-cleanup")
    return ok(name, detail)


def check_shared_collars(users: Sequence[Mapping[str, Any]], field: str) -> CheckResult:
    """WARN when a collar number is held by several users (bobosync updates only the first)."""
    name = "shared collars"
    holders: dict[str, list[str]] = {}
    for user in users:
        collar = _value(user, field)
        if collar:
            holders.setdefault(collar, []).append(_value(user, "LOGIN_ID"))
    shared = {c: sorted(set(logins), key=lambda s: (s.casefold(), s)) for c, logins in holders.items()}
    shared = {c: logins for c, logins in shared.items() if len(logins) > 1}
    if not holders:
        return skip(name, "no collar numbers to compare")
    if not shared:
        return ok(name, f"none: each of the {len(holders)} collar numbers on the first page "
                        "belongs to one user")
    examples = "; ".join(
        f"{_show(collar)} held by {', '.join(logins[:MAX_EXAMPLES])}"
        + (f" (+{len(logins) - MAX_EXAMPLES})" if len(logins) > MAX_EXAMPLES else "")
        for collar, logins in sorted(shared.items())[:MAX_EXAMPLES]
    )
    return warn(
        name,
        f"{len(shared)} collar number(s) belong to several users: {examples}",
        "give each person their own collar number in AtHoc; until then bobosync updates only "
        "the first of them (LOGIN_ID order) and logs a warning at each mapping sync",
    )


# =========================================================================== helpers



def _os_error(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return exc.strerror or str(exc) or type(exc).__name__


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_loopback_host(host: str) -> bool:
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _nearest_existing(path: Path) -> Optional[Path]:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None


def _write_test(folder: Path) -> Optional[str]:
    """None when a file can be created and deleted in ``folder``; else why not."""
    try:
        handle, name = tempfile.mkstemp(prefix=".bobosync-check-", suffix=".tmp", dir=str(folder))
    except OSError as exc:
        return f"cannot create a file: {_os_error(exc)}"
    os.close(handle)
    try:
        os.unlink(name)
    except OSError as exc:
        return f"cannot delete a file: {_os_error(exc)}"
    return None


def _auth_fix(message: str) -> str:
    lowered = message.lower()
    if "invalid_client" in lowered:
        first = "CLIENT_ID and CLIENT_SECRET (the API client registered in AtHoc)"
    elif "invalid_scope" in lowered:
        first = "SCOPE"
    elif "tenant" in lowered or "organization" in lowered or "organisation" in lowered:
        first = "ORG_CODE (the organization the operator and API client belong to)"
    else:
        first = "APIUSER and PASSWORD (the AtHoc operator account)"
    return f"check {first} first; then APIUSER, PASSWORD, CLIENT_ID, CLIENT_SECRET and ORG_CODE"


def format_summary(results: Sequence[CheckResult]) -> str:
    counts = Counter(r.status for r in results)
    text = (f"summary: {counts[Status.OK]} OK, {counts[Status.WARN]} WARN, {counts[Status.FAIL]} FAIL, "
            f"{counts[Status.SKIP]} skipped")
    if counts[Status.FAIL]:
        return text + " - NOT ready: fix the FAIL lines and run bobosync check again"
    if counts[Status.WARN]:
        return text + " - ready, but read the WARN lines"
    return text + " - ready"


def run_check(env_file: Optional[Path], out: TextIO, environ: Optional[Mapping[str, str]] = None) -> int:
    """Run every check, print one line each (and fixes) to ``out``; 0 if nothing FAILed, else 1."""
    checker = Checker(env_file, environ)
    package_logger = logging.getLogger("bobosync")
    quiet = logging.NullHandler()
    added = not package_logger.handlers
    if added:  # keep library warnings off the console: the check reports them itself
        package_logger.addHandler(quiet)
    results: list[CheckResult] = []
    try:
        _write(out, f"bobosync {__version__} check\n")
        for result in checker.run():
            results.append(result)
            secrets = checker.settings.secret_values() if checker.settings is not None else ()
            for line in result.lines():
                _write(out, _redact(line, secrets) + "\n")
        _write(out, format_summary(results) + "\n")
    finally:
        if added:
            package_logger.removeHandler(quiet)
    return 1 if any(r.status is Status.FAIL for r in results) else 0


def _redact(text: str, secrets: Sequence[str]) -> str:
    # No check prints a secret: this is the second line of defence.
    return redact_values(redact_url_credentials(text), secrets)


def _write(out: TextIO, text: str) -> None:
    try:
        out.write(text)
    except UnicodeEncodeError:  # a console or redirected file that cannot show every character
        out.write(text.encode("ascii", "backslashreplace").decode("ascii"))
    out.flush()

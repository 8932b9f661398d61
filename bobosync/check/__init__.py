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

The package is split by subject: ``configuration`` (1), ``local`` (2-4: folders, database,
lock), ``network`` (5-6, with ``tls`` for the hand-opened connection: ``http.client``'s CONNECT
tunnel and ``cryptography.x509``), ``athoc`` (7-9: authentication, users, e-mail, metrics);
``results`` holds what a check returns and how it is printed. This module puts the steps in order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, TextIO

from ..redaction import redact_url_credentials, redact_values
from ..version import __version__
from .athoc import AtHocChecks, check_collar_values, check_duty_values, check_shared_collars
from .configuration import ConfigurationChecks
from .local import LocalChecks
from .network import NetworkChecks
from .results import CheckResult, Status, fail, format_summary, ok, skip, warn

log = logging.getLogger(__name__)

__all__ = [
    "CheckResult",
    "Checker",
    "Status",
    "check_collar_values",
    "check_duty_values",
    "check_shared_collars",
    "fail",
    "format_summary",
    "ok",
    "run_check",
    "skip",
    "warn",
]


@dataclass(frozen=True)
class _Step:
    key: str  # named by the SKIP line when it cannot run
    run: Callable[[], Iterable[CheckResult]]
    requires: tuple[str, ...]


class Checker(ConfigurationChecks, LocalChecks, NetworkChecks, AtHocChecks):
    """Runs the checks in order; :meth:`run` yields each result as soon as it is known.

    ``environ`` replaces the process environment for reading the settings (tests); proxies
    from the environment are always taken from the process environment, as requests does.
    Each subject's checks are in their own module; this class only puts them in order.
    """

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

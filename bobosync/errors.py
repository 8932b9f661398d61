"""The one exception tree of bobosync.

Every error bobosync raises on purpose is a :class:`BoboSyncError`::

    BoboSyncError
    ├── ConfigError                  settings missing or invalid (exit code 2)
    ├── AtHocError                   anything that went wrong talking to AtHoc
    │   ├── AtHocAuthError           the token endpoint refused us (bad credentials, wrong org)
    │   ├── AtHocTransportError      no usable HTTP response: refused, dropped, TLS failure
    │   │   └── AtHocTimeout         the request timed out
    │   ├── AtHocHTTPError           an HTTP error status (carries method, path, status, excerpt)
    │   │   └── AtHocRateLimited     429 Too Many Requests (carries retry_after)
    │   └── AtHocResponseError       a 2xx response whose body is not what the API documents
    │       └── IncompleteListing    paging stopped before every user was seen
    ├── AtHocUnavailable             AtHoc stopped answering mid-pass: the rest waits for the next
    ├── InputFileError               a BOBO file cannot be read at all
    ├── BadRowError                  one record of a BOBO file cannot be used (also a ValueError)
    ├── DatabaseError                the local SQLite database failed
    ├── MailError                    a health e-mail could not be sent (SMTP)
    ├── KeyringUnavailable           no usable OS credential store, or it failed
    └── LockHeld                     another bobosync run holds the single-instance lock

    ForcedStop (a BaseException)     a second stop signal: leave now

Errors from ``requests`` and ``urllib3`` are mapped to this tree in exactly one place,
:func:`bobosync.transport.map_request_exception`. No message in this tree ever contains a
password, client secret or token: messages carry the method, the path (never the query
string with credentials, which the token call does not use anyway) and a short, redacted
excerpt of the response body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional


class BoboSyncError(Exception):
    """Base class of every error bobosync raises on purpose."""


class ConfigError(BoboSyncError):
    """The configuration is invalid. ``problems`` lists every problem found, one line each."""

    def __init__(self, problems: Sequence[str], *, source: str = "") -> None:
        self.problems = list(problems)
        #: Where the settings came from (the ``.env`` file read, or where none was found).
        self.source = source
        text = "invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems)
        if source:
            text += f"\n  (settings: {source})"
        super().__init__(text)


class AtHocError(BoboSyncError):
    """Base class for failures talking to AtHoc.

    ``retryable`` says whether trying the same request again later may succeed.
    """

    retryable: bool = False

    def __init__(self, message: str, *, method: str = "", path: str = "") -> None:
        self.method = method
        self.path = path
        super().__init__(message)


class AtHocAuthError(AtHocError):
    """The token endpoint refused the credentials (or the API client, or the organization)."""


class AtHocTransportError(AtHocError):
    """No usable HTTP response: connection refused or dropped, DNS, TLS or proxy failure."""

    retryable = True


class AtHocTimeout(AtHocTransportError):
    """The request did not complete within REQUEST_TIMEOUT_SECONDS."""


#: HTTP statuses worth another try: throttling, server trouble, proxies in front of AtHoc.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class AtHocHTTPError(AtHocError):
    """AtHoc answered with an HTTP error status."""

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        status: int,
        excerpt: str = "",
        retry_after: Optional[float] = None,
    ) -> None:
        self.status = status
        self.excerpt = excerpt
        self.retry_after = retry_after
        self.retryable = status in RETRYABLE_STATUSES
        super().__init__(message, method=method, path=path)


class AtHocRateLimited(AtHocHTTPError):
    """429 Too Many Requests: an AtHoc throttling limit was hit."""


class AtHocResponseError(AtHocError):
    """A successful status whose body is not the documented shape (not JSON, wrong type...)."""


class IncompleteListing(AtHocResponseError):
    """Paging through users stopped before every user was seen (e.g. the server repeated a page)."""


class AtHocUnavailable(BoboSyncError):
    """AtHoc stopped answering during a batch: the rest of the pass waits for the next one."""


class InputFileError(BoboSyncError):
    """A BOBO file cannot be read at all (missing, unreadable, not text in a known encoding)."""

    def __init__(self, path: object, reason: str, os_error: Optional[OSError] = None) -> None:
        self.path = path
        self.reason = reason
        #: The operating-system error behind it, when there was one (a lock may go away).
        self.os_error = os_error
        super().__init__(f"{path}: {reason}")


class BadRowError(BoboSyncError, ValueError):
    """A record that cannot be used; ``reason`` says why, in a few words."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class DatabaseError(BoboSyncError):
    """The local SQLite database could not be opened, migrated or written."""


class MailError(BoboSyncError):
    """The SMTP server could not be reached, secured, logged into, or refused the mail. The
    message names the setting to look at and never holds SMTP_PASSWORD."""


class KeyringUnavailable(BoboSyncError):
    """No usable credential store, or it failed. The message never holds a secret."""


class LockHeld(BoboSyncError):
    """Another bobosync run holds the single-instance lock."""


class ForcedStop(BaseException):
    """A second stop signal: leave now. BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way swallows it."""

"""HTTP transport to AtHoc: the session, TLS policy, error mapping and the retry policy.

Everything that touches ``requests`` lives here:

* :func:`build_session` — a ``requests.Session`` whose HTTPS adapter refuses anything older
  than TLS 1.2, directly *and* through a proxy; proxies from the settings; a
  ``bobosync/<version>`` User-Agent.
* :func:`map_request_exception` — THE one place where ``requests``/``urllib3`` exceptions
  become :class:`~bobosync.errors.AtHocError` subclasses.
* :func:`error_for_response` — an HTTP error status as :class:`~bobosync.errors.AtHocHTTPError`
  (:class:`~bobosync.errors.AtHocRateLimited` for 429) with ``Retry-After`` and a short,
  redacted excerpt of the body.
* :func:`retry_policy` — the tenacity policy: retry only errors whose ``retryable`` is True, honour
  ``Retry-After`` (capped), otherwise exponential backoff with jitter. It knows nothing about
  authentication.
* :class:`Transport` — owns the session, the settings, the :class:`~bobosync.auth.TokenAuth`
  and the ``request_count``; :meth:`Transport.request_json` is what the client calls. A 401 to
  an authenticated request drops the token it carried and sends the request ONCE more with a
  new one; a second 401 becomes an ``AtHocHTTPError`` 401.

Certificate verification is passed *explicitly* on every request (``verify=``): requests merges
``REQUESTS_CA_BUNDLE`` over a session-level ``verify``, but never over an explicit CA path or
``False``. Nothing here logs or raises with a password, client secret, token or the
Authorization header.
"""

from __future__ import annotations

import contextlib
import html
import json as jsonlib
import logging
import random
import re
import socket
import ssl
import time
import warnings
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Optional, Union
from urllib.parse import urljoin, urlsplit

import requests
import tenacity
import urllib3.exceptions
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter

from .auth import TokenAuth
from .errors import (
    AtHocError,
    AtHocHTTPError,
    AtHocRateLimited,
    AtHocResponseError,
    AtHocTimeout,
    AtHocTransportError,
)
from .redaction import redact_urls, redact_values
from .settings import Settings
from .timebase import ClockOffset, utc_now
from .version import __version__

log = logging.getLogger(__name__)

#: The oldest TLS version bobosync accepts, directly or through a proxy.
TLS_MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
#: Longest wait honoured from a ``Retry-After`` header, seconds.
RETRY_AFTER_CAP_SECONDS = 120.0
#: Longest exponential backoff between two tries, seconds.
BACKOFF_CAP_SECONDS = 60.0
#: Longest excerpt of a response body kept in an error.
EXCERPT_CHARS = 200
#: How much of a response body is looked at to build the excerpt.
_EXCERPT_SCAN_BYTES = 65536

USER_AGENT = f"bobosync/{__version__}"

VerifySetting = Union[bool, str]
ExceptionLike = Union[requests.RequestException, urllib3.exceptions.HTTPError]


class TLS12HTTPAdapter(HTTPAdapter):
    """An HTTPAdapter that tells urllib3 to refuse TLS older than 1.2.

    The floor is set on the pool manager used for direct connections *and* on every proxy
    manager, so HTTPS tunnelled through an HTTP(S) proxy keeps the same floor.
    """

    def init_poolmanager(
        self,
        connections: int,
        maxsize: int,
        block: bool = DEFAULT_POOLBLOCK,
        **pool_kwargs: Any,
    ) -> None:
        pool_kwargs["ssl_minimum_version"] = TLS_MINIMUM_VERSION
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_minimum_version"] = TLS_MINIMUM_VERSION
        return super().proxy_manager_for(proxy, **proxy_kwargs)


# --------------------------------------------------------------------------- session


def verify_setting(settings: Settings) -> VerifySetting:
    """What to pass as ``verify=``: False when disabled, the CA bundle path, or True."""
    if settings.disable_ssl_verify:
        return False
    if settings.ssl_cert_path is not None:
        return str(settings.ssl_cert_path)
    return True


def proxies_setting(settings: Settings) -> dict[str, str]:
    """The proxies named in the settings (empty: requests' environment proxies apply)."""
    proxies: dict[str, str] = {}
    if settings.http_proxy:
        proxies["http"] = settings.http_proxy
    if settings.https_proxy:
        proxies["https"] = settings.https_proxy
    return proxies


def build_session(settings: Settings) -> requests.Session:
    """A session for AtHoc: TLS >= 1.2 adapter on https://, proxies, CA trust, User-Agent."""
    session = requests.Session()
    session.mount("https://", TLS12HTTPAdapter())
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept"] = "application/json"
    session.proxies.update(proxies_setting(settings))
    session.verify = verify_setting(settings)
    return session


# --------------------------------------------------------------------------- redaction


_POOL_PREFIX = re.compile(r"HTTPS?ConnectionPool\([^)]*\):\s*")
_WHITESPACE = re.compile(r"\s+")


def _redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove credentials in URLs, query strings and any known secret value from ``text``.
    Exception messages are short: even a short secret value is taken out."""
    return redact_values(redact_urls(text), secrets, min_length=1)


def _shorten(text: str, limit: int = EXCERPT_CHARS) -> str:
    text = _WHITESPACE.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def path_of(url: str) -> str:
    """The path of ``url`` without scheme, host or query string (for messages and logs)."""
    return urlsplit(url).path or "/"


# --------------------------------------------------------------------------- exception mapping


_TLS_PERMANENT = re.compile(
    r"certificate|hostname|wrong version|unsupported protocol|protocol version|no protocols"
    r"|handshake failure|no ciphers|unknown ca|bad certificate",
    re.IGNORECASE,
)


def _root_cause(exc: BaseException) -> BaseException:
    """The most specific underlying error: MaxRetryError.reason, args[0], __cause__..."""
    seen: set[int] = set()
    current: BaseException = exc
    while id(current) not in seen:
        seen.add(id(current))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        if current.args and isinstance(current.args[0], BaseException):
            current = current.args[0]
            continue
        if current.__cause__ is not None:
            current = current.__cause__
            continue
        break
    return current


def _cause_text(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    root = _root_cause(exc)
    text = str(root) or type(root).__name__
    text = _POOL_PREFIX.sub("", text)
    # urllib3 wraps the interesting part: "<urllib3.connection...object at 0x..>: Failed to..."
    text = re.sub(r"<[^>]*object at 0x[0-9a-fA-F]+>:?\s*", "", text)
    return _shorten(_redact(text, secrets), 160) or type(root).__name__


def _is_read_timeout(exc: BaseException) -> bool:
    """requests turns a timeout while *reading the body* into ConnectionError; spot it."""
    return isinstance(_root_cause(exc), (urllib3.exceptions.TimeoutError, TimeoutError))


def map_request_exception(exc: ExceptionLike, method: str, path: str, secrets: tuple[str, ...] = ()) -> AtHocError:
    """THE mapping from a requests/urllib3 exception to the bobosync tree.

    Timeout -> AtHocTimeout; SSLError -> AtHocTransportError naming TLS/certificate (not
    retryable when the handshake can never succeed: certificate, hostname, protocol version);
    ConnectionError (proxy errors included), ChunkedEncodingError, ContentDecodingError and
    anything else -> AtHocTransportError. The message is ``METHOD /path: cause``; never a
    query string, credentials or secret.
    """
    parts = urlsplit(path) if "://" in path else None
    path = path_of(path) if parts is not None else path.split("?", 1)[0]
    where = f"{method} {path}"
    cause = _cause_text(exc, secrets)
    root = _root_cause(exc)
    error: AtHocError
    if isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError)) or (
        isinstance(exc, requests.ConnectionError) and _is_read_timeout(exc)
    ):
        error = AtHocTimeout(f"{where}: timed out ({cause})", method=method, path=path)
    elif isinstance(exc, (requests.exceptions.SSLError, urllib3.exceptions.SSLError)):
        if re.search(r"certificate|hostname|unknown ca", cause, re.IGNORECASE):
            hint = "trust the server's CA with SSL_CERT_PATH (a PEM bundle)"
        elif re.search(r"version|protocol", cause, re.IGNORECASE):
            hint = "bobosync requires TLS 1.2 or later"
        else:
            hint = "check SSL_CERT_PATH and the server's TLS set-up"
        error = AtHocTransportError(f"{where}: TLS/certificate error: {cause} ({hint})", method=method, path=path)
        if _TLS_PERMANENT.search(cause):
            error.retryable = False
    elif isinstance(exc, requests.exceptions.ProxyError):
        error = AtHocTransportError(f"{where}: proxy error: {cause}", method=method, path=path)
    elif isinstance(exc, requests.ConnectionError) and isinstance(root, socket.gaierror):
        # A name that does not resolve is a typo far more often than an outage: say which
        # setting holds it, and do not spend the retries on it (the next pass tries again).
        host = f" {parts.hostname!r}" if parts is not None and parts.hostname else ""
        error = AtHocTransportError(
            f"{where}: the host name{host} does not resolve ({cause}): check the host in "
            "ATHOC_SERVER_URL (and HTTPS_PROXY if AtHoc is reached through a proxy)",
            method=method,
            path=path,
        )
        error.retryable = False
    elif isinstance(exc, requests.ConnectionError) and isinstance(root, ConnectionRefusedError):
        target = ""
        if parts is not None and parts.hostname:
            target = f" by {parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        error = AtHocTransportError(
            f"{where}: connection refused{target} ({cause}): nothing accepts connections there; check "
            "the host and port in ATHOC_SERVER_URL, and that AtHoc is up",
            method=method,
            path=path,
        )
    elif isinstance(exc, requests.ConnectionError):
        error = AtHocTransportError(f"{where}: connection failed: {cause}", method=method, path=path)
    elif isinstance(exc, requests.exceptions.ChunkedEncodingError):
        error = AtHocTransportError(f"{where}: response cut short: {cause}", method=method, path=path)
    elif isinstance(exc, requests.exceptions.ContentDecodingError):
        error = AtHocTransportError(f"{where}: response could not be decoded: {cause}", method=method, path=path)
    else:
        error = AtHocTransportError(
            f"{where}: request failed ({type(exc).__name__}): {cause}", method=method, path=path
        )
    return error


# --------------------------------------------------------------------------- HTTP errors


def parse_retry_after(value: Optional[str], now: Optional[datetime] = None) -> Optional[float]:
    """``Retry-After`` as seconds (delta-seconds or HTTP date); None when absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


_HTML_DROP = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]+>")


def _json_message(data: Any) -> Optional[str]:
    if not isinstance(data, dict):
        return None
    parts: list[str] = []
    for key in ("error", "error_description"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            parts.append(value.strip())
    if parts:
        return ": ".join(parts)
    for key in ("Message", "message", "ExceptionMessage", "detail", "title"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def body_excerpt(response: requests.Response, secrets: tuple[str, ...] = ()) -> str:
    """A short (<= 200 chars), one-line, redacted description of an error body."""
    try:
        raw = response.content[:_EXCERPT_SCAN_BYTES]
    except requests.RequestException:
        return ""
    if not raw:
        return ""
    text = raw.decode(response.encoding or "utf-8", errors="replace")
    content_type = response.headers.get("Content-Type", "").lower()
    stripped = text.lstrip()
    message: Optional[str] = None
    if "json" in content_type or stripped[:1] in ("{", "["):
        try:
            message = _json_message(jsonlib.loads(text))
        except ValueError:
            message = None
    if message is None:
        if "html" in content_type or stripped[:1] == "<":
            text = _HTML_TAG.sub(" ", _HTML_DROP.sub(" ", text))
            text = html.unescape(text)
        message = text
    return _shorten(_redact(message, secrets))


def error_for_response(
    response: requests.Response, method: str, path: str, secrets: tuple[str, ...] = ()
) -> AtHocHTTPError:
    """An error status as AtHocHTTPError (AtHocRateLimited for 429) with excerpt, Retry-After."""
    path = path_of(path) if "://" in path else path.split("?", 1)[0]
    status = response.status_code
    excerpt = body_excerpt(response, secrets)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    reason = _shorten(response.reason or "", 60) if isinstance(response.reason, str) else ""
    message = f"{method} {path}: HTTP {status}"
    if reason:
        message += f" {reason}"
    if excerpt:
        message += f": {excerpt}"
    if retry_after is not None:
        message += f" (Retry-After {retry_after:g} s)"
    cls = AtHocRateLimited if status == 429 else AtHocHTTPError
    return cls(message, method=method, path=path, status=status, excerpt=excerpt, retry_after=retry_after)


# --------------------------------------------------------------------------- retry policy


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AtHocHTTPError):
        return f"HTTP {exc.status}"
    if isinstance(exc, AtHocTimeout):
        return "timeout"
    return type(exc).__name__


def backoff_seconds(attempt: int, base: float) -> float:
    """Exponential backoff with jitter: ``base * 2**(attempt-1)`` plus up to 50 %, capped."""
    delay = base * float(2 ** max(0, attempt - 1))
    delay += random.uniform(0, delay * 0.5)
    return min(BACKOFF_CAP_SECONDS, delay)


def retry_policy(
    settings: Settings,
    method: str,
    path: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> tenacity.Retrying:
    """The retry policy for one request: only AtHocErrors with ``retryable`` True are retried.

    Up to ``HTTP_RETRY_ATTEMPTS`` tries; the wait is ``Retry-After`` when the server sent one
    (capped at 120 s), else exponential backoff with jitter from ``HTTP_RETRY_BACKOFF_SECONDS``
    (capped at 60 s). Each retry is logged at WARNING. The last error is re-raised as is.
    """
    attempts = settings.http_retry_attempts
    base = settings.http_retry_backoff_seconds

    def should_retry(exc: BaseException) -> bool:
        return isinstance(exc, AtHocError) and exc.retryable

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, AtHocHTTPError) and exc.retry_after is not None:
            return min(RETRY_AFTER_CAP_SECONDS, exc.retry_after)
        return backoff_seconds(state.attempt_number, base)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        cause = _describe(exc) if exc is not None else "?"
        detail = str(exc) if exc is not None else ""
        log.warning(
            "AtHoc %s %s failed (%s), attempt %d/%d; retrying in %.2f s: %s",
            method,
            path,
            cause,
            state.attempt_number,
            attempts,
            delay,
            detail,
        )

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(should_retry),
        stop=tenacity.stop_after_attempt(attempts),
        wait=wait,
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )


# --------------------------------------------------------------------------- transport


@contextlib.contextmanager
def _insecure_warning_silenced(active: bool) -> Iterator[None]:
    """Silence urllib3's InsecureRequestWarning around our own requests only, when
    verification is disabled on purpose (the client logs one WARNING per run instead)."""
    if not active:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        yield


class _NestedFailure(Exception):
    """Internal: an AtHocError raised by a *nested* request (the token fetch made before
    sending this one). It has had its own retries; never retry it again.
    """

    def __init__(self, error: AtHocError) -> None:
        super().__init__(str(error))
        self.error = error


class Transport:
    """The session, settings, token auth and request counter; sends JSON requests to AtHoc.

    ``request_count`` counts every HTTP request sent: tries, retries, token requests and the
    one re-send after a 401.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        session: Optional[requests.Session] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._owns_session = session is None
        self.session = session if session is not None else build_session(settings)
        self.verify: VerifySetting = verify_setting(settings)
        self.proxies = proxies_setting(settings)
        self.request_count = 0
        #: This machine's clock against AtHoc's, from the ``Date`` header of the last answer
        #: that had one (None until then).
        self.clock_offset: Optional[ClockOffset] = None
        self._sleep = sleep
        self._secrets = settings.secret_values()
        self.auth = TokenAuth(settings, self._fetch_token, clock=clock)

    # -- helpers --------------------------------------------------------------------------

    def url_for(self, path_or_url: str) -> str:
        """An absolute URL: as given, or relative to ``{server}/api/v2/orgs/{org}/``."""
        if "://" in path_or_url:
            return path_or_url
        return urljoin(self.settings.api_base.rstrip("/") + "/", path_or_url.lstrip("/"))

    def _note_date_header(self, response: requests.Response, sent_at: datetime) -> None:
        """Keep the clock reading of an answer's ``Date`` header."""
        reading = ClockOffset.from_date_header(response.headers.get("Date"), sent_at, utc_now())
        if reading is not None:
            self.clock_offset = reading

    def _fetch_token(self, form: Mapping[str, str]) -> Any:
        return self.request_json("POST", self.settings.token_url, data=form, authenticated=False)

    # -- sending --------------------------------------------------------------------------

    def request_json(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        data: Optional[Mapping[str, str]] = None,
        authenticated: bool = True,
    ) -> Any:
        """Send a request with retries; return the parsed JSON body of the 2xx response.

        Raises AtHocHTTPError (after retries for retryable statuses), AtHocTransportError /
        AtHocTimeout, AtHocResponseError (2xx body that is not JSON; never retried) and,
        from the token fetch, AtHocAuthError.
        """
        url = self.url_for(path_or_url)
        path = path_of(url)
        method = method.upper()

        def attempt() -> requests.Response:
            return self._send_once(method, url, path, params, json, data, authenticated)

        try:
            response = retry_policy(self.settings, method, path, sleep=self._sleep)(attempt)
        except _NestedFailure as nested:
            error = nested.error
            raise error from error.__cause__  # keep its own cause, drop the wrapper
        return self._parse_json(response, method, path, show_body=authenticated)

    def _send_once(
        self,
        method: str,
        url: str,
        path: str,
        params: Optional[Mapping[str, Any]],
        json: Any,
        data: Optional[Mapping[str, str]],
        authenticated: bool,
    ) -> requests.Response:
        """One try: the request, and after a 401 the one re-send with a new token."""
        auth = self.auth if authenticated else None

        def send() -> requests.Response:
            if auth is not None:
                try:
                    auth.ensure_token()
                except AtHocError as exc:
                    # the token fetch is a request of its own, already retried
                    raise _NestedFailure(exc) from exc
            return self._send(method, url, path, params, json, data, auth)

        response = send()
        if auth is not None and response.status_code == 401:
            log.info(
                "AtHoc answered 401 to %s %s: getting a new token and sending it once more",
                method,
                path,
            )
            auth.invalidate_if_sent(response.request)
            _ = response.content  # consume the 401 so its connection goes back to the pool
            response.close()
            response = send()
        if response.status_code >= 300:
            raise error_for_response(response, method, path, self._secrets)
        return response

    def _send(
        self,
        method: str,
        url: str,
        path: str,
        params: Optional[Mapping[str, Any]],
        json: Any,
        data: Optional[Mapping[str, str]],
        auth: Optional[TokenAuth],
    ) -> requests.Response:
        self.request_count += 1
        started = time.monotonic()
        sent_at = utc_now()
        try:
            with _insecure_warning_silenced(self.verify is False):
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    data=data,
                    auth=auth,
                    timeout=self.settings.request_timeout_seconds,
                    verify=self.verify,
                    proxies=self.proxies or None,
                    allow_redirects=False,
                )
        except AtHocError as exc:
            # the auth renewing the token as the request is prepared: already retried
            raise _NestedFailure(exc) from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            elapsed_ms = (time.monotonic() - started) * 1000
            log.debug("%s %s failed after %.0f ms: %s", method, path, elapsed_ms, type(exc).__name__)
            raise map_request_exception(exc, method, url, self._secrets) from exc
        elapsed_ms = (time.monotonic() - started) * 1000
        log.debug("%s %s -> %d in %.0f ms", method, path, response.status_code, elapsed_ms)
        self._note_date_header(response, sent_at)
        return response

    def _parse_json(self, response: requests.Response, method: str, path: str, *, show_body: bool) -> Any:
        try:
            return response.json()
        except ValueError:
            content_type = response.headers.get("Content-Type", "?")
            # The token endpoint's body is never quoted: it might hold a token in another form.
            excerpt = body_excerpt(response, self._secrets) if show_body else "(not shown)"
            raise AtHocResponseError(
                f"{method} {path}: HTTP {response.status_code} but the body is not JSON "
                f"(Content-Type {content_type}): {excerpt!r}",
                method=method,
                path=path,
            ) from None

    def close(self) -> None:
        """Close the session if this transport created it."""
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

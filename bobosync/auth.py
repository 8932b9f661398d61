"""OAuth2 password-grant token for AtHoc, as a ``requests`` auth: :class:`TokenAuth`.

The token is fetched from ``{server}/AuthServices/Auth/connect/token`` with the form fields of
the AtHoc documentation (grant_type, client_id, client_secret, username, password,
``acr_values=tenant:ORG``, scope) by the ``fetch`` function it is given (the transport's
ordinary, retried request: this module knows nothing of the transport). The token is kept in
memory only and renewed before use when less than ``max(30 s, 10 % of expires_in)`` remains.

Used as ``auth=`` on a request, it sets ``Authorization: Bearer …``. What a 401 means is the
transport's business: it calls :meth:`TokenAuth.invalidate_if_sent` and sends the request once
more with a fresh token.

Neither the credentials nor the token are ever logged or put in an exception.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional

import requests
import requests.auth

from .errors import AtHocAuthError, AtHocHTTPError, AtHocResponseError
from .logsetup import register_secret

if TYPE_CHECKING:
    from .settings import Settings

#: Sends the token request's form fields and returns the parsed JSON answer.
TokenFetch = Callable[[Mapping[str, str]], Any]

log = logging.getLogger(__name__)

#: Never renew later than this many seconds before the token expires...
MIN_RENEWAL_MARGIN_SECONDS = 30.0
#: ...nor later than this fraction of its lifetime before it expires.
RENEWAL_MARGIN_FRACTION = 0.10
#: Lifetime assumed when the token response has no usable ``expires_in``.
DEFAULT_LIFETIME_SECONDS = 600.0


class TokenAuth(requests.auth.AuthBase):
    """Bearer-token auth that fetches, caches and renews the AtHoc OAuth2 token.

    ``clock`` (monotonic seconds) can be replaced in tests to simulate the passing of time.
    """

    def __init__(
        self,
        settings: Settings,
        fetch: TokenFetch,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._fetch = fetch
        self.clock = clock
        self._token: Optional[str] = None
        self._expires_at = 0.0
        self._lifetime = 0.0
        self._lock = threading.RLock()

    def __repr__(self) -> str:  # never show the token
        state = "valid" if self._token is not None and not self.needs_renewal() else "none/stale"
        return f"<TokenAuth {self.settings.apiuser!r} token={state}>"

    # -- token life cycle ---------------------------------------------------------------

    def seconds_left(self) -> float:
        """Seconds until the current token expires (0 when there is none)."""
        if self._token is None:
            return 0.0
        return max(0.0, self._expires_at - self.clock())

    def renewal_margin(self) -> float:
        return max(MIN_RENEWAL_MARGIN_SECONDS, RENEWAL_MARGIN_FRACTION * self._lifetime)

    def needs_renewal(self) -> bool:
        """True when there is no token or less than the renewal margin remains."""
        return self._token is None or self._expires_at - self.clock() < self.renewal_margin()

    def invalidate(self) -> None:
        """Forget the token: the next use fetches a new one."""
        with self._lock:
            self._token = None
            self._expires_at = 0.0

    def invalidate_if_sent(self, request: requests.PreparedRequest) -> None:
        """Forget the token if ``request`` carried it (AtHoc refused it). A token renewed since
        that request was sent (another thread) is kept."""
        with self._lock:
            if self._token is not None and request.headers.get("Authorization") == f"Bearer {self._token}":
                self.invalidate()

    def ensure_token(self) -> str:
        """The current token, fetched or renewed first when needed."""
        with self._lock:
            if self._token is None or self.needs_renewal():
                if self._token is not None:
                    log.debug("AtHoc token expires in %.0f s: renewing it", self.seconds_left())
                return self.fetch_token()
            return self._token

    def fetch_token(self) -> str:
        """Request a new token now (password grant). Raises AtHocAuthError when refused."""
        settings = self.settings
        form = {
            "grant_type": "password",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret.reveal(),
            "username": settings.apiuser,
            "password": settings.password.reveal(),
            "acr_values": f"tenant:{settings.org_code}",
            "scope": settings.scope,
        }
        with self._lock:
            try:
                data = self._fetch(form)
            except AtHocHTTPError as exc:
                if exc.status in (400, 401):
                    reason = exc.excerpt or "no reason given"
                    raise AtHocAuthError(
                        f"AtHoc refused the token request (HTTP {exc.status}): {reason}. Check "
                        "CLIENT_ID, CLIENT_SECRET, APIUSER, PASSWORD, ORG_CODE and SCOPE.",
                        method=exc.method,
                        path=exc.path,
                    ) from None
                raise
            token, lifetime = self._parse_token_response(data)
            self._token = token
            register_secret(token)  # the log filter's second line of defence
            self._lifetime = lifetime
            self._expires_at = self.clock() + lifetime
            log.debug("AtHoc token obtained, valid for %.0f s", lifetime)
            return token

    def _parse_token_response(self, data: Any) -> tuple[str, float]:
        path = "/AuthServices/Auth/connect/token"
        if not isinstance(data, dict):
            raise AtHocResponseError(f"POST {path}: the token response is not a JSON object", method="POST", path=path)
        token = data.get("access_token")
        if not isinstance(token, str) or not token.strip():
            keys = ", ".join(sorted(str(k) for k in data if k != "access_token")) or "none"
            raise AtHocAuthError(
                f"POST {path}: AtHoc answered the token request without an access_token (keys present: {keys})",
                method="POST",
                path=path,
            )
        lifetime: Optional[float] = None
        raw = data.get("expires_in")
        if isinstance(raw, (int, float, str)) and not isinstance(raw, bool):
            try:
                parsed = float(raw)
            except ValueError:
                parsed = 0.0
            if 0 < parsed < float("inf"):
                lifetime = parsed
        if lifetime is None:
            lifetime = DEFAULT_LIFETIME_SECONDS
            log.warning("AtHoc's token response has no usable expires_in; assuming %.0f s", lifetime)
        return token.strip(), lifetime

    # -- requests auth protocol -----------------------------------------------------------

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.ensure_token()}"
        return r

"""The AtHoc client: user listing, SyncByCommonNames updates, the stale-duty query and clear.

Built on :class:`bobosync.transport.Transport` (session, TLS, retries, error mapping) and
:class:`bobosync.auth.TokenAuth` (the OAuth2 token). See ``docs/architecture.md`` and
``/work/shared/reference/athoc-api.md`` for the API facts this follows, and the unknowns it
copes with:

* paging: ``Offset`` is a page index; ``TotalUsers`` may be absent; the server may cap
  ``Limit`` (so a short page is not the end) or ignore ``Offset`` (so a repeated page raises
  :class:`~bobosync.errors.IncompleteListing` instead of looping);
* ``Criteria ... lt '<date>'`` may compare as text, so every value is checked here before
  anything is cleared;
* the query string may be limited in length (IIS refuses long ones by default), so reads of
  named users (``LOGIN_ID eq '...' or ...``) are split into short requests;
* SyncByCommonNames answers 200 with per-row statuses; each row is classified separately.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Optional
from urllib.parse import quote_plus

import requests

from .errors import (
    AtHocAuthError,
    AtHocError,
    AtHocHTTPError,
    AtHocResponseError,
    AtHocTransportError,
    IncompleteListing,
)
from .settings import Settings, load_settings
from .timebase import ClockOffset, as_utc, latest_instant, utc_now
from .transport import Transport

log = logging.getLogger(__name__)

SEARCH_PATH = "users/search/basic"
SYNC_PATH = "users/SyncByCommonNames"

#: Longest Criteria, once URL-encoded, in one read of named users: IIS refuses query strings
#: over 2048 bytes by default, and the Fields and paging parameters need room too.
CRITERIA_MAX_ENCODED = 1500

_NOT_IN_ORG = re.compile(r"does\s+not\s+exists?\b", re.IGNORECASE)
_USER_OR_ORG = re.compile(r"\buser\b|organi[sz]ation", re.IGNORECASE)


class UpdateOutcome(enum.Enum):
    APPLIED = "applied"  # :SyncStatus OK
    NOT_IN_ATHOC = "not_in_athoc"  # Error "... does not exists in the Organization": permanent
    FAILED = "failed"  # any other Error/Partial, or row missing from the response: retryable
    #: AtHoc could not be reached or stayed overloaded (after retries), so it never judged the
    #: row. Retry later; unlike FAILED this says nothing about the row itself.
    UNANSWERED = "unanswered"


@dataclass(frozen=True)
class UpdateResult:
    login_id: str
    outcome: UpdateOutcome
    detail: str  # :SyncDetails or why it failed
    #: The request went out and its answer was lost or unreadable (timeout, dropped or cut
    #: connection, a 5xx, rows missing from the answer): AtHoc may have applied the row, now
    #: or later. Such a write is *suspect*: read back before it is trusted either way.
    maybe_applied: bool = False


def criteria_literal(value: str) -> str:
    """``value`` as a single-quoted Criteria literal (a quote inside is doubled)."""
    return "'" + value.replace("'", "''") + "'"


def _text(value: Any) -> str:
    """An attribute value as text: "" for None, str() for anything else."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


#: Whole-request refusals that say nothing about the rows: credentials, permissions, the
#: organization, the request size. Every chunk would get the same answer.
_REFUSALS = frozenset({401, 403, 404, 405, 407, 413})


def _maybe_applied(exc: AtHocError) -> bool:
    """True when a failed request may still have been carried out by AtHoc: the answer was
    lost (no response, a timeout, a connection cut mid-answer), AtHoc failed after receiving
    it (5xx, possibly half way), or something answered 200 without a readable body."""
    if isinstance(exc, AtHocTransportError):
        return True
    if isinstance(exc, AtHocHTTPError):
        return exc.status >= 500
    return type(exc) is AtHocResponseError


def _never_judged(exc: AtHocError) -> bool:
    """True when AtHoc never looked at the rows of a failed request: unreachable, overloaded
    after the retries, refusing the whole request, or answered by something that is not AtHoc
    (a proxy's HTML page). Such rows are UNANSWERED: kept for later, no attempt counted."""
    if exc.retryable or isinstance(exc, AtHocTransportError):
        return True
    if isinstance(exc, AtHocHTTPError):
        return exc.status in _REFUSALS
    return type(exc) is AtHocResponseError  # not JSON at all; a wrong JSON shape is judged


def _login_criteria(login_ids: Iterable[str]) -> Iterator[str]:
    """``LOGIN_ID eq 'a' or LOGIN_ID eq 'b' ...`` expressions covering ``login_ids`` (each once,
    case-insensitively), each under CRITERIA_MAX_ENCODED characters URL-encoded."""
    unique = {login.casefold(): login for login in login_ids if login}
    parts: list[str] = []
    size = 0
    for login in unique.values():
        part = f"LOGIN_ID eq {criteria_literal(login)}"
        cost = len(quote_plus(part)) + len(quote_plus(" or "))
        if parts and size + cost > CRITERIA_MAX_ENCODED:
            yield " or ".join(parts)
            parts, size = [], 0
        parts.append(part)
        size += cost
    if parts:
        yield " or ".join(parts)


class AtHocClient:
    """Talks to one AtHoc organization. Use as a context manager or call :meth:`close`.

    ``AtHocClient()`` reads the settings and fetches a token at once, so constructing one is a
    connection test: it raises AtHocAuthError, AtHocTransportError or AtHocHTTPError with a
    clear message when AtHoc cannot be used.
    """

    #: Users asked for per page of ``users/search/basic``.
    page_size = 1000
    #: Hard cap on pages read in one listing (never loop forever).
    max_pages = 10000

    def __init__(
        self,
        settings: Optional[Settings] = None,
        *,
        session: Optional[requests.Session] = None,
        authenticate: bool = True,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        if self.settings.disable_ssl_verify:
            log.warning(
                "SSL certificate verification is DISABLED (DISABLE_SSL_VERIFY=true): the "
                "connection to %s is encrypted but the server is not authenticated. Use "
                "SSL_CERT_PATH with the server's CA certificate instead.",
                self.settings.athoc_server_url,
            )
        self.transport = Transport(self.settings, session=session)
        if authenticate:
            try:
                self.authenticate()
            except BaseException:
                self.transport.close()
                raise

    # -- life cycle -----------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far, token requests and retries included."""
        return self.transport.request_count

    @property
    def clock_offset(self) -> Optional[ClockOffset]:
        """This machine's clock against AtHoc's, from the last answer's ``Date`` header."""
        return self.transport.clock_offset

    def authenticate(self) -> None:
        """Fetch a new token now. Raises AtHocAuthError / AtHocTransportError / AtHocHTTPError."""
        self.transport.auth.fetch_token()
        log.info(
            "Connected to AtHoc %s (organization %s)",
            self.settings.athoc_server_url,
            self.settings.org_code,
        )

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> AtHocClient:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    # -- reading users ------------------------------------------------------------------

    def get_all_users_with_attributes(self, fields: Optional[Sequence[str]] = None) -> list[dict[str, str]]:
        """Every user with the given attributes (default: FETCH fields), values as str.

        Raises IncompleteListing when the server repeats a page or the pages end before
        ``TotalUsers`` users were seen; AtHocResponseError when a page is not the documented
        shape.
        """
        wanted = list(fields) if fields is not None else list(self.settings.fetch_fields)
        users = self._list_users(wanted, criteria=None)
        log.info("Read %d users from AtHoc", len(users))
        return users

    def read_users(self, login_ids: Iterable[str], fields: Optional[Sequence[str]] = None) -> dict[str, dict[str, str]]:
        """The named users with the given attributes: ``LOGIN_ID -> record`` for those AtHoc
        has (matched case-insensitively; keyed as AtHoc spells them). A name AtHoc does not
        know is simply absent.

        One ``LOGIN_ID eq '...' or ...`` Criteria per request, each kept under
        :data:`CRITERIA_MAX_ENCODED` characters once URL-encoded. Raises like
        :meth:`get_all_users_with_attributes`.
        """
        wanted = list(fields) if fields is not None else list(self.settings.fetch_fields)
        found: dict[str, dict[str, str]] = {}
        for criteria in _login_criteria(login_ids):
            for user in self._list_users(wanted, criteria=criteria):
                found[user["LOGIN_ID"]] = user
        return found

    def list_duty_values(self, field: Optional[str] = None) -> dict[str, str]:
        """LOGIN_ID -> value of every user whose ``field`` (default DUTY_STATUS_FIELD) has one,
        as AtHoc holds it (untrimmed). One paged listing with ``Criteria "<field> pr"`` and
        nothing else: the server's date comparisons are never relied on."""
        field = field or self.settings.duty_status_field
        users = self._list_users(["LOGIN_ID", field], criteria=f"{field} pr")
        return {user["LOGIN_ID"]: user.get(field, "") for user in users if user.get(field, "").strip()}

    def _list_users(self, fields: Sequence[str], criteria: Optional[str]) -> list[dict[str, str]]:
        fields = list(dict.fromkeys(["LOGIN_ID", *fields]))
        seen: dict[str, dict[str, str]] = {}
        total: Optional[int] = None
        without_id = 0
        for page in range(self.max_pages):
            params: dict[str, Any] = {
                "Fields": ",".join(fields),
                "Limit": self.page_size,
                "Offset": page,
            }
            if criteria is not None:
                params["Criteria"] = criteria
            data = self.transport.request_json("GET", SEARCH_PATH, params=params)
            rows, page_total = self._check_page(data, page)
            if page_total is not None:
                total = page_total
            if not rows:
                if total is not None and len(seen) < total:
                    raise IncompleteListing(
                        f"AtHoc user listing ended at page {page} (empty) with {len(seen)} "
                        f"users seen of TotalUsers={total}",
                        method="GET",
                        path=SEARCH_PATH,
                    )
                break
            new = 0
            for row in rows:
                login_id = _text(row.get("LOGIN_ID")).strip()
                if not login_id:
                    without_id += 1
                    continue
                if login_id in seen:
                    continue
                record = {f: _text(row.get(f)) for f in fields}
                record["LOGIN_ID"] = login_id
                seen[login_id] = record
                new += 1
            log.debug(
                "users/search/basic page %d: %d rows, %d new, %d seen, TotalUsers=%s",
                page,
                len(rows),
                new,
                len(seen),
                total,
            )
            if new == 0:
                raise IncompleteListing(
                    f"AtHoc returned page {page} with no user not already seen (does the "
                    f"server ignore Offset?); {len(seen)} users seen"
                    + (f" of TotalUsers={total}" if total is not None else ""),
                    method="GET",
                    path=SEARCH_PATH,
                )
            if total is not None and len(seen) >= total:
                break
        else:
            raise IncompleteListing(
                f"AtHoc user listing still not finished after {self.max_pages} pages ({len(seen)} users seen)",
                method="GET",
                path=SEARCH_PATH,
            )
        if without_id:
            log.warning("AtHoc returned %d user rows without a LOGIN_ID; ignored", without_id)
        return list(seen.values())

    @staticmethod
    def _check_page(data: Any, page: int) -> tuple[list[dict[str, Any]], Optional[int]]:
        def bad(what: str) -> AtHocResponseError:
            return AtHocResponseError(f"GET {SEARCH_PATH} page {page}: {what}", method="GET", path=SEARCH_PATH)

        if not isinstance(data, dict):
            raise bad(f"expected a JSON object, got {type(data).__name__}")
        users = data.get("Users")
        if not isinstance(users, list):
            raise bad('no "Users" list in the response')
        if not all(isinstance(u, dict) for u in users):
            raise bad('"Users" holds something other than objects')
        raw_total = data.get("TotalUsers")
        total: Optional[int] = None
        if raw_total is not None:
            if isinstance(raw_total, bool):
                raise bad(f"TotalUsers is not a number: {raw_total!r}")
            if isinstance(raw_total, int):
                total = raw_total
            elif isinstance(raw_total, str) and raw_total.strip().isdigit():
                total = int(raw_total.strip())
            else:
                raise bad(f"TotalUsers is not a whole number: {str(raw_total)[:40]!r}")
        return users, total

    # -- updating users -----------------------------------------------------------------

    def batch_update_duty_status(
        self, updates: Mapping[str, str], field: Optional[str] = None
    ) -> dict[str, UpdateResult]:
        """Write ``field`` (default DUTY_STATUS_FIELD) for each LOGIN_ID (``""`` clears it); one
        result per LOGIN_ID.

        Chunked by MAX_USERS_PER_REQUEST; always ``syncExistingUsersOnly=true``; each row is
        only ``{"LOGIN_ID": id, DUTY_STATUS_FIELD: value}``. A chunk whose request fails after
        retries gives FAILED rows and does not raise, except AtHocAuthError (re-raised). When
        AtHoc is unreachable (transport failure or a retryable status after retries), that
        chunk's rows are UNANSWERED and the remaining chunks are not sent (UNANSWERED, "not
        attempted").
        """
        return self._batch_update(updates, field or self.settings.duty_status_field)

    def _batch_update(self, updates: Mapping[str, str], field: str) -> dict[str, UpdateResult]:
        items = [(str(login_id), _text(value)) for login_id, value in updates.items()]
        size = self.settings.max_users_per_request
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        results: dict[str, UpdateResult] = {}
        for index, chunk in enumerate(chunks):
            body = [{"LOGIN_ID": login_id, field: value} for login_id, value in chunk]
            try:
                data = self.transport.request_json(
                    "POST", SYNC_PATH, params={"syncExistingUsersOnly": "true"}, json=body
                )
            except AtHocAuthError:
                raise
            except AtHocError as exc:
                suspect = _maybe_applied(exc)
                if _never_judged(exc):
                    remaining = sum(len(c) for c in chunks[index + 1 :])
                    log.error(
                        "AtHoc update failed for chunk %d/%d (%d users): %s; %d users in later chunks not attempted",
                        index + 1,
                        len(chunks),
                        len(chunk),
                        exc,
                        remaining,
                    )
                    for login_id, _ in chunk:
                        results[login_id] = UpdateResult(
                            login_id, UpdateOutcome.UNANSWERED, f"request failed: {exc}", suspect
                        )
                    for later in chunks[index + 1 :]:
                        for login_id, _ in later:
                            results[login_id] = UpdateResult(
                                login_id, UpdateOutcome.UNANSWERED, f"not attempted: {exc}"
                            )
                    break
                log.error(
                    "AtHoc update failed for chunk %d/%d (%d users): %s",
                    index + 1,
                    len(chunks),
                    len(chunk),
                    exc,
                )
                for login_id, _ in chunk:
                    results[login_id] = UpdateResult(login_id, UpdateOutcome.FAILED, f"request failed: {exc}", suspect)
                continue
            chunk_results = self._classify(chunk, data)
            results.update(chunk_results)
            if not log.isEnabledFor(logging.DEBUG):
                continue
            counts = {o: 0 for o in UpdateOutcome}
            for result in chunk_results.values():
                counts[result.outcome] += 1
            log.debug(
                "AtHoc update chunk %d/%d: %d applied, %d not in AtHoc, %d failed",
                index + 1,
                len(chunks),
                counts[UpdateOutcome.APPLIED],
                counts[UpdateOutcome.NOT_IN_ATHOC],
                counts[UpdateOutcome.FAILED],
            )
        return results

    @staticmethod
    def _classify(chunk: Sequence[tuple[str, str]], data: Any) -> dict[str, UpdateResult]:
        """One UpdateResult per input row of ``chunk`` from the SyncByCommonNames response."""
        results: dict[str, UpdateResult] = {}
        if not isinstance(data, list):
            detail = f"AtHoc's response is not a list of rows (got {type(data).__name__}); outcome unknown"
            log.error("SyncByCommonNames: %s", detail)
            for login_id, _ in chunk:
                results[login_id] = UpdateResult(login_id, UpdateOutcome.FAILED, detail, True)
            return results

        rows = [r for r in data if isinstance(r, dict) and isinstance(r.get("LOGIN_ID"), str)]
        if len(rows) != len(data):
            log.debug("SyncByCommonNames: %d response rows without a LOGIN_ID", len(data) - len(rows))
        matched: dict[str, Optional[int]] = {}
        if len(rows) == len(chunk) and all(row["LOGIN_ID"] == login_id for row, (login_id, _) in zip(rows, chunk)):
            # The usual answer: one row per row sent, in the same order. Matched by position,
            # which gives what the general matching below gives, at a fraction of its cost.
            matched = {login_id: i for i, (login_id, _) in enumerate(chunk)}
        else:
            used = [False] * len(rows)
            exact: dict[str, list[int]] = {}
            folded: dict[str, list[int]] = {}
            for i, row in enumerate(rows):
                exact.setdefault(row["LOGIN_ID"], []).append(i)
                folded.setdefault(row["LOGIN_ID"].casefold(), []).append(i)

            def take(candidates: Optional[list[int]]) -> Optional[int]:
                for i in candidates or ():
                    if not used[i]:
                        used[i] = True
                        return i
                return None

            for login_id, _ in chunk:  # exact matches first, so a case variant cannot steal one
                matched[login_id] = take(exact.get(login_id))
            for login_id, _ in chunk:
                if matched[login_id] is None:
                    matched[login_id] = take(folded.get(login_id.casefold()))

        debug = log.isEnabledFor(logging.DEBUG)
        for login_id, _ in chunk:
            index = matched[login_id]
            if index is None:
                result = UpdateResult(login_id, UpdateOutcome.FAILED, "missing from AtHoc's response", True)
            else:
                result = AtHocClient._classify_row(login_id, rows[index])
            if debug:
                log.debug("SyncByCommonNames %s: %s (%s)", login_id, result.outcome.value, result.detail)
            results[login_id] = result
        return results

    @staticmethod
    def _classify_row(login_id: str, row: Mapping[str, Any]) -> UpdateResult:
        status = _text(row.get(":SyncStatus")).strip()
        details = _text(row.get(":SyncDetails")).strip()
        if status.casefold() == "ok":
            return UpdateResult(login_id, UpdateOutcome.APPLIED, details or "OK")
        if status.casefold() == "error" and _NOT_IN_ORG.search(details) and _USER_OR_ORG.search(details):
            return UpdateResult(login_id, UpdateOutcome.NOT_IN_ATHOC, details)
        shown = status or "(no :SyncStatus)"
        return UpdateResult(login_id, UpdateOutcome.FAILED, f"{shown}: {details}" if details else shown)

    # -- stale duty status --------------------------------------------------------------

    def query_users_with_old_duty_status(
        self,
        field: Optional[str] = None,
        hours: Optional[float] = None,
        now: Optional[datetime] = None,
    ) -> list[dict[str, str]]:
        """Users whose ``field`` holds a date-time more than ``hours`` real hours before ``now``.

        The server is asked with ``Criteria "<field> pr and <field> lt '<cutoff>'"`` (the
        cutoff as a local reading in ATHOC_TIMEZONE), then every returned value is checked
        here as a true instant: read in ATHOC_TIMEZONE, a reading that occurs twice (autumn)
        taking the later instant, so that nothing is cleared before ``hours`` real hours. A
        value that does not parse with ATHOC_DATETIME_FORMAT is logged (WARNING) and never
        returned; a value not older than the cutoff (the server compared as text) is dropped.
        Returns ``[{"LOGIN_ID": ..., field: value}, ...]``. A naive ``now`` is this machine's
        local time.
        """
        field = field or self.settings.duty_status_field
        hours = self.settings.auto_cleanup_hours if hours is None else hours
        fmt = self.settings.athoc_datetime_format
        zone = self.settings.athoc_zone
        cutoff = as_utc(now if now is not None else utc_now()) - timedelta(hours=hours)
        cutoff_text = cutoff.astimezone(zone).strftime(fmt)
        criteria = f"{field} pr and {field} lt '{cutoff_text}'"
        rows = self._list_users(["LOGIN_ID", field], criteria=criteria)

        stale: list[dict[str, str]] = []
        not_older = 0
        empty = 0
        unparseable = 0
        for row in rows:
            login_id = row["LOGIN_ID"]
            value = row.get(field, "")
            if not value.strip():
                empty += 1
                continue
            try:
                when = datetime.strptime(value.strip(), fmt)
            except ValueError:
                unparseable += 1
                log.warning(
                    "AtHoc user %s has %s=%r, which does not match ATHOC_DATETIME_FORMAT %r; not clearing it",
                    login_id,
                    field,
                    value,
                    fmt,
                )
                continue
            if latest_instant(when, zone).instant < cutoff:
                stale.append({"LOGIN_ID": login_id, field: value})
            else:
                not_older += 1
        log.debug(
            "stale %s query (cutoff %s): %d returned, %d older, %d not older (dropped), %d empty, %d unparseable",
            field,
            cutoff_text,
            len(rows),
            len(stale),
            not_older,
            empty,
            unparseable,
        )
        return stale

    def clear_old_duty_status(
        self,
        field: Optional[str] = None,
        hours: Optional[float] = None,
        now: Optional[datetime] = None,
        *,
        strict: bool = False,
    ) -> int:
        """Clear ``field`` for every user found by :meth:`query_users_with_old_duty_status`.

        Returns the number of users whose value AtHoc reports as cleared (APPLIED). With
        ``strict=True``, raises AtHocError (after clearing what it could) when a value was
        not cleared: AtHoc refused the row or did not answer (a user gone from AtHoc is fine).
        """
        field = field or self.settings.duty_status_field
        stale = self.query_users_with_old_duty_status(field=field, hours=hours, now=now)
        if not stale:
            log.info("No stale %s values to clear", field)
            return 0
        updates = {row["LOGIN_ID"]: "" for row in stale}
        results = self._batch_update(updates, field)
        cleared = sum(1 for r in results.values() if r.outcome is UpdateOutcome.APPLIED)
        log.info("Cleared stale %s for %d of %d users", field, cleared, len(stale))
        left = [r for r in results.values() if r.outcome in (UpdateOutcome.FAILED, UpdateOutcome.UNANSWERED)]
        if strict and left:
            raise AtHocError(
                f"POST {SYNC_PATH}: {len(left)} of {len(stale)} stale {field} value(s) not cleared "
                f"({left[0].login_id}: {left[0].detail}); the next cleanup tries again",
                method="POST",
                path=SYNC_PATH,
            )
        return cleared

"""Steps 7-9: authentication, AtHoc's users and their values, e-mail and metrics."""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Optional

from ..bobo_csv import EMPLOYEE_ID_PATTERN
from ..errors import (
    AtHocAuthError,
    AtHocError,
    AtHocHTTPError,
    AtHocResponseError,
    DatabaseError,
    MailError,
)
from ..settings import (
    Settings,
)
from ..timebase import ClockOffset, describe_offset, show, utc_now
from .base import CheckerBase, write_test
from .results import MAX_EXAMPLES, CheckResult, fail, ok, skip, warn


class AtHocChecks(CheckerBase):
    # -- 7. authentication ----------------------------------------------------------------

    def check_authentication(self) -> Iterator[CheckResult]:
        from ..client import AtHocClient

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
                "ATHOC_SERVER_URL must be the AtHoc server's root address (no /api or /AuthServices path)"
                if exc.status == 404
                else "check ATHOC_SERVER_URL; if it persists, ask the AtHoc administrators",
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
            yield fail(
                name,
                f"token request failed: {exc}",
                "check the network, TLS and proxy lines above and ATHOC_SERVER_URL",
            )
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
        detail = (
            f"this machine ({show(now)}) is {describe_offset(offset)} "
            f"(offset {offset.total_seconds():+.1f} s, "
            f"give or take {reading.uncertainty.total_seconds():.1f} s); "
            f"{zones}"
        )
        tolerance = settings.clock_tolerance
        if tolerance is not None and reading.beyond(offset, tolerance):
            return fail(
                name,
                detail,
                f"set this machine's clock right (NTP); beyond CLOCK_TOLERANCE_MINUTES="
                f"{settings.clock_tolerance_minutes:g} every pass skips the auto-cleanup "
                "and the other decisions that read this clock",
            )
        return ok(name, detail)

    # -- 8. users -------------------------------------------------------------------------

    def check_users(self) -> Iterator[CheckResult]:
        from ..client import SEARCH_PATH, AtHocClient

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
            yield fail(
                name, f"reading users failed: {exc}", "try again later; if it persists, ask the AtHoc administrators"
            )
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
        yield check_duty_values(
            users,
            duty_field,
            settings.athoc_datetime_format,
            settings.auto_cleanup_hours,
            datetime.now(settings.athoc_zone).replace(tzinfo=None),
            self._recent_book_ons(),
        )
        yield check_shared_collars(users, collar_field)

    def _recent_book_ons(self) -> int:
        """How many people bobosync's own records say it booked on within AUTO_CLEANUP_HOURS
        (24 h when that is off) and not off since: AtHoc should show them on duty."""
        from ..database import BOBODatabase

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
        from ..notify import Mailer

        settings = self._settings()
        if not settings.notify_enabled:
            yield ok("e-mail", "off: NOTIFY_EMAIL_TO is not set, so health changes are not mailed")
            return
        mailer = Mailer(settings)
        try:
            described = mailer.verify()
        except MailError as exc:
            yield fail(
                "SMTP", str(exc), "correct the setting named above, then send a test mail with bobosync notify-test"
            )
            return
        yield ok(
            "SMTP",
            f"{described}; nothing sent (bobosync notify-test sends a test mail); health "
            f"e-mails from {settings.notify_email_from} to {', '.join(settings.notify_email_to)}",
        )
        if settings.smtp_security == "none" and settings.smtp_username and not _is_loopback_host(settings.smtp_host):
            yield warn(
                "SMTP_SECURITY",
                f"none: SMTP_PASSWORD for {settings.smtp_username} crosses the network unencrypted",
                "set SMTP_SECURITY=starttls (or ssl) if the server offers it",
            )

    def check_metrics(self) -> Iterator[CheckResult]:
        name = "METRICS_FILE"
        path = self._settings().metrics_file
        if path is None:
            yield ok(name, "off: no metrics file is written")
            return
        folder = path.parent
        if not folder.is_dir():
            yield fail(
                name,
                f"the folder {folder} does not exist (bobosync does not create it: it is the "
                "textfile collector's folder)",
                "create it, or set METRICS_FILE to a file in the folder node_exporter's "
                "--collector.textfile.directory or windows_exporter's textfile directory names",
            )
            return
        problem = write_test(folder)
        if problem is not None:
            yield fail(
                name,
                f"{folder} is not writable ({problem})",
                "give the account that runs bobosync write access to the folder",
            )
            return
        if path.suffix != ".prom":
            yield warn(
                name,
                f"{path}: the textfile collectors read only files ending in .prom",
                f"rename it, e.g. METRICS_FILE={path.with_suffix('.prom')}",
            )
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
            f"correct those values in AtHoc, or check that {field} is the attribute holding the BOBO Employee_ID",
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
            return ok(name, f"{field}: empty for all {len(users)} users on the first page (nobody marked on duty yet)")
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
            detail += (
                f"; {stale} are older than AUTO_CLEANUP_HOURS={cleanup_hours:g} and will be "
                "cleared by the next auto-cleanup"
            )
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
        return ok(name, f"none: each of the {len(holders)} collar numbers on the first page belongs to one user")
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


def _is_loopback_host(host: str) -> bool:
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

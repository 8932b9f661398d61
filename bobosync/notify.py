"""Health e-mails: one mail when the health ``bobosync status`` reports changes level.

After each pass (:func:`bobosync.monitoring.after_pass`) the health is judged by
:func:`bobosync.status.collect_status`, the very judge ``bobosync status`` uses, and
:func:`notify_health` decides (:func:`decide`):

* the level (healthy, warning, unhealthy) differs from the level of the last mail delivered
  (healthy when none ever was, so a first pass that is healthy sends nothing): one mail;
* still unhealthy, and the last mail is NOTIFY_REPEAT_HOURS old (0: never repeat): a reminder;
* a mail that could not be sent is a WARNING, never fails the pass, and is tried again by the
  first pass after :data:`RETRY_FAILED_AFTER` (a dead SMTP server costs one connection attempt
  per ten minutes, not one per pass).

Every attempt is one ``run_history`` row of kind ``notify`` (status ``ok`` or ``failed``, the
level in ``counts``): that is the memory of what was last told, across the separate processes
Task Scheduler starts, and a failed mail shows among the last errors of ``bobosync status``.

Subject ``bobosync <ORG_CODE>: UNHEALTHY - <first reason>``; the body is the status text. No
password, client secret or SMTP password is ever put in a mail (they are blanked out should a
message ever hold one). Mail goes through :class:`Mailer` (standard library ``smtplib`` and
``email``): SMTP_SECURITY ``starttls`` (default), ``ssl`` (implicit TLS, port 465 by default)
or ``none``; TLS 1.2 or later, certificates checked against the system's CAs plus SSL_CERT_PATH.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import socket
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Optional, TextIO

from .errors import DatabaseError, MailError
from .redaction import redact_values
from .settings import Settings
from .status import HEALTHY, UNHEALTHY, StatusReport, render_text, status_now
from .store import RunHistory, RunRecord
from .timebase import as_utc, show, utc_now
from .transport import TLS_MINIMUM_VERSION
from .version import __version__

log = logging.getLogger(__name__)

#: The run-history kind of a notification attempt.
RUN_KIND = "notify"
#: After a failed attempt, the next one waits this long.
RETRY_FAILED_AFTER = timedelta(minutes=10)
#: Longest wait for the SMTP server, seconds (REQUEST_TIMEOUT_SECONDS when shorter).
SMTP_TIMEOUT_CAP_SECONDS = 30.0
#: How many notify rows are searched for the last mail delivered.
_HISTORY_ROWS = 500
_SUBJECT_CHARS = 160


@dataclass(frozen=True)
class Decision:
    """A mail to send: ``kind`` is ``change`` or ``repeat``; ``previous`` the level last told;
    ``since`` when the level now reported was first told (for reminders)."""

    kind: str
    health: str
    previous: str
    since: datetime


def decide(history: Sequence[RunRecord], health: str, now: datetime, repeat_hours: float) -> Optional[Decision]:
    """Whether to mail now, from the ``notify`` rows (newest first) and the health now."""
    now = as_utc(now)
    delivered = next((run for run in history if run.status == "ok"), None)
    told = str(delivered.counts.get("health", HEALTHY)) if delivered is not None else HEALTHY
    if health != told:
        decision = Decision("change", health, told, now)
    elif (
        health == UNHEALTHY
        and delivered is not None
        and repeat_hours > 0
        and now - as_utc(delivered.started_at) >= timedelta(hours=repeat_hours)
    ):
        since = _since(delivered)
        decision = Decision("repeat", health, told, since)
    else:
        return None
    latest = history[0] if history else None
    if latest is not None and latest.status != "ok" and now - as_utc(latest.started_at) < RETRY_FAILED_AFTER:
        log.debug("health e-mail due (%s) but the last attempt failed at %s; waiting", health, latest.started_at)
        return None
    return decision


def _since(run: RunRecord) -> datetime:
    value = run.counts.get("since")
    if isinstance(value, str):
        try:
            return as_utc(datetime.fromisoformat(value))
        except ValueError:
            pass
    return as_utc(run.started_at)


def compose(settings: Settings, report: StatusReport, decision: Decision) -> tuple[str, str]:
    """Subject and body of the mail for ``decision``."""
    level = decision.health.upper()
    first = report.reasons[0].message if report.reasons else ""
    if decision.kind == "repeat":
        subject = f"bobosync {settings.org_code}: {level} (still) - {first}"
        opening = (
            f"bobosync is still {level}, since {show(decision.since)} (a reminder every "
            f"{settings.notify_repeat_hours:g} h while it is unhealthy)."
        )
    elif decision.health == HEALTHY:
        subject = f"bobosync {settings.org_code}: HEALTHY again (was {decision.previous.upper()})"
        opening = f"bobosync is HEALTHY again (it was {decision.previous.upper()})."
    else:
        subject = f"bobosync {settings.org_code}: {level} - {first}"
        opening = f"bobosync is now {level} (it was {decision.previous.upper()})."
    return _one_line(subject), _body(settings, opening, report)


def _body(settings: Settings, opening: str, report: StatusReport) -> str:
    hours = settings.notify_repeat_hours
    repeat = f"every {hours:g} h (NOTIFY_REPEAT_HOURS)" if hours > 0 else "not repeated (NOTIFY_REPEAT_HOURS=0)"
    return (
        f"{opening}\nHost {socket.gethostname()}, organization {settings.org_code}.\n\n"
        f"{render_text(report)}\n"
        f"-- \nbobosync {__version__}. Health e-mails go out when the health changes and, while it is "
        f"unhealthy, {repeat}. Settings: {settings.env_source or 'the process environment'}\n"
    )


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SUBJECT_CHARS else text[: _SUBJECT_CHARS - 3] + "..."


def notify_health(settings: Settings, db: RunHistory, report: StatusReport, now: datetime) -> Optional[bool]:
    """Send the health mail if one is due (see the module docstring) and record the attempt.
    Returns True sent, False failed (logged as a WARNING), None nothing due. Never raises for
    SMTP or database trouble."""
    try:
        history = db.recent_runs(RUN_KIND, limit=_HISTORY_ROWS)
    except DatabaseError as exc:
        log.warning("health e-mail: cannot read what was last sent: %s", exc)
        return False
    decision = decide(history, report.health, now, settings.notify_repeat_hours)
    if decision is None:
        return None
    subject, body = compose(settings, report, decision)
    counts = {
        "health": decision.health,
        "previous": decision.previous,
        "kind": decision.kind,
        "since": decision.since.isoformat(timespec="seconds"),
        "recipients": len(settings.notify_email_to),
    }
    error: Optional[str] = None
    try:
        Mailer(settings).send(subject, body)
    except MailError as exc:
        error = str(exc)
        log.warning(
            "health e-mail (%s) not sent: %s; tried again in %d min",
            decision.health.upper(),
            exc,
            RETRY_FAILED_AFTER.total_seconds() // 60,
        )
    else:
        log.info("health e-mail sent to %s: %s", ", ".join(settings.notify_email_to), subject)
    try:
        with db.transaction():
            run_id = db.start_run(RUN_KIND, now)
            db.finish_run(run_id, "failed" if error else "ok", now, counts, error)
    except DatabaseError as exc:
        log.warning("health e-mail: the attempt could not be recorded: %s", exc)
    return error is None


# --------------------------------------------------------------------------- SMTP


class Mailer:
    """Sends mail as the settings say: connect, secure (STARTTLS or implicit TLS), log in.

    Every failure is raised as :class:`~bobosync.errors.MailError` naming the settings to look
    at (mapped in ONE place, :func:`describe_smtp_error`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout = min(settings.request_timeout_seconds, SMTP_TIMEOUT_CAP_SECONDS)
        self.tls_version: Optional[str] = None

    @property
    def where(self) -> str:
        return f"{self.settings.smtp_host}:{self.settings.smtp_port}"

    def tls_context(self) -> ssl.SSLContext:
        """The system's CAs plus SSL_CERT_PATH (an in-house CA usually signs the relay too)."""
        context = ssl.create_default_context()
        context.minimum_version = TLS_MINIMUM_VERSION
        if self.settings.ssl_cert_path is not None:
            context.load_verify_locations(cafile=str(self.settings.ssl_cert_path))
        return context

    def connect(self) -> smtplib.SMTP:
        """A connection ready to send: secured as SMTP_SECURITY says, logged in if SMTP_USERNAME
        is set. Raises MailError."""
        settings = self.settings
        smtp: Optional[smtplib.SMTP] = None
        try:
            if settings.smtp_security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    settings.smtp_host, settings.smtp_port, timeout=self.timeout, context=self.tls_context()
                )
            else:
                smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=self.timeout)
            smtp.ehlo()
            if settings.smtp_security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise MailError(
                        f"{self.where} does not offer STARTTLS: set SMTP_SECURITY=ssl (and the "
                        "port of its TLS service, usually 465), or none for a relay without TLS"
                    )
                smtp.starttls(context=self.tls_context())
                smtp.ehlo()
            sock = smtp.sock
            self.tls_version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password.reveal())
            return smtp
        except MailError:
            _close(smtp)
            raise
        except (smtplib.SMTPException, OSError) as exc:
            _close(smtp)
            raise MailError(f"SMTP {self.where}: {describe_smtp_error(exc, self.settings)}") from None

    def send(self, subject: str, body: str) -> None:
        """Send one plain-text mail to NOTIFY_EMAIL_TO. Raises MailError."""
        settings = self.settings
        secrets = settings.secret_values()
        message = EmailMessage()
        message["Subject"] = redact_values(subject, secrets)
        message["From"] = settings.notify_email_from
        message["To"] = ", ".join(settings.notify_email_to)
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=settings.notify_email_from.rpartition("@")[2].strip("> ") or None)
        message["X-Mailer"] = f"bobosync {__version__}"
        message.set_content(redact_values(body, secrets))
        smtp = self.connect()
        try:
            smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"SMTP {self.where}: {describe_smtp_error(exc, settings)}") from None
        finally:
            _quit(smtp)

    def verify(self) -> str:
        """Connect, secure and log in, send nothing; a description of what worked. For
        ``bobosync check``. Raises MailError."""
        smtp = self.connect()
        try:
            smtp.noop()
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"SMTP {self.where}: {describe_smtp_error(exc, self.settings)}") from None
        finally:
            _quit(smtp)
        settings = self.settings
        secured = {"ssl": "implicit TLS", "starttls": "STARTTLS", "none": "no TLS"}[settings.smtp_security]
        if self.tls_version:
            secured += f" ({self.tls_version})"
        login = f"logged in as {settings.smtp_username}" if settings.smtp_username else "no login (SMTP_USERNAME empty)"
        return f"{self.where}, {secured}, {login}"


def describe_smtp_error(exc: BaseException, settings: Settings) -> str:
    """THE mapping from an smtplib/socket/ssl error to a line naming what to fix."""
    host, port = settings.smtp_host, settings.smtp_port
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"login as {settings.smtp_username!r} refused ({_response(exc)}): check SMTP_USERNAME and SMTP_PASSWORD"
    if isinstance(exc, smtplib.SMTPNotSupportedError) or (
        isinstance(exc, smtplib.SMTPException) and "AUTH extension not supported" in str(exc)
    ):
        return (
            "the server offers no login (AUTH) on this connection: leave SMTP_USERNAME empty for a relay "
            "that needs none, or use SMTP_SECURITY=starttls or ssl (servers often offer login only over TLS)"
        )
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = ", ".join(
            f"{address} ({code} {_text(message)})" for address, (code, message) in exc.recipients.items()
        )
        return f"recipients refused: {refused}: check NOTIFY_EMAIL_TO"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return f"sender {exc.sender!r} refused ({exc.smtp_code} {_text(exc.smtp_error)}): check NOTIFY_EMAIL_FROM"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"the server answered {_response(exc)}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return (
            f"the server closed the connection ({exc or 'no reason given'}): check SMTP_PORT and "
            "SMTP_SECURITY (ssl for port 465, starttls for 587 or 25)"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the server's certificate is not trusted: {exc.verify_message or exc.reason}: put its CA "
            "certificate (PEM) in SSL_CERT_PATH, or check SMTP_HOST is the name in the certificate"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS failed: {exc.reason or exc}: check SMTP_SECURITY (ssl for port 465, starttls for 587 or "
            "25) and SMTP_PORT"
        )
    if isinstance(exc, socket.gaierror):
        return f"SMTP_HOST {host!r} does not resolve ({exc.strerror or exc}): check its spelling"
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing accepts connections on {host}:{port}: check SMTP_HOST and SMTP_PORT"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer from {host}:{port} (timed out): check SMTP_HOST, SMTP_PORT and the firewall"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc or type(exc).__name__}: check SMTP_HOST and SMTP_PORT"
    return f"{type(exc).__name__}: {exc}"


def _text(value: object) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:200]


def _response(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"


def _close(smtp: Optional[smtplib.SMTP]) -> None:
    if smtp is not None:
        with contextlib.suppress(OSError):
            smtp.close()


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        _close(smtp)


# --------------------------------------------------------------------------- notify-test


def run_notify_test(settings: Settings, out: TextIO = sys.stdout, now: Optional[datetime] = None) -> int:
    """``bobosync notify-test``: send a test mail with the current status. 0 sent, 1 not sent,
    2 health e-mails are not configured."""
    if not settings.notify_enabled:
        out.write(
            "notify-test: NOTIFY_EMAIL_TO is not set, so bobosync sends no e-mail; set NOTIFY_EMAIL_TO, "
            "NOTIFY_EMAIL_FROM and SMTP_HOST (see .env_safe)\n"
        )
        return 2
    report = status_now(settings, as_utc(now or utc_now()))
    subject = f"bobosync {settings.org_code}: test e-mail (health now {report.health.upper()})"
    body = _body(settings, "A test e-mail sent by `bobosync notify-test`: health e-mails reach you.", report)
    mailer = Mailer(settings)
    try:
        mailer.send(subject, body)
    except MailError as exc:
        out.write(f"notify-test: not sent: {exc}\n")
        return 1
    out.write(f"notify-test: test e-mail sent to {', '.join(settings.notify_email_to)} via {mailer.where}\n")
    return 0

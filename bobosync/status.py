"""``bobosync status``: the monitoring dashboard.

Reads the database (read-only) and the folders; asks AtHoc nothing unless ``--live``. One
:class:`StatusReport` is collected by :func:`collect_status`, judged in ONE place
(:func:`judge`), and rendered two ways: plain aligned text (:func:`render_text`, for a console
or a log file) and JSON (:func:`render_json`, for monitoring systems).

Exit code (also ``exit_code`` in the JSON):

* 0 healthy;
* 1 warning: last pass partial or interrupted, files waiting over 15 minutes, files in the
  failed folder, mapping sync failed or overdue, auto-cleanup failed, (``--live``) duty values
  the auto-cleanup should have cleared, or values that do not parse;
* 2 unhealthy: no pass recorded, the last pass failed, no pass for 10 minutes, the CSV folder
  or the database cannot be read, (``--live``) AtHoc cannot be reached.

The two time limits grow to twice POLL_INTERVAL_SECONDS when that is longer, so a ``--watch``
set to a long interval does not raise false alarms.

Every age is measured between instants (UTC), so DST changes neither shorten nor lengthen it;
a time recorded in the future (this machine's clock was ahead, or was set back) counts as
stale, never as fresh. Times are shown in this machine's local time with their offset.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, TextIO

from .bobo_csv import is_bobo_file_name
from .counts import PassCounts
from .database import SYNC_SUCCESS_WORDS, BOBODatabase
from .desired import stale_duty_judge, value_instant
from .errors import AtHocError, DatabaseError
from .filestore import files_to_process, list_waiting_files, read_error_note
from .logsetup import LOG_FILE_NAME
from .scheduling import mapping_sync_due, next_sync_due
from .settings import Settings
from .store import RunHistory, RunRecord, Store
from .timebase import FUTURE_MARGIN, UTC, as_utc, show, utc_now
from .version import __version__

if TYPE_CHECKING:  # the client (and requests) is imported only for --live
    from .client import AtHocClient

log = logging.getLogger(__name__)

HEALTHY, WARNING, UNHEALTHY = "healthy", "warning", "unhealthy"
EXIT_CODES = {HEALTHY: 0, WARNING: 1, UNHEALTHY: 2}

#: No pass (started or finished) for this long: unhealthy.
NO_PASS_AFTER = timedelta(minutes=10)
#: A file waiting in CSV_DIRECTORY for longer than this: warning.
FILE_WAITING_AFTER = timedelta(minutes=15)
#: A due mapping sync that has not happened for this long: warning.
MAPPING_OVERDUE_AFTER = timedelta(hours=1)
#: How many run-history errors the report carries.
ERRORS_SHOWN = 5
#: How many run-history rows are searched for those errors (about a day of passes).
_ERROR_SEARCH_ROWS = 3000
#: Enough for every pass of 24 hours even at one every few seconds.
_DAY_ROWS = 100_000
#: Files listed one by one in the text (the JSON lists them all).
_TEXT_FILES_SHOWN = 10
_TEXT_MESSAGE_CHARS = 200
_LABEL_WIDTH = 16


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Reason:
    """One reason the health is not ``healthy``: a level and a short line."""

    level: str
    message: str


@dataclass(frozen=True)
class RunInfo:
    """One run-history row (a pass, a mapping sync, a cleanup)."""

    started_at: datetime
    finished_at: Optional[datetime]
    status: str
    duration_seconds: Optional[float]
    counts: dict[str, Any]
    error: Optional[str]

    @classmethod
    def from_record(cls, record: RunRecord) -> RunInfo:
        return cls(
            record.started_at,
            record.finished_at,
            record.status,
            record.duration_seconds,
            dict(record.counts),
            record.error,
        )


@dataclass
class PassStatus:
    #: The newest pass that finished (any status but ``running``).
    last: Optional[RunInfo] = None
    #: Start of a pass recorded as running now (newest row), if any.
    running_since: Optional[datetime] = None
    #: The latest start or end of a pass.
    last_activity: Optional[datetime] = None
    #: Passes started in the last 24 hours, finished or not.
    count_24h: int = 0
    #: Those 24 hours by status (ok, partial, failed, interrupted, running).
    statuses_24h: dict[str, int] = field(default_factory=dict)
    #: ok / finished, from 0 to 1; None when none finished.
    success_rate_24h: Optional[float] = None
    average_duration_seconds_24h: Optional[float] = None


@dataclass
class MappingStatus:
    enabled: bool = True
    status: Optional[str] = None
    last_attempt: Optional[datetime] = None
    last_success: Optional[datetime] = None
    mappings: int = 0
    due_now: bool = False
    due_reason: str = ""
    #: When the next sync is due (now, when it is due now); None when SYNC_MAPPINGS=false.
    next_due: Optional[datetime] = None
    #: Since when a due sync has been due, when that is known.
    due_since: Optional[datetime] = None


@dataclass
class CleanupStatus:
    enabled: bool = True
    hours: float = 24.0
    last_run: Optional[RunInfo] = None
    runs_24h: int = 0
    cleared_24h: int = 0


@dataclass(frozen=True)
class WaitingFileInfo:
    name: str
    modified: datetime
    age_seconds: float
    size: int
    retry_count: int
    last_error: Optional[str]


@dataclass(frozen=True)
class FailedFileInfo:
    name: str
    #: From the ``Failed:`` line of ``<name>.error.txt`` (else its modification time).
    failed_at: Optional[datetime]
    #: The ``Reason:`` line of ``<name>.error.txt``; None when there is no such note.
    reason: Optional[str]


@dataclass
class FileStatus:
    csv_directory: Path
    failed_directory: Path
    max_retry_attempts: int
    csv_error: Optional[str] = None
    #: Waiting files, oldest first (files already processed and left in place excluded).
    waiting: list[WaitingFileInfo] = field(default_factory=list)
    #: Files the pass cannot take because their name is not valid text (bad bytes as \xNN).
    bad_names: list[str] = field(default_factory=list)
    oldest_waiting_seconds: Optional[float] = None
    failed_error: Optional[str] = None
    #: Files in the failed folder, most recently failed first.
    failed: list[FailedFileInfo] = field(default_factory=list)


@dataclass(frozen=True)
class ErrorEntry:
    at: datetime
    kind: str
    status: str
    message: str


@dataclass
class LiveStatus:
    """What AtHoc says now (``--live``)."""

    duty_field: str
    error: Optional[str] = None
    users: int = 0
    #: Users whose duty field holds any value.
    on_duty: int = 0
    #: Values older than AUTO_CLEANUP_HOURS (None when the auto-cleanup is off).
    stale: Optional[int] = None
    #: Of those, values older than AUTO_CLEANUP_HOURS plus the no-pass limit: the auto-cleanup
    #: should have cleared them by now.
    stale_overdue: Optional[int] = None
    #: Values that do not parse with ATHOC_DATETIME_FORMAT (the auto-cleanup never clears them).
    unparseable: int = 0


@dataclass
class StatusReport:
    generated_at: datetime
    database: Path
    log_file: Path
    files: FileStatus
    env_file: Optional[Path] = None
    database_exists: bool = True
    database_error: Optional[str] = None
    passes: PassStatus = field(default_factory=PassStatus)
    mapping_sync: MappingStatus = field(default_factory=MappingStatus)
    auto_cleanup: CleanupStatus = field(default_factory=CleanupStatus)
    errors: list[ErrorEntry] = field(default_factory=list)
    #: None when not asked (no ``--live``).
    live: Optional[LiveStatus] = None
    health: str = HEALTHY
    reasons: list[Reason] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.health]


# --------------------------------------------------------------------------- collecting


def collect_status(
    settings: Settings,
    db: Optional[Store],
    now: datetime,
    client: Optional[AtHocClient] = None,
    *,
    live: bool = False,
    db_error: Optional[str] = None,
) -> StatusReport:
    """Everything the dashboard shows, judged. ``db`` is a (read-only) database, or None when it
    could not be opened (``db_error`` says why). ``live=True`` or a ``client`` asks AtHoc too;
    without a client one is created (and closed) here."""
    now = as_utc(now)
    report = StatusReport(
        generated_at=now,
        database=settings.db_path,
        log_file=settings.log_directory / LOG_FILE_NAME,
        env_file=settings.env_file,
        database_exists=settings.db_path.exists(),
        database_error=db_error,
        files=FileStatus(settings.csv_directory, settings.failed_files_directory, settings.max_retry_attempts),
    )
    report.mapping_sync.enabled = settings.sync_mappings
    report.auto_cleanup.enabled = settings.auto_cleanup_hours > 0
    report.auto_cleanup.hours = settings.auto_cleanup_hours
    retry: dict[str, tuple[int, Optional[str]]] = {}
    if db is not None:
        try:
            report.passes = _passes(db, now)
            report.mapping_sync = _mapping(db, settings, now)
            report.auto_cleanup = _cleanup(db, settings, now)
            report.errors = _errors(db)
            retry = db.retry_counts()
        except DatabaseError as exc:
            report.database_error = str(exc)
    elif report.database_error is None:
        report.database_error = f"database {settings.db_path} is not open"
    _waiting(report.files, settings, db, retry, now)
    _failed(report.files)
    if live or client is not None:
        report.live = _live(settings, client, now)
    report.reasons = judge(report, settings)
    levels = {reason.level for reason in report.reasons}
    report.health = UNHEALTHY if UNHEALTHY in levels else WARNING if WARNING in levels else HEALTHY
    return report


def _passes(db: RunHistory, now: datetime) -> PassStatus:
    result = PassStatus()
    recent = db.recent_runs("pass", limit=50)
    if recent and recent[0].status == "running":
        result.running_since = recent[0].started_at
    finished = next((r for r in recent if r.status != "running"), None)
    if finished is not None:
        result.last = RunInfo.from_record(finished)
    moments = [r.started_at for r in recent[:1]]
    if finished is not None and finished.finished_at is not None:
        moments.append(finished.finished_at)
    result.last_activity = max(moments) if moments else None

    day = db.recent_runs("pass", limit=_DAY_ROWS, since=now - timedelta(hours=24))
    result.count_24h = len(day)
    for run in day:
        result.statuses_24h[run.status] = result.statuses_24h.get(run.status, 0) + 1
    done = [r for r in day if r.status != "running"]
    if done:
        result.success_rate_24h = round(sum(1 for r in done if r.status == "ok") / len(done), 4)
        durations = [r.duration_seconds for r in done if r.duration_seconds is not None]
        if durations:
            result.average_duration_seconds_24h = round(sum(durations) / len(durations), 3)
    return result


def _mapping(db: Store, settings: Settings, now: datetime) -> MappingStatus:
    state = db.get_sync_state()
    result = MappingStatus(enabled=settings.sync_mappings, mappings=db.mapping_count())
    if state is not None:
        result.status = state.status
        result.last_attempt = state.last_sync_time
        result.last_success = state.last_success_time
    if not settings.sync_mappings:
        result.due_reason = "SYNC_MAPPINGS=false"
        return result
    decision = mapping_sync_due(state, now, settings.sync_hour, settings.sync_retry_days)
    result.due_now, result.due_reason = decision.due, decision.reason
    result.next_due = next_sync_due(state, now, settings.sync_hour, settings.sync_retry_days)
    if decision.due and state is not None and state.last_sync_time is not None:
        last = as_utc(state.last_sync_time)
        if state.status != "success" or last > now + FUTURE_MARGIN:
            result.due_since = last
        else:
            result.due_since = next_sync_due(state, last, settings.sync_hour, settings.sync_retry_days)
    return result


def _cleanup(db: RunHistory, settings: Settings, now: datetime) -> CleanupStatus:
    result = CleanupStatus(enabled=settings.auto_cleanup_hours > 0, hours=settings.auto_cleanup_hours)
    last = db.recent_runs("cleanup", limit=1)
    if last:
        result.last_run = RunInfo.from_record(last[0])
    day = db.recent_runs("cleanup", limit=_DAY_ROWS, since=now - timedelta(hours=24))
    result.runs_24h = len(day)
    result.cleared_24h = sum(PassCounts.from_record(run.counts).cleared for run in day)
    return result


def _errors(db: RunHistory) -> list[ErrorEntry]:
    entries = []
    for run in db.recent_runs(limit=_ERROR_SEARCH_ROWS):
        message = run.error
        counts = PassCounts.from_record(run.counts)
        if not message and run.kind == "pass" and (counts.failed or counts.files_retry):
            message = _rejected(counts)  # AtHoc answered but refused rows: no pass-level error
        if message:
            entries.append(ErrorEntry(run.finished_at or run.started_at, run.kind, run.status, message))
            if len(entries) >= ERRORS_SHOWN:
                break
    return entries


def _waiting(
    files: FileStatus,
    settings: Settings,
    db: Optional[Store],
    retry: dict[str, tuple[int, Optional[str]]],
    now: datetime,
) -> None:
    try:
        listing = list_waiting_files(settings.csv_directory, now.timestamp(), 0)
    except OSError as exc:
        files.csv_error = exc.strerror or str(exc)
        return
    # getattr: filestore versions before bad_names was added list such files as ready.
    files.bad_names = list(getattr(listing, "bad_names", ()))
    ready = listing.ready
    if db is not None:
        try:
            split = files_to_process(listing, settings.move_processed_files, db)  # as the pass decides
        except DatabaseError:
            pass  # the database error is reported on its own; every ready file shows as waiting
        else:
            # a file that cannot be compared now is reported by the pass, and shows here as waiting
            names = {w.name for w in split.ready} | {w.name for w, _ in split.not_compared}
            ready = [w for w in listing.ready if w.name in names]  # in listing order
    for waiting in ready:
        modified = datetime.fromtimestamp(waiting.mtime_ns / 1e9, UTC)
        age = max(0.0, (now - modified).total_seconds())
        count, error = retry.get(waiting.name, (0, None))
        files.waiting.append(
            WaitingFileInfo(waiting.name, modified.replace(microsecond=0), round(age, 1), waiting.size, count, error)
        )
    if files.waiting:
        files.oldest_waiting_seconds = max(f.age_seconds for f in files.waiting)


def _failed(files: FileStatus) -> None:
    folder = files.failed_directory
    if not folder.exists():
        return  # created when the first file fails
    found = []
    try:
        for path in folder.iterdir():
            if is_bobo_file_name(path.name) and path.is_file():
                found.append(_failed_file(path))
    except OSError as exc:
        files.failed_error = exc.strerror or str(exc)
        return
    found.sort(key=lambda f: (f.failed_at or datetime.min.replace(tzinfo=UTC), f.name), reverse=True)
    files.failed = found


def _failed_file(path: Path) -> FailedFileInfo:
    note = read_error_note(path)
    if note is None:
        return FailedFileInfo(_printable(path.name), None, None)
    return FailedFileInfo(_printable(path.name), note.failed_at, note.reason)


def _printable(name: str) -> str:
    """A file name that can always be written out: bytes that are not valid text as \\xNN."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    return name


def _live(settings: Settings, client: Optional[AtHocClient], now: datetime) -> LiveStatus:
    duty_field = settings.duty_status_field
    result = LiveStatus(duty_field=duty_field)
    own = client is None
    try:
        if client is None:
            from .client import AtHocClient

            client = AtHocClient(settings)
        users = client.get_all_users_with_attributes(["LOGIN_ID", duty_field])
    except AtHocError as exc:
        result.error = str(exc)
        return result
    finally:
        if own and client is not None:
            client.close()
    is_stale: Optional[Callable[[str], Optional[bool]]] = None
    is_overdue: Optional[Callable[[str], Optional[bool]]] = None
    if settings.auto_cleanup_hours > 0:
        # The auto-cleanup's own judgement; overdue: missed by more than a pass gap.
        is_stale = stale_duty_judge(settings, now)
        is_overdue = stale_duty_judge(settings, now, slack=_pass_gap(settings))
        result.stale = result.stale_overdue = 0
    result.users = len(users)
    for user in users:
        value = (user.get(duty_field) or "").strip()
        if not value:
            continue
        result.on_duty += 1
        if value_instant(value, settings.athoc_datetime_format, settings.athoc_zone) is None:
            result.unparseable += 1
            continue
        if is_stale is not None and is_stale(value) and result.stale is not None:
            result.stale += 1
            if is_overdue is not None and is_overdue(value) and result.stale_overdue is not None:
                result.stale_overdue += 1
    return result


# --------------------------------------------------------------------------- judging


def _pass_gap(settings: Settings) -> timedelta:
    return max(NO_PASS_AFTER, timedelta(seconds=2 * settings.poll_interval_seconds))


def _file_gap(settings: Settings) -> timedelta:
    return max(FILE_WAITING_AFTER, timedelta(seconds=2 * settings.poll_interval_seconds))


#: What a rule looks like: the report and the settings in, its findings out.
Rule = Callable[["StatusReport", Settings], Iterator[Reason]]
#: Every rule, in the order they were written; the judge runs them all.
RULES: list[Rule] = []


def rule(function: Rule) -> Rule:
    """Register a health rule. A new rule is one decorated function: nothing else to touch."""
    RULES.append(function)
    return function


def judge(report: StatusReport, settings: Settings) -> list[Reason]:
    """THE place where the health is decided: every rule's reasons, worst first."""
    reasons = [reason for check in RULES for reason in check(report, settings)]
    reasons.sort(key=lambda r: r.level != UNHEALTHY)
    return reasons


def _bad(message: str) -> Reason:
    return Reason(UNHEALTHY, message)


def _warn(message: str) -> Reason:
    return Reason(WARNING, message)


@rule
def _database_readable(report: StatusReport, settings: Settings) -> Iterator[Reason]:
    if report.database_error:
        yield _bad(f"database cannot be read: {report.database_error}")


@rule
def _passes_recent(report: StatusReport, settings: Settings) -> Iterator[Reason]:
    now = report.generated_at
    passes = report.passes
    if passes.last_activity is None:
        if not report.database_exists:
            yield _bad(f"no pass recorded: database {report.database} does not exist yet (has bobosync run here?)")
        elif not report.database_error:
            yield _bad("no pass recorded in the run history")
        return
    last = passes.last
    if last is not None and last.status == "failed":
        yield _bad(f"last pass failed at {_t(last.started_at)}: {_short(last.error or 'no detail recorded')}")
    elif last is not None and last.status == "partial":
        # AtHoc answered; rows rejected or files kept for retry (followed by the file checks).
        yield _warn(
            f"last pass partial at {_t(last.started_at)}: "
            f"{_short(last.error or _rejected(PassCounts.from_record(last.counts)))}"
        )
    elif last is not None and last.status == "interrupted":
        yield _warn(
            f"last pass interrupted at {_t(last.started_at)}: "
            f"{_short(last.error or 'the process ended before the pass finished')}"
        )
    gap = _pass_gap(settings)
    idle = now - passes.last_activity
    if idle < -FUTURE_MARGIN:
        yield _bad(
            f"the last pass is recorded at {_t(passes.last_activity)}, {_age(-idle.total_seconds())} in the "
            "future: this machine's clock was ahead then or is behind now (see 'clock differs from AtHoc's' "
            "in process.md)"
        )
    elif passes.running_since is not None and now - passes.running_since > gap:
        yield _bad(
            f"no pass finished for {_age(idle.total_seconds())}: the pass started at "
            f"{_t(passes.running_since)} is still recorded as running (stuck, or its process died)"
        )
    elif idle > gap:
        yield _bad(
            f"no pass for {_age(idle.total_seconds())} (last at {_t(passes.last_activity)}; "
            f"over {_age(gap.total_seconds())})"
        )


@rule
def _waiting_files(report: StatusReport, settings: Settings) -> Iterator[Reason]:
    files = report.files
    if files.csv_error:
        yield _bad(f"CSV_DIRECTORY {files.csv_directory} cannot be read: {files.csv_error}")
    stuck = [f.name for f in files.waiting if f.retry_count >= files.max_retry_attempts]
    if stuck:
        # Done with its attempts, so it belongs in the failed folder, but it could not be moved.
        yield _warn(
            f"{_n(len(stuck), 'file')} used all {files.max_retry_attempts} attempts (MAX_RETRY_ATTEMPTS) "
            f"and could not be moved to the failed folder, so it stays in CSV_DIRECTORY: "
            f"{', '.join(stuck[:3])}{', ...' if len(stuck) > 3 else ''} (see the last error; check "
            "FAILED_FILES_DIRECTORY)"
        )
    if files.oldest_waiting_seconds is not None:
        limit = _file_gap(settings)
        if files.oldest_waiting_seconds > limit.total_seconds():
            yield _warn(
                f"{_n(len(files.waiting), 'file')} waiting, oldest {_age(files.oldest_waiting_seconds)} "
                f"(over {_age(limit.total_seconds())})"
            )
    if files.bad_names:
        yield _warn(
            f"{_n(len(files.bad_names), 'file')} in CSV_DIRECTORY with a name that is not valid text "
            f"(rename to process): {', '.join(files.bad_names[:3])}"
            f"{', ...' if len(files.bad_names) > 3 else ''}"
        )


@rule
def _failed_files(report: StatusReport, settings: Settings) -> Iterator[Reason]:
    files = report.files
    if files.failed_error:
        yield _warn(f"FAILED_FILES_DIRECTORY {files.failed_directory} cannot be read: {files.failed_error}")
    if files.failed:
        yield _warn(f"{_n(len(files.failed), 'file')} in the failed folder (reasons in <name>.error.txt)")


@rule
def _mapping_synced(report: StatusReport, settings: Settings) -> Iterator[Reason]:
    mapping = report.mapping_sync
    ran = report.passes.last_activity is not None
    if mapping.enabled and ran:
        if mapping.status is None:
            yield _warn("the worker mapping has never been synced from AtHoc")
        elif mapping.status != "success":
            since = f"; last success {_t(mapping.last_success)}" if mapping.last_success else "; never succeeded"
            yield _warn(f"last mapping sync failed at {_t(mapping.last_attempt)} (status {mapping.status}){since}")
        elif mapping.due_since is not None and report.generated_at - mapping.due_since > MAPPING_OVERDUE_AFTER:
            yield _warn(f"mapping sync overdue: due since {_t(mapping.due_since)} ({mapping.due_reason})")
    if ran and mapping.mappings == 0 and not report.database_error:
        yield _warn("no worker mappings: no employee ID can be matched to an AtHoc user")


@rule
def _cleanup_ran(report: StatusReport, settings: Settings) -> Iterator[Reason]:
    cleanup = report.auto_cleanup
    if cleanup.enabled and cleanup.last_run is not None and cleanup.last_run.status == "failed":
        yield _warn(
            f"last auto-cleanup failed at {_t(cleanup.last_run.started_at)}: "
            f"{_short(cleanup.last_run.error or 'no detail recorded')}"
        )


@rule
def _athoc_live(report: StatusReport, settings: Settings) -> Iterator[Reason]:
    live = report.live
    if live is None:
        return
    if live.error:
        yield _bad(f"AtHoc cannot be reached: {_short(live.error)}")
        return
    if live.stale_overdue:
        yield _warn(
            f"{_n(live.stale_overdue, 'user')} on duty for over {report.auto_cleanup.hours:g} h that the "
            "auto-cleanup has not cleared"
        )
    if live.unparseable:
        yield _warn(
            f"{_n(live.unparseable, 'user')} with a {live.duty_field} value not in "
            "ATHOC_DATETIME_FORMAT (the auto-cleanup never clears these)"
        )


# --------------------------------------------------------------------------- rendering


def _t(value: Optional[datetime]) -> str:
    return show(value)


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _n(count: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("s") else "s")
    return f"{count:,} {noun if count == 1 else plural}"


def _short(text: str, limit: int = _TEXT_MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _duration(seconds: Optional[float]) -> str:
    return "?" if seconds is None else f"{seconds:.1f} s" if seconds < 90 else _age(seconds)


def _rejected(counts: PassCounts) -> str:
    return f"{_n(counts.failed, 'update')} rejected by AtHoc, {_n(counts.files_retry, 'file')} kept for retry"


def _counts_line(recorded: dict[str, Any]) -> str:
    if not recorded:
        return ""
    c = PassCounts.from_record(recorded)
    return (
        f"files {c.files} (done {c.files_done}, retry {c.files_retry}, failed {c.files_failed}), "
        f"rows {c.rows} (bad {c.bad_rows}), updates {c.updates_sent} (applied {c.applied}, "
        f"failed {c.failed}, not in AtHoc {c.not_in_athoc}), unmapped {c.unmapped}, "
        f"cleared {c.cleared}"
    )


def render_text(report: StatusReport) -> str:
    """The report as aligned plain text (ASCII only, so any console code page shows it)."""
    lines: list[str] = []

    def row(label: str, text: str) -> None:
        lines.append(f"{label:<{_LABEL_WIDTH}}{text}".rstrip())

    def more(text: str) -> None:
        row("", text)

    lines.append(f"bobosync status: {report.health.upper()} (exit {report.exit_code})   at {_t(report.generated_at)}")
    for reason in report.reasons:
        lines.append(f"  {reason.level.upper():<10} {reason.message}")
    lines.append("")

    passes = report.passes
    if passes.last is not None:
        last = passes.last
        row(
            "Last pass",
            f"{_t(last.started_at)}  {last.status}  in {_duration(last.duration_seconds)}  "
            f"({_age((report.generated_at - last.started_at).total_seconds())} ago)",
        )
        if _counts_line(last.counts):
            more(_counts_line(last.counts))
        if last.error:
            more(f"error: {_short(last.error)}")
    else:
        row("Last pass", "none recorded")
    if passes.running_since is not None:
        more(f"a pass is running since {_t(passes.running_since)}")
    statuses = passes.statuses_24h
    if passes.count_24h:
        parts = [
            f"{statuses.get(s, 0):,} {s}"
            for s in ("ok", "partial", "failed", "interrupted", "running")
            if statuses.get(s)
        ]
        parts += [
            f"{n:,} {s}"
            for s, n in sorted(statuses.items())
            if s not in ("ok", "partial", "failed", "interrupted", "running")
        ]
        rate = "" if passes.success_rate_24h is None else f"success {passes.success_rate_24h * 100:.1f} %, "
        row(
            "Last 24 h",
            f"{_n(passes.count_24h, 'pass')}: {', '.join(parts)}; {rate}"
            f"average {_duration(passes.average_duration_seconds_24h)}",
        )
    else:
        row("Last 24 h", "no passes")

    mapping = report.mapping_sync
    if not mapping.enabled:
        row("Mapping sync", f"off (SYNC_MAPPINGS=false); {_n(mapping.mappings, 'mapping')}")
    else:
        due = f"due now ({mapping.due_reason})" if mapping.due_now else f"next due {_t(mapping.next_due)}"
        if mapping.status is None:
            state = "never synced"
        elif mapping.status in SYNC_SUCCESS_WORDS:
            state = f"last success {_t(mapping.last_success)}"
        else:
            state = (
                f"last attempt {_t(mapping.last_attempt)} ended {mapping.status!r}; "
                f"last success {_t(mapping.last_success)}"
            )
        row("Mapping sync", f"{state}; {_n(mapping.mappings, 'mapping')}; {due}")

    cleanup = report.auto_cleanup
    if not cleanup.enabled:
        row("Auto-cleanup", "off (AUTO_CLEANUP_HOURS=0)")
    else:
        last_run = cleanup.last_run
        last_text = "never run" if last_run is None else f"last run {_t(last_run.started_at)} ({last_run.status})"
        row(
            "Auto-cleanup",
            f"{last_text}; {_n(cleanup.cleared_24h, 'user')} cleared in the last 24 h "
            f"(values older than {cleanup.hours:g} h)",
        )

    files = report.files
    if files.csv_error:
        row("Waiting files", f"cannot read {files.csv_directory}: {files.csv_error}")
    elif not files.waiting:
        row("Waiting files", f"none in {files.csv_directory}")
    else:
        row(
            "Waiting files",
            f"{len(files.waiting):,} in {files.csv_directory}, oldest {_age(files.oldest_waiting_seconds or 0)}",
        )
        width = max(len(f.name) for f in files.waiting[:_TEXT_FILES_SHOWN])
        for waiting in files.waiting[:_TEXT_FILES_SHOWN]:
            retry = ""
            if waiting.retry_count:
                retry = f"  attempt {waiting.retry_count} of {files.max_retry_attempts} failed"
                if waiting.last_error:
                    retry += f": {_short(waiting.last_error, 120)}"
            more(f"  {waiting.name:<{width}}  {_age(waiting.age_seconds):>9}{retry}")
        if len(files.waiting) > _TEXT_FILES_SHOWN:
            more(f"  ... and {len(files.waiting) - _TEXT_FILES_SHOWN:,} more")
    if files.bad_names:
        more(
            f"  {_n(len(files.bad_names), 'file')} named in bytes that are not valid text (rename them): "
            f"{', '.join(files.bad_names[:_TEXT_FILES_SHOWN])}"
        )
    if files.failed_error:
        row("Failed files", f"cannot read {files.failed_directory}: {files.failed_error}")
    elif not files.failed:
        row("Failed files", f"none in {files.failed_directory}")
    else:
        row("Failed files", f"{len(files.failed):,} in {files.failed_directory}")
        width = max(len(f.name) for f in files.failed[:_TEXT_FILES_SHOWN])
        for failed in files.failed[:_TEXT_FILES_SHOWN]:
            more(
                f"  {failed.name:<{width}}  {_t(failed.failed_at) if failed.failed_at else '':<19}  "
                f"{_short(failed.reason or 'no .error.txt beside it', 120)}"
            )
        if len(files.failed) > _TEXT_FILES_SHOWN:
            more(f"  ... and {len(files.failed) - _TEXT_FILES_SHOWN:,} more")

    if not report.errors:
        row("Last errors", "none in the run history")
    else:
        for index, entry in enumerate(report.errors):
            row(
                "Last errors" if index == 0 else "",
                f"{_t(entry.at)}  {entry.kind} {entry.status}: {_short(entry.message, 150)}",
            )

    live = report.live
    if live is None:
        row("On duty (live)", "not checked (add --live to ask AtHoc)")
    elif live.error:
        row("On duty (live)", f"AtHoc cannot be reached: {_short(live.error)}")
    else:
        text = f"{live.on_duty:,} of {_n(live.users, 'user')} have {live.duty_field} set"
        if live.stale is not None:
            text += f"; {live.stale:,} older than {cleanup.hours:g} h"
            if live.stale_overdue:
                text += f" ({live.stale_overdue:,} not cleared in time)"
        if live.unparseable:
            text += f"; {live.unparseable:,} unparseable"
        row("On duty (live)", text)

    lines.append("")
    row("Log file", str(report.log_file))
    row("Database", str(report.database) + ("" if report.database_exists else " (does not exist yet)"))
    if report.env_file is not None:
        row("Settings", str(report.env_file))
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).astimezone().isoformat(timespec="seconds")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def report_to_dict(report: StatusReport) -> dict[str, Any]:
    """The JSON document: stable keys, ISO local times with offset, paths as text. ``reasons`` are the
    same lines as the text shows, worst first; ``reason_levels`` gives each one's level."""
    body = {k: _plain(v) for k, v in asdict(report).items()}
    order = (
        "passes",
        "mapping_sync",
        "auto_cleanup",
        "files",
        "errors",
        "live",
        "database",
        "database_exists",
        "database_error",
        "log_file",
        "env_file",
    )
    assert set(order) | {"generated_at", "health", "reasons"} == set(body)
    return {
        "generated_at": body["generated_at"],
        "health": report.health,
        "exit_code": report.exit_code,
        "reasons": [reason.message for reason in report.reasons],
        "reason_levels": [reason.level for reason in report.reasons],
        **{key: body[key] for key in order},
        "bobosync_version": __version__,
    }


def render_json(report: StatusReport) -> str:
    return json.dumps(report_to_dict(report), indent=2, sort_keys=False) + "\n"


# --------------------------------------------------------------------------- the command


def status_now(settings: Settings, now: datetime, *, live: bool = False) -> StatusReport:
    """The report from a read-only look at the database (which may be missing or unreadable)."""
    db: Optional[Store] = None
    db_error: Optional[str] = None
    try:
        db = BOBODatabase(settings.db_path, read_only=True)
    except DatabaseError as exc:
        db_error = str(exc)
    try:
        return collect_status(settings, db, now, live=live, db_error=db_error)
    finally:
        if db is not None:
            db.close()


def run_status(
    settings: Settings,
    *,
    live: bool = False,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    now: Optional[datetime] = None,
) -> int:
    """``bobosync status``: write the report to ``out``; return 0 healthy, 1 warning, 2 unhealthy."""
    now = as_utc(now or utc_now())
    report = status_now(settings, now, live=live)
    out.write(render_json(report) if as_json else render_text(report))
    out.flush()
    log.debug("status: %s (%d reason(s))", report.health, len(report.reasons))
    return report.exit_code

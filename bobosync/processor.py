"""One pass of bobosync: BOBO files in, duty status out to AtHoc.

A pass (:meth:`BOBOProcessor.run_pass`):

1. finish file moves a crashed run left half done, mark its run-history row interrupted;
2. authenticate with AtHoc (unreachable: the pass fails, nothing is moved);
3. sync the worker mapping from AtHoc if it is due (:mod:`bobosync.scheduling`);
4. list the waiting files, oldest first, skipping files still being written and files
   already processed (MOVE_PROCESSED_FILES=false);
5. all the waiting files at once (a backlog too: memory grows with people, not rows or files):
   parse, give every event its true instant (:mod:`bobosync.timebase`), keep the latest event
   per employee, drop events not newer than the last one applied in an earlier pass
   (:mod:`bobosync.resolution`), map employee IDs to AtHoc LOGIN_IDs, send each person's final
   state once (in chunks of MAX_USERS_PER_REQUEST), then classify the files as done, retry or
   failed, BATCH_SIZE files per transaction (:meth:`process_file_batch`); a file whose every
   event a later file supersedes is done once the later event is applied;
6. clear duty values left behind for longer than AUTO_CLEANUP_HOURS;
7. purge old logs and processed files; log one summary line; record the run.

Every time inside is an instant (aware, UTC). Right after connecting, this machine's clock is
compared with AtHoc's (the ``Date`` header); beyond CLOCK_TOLERANCE_MINUTES the pass reports an
ERROR and skips every decision that reads this machine's clock (the auto-cleanup, the hold on
future events, the SYNC_RETRY_DAYS rule, the purges), while files are still processed: their
times come from BOBO.

The pass never holds a decision only in memory: what was applied, which files are done and
where they are going is committed in one transaction *before* any file is moved, and moves are
journalled (:mod:`bobosync.filestore`), so a crash at any instant is recovered by the next pass.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, NamedTuple, Optional

from .bobo_csv import BadRow, BOBOEntry, read_bobo_file, swallows_rest
from .client import AtHocClient, UpdateOutcome, UpdateResult
from .counts import PassCounts
from .database import BOBODatabase
from .desired import (
    DesiredState,
    Write,
    WriteReason,
    end_suspicion,
    is_current,
    is_suspect,
    lost_in_crash,
    read_back,
    stale_duty_judge,
    values_agree,
)
from .errors import AtHocAuthError, AtHocError, AtHocUnavailable, DatabaseError, InputFileError
from .filestore import (
    FileMover,
    Listing,
    Snapshot,
    WaitingFile,
    changed_since,
    files_to_process,
    is_transient,
    list_waiting_files,
    purge_old_files,
    read_snapshot,
    sha256_of,
    write_error_note,
)
from .logsetup import purge_old_logs
from .mapping import (
    CollarMatch,
    MappingRead,
    mapping_from_users,
    match_collars,
    numeric_form,
    numeric_index,
    unlisted_logins,
)
from .reconcile import Drift, Judgement, Rules, judge
from .resolution import AppliedEvent, LatestEvents, ResolvedEvent, drop_not_newer
from .scheduling import mapping_is_stale, mapping_sync_due, reconcile_due
from .settings import Settings, load_settings
from .store import AuditRow, RunRecord, Store
from .timebase import UTC, Reading, ZoneReader, as_utc, describe_offset, show, utc_now
from .writer import DutyWriter

log = logging.getLogger(__name__)

#: An event dated further ahead than this is held back (its file retried, then failed): once
#: applied, it would make every real event of that person "not newer" until its time came.
FUTURE_EVENT_TOLERANCE = timedelta(hours=1)

#: How many bad-row reasons a failed file's ``.error.txt`` and processing_log row quote.
_REASONS_QUOTED = 5

#: A last line without a line ending that does not parse is a row still being written until
#: the file has been left unchanged for this many FILE_SETTLE_SECONDS (and at least the
#: minimum); only then is it a bad row.
GROWTH_PATIENCE_SETTLES = 10
GROWTH_PATIENCE_MIN_SECONDS = 60.0

__all__ = ["BOBODatabase", "BOBOEntry", "BOBOProcessor", "PassCounts", "PassReport"]


class RebuildReport(NamedTuple):
    """What ``rebuild-state`` read and changed."""

    folder: Path
    hours: float
    files: int
    rows: int
    bad_rows: int
    #: employees whose desired event is now a newer one from these files
    updated: int

    def summary(self) -> str:
        return (
            f"{self.files} file(s) of the last {self.hours:g} h, {self.rows} row(s) ({self.bad_rows} bad), "
            f"{self.updated} employee(s) with a newer desired event; nothing sent (the next reconcile "
            "corrects AtHoc)"
        )


#: ``rebuild-state``'s look-back when AUTO_CLEANUP_HOURS is 0 (off): a day of files.
REBUILD_DEFAULT_HOURS = 24.0


class Planned(NamedTuple):
    """A write a dry run would send: to whom, what, and why (a file and row, or a reason)."""

    login_id: str
    employee_id: str
    value: str
    source: str
    row: int


@dataclass
class PassReport:
    """The outcome of one pass. ``exit_code``: 0 all done, 1 something left or AtHoc failed."""

    started_at: datetime
    counts: PassCounts = field(default_factory=PassCounts)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: --dry-run: the writes that would be sent.
    planned: list[Planned] = field(default_factory=list)
    #: the differences a reconcile or read-back found (employee, LOGIN_ID, AtHoc's, desired)
    drift: list[Drift] = field(default_factory=list)
    #: values repaired at the last reconcile were wrong again (AtHoc does not keep them)
    systematic: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and self.counts.files_retry == 0 and self.counts.failed == 0

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        # "failed": the pass itself went wrong (AtHoc unreachable, folder unreadable...) and
        # achieved nothing; rejected rows or files kept for retry alone make it "partial".
        nothing_done = self.counts.files_done == 0 and self.counts.applied == 0
        return "failed" if self.errors and nothing_done else "partial"


@dataclass
class _FileState:
    """One file of a batch while it is being processed."""

    waiting: WaitingFile
    sha256: str = ""
    #: The file as it was read (None when it could not be read): moved only if still so.
    snapshot: Optional[Snapshot] = None
    rows: int = 0
    bad: list[BadRow] = field(default_factory=list)
    unreadable: Optional[str] = None
    #: A read error that may go away (permission denied, a sharing or lock violation, in
    #: use): the file stays, one attempt is counted; after MAX_RETRY_ATTEMPTS it fails.
    transient: Optional[str] = None
    #: Why the file is left in CSV_DIRECTORY with nothing recorded (next pass reads it again).
    left: Optional[str] = None
    #: Updates AtHoc rejected: the file is retried, and after MAX_RETRY_ATTEMPTS it fails.
    failures: list[str] = field(default_factory=list)
    #: Events dated too far in the future, held back: the file is retried like a failure.
    held: list[str] = field(default_factory=list)
    #: Updates AtHoc never answered (down, overloaded): retried without counting an attempt,
    #: so an outage never pushes files into the failed folder.
    unanswered: int = 0
    updates: int = 0
    #: Valid rows of this file whose employee has no AtHoc user.
    unmapped: int = 0
    #: For the audit (when AUDIT_RETENTION_DAYS > 0): (employee ID, BON/BOF, instant, row) of
    #: each event read, and of each held back as dated in the future.
    seen: list[tuple[str, str, datetime, int]] = field(default_factory=list)
    future: list[tuple[str, str, datetime, int]] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.waiting.path

    @property
    def name(self) -> str:
        return self.waiting.name

    def outcome(self) -> str:
        """``N rows, N bad, N update(s)`` and what became of the rows that sent nothing."""
        text = f"{self.rows} rows, {len(self.bad)} bad, {self.updates} update(s)"
        superseded = self.rows - self.updates - self.unmapped
        if superseded > 0:
            text += f", {superseded} superseded (a newer event for the same person exists)"
        if self.unmapped:
            text += f", {self.unmapped} with no AtHoc user"
        return text

    def retry_problems(self) -> str:
        """Why this file is kept for a retry: rejected updates and events held back."""
        parts = []
        if self.failures:
            parts.append(f"{len(self.failures)} update(s) failed")
        if self.held:
            parts.append(f"{len(self.held)} event(s) held back as dated in the future")
        return " and ".join(parts)

    def fatal_reason(self) -> Optional[str]:
        """Why this file goes to the failed folder at once, if it does."""
        if self.unreadable:
            return self.unreadable
        broken = next((b for b in self.bad if swallows_rest(b)), None)
        if broken is not None:
            # The rows after the broken quote were never read: fail the file so that nobody's
            # event is lost unnoticed (the rows before it were used as usual).
            return f"row {broken.row_number}: {broken.reason}; fix the quote and put the file back"
        if self.rows == 0 and self.bad:
            quoted = "; ".join(f"row {b.row_number}: {b.reason}" for b in self.bad[:_REASONS_QUOTED])
            return f"no valid row, {len(self.bad)} bad row(s): {quoted}"
        return None


def _replay_reason(state: DesiredState, login_id: str) -> str:
    if state.login_id is None:
        return (
            "newly mapped"
            if state.last_answer is None or not state.last_answer.startswith("not_in")
            else "re-mapped after AtHoc did not know the LOGIN_ID"
        )
    if state.login_id.casefold() != login_id.casefold():
        return f"the collar number moved from {state.login_id}"
    return "the last write did not land"


class BOBOProcessor:
    """Processes BOBO files into AtHoc duty status. See the module docstring.

    ``BOBOProcessor()`` reads the configuration like the command does. ``dry_run=True`` opens
    the database read-only and changes nothing anywhere (no AtHoc write, no file move).
    """

    def __init__(
        self,
        settings: Optional[Settings] = None,
        *,
        client: Optional[AtHocClient] = None,
        db: Optional[Store] = None,
        dry_run: bool = False,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.dry_run = dry_run
        self.clock = clock
        self.db: Store = db if db is not None else BOBODatabase(self.settings.db_path, read_only=dry_run)
        self.client = client
        self.mover = FileMover(self.db, clock)
        #: --dry-run keeps a freshly synced mapping here instead of writing it to the database.
        self._memory_mapping: Optional[dict[str, str]] = None
        self.writer = DutyWriter(self.settings, self.db, self.connect_athoc)
        self._synced_this_pass = False
        self._reported_unmapped: set[str] = set()
        #: employees whose LOGIN_ID AtHoc said it does not have, in this pass
        self._not_in_athoc: set[str] = set()
        #: this pass's listing of every user (LOGIN_ID -> attributes), shared by the mapping
        #: sync, the reconcile and the cleanup; None until one is read
        self._listing: Optional[dict[str, dict[str, str]]] = None
        self._listing_failed = False
        #: a mapping sync in this pass changed who maps where: replay looks at everyone
        self._mapping_changed = False
        #: see _mapped_employees
        self._by_login: Optional[dict[str, list[str]]] = None
        #: False for a pass whose clock differs from AtHoc's beyond CLOCK_TOLERANCE_MINUTES.
        self._clock_trusted = True

    def _now(self) -> datetime:
        return as_utc(self.clock())

    # ------------------------------------------------------------------ AtHoc and mapping

    def connect_athoc(self) -> AtHocClient:
        """The AtHoc client, created and authenticated on first use (raises AtHocError)."""
        if self.client is None:
            self.client = AtHocClient(self.settings)
        return self.client

    def should_run_user_mapping_sync(self, now: Optional[datetime] = None) -> bool:
        if not self.settings.sync_mappings:
            return False
        decision = mapping_sync_due(
            self.db.get_sync_state(),
            as_utc(now or self.clock()),
            self.settings.sync_hour,
            self.settings.sync_retry_days,
            clock_trusted=self._clock_trusted,
        )
        log.debug("mapping sync due: %s (%s)", decision.due, decision.reason)
        return decision.due

    def sync_worker_mappings(self, now: Optional[datetime] = None) -> bool:
        """Replace the local worker mapping with AtHoc's, in one transaction, if it is safe.

        The old mapping is kept when AtHoc lists no user, the listing is incomplete, or the
        new mapping would remove more than half of the existing one. A mapped user missing
        from the listing is dropped only when a second read, by LOGIN_ID, confirms that AtHoc
        no longer has them. Returns True on success.
        """
        now = as_utc(now or self.clock())
        self._synced_this_pass = True
        client = self.connect_athoc()
        run_id = None if self.dry_run else self.db.start_run("mapping_sync", now, os.getpid())
        status, error, counts = "failed", None, {}
        try:
            try:
                users = client.get_all_users_with_attributes(self.settings.listing_fields)
            except AtHocError:
                self._listing_failed = True
                raise
            existing = self.db.all_mappings() if self._memory_mapping is None else self._memory_mapping
            users, found_again = self._confirm_removals(users, existing)
            self._keep_listing(users)
            read = mapping_from_users(users, self.settings.collar_id_field)
            self._report_shared(read)
            mapping = read.mapping
            counts = {"users": len(users), "mappings": len(mapping), "found_by_second_read": found_again}
            if not mapping:
                error = (
                    f"mapping sync: AtHoc listed {len(users)} user(s) and none carries "
                    f"{self.settings.collar_id_field}; the old mapping is kept"
                )
                self._record_sync("no_data", now, 0)
                return False
            removed = sorted(employee_id for employee_id in existing if employee_id not in mapping)
            if removed and self._memory_mapping is None and not self._listing_recorded():
                # The table was not written from a listing bobosync recorded (the original's,
                # which only ever added): nothing to compare with, so a complete listing wins.
                log.warning(
                    "mapping sync: no record of a previous complete listing; %d mapping(s) not in "
                    "AtHoc's listing are removed: %s",
                    len(removed),
                    ", ".join(removed),
                )
            elif existing and len(removed) * 2 > len(existing):
                error = (
                    f"mapping sync: the new mapping would remove {len(removed)} of {len(existing)} "
                    "existing mappings (more than half); the old mapping is kept. If this is "
                    "intended, empty the worker_mapping table and run --sync-users"
                )
                self._record_sync("error", now, 0)
                return False
            if self.dry_run:
                self._mapping_changed = mapping != existing
                self._memory_mapping = mapping
                log.info("mapping sync (dry run): %d mappings read, not stored", len(mapping))
            else:
                with self.db.transaction():
                    change = self.db.replace_mappings(mapping, now, audit=self.writer.auditing)
                    self.db.record_sync("success", now, len(mapping))
                self._mapping_changed = self._mapping_changed or bool(change.added or change.removed or change.changed)
                counts.update(added=change.added, removed=change.removed, changed=change.changed)
                log.info(
                    "mapping sync: %d users, %d mappings (%d added, %d removed, %d changed)",
                    len(users),
                    len(mapping),
                    change.added,
                    change.removed,
                    change.changed,
                )
            self._by_login = None
            status = "ok"
            return True
        except AtHocError as exc:
            error = f"mapping sync failed: {exc}"
            self._record_sync("error", now, 0)
            return False
        finally:
            if error:
                log.error("%s", error)
            if run_id is not None:
                self.db.finish_run(run_id, status, self.clock(), counts, error)

    def _listing_recorded(self) -> bool:
        """Whether worker_mapping holds a complete listing bobosync recorded (the safety stop
        compares with it), rather than what the original left."""
        state = self.db.get_sync_state()
        return state is not None and state.listing_mappings is not None

    def _record_sync(self, status: str, now: datetime, records: int) -> None:
        if not self.dry_run:
            self.db.record_sync(status, now, records)

    def _confirm_removals(
        self, users: list[dict[str, str]], existing: dict[str, str]
    ) -> tuple[list[dict[str, str]], int]:
        """The listing plus the mapped users it missed that a second read, by LOGIN_ID, still
        finds (users removed or added while the listing paged through AtHoc shift its pages);
        and how many those were. Raises AtHocError when the second read fails."""
        listed = mapping_from_users(users, self.settings.collar_id_field).listed
        missing = unlisted_logins(existing, listed)
        if not missing:
            return users, 0
        found = self.connect_athoc().read_users(missing, self.settings.listing_fields)
        gone = len(missing) - len(found)
        if found:
            log.warning(
                "mapping sync: %d mapped user(s) missing from the listing were found by a second read "
                "(AtHoc's users changed while the listing was read?); kept: %s",
                len(found),
                ", ".join(sorted(found)[:10]),
            )
        if gone:
            log.info("mapping sync: a second read confirms %d mapped user(s) are no longer in AtHoc", gone)
        return users + list(found.values()), len(found)

    def _report_shared(self, read: MappingRead) -> None:
        for collar, logins in read.shared.items():
            log.warning(
                "collar number %s is held by %d AtHoc users (%s); using %s",
                collar,
                len(logins),
                ", ".join(logins),
                logins[0],
            )
        if self.settings.collar_match != "numeric":
            return
        by_number: dict[str, list[str]] = {}
        for collar in read.mapping:
            number = numeric_form(collar)
            if number is not None:
                by_number.setdefault(number, []).append(collar)
        for collars in by_number.values():
            holders = {read.mapping[c].casefold() for c in collars}
            if len(holders) > 1:
                log.warning(
                    "COLLAR_MATCH=numeric: collar numbers %s are the same number on different AtHoc "
                    "users (%s); a BOBO ID that is not exactly one of them matches none",
                    ", ".join(sorted(collars)),
                    ", ".join(read.mapping[c] for c in sorted(collars)),
                )

    def _has_mapping(self) -> bool:
        if self._memory_mapping is not None:
            return bool(self._memory_mapping)
        return self.db.mapping_count() > 0

    def _lookup(self, employee_ids: list[str]) -> CollarMatch:
        memory = self._memory_mapping
        exact = (
            self.db.get_usernames(employee_ids)
            if memory is None
            else {e: memory[e] for e in employee_ids if e in memory}
        )
        if self.settings.collar_match != "numeric":
            return match_collars(employee_ids, exact)
        numbers = {n for e in employee_ids if e not in exact and (n := numeric_form(e)) is not None}
        numeric = self.db.numeric_mappings(numbers) if memory is None else numeric_index(memory, numbers)
        return match_collars(employee_ids, exact, numeric)

    # ------------------------------------------------------------------ files

    def get_csv_files(self, now: Optional[datetime] = None) -> list[Path]:
        """The waiting files this pass would process, oldest first."""
        return [f.path for f in self._list_files(as_utc(now or self.clock()))[0].ready]

    def _list_files(self, now: datetime) -> tuple[Listing, int]:
        """Ready files minus those already processed and left in place; and how many those are."""
        listing = list_waiting_files(self.settings.csv_directory, now.timestamp(), self.settings.file_settle_seconds)
        split = files_to_process(listing, self.settings.move_processed_files, self.db)
        for waiting, match in split.left_in_place:
            if match.fingerprint != waiting.fingerprint and not self.dry_run:
                # Same content, new metadata (a chmod, a touch): hashed once, not every pass.
                fp = waiting.fingerprint
                self.db.refresh_remembered(match.name, match.size, match.sha256, fp.mtime_ns, fp.ctime_ns, fp.file_id)
        # Not compared: that file's problem only, reported by name; the next pass looks again.
        unexamined = (*listing.unexamined, *((w.name, reason) for w, reason in split.not_compared))
        return dataclasses.replace(listing, ready=split.ready, unexamined=unexamined), len(split.left_in_place)

    def parse_csv_file(self, path: Path) -> list[BOBOEntry]:
        """Every valid entry of one file (bad rows are logged). For the REPL and tests: the
        pass itself streams files and never holds their rows."""
        entries = []
        for item in read_bobo_file(Path(path)):
            if isinstance(item, BadRow):
                log.warning("%s row %d: %s", Path(path).name, item.row_number, item.reason)
            else:
                entries.append(item)
        return entries

    def move_processed_file(self, path: Path, destination: Optional[Path] = None) -> Path:
        """Move one file to PROCESSED_DIRECTORY (or ``destination``), never overwriting."""
        src = Path(path)
        sha256 = sha256_of(src)
        with self.db.transaction():
            dst = self.mover.journal(src, destination or self.settings.processed_directory, sha256)
        return self.mover.move(src, dst, sha256)

    # ------------------------------------------------------------------ a batch

    def process_file_batch(self, files: list[WaitingFile], report: PassReport, now: Optional[datetime] = None) -> None:
        """Parse, resolve, map, send and settle one batch of files. See the module docstring.

        Raises AtHocUnavailable, after settling what was answered, when AtHoc stopped
        answering (its files are kept without counting an attempt), and AtHocAuthError when
        the token can no longer be obtained (nothing settled).
        """
        now = as_utc(now) if now is not None else self._now()
        counts = report.counts
        # Indexed in listing order (modification time, then name): the tie rule's file order.
        states = [_FileState(f) for f in sorted(files, key=lambda f: (f.mtime_ns, f.name))]
        latest = LatestEvents([(state.waiting.mtime_ns, state.name) for state in states])
        for index, state in enumerate(states):
            self._parse_into(state, index, latest, now)
            counts.files += 1
            counts.rows += state.rows
            counts.bad_rows += len(state.bad)

        events = latest.events()
        counts.superseded += latest.superseded
        desired = self.db.desired_states(events)
        fresh, again = self._intake(events, desired, now, report)
        mapped = self._map({e: events[e] for e in (*fresh, *again)}, report, now)
        sent_ids = {event.entry.employee_id for event in mapped.values()}
        for employee_id, event in events.items():
            if employee_id not in sent_ids and employee_id in self._reported_unmapped:
                states[event.file_index].unmapped += 1
        writes, sources = self._event_writes(mapped, desired, fresh, now, counts)
        if self.dry_run:
            for write in writes:
                employee_id, event = sources[write.login_id]
                report.planned.append(
                    Planned(write.login_id, employee_id, write.value, event.order.file_name, event.entry.row_number)
                )
            return

        results = self.writer.send(writes, desired, now, counts, save=(*fresh, *again))
        unanswered: Optional[str] = None
        for login_id, result in results.items():
            employee_id, event = sources[login_id]
            state = states[event.file_index]
            state.updates += 1
            if result.outcome is UpdateOutcome.UNANSWERED:
                state.unanswered += 1
                unanswered = result.detail
            elif result.outcome is UpdateOutcome.FAILED:
                state.failures.append(f"{login_id}: {result.detail}")
            elif result.outcome is UpdateOutcome.NOT_IN_ATHOC:
                self._not_in_athoc.add(employee_id)

        audit = self._event_audit(states, events, desired, fresh, again, sources, now)

        def record() -> None:
            self.db.record_audit(audit)  # the events first, then what AtHoc answered
            self.writer.settle(writes, results, desired, now, counts)

        self._settle(states, record, report, now)
        if unanswered is not None:
            raise AtHocUnavailable(f"AtHoc did not answer ({unanswered})")

    def _event_audit(
        self,
        states: list[_FileState],
        events: dict[str, ResolvedEvent],
        desired: dict[str, DesiredState],
        fresh: list[str],
        again: list[str],
        sources: dict[str, tuple[str, ResolvedEvent]],
        now: datetime,
    ) -> list[AuditRow]:
        """What became of every event of the batch, for ``bobosync trace`` (the values sent are
        audited by the writer, with AtHoc's answers)."""
        if not self.writer.auditing:
            return []
        sent = {employee_id: login_id for login_id, (employee_id, _) in sources.items()}
        new, repeated = set(fresh), set(again)
        rows: list[AuditRow] = []
        # Per employee: the winning event's place and what its rows say, and the events it
        # superseded (most rows of a backlog: one audit row per person lists them all).
        lost_to: dict[str, tuple[str, int, str]] = {}
        lost: dict[str, list[tuple[str, str, str, int]]] = {}
        for state in states:
            for employee_id, transaction, instant, row in state.future:
                rows.append(
                    AuditRow(
                        now,
                        "event",
                        "held as future",
                        employee_id,
                        None,
                        transaction,
                        instant,
                        state.name,
                        row,
                        detail="more than "
                        f"{FUTURE_EVENT_TOLERANCE.total_seconds() / 3600:g} h ahead of this clock; "
                        "the file is retried",
                    )
                )
            name = state.name
            for employee_id, transaction, instant, row in state.seen:
                winner = lost_to.get(employee_id)
                if winner is None:
                    order = events[employee_id].order
                    winner = lost_to[employee_id] = (
                        order.file_name,
                        order.row,
                        f"by {order.file_name} row {order.row} ({show(order.instant)})",
                    )
                if winner[1] != row or winner[0] != name:
                    lost.setdefault(employee_id, []).append((transaction, instant.isoformat(), name, row))
                    continue
                login_id: Optional[str] = None
                detail: Optional[str] = None
                if employee_id in sent:
                    outcome, login_id = "sent", sent[employee_id]
                elif employee_id in self._reported_unmapped:
                    outcome, detail = "pending", "no AtHoc user has this collar number (yet): sent once one has"
                elif employee_id in new:
                    outcome, detail = "superseded", "another employee mapped to the same AtHoc user has a later event"
                elif employee_id in repeated:
                    outcome, detail = "unchanged", "AtHoc already holds this event's value (applied before)"
                else:
                    applied = desired[employee_id].order
                    outcome, detail = (
                        "not newer",
                        (f"than the applied {applied.file_name} row {applied.row} ({show(applied.instant)})"),
                    )
                rows.append(
                    AuditRow(
                        now,
                        "event",
                        outcome,
                        employee_id,
                        login_id,
                        transaction,
                        instant,
                        state.name,
                        row,
                        detail=detail,
                    )
                )
        superseded = [
            AuditRow(
                now,
                "superseded",
                "superseded",
                employee_id,
                detail=lost_to[employee_id][2],
                events=json.dumps(events_lost, separators=(",", ":")),
            )
            for employee_id, events_lost in lost.items()
        ]
        return superseded + rows  # older than the events that superseded them

    def _intake(
        self,
        events: dict[str, ResolvedEvent],
        desired: dict[str, DesiredState],
        now: datetime,
        report: PassReport,
    ) -> tuple[list[str], list[str]]:
        """Bring the batch's events into the desired state (``desired``, in memory; saved when
        they are sent), by THE order of events (:func:`bobosync.resolution.drop_not_newer`).
        Returns the employees whose event is new, and those whose desired event this is again
        (that very row, or the same state later in the order); the rest are superseded."""
        counts = report.counts
        last = {e: AppliedEvent(st.order, st.transaction) for e, st in desired.items()}
        decided = drop_not_newer(events, last)
        counts.superseded += decided.dropped
        for lost in decided.behind:
            counts.behind += 1
            applied = lost.applied.order
            log.warning(
                "employee %s: %s row %d (%s) is older than the event already applied from the older file "
                "%s row %d (%s): not applied. BOBO terminal clock behind?",
                lost.employee_id,
                lost.event.order.file_name,
                lost.event.order.row,
                show(lost.event.instant),
                applied.file_name,
                applied.row,
                show(applied.instant),
            )
        fresh: list[str] = []
        for employee_id, event in decided.kept.items():
            entry = event.entry
            state = desired.get(employee_id)
            if state is None:
                desired[employee_id] = DesiredState(employee_id, event.order, entry.transaction, entry.event_time, now)
            else:
                desired[employee_id] = state.with_event(event.order, entry.transaction, entry.event_time, now)
            fresh.append(employee_id)
        again: list[str] = []
        for employee_id, event in decided.same.items():
            # The same state, later in the order: kept as the desired event (the stored order
            # does not depend on pass boundaries), sent only where AtHoc does not hold it.
            counts.superseded -= 1  # counted again below if nothing needs sending
            desired[employee_id] = dataclasses.replace(desired[employee_id], order=event.order)
            again.append(employee_id)
        for employee_id, event in events.items():
            state = desired.get(employee_id)
            if (
                employee_id not in decided.kept
                and employee_id not in decided.same
                and state is not None
                and event.order == state.order
            ):
                counts.superseded -= 1  # that very event again (a file kept for retry)
                again.append(employee_id)
        return fresh, again

    def _event_writes(
        self,
        mapped: dict[str, ResolvedEvent],
        desired: dict[str, DesiredState],
        fresh: list[str],
        now: datetime,
        counts: PassCounts,
    ) -> tuple[list[Write], dict[str, tuple[str, ResolvedEvent]]]:
        """One write per LOGIN_ID: a new event always; a kept file's event again only where
        AtHoc is not known to hold it already (else it counts as superseded: applied before)."""
        new = set(fresh)
        writes: list[Write] = []
        sources: dict[str, tuple[str, ResolvedEvent]] = {}
        fmt = self.settings.athoc_datetime_format
        if self._by_login is not None:
            for login_id, event in mapped.items():  # this batch's employees count as mapped too
                employees = self._by_login.setdefault(login_id.casefold(), [])
                if event.entry.employee_id not in employees:
                    employees.append(event.entry.employee_id)
        owners = self._owners({login_id.casefold() for login_id in mapped}, desired) if mapped else {}
        for login_id, event in mapped.items():
            employee_id = event.entry.employee_id
            state = desired[employee_id]
            if owners.get(login_id.casefold(), employee_id) != employee_id:
                counts.superseded += 1  # another employee mapped to this user has a later event
                continue
            value = self.writer.desired(state, now)
            if (
                employee_id not in new
                and state.login_id is not None
                and state.login_id.casefold() == login_id.casefold()
                and state.written_value is not None
                and values_agree(state.written_value, value, fmt)
            ):
                counts.superseded += 1
                continue
            writes.append(Write(login_id, value, employee_id, WriteReason.EVENT))
            sources[login_id] = (employee_id, event)
        return writes, sources

    def _parse_into(self, state: _FileState, index: int, latest: LatestEvents, now: datetime) -> None:
        """Read one file into ``latest``, each event with its true instant in BOBO_TIMEZONE.

        A reading that occurs twice (fall-back) is resolved by the file's modification time, a
        true instant not before the event; one that never occurs (spring-forward) is moved
        forward by the gap, with a WARNING. An event more than FUTURE_EVENT_TOLERANCE ahead of
        ``now`` is held back, unless this machine's clock is not trusted this pass (AtHoc's
        contradicts it: "ahead of this clock" then means nothing)."""
        latest_allowed = now + FUTURE_EVENT_TOLERANCE if self._clock_trusted else None
        reader = ZoneReader(self.settings.bobo_timezone)
        debug = log.isEnabledFor(logging.DEBUG)
        seen = state.seen if self.writer.auditing and not self.dry_run else None
        try:
            state.snapshot = snapshot = read_snapshot(state.path)
            state.sha256 = snapshot.sha256
            modified = datetime.fromtimestamp(snapshot.fingerprint.mtime_ns / 1e9, UTC)
            for item in read_bobo_file(state.path):
                if isinstance(item, BadRow):
                    if item.open_end and self._may_still_grow(snapshot, now):
                        # The rows before it are complete and used; the file waits for the rest.
                        state.left = (
                            f"its last line (row {item.row_number}) has no line ending and does not "
                            "parse: probably still being written; left for the next pass (a bad row "
                            f"once the file has not changed for {self._growth_patience():g} s)"
                        )
                        continue
                    state.bad.append(item)
                    log.warning("%s row %d: %s", state.name, item.row_number, item.reason)
                    continue
                instant, kind = reader.instant(item.event_time, modified)
                if kind is Reading.SKIPPED:
                    log.warning(
                        "%s row %d: %s does not exist in %s (the clocks went forward); read as %s",
                        state.name,
                        item.row_number,
                        f"{item.event_time:%Y-%m-%d %H:%M:%S}",
                        self.settings.bobo_timezone,
                        show(instant),
                    )
                elif kind is Reading.REPEATED and debug:
                    log.debug(
                        "%s row %d: %s occurs twice in %s (the clocks went back); the file's modification "
                        "time %s makes it %s",
                        state.name,
                        item.row_number,
                        f"{item.event_time:%Y-%m-%d %H:%M:%S}",
                        self.settings.bobo_timezone,
                        show(modified),
                        show(instant),
                    )
                if latest_allowed is not None and instant > latest_allowed:
                    # Applied, it would make every real event of that person "not newer" until
                    # then. Held back instead: the file is retried, and fails with this reason
                    # if the clocks do not agree by then.
                    problem = (
                        f"row {item.row_number}: DateTime_Created {item.event_time:%Y-%m-%d %H:%M:%S} is more "
                        f"than {FUTURE_EVENT_TOLERANCE.total_seconds() / 3600:g} h ahead of this server's "
                        "clock (check the clock of the BOBO terminal or of this server)"
                    )
                    state.held.append(problem)
                    log.warning("%s %s; held back", state.name, problem)
                    if seen is not None:
                        state.future.append((item.employee_id, item.transaction.value, instant, item.row_number))
                    continue
                state.rows += 1
                latest.add(item, index, instant)
                if seen is not None:
                    seen.append((item.employee_id, item.transaction.value, instant, item.row_number))
        except InputFileError as exc:
            self._read_failed(state, exc.os_error, exc.reason)
        except OSError as exc:
            self._read_failed(state, exc, f"cannot read: {exc.strerror or exc}")

    def _read_failed(self, state: _FileState, exc: Optional[OSError], reason: str) -> None:
        """Sort a read error: gone (nothing to decide), transient (retried), or permanent."""
        if isinstance(exc, FileNotFoundError):
            state.left = "it is no longer in CSV_DIRECTORY (renamed or moved away since it was listed)"
        elif exc is not None and is_transient(exc):
            winerror = getattr(exc, "winerror", None)
            state.transient = f"cannot read: {exc.strerror or exc}" + (
                f" (Windows error {winerror})" if winerror else ""
            )
        else:
            state.unreadable = reason

    def _growth_patience(self) -> float:
        return max(GROWTH_PATIENCE_MIN_SECONDS, GROWTH_PATIENCE_SETTLES * self.settings.file_settle_seconds)

    def _may_still_grow(self, snapshot: Snapshot, now: datetime) -> bool:
        """Modified too recently for a last line cut short to be the writer's final word."""
        return now.timestamp() - snapshot.fingerprint.mtime_ns / 1e9 < self._growth_patience()

    def _map(self, events: dict[str, ResolvedEvent], report: PassReport, now: datetime) -> dict[str, ResolvedEvent]:
        """employee ID -> event, keyed now by LOGIN_ID-resolvable employees only."""
        match = self._lookup(list(events))
        missing = [e for e in events if e not in match.found]
        if (
            missing
            and self.settings.sync_mappings
            and not self._synced_this_pass
            and mapping_is_stale(self.db.get_sync_state(), now)
        ):
            log.info("%d employee ID(s) have no mapping; syncing the mapping from AtHoc once", len(missing))
            if self.sync_worker_mappings(now):
                match = self._lookup(list(events))
                missing = [e for e in events if e not in match.found]
        mapping = match.found
        self._report_unmapped([e for e in missing if e not in self._reported_unmapped], match, report)
        by_login: dict[str, ResolvedEvent] = {}
        for employee_id, event in events.items():
            login_id = mapping.get(employee_id)
            if login_id is None:
                continue
            # Two employee IDs mapped to one AtHoc user (a stale or hand-edited mapping):
            # that user's latest event wins, as for one employee.
            other = by_login.get(login_id)
            if other is None or event.key > other.key:
                by_login[login_id] = event
        return by_login

    def _report_unmapped(self, missing: list[str], match: CollarMatch, report: PassReport) -> None:
        """One WARNING per unmapped employee and pass; in exact mode, naming a collar that is
        the same number written differently (COLLAR_MATCH=numeric would match it)."""
        hints: dict[str, list[tuple[str, str]]] = {}
        if missing and self.settings.collar_match == "exact":
            numbers = {n for e in missing if (n := numeric_form(e)) is not None}
            if numbers and self._memory_mapping is None:
                hints = self.db.numeric_mappings(numbers)
        for employee_id in missing:
            self._reported_unmapped.add(employee_id)
            report.counts.unmapped += 1
            candidates = match.ambiguous.get(employee_id)
            number = numeric_form(employee_id)
            similar = hints.get(number, []) if number is not None else []
            if candidates:
                log.warning(
                    "employee %s matches several AtHoc users with COLLAR_MATCH=numeric (%s); not sent: "
                    "give each person one collar number",
                    employee_id,
                    ", ".join(f"{collar}: {login}" for collar, login in candidates),
                )
            elif similar:
                log.warning(
                    "employee %s has no AtHoc user (no %s match); not sent. AtHoc has %s: the same "
                    "number written differently (COLLAR_MATCH=numeric would match it)",
                    employee_id,
                    self.settings.collar_id_field,
                    ", ".join(f"{collar} ({login})" for collar, login in similar),
                )
            else:
                log.warning(
                    "employee %s has no AtHoc user (no %s match); not sent", employee_id, self.settings.collar_id_field
                )

    def _settle(self, states: list[_FileState], record: Callable[[], None], report: PassReport, now: datetime) -> None:
        """Commit the decisions on BATCH_SIZE files at a time, each group in one transaction
        (``record`` writes AtHoc's answers into the desired state inside the first, before any
        file is settled), then move that group's files. A crash between groups leaves the rest
        waiting: the next pass reads them again and finds their events applied."""
        size = self.settings.batch_size or len(states) or 1
        taken: set[str] = set()
        for start in range(0, max(len(states), 1), size):
            self._settle_group(states[start : start + size], record if start == 0 else None, report, now, taken)

    def _settle_group(
        self,
        states: list[_FileState],
        record: Optional[Callable[[], None]],
        report: PassReport,
        now: datetime,
        taken: set[str],
    ) -> None:
        counts = report.counts
        moves: list[tuple[_FileState, Path, Optional[str]]] = []
        with self.db.transaction():
            if record is not None:
                record()
            for state in states:
                counts.held += len(state.held)
                if state.left is not None:
                    counts.files_left += 1
                    log.info("%s: %s", state.name, state.left)
                    continue
                if state.transient is not None:
                    attempts = self.db.record_file_failure(state.name, state.transient, now)
                    if attempts < self.settings.max_retry_attempts:
                        counts.files_retry += 1
                        log.error(
                            "%s: %s; it stays in CSV_DIRECTORY and is tried again next pass (attempt %d of %d)",
                            state.name,
                            state.transient,
                            attempts,
                            self.settings.max_retry_attempts,
                        )
                        continue
                    reason: Optional[str] = (
                        f"could not be read in {attempts} attempts, the last: {state.transient} "
                        "(locked by another program, or no permission to read it)"
                    )
                else:
                    reason = state.fatal_reason()
                if reason is None and state.unanswered and not state.failures and not state.held:
                    counts.files_retry += 1
                    log.warning(
                        "%s: AtHoc did not answer %d update(s); kept for the next pass", state.name, state.unanswered
                    )
                    continue
                if reason is None and (state.failures or state.held):
                    problems = state.failures + state.held
                    attempts = self.db.record_file_failure(state.name, "; ".join(problems[:_REASONS_QUOTED]), now)
                    if attempts < self.settings.max_retry_attempts:
                        counts.files_retry += 1
                        log.warning(
                            "%s: %s; kept for retry (attempt %d of %d)",
                            state.name,
                            state.retry_problems(),
                            attempts,
                            self.settings.max_retry_attempts,
                        )
                        continue
                    reason = f"{state.retry_problems()}, still after {attempts} attempts: " + "; ".join(
                        problems[:_REASONS_QUOTED]
                    )
                if state.snapshot is not None:
                    # Move or remember only what was read: a file appended to, rewritten or
                    # replaced since stays, and the next pass reads it again.
                    changed = changed_since(state.path, state.snapshot)
                    if changed is not None:
                        counts.files_left += 1
                        log.warning("%s: %s; left for the next pass, which reads it again", state.name, changed)
                        continue
                if reason is not None:
                    counts.files_failed += 1
                    self.db.log_processing(state.name, state.rows, "failed", reason, now)
                    # Its attempts are forgotten once it is in the failed folder: if it cannot
                    # be moved, the count shows (in `status`) that it is stuck in CSV_DIRECTORY.
                    dst = self._journal_move(state, self.settings.failed_files_directory, taken)
                    moves.append((state, dst, reason))
                    continue
                counts.files_done += 1
                bad = f"{len(state.bad)} bad row(s)" if state.bad else None
                self.db.log_processing(state.name, state.rows, "partial" if bad else "success", bad, now)
                self.db.clear_file_retry(state.name)
                if self.settings.move_processed_files:
                    moves.append((state, self._journal_move(state, self.settings.processed_directory, taken), None))
                else:
                    fp = state.snapshot.fingerprint if state.snapshot is not None else state.waiting.fingerprint
                    self.db.remember_file(state.name, fp.size, state.sha256, fp.mtime_ns, now, fp.ctime_ns, fp.file_id)
                    log.info("%s: %s: done (left in place)", state.name, state.outcome())
        placed = [state for state, dst, reason in moves if self._carry_out(state, dst, reason, now, report)]
        if placed:
            # The journal entries of the files now in place, dropped in one commit for the
            # batch (a crash before it leaves entries that recover() finds already done).
            with self.db.transaction():
                for state in placed:
                    self.db.remove_pending_move(str(state.path))
                    self.db.clear_file_retry(state.name)

    def _recovered_move(self, src: Path, final: Path) -> None:
        """A move finished by recovery: if the crash came before a failed file's note was
        written, write it now from the reason the database recorded with the decision."""
        note = final.with_name(final.name + ".error.txt")
        if final.parent != self.settings.failed_files_directory:
            return
        self.db.clear_file_retry(src.name)
        if note.exists():
            return
        reason = self.db.last_failure_reason(src.name) or "not recorded (see the log of the interrupted run)"
        write_error_note(final, reason, self.clock())

    def _journal_move(self, state: _FileState, dest_dir: Path, taken: set[str]) -> Path:
        dst = self.mover.journal(state.path, dest_dir, state.sha256, taken)  # read, not kept: no copy per file
        taken.add(dst.name)
        return dst

    def _carry_out(
        self, state: _FileState, dst: Path, reason: Optional[str], now: datetime, report: PassReport
    ) -> bool:
        """Move one settled file; True when it moved (its journal entry is left to the caller).

        A failed file's note is written once the file is in the failed folder, never before:
        a move that fails leaves no stray note (a crash in between: recovery writes it)."""
        try:
            final = self.mover.move(state.path, dst, state.sha256, forget=False)
        except OSError as exc:
            message = f"{state.name}: could not move to {dst.parent}: {exc}; it stays for the next pass"
            log.error("%s", message)
            report.errors.append(message)
            return False
        if reason is not None:
            write_error_note(final, reason, now)
            log.error("%s: moved to %s: %s", state.name, final, reason)
        else:
            log.info("%s: %s: done, moved to %s", state.name, state.outcome(), final)
        return True

    # ------------------------------------------------------------------ after the files: replay and checks

    def _execute(
        self,
        writes: list[Write],
        states: dict[str, DesiredState],
        report: PassReport,
        now: datetime,
        *,
        stop_if_unanswered: bool = True,
    ) -> dict[str, UpdateResult]:
        """Send and settle writes that no file carries (replays, repairs, clears). A dry run
        only plans them. Raises AtHocUnavailable when AtHoc stopped answering (unless told
        not to: the caller then looks at the results itself)."""
        if not writes:
            return {}
        if self.dry_run:
            report.planned.extend(Planned(w.login_id, w.employee_id or "", w.value, w.reason.value, 0) for w in writes)
            return {}
        results = self.writer.send(writes, states, now, report.counts)
        with self.db.transaction():
            self.writer.settle(writes, results, states, now, report.counts)
        lost = next((r for r in results.values() if r.outcome is UpdateOutcome.UNANSWERED), None)
        if lost is not None and stop_if_unanswered:
            raise AtHocUnavailable(f"AtHoc did not answer ({lost.detail})")
        return results

    def replay(self, report: PassReport, now: datetime) -> None:
        """Send the desired value wherever AtHoc is not known to hold it and no file of this pass
        sent it: employees a mapping sync has just found (pending until then), employees whose
        collar moved or whose LOGIN_ID was renamed, writes that never got an answer, and
        book-ons that grew older than AUTO_CLEANUP_HOURS (cleared)."""
        hours = self.settings.auto_cleanup_hours
        aged_before = now - timedelta(hours=hours) if hours > 0 else None
        # After a mapping change anyone may map elsewhere now; otherwise only those AtHoc may
        # not hold the desired value for.
        listed = self.db.desired_states() if self._mapping_changed else self.db.replay_candidates(aged_before)
        candidates = {e: st for e, st in listed.items() if e not in self.writer.attempted}
        if not candidates:
            return
        found = self._lookup(list(candidates)).found
        fmt = self.settings.athoc_datetime_format
        chosen: dict[str, DesiredState] = {}
        for employee_id, state in candidates.items():
            login_id = found.get(employee_id)
            if login_id is None:
                continue  # pending: no AtHoc user has this collar number yet
            same = state.login_id is not None and state.login_id.casefold() == login_id.casefold()
            value = self.writer.desired(state, now)
            if same and state.written_value is not None and values_agree(state.written_value, value, fmt):
                continue
            if (state.last_answer or "").startswith(UpdateOutcome.FAILED.value) and not self._mapping_changed:
                continue  # AtHoc rejected it: the file's retries, a mapping change and the reconcile try again
            if not same and not is_current(state, now, hours):
                continue  # a book-on that is too old is not sent to an account that never had it
            chosen[login_id] = state
        owners = self._owners({login_id.casefold() for login_id in chosen}, candidates)
        writes = []
        for login_id, state in chosen.items():
            if owners.get(login_id.casefold()) != state.employee_id:
                continue  # another employee mapped to this user has a later event
            value = self.writer.desired(state, now)
            aged = value == "" and state.is_book_on
            reason = WriteReason.CLEANUP if aged else WriteReason.REPLAY
            writes.append(Write(login_id, value, state.employee_id, reason))
            log.info(
                "employee %s: sending %r to %s (%s)",
                state.employee_id,
                value,
                login_id,
                "book-on older than AUTO_CLEANUP_HOURS" if aged else _replay_reason(state, login_id),
            )
        self._execute(writes, candidates, report, now)

    def reconcile_due(self, now: datetime) -> bool:
        """RECONCILE_MINUTES since the last reconcile that ran to the end (or none yet)."""
        if self.settings.reconcile_minutes <= 0:
            return False
        last = self._previous_reconcile()
        return reconcile_due(last.started_at if last else None, now, self.settings.reconcile_minutes)

    def _take_listing(self, now: datetime, report: PassReport) -> bool:
        """Read every user (the listing the reconcile and cleanup of this pass share); it
        refreshes the mapping too, under the mapping sync's safety rules. True when read."""
        if self._listing is not None:
            return True
        if self._listing_failed:
            return False
        if self.settings.sync_mappings:
            if not self.sync_worker_mappings(now):
                report.errors.append("mapping sync failed")
            return self._listing is not None
        try:
            users = self.connect_athoc().get_all_users_with_attributes(self.settings.listing_fields)
        except AtHocError as exc:
            self._listing_failed = True
            report.errors.append(f"reading AtHoc's users failed: {exc}")
            log.error("reading AtHoc's users failed: %s", exc)
            return False
        self._keep_listing(users)
        return True

    def _keep_listing(self, users: list[dict[str, str]]) -> None:
        self._listing = {user["LOGIN_ID"]: user for user in users}
        self.writer.since_listing = {}

    def _listing_readings(self) -> Optional[dict[str, str]]:
        """LOGIN_ID -> duty value from this pass's listing, with this pass's writes since then;
        a user whose write since lost its answer is left out (not known). None: no listing."""
        if self._listing is None:
            return None
        since = self.writer.since_listing or {}
        field = self.settings.duty_status_field
        readings: dict[str, str] = {}
        for login_id, user in self._listing.items():
            key = login_id.casefold()
            if key in since:
                value = since[key]
                if value is not None:
                    readings[login_id] = value
            else:
                readings[login_id] = user.get(field, "")
        return readings

    def _mapped_employees(self) -> dict[str, list[str]]:
        """casefolded LOGIN_ID -> the employees of the desired state mapped to it now. Kept for
        the pass; a mapping sync or a new employee makes it be worked out again."""
        if self._by_login is None:
            by_login: dict[str, list[str]] = {}
            for employee_id, login_id in self._lookup(self.db.desired_employee_ids()).found.items():
                by_login.setdefault(login_id.casefold(), []).append(employee_id)
            self._by_login = by_login
        return self._by_login

    def _owners(self, keys: Iterable[str], states: dict[str, DesiredState]) -> dict[str, str]:
        """casefolded LOGIN_ID (of ``keys``) -> the employee whose account it is now: of all
        employees mapped to it (two IDs on one user, a stale or hand-edited mapping), the one
        with the latest event. Loads into ``states`` the states it needs."""
        by_login = self._mapped_employees()
        wanted = {key: by_login.get(key, []) for key in keys}
        missing = {e for employees in wanted.values() for e in employees if e not in states}
        if missing:
            states.update(self.db.desired_states(missing))
        owners: dict[str, str] = {}
        for key, employees in wanted.items():
            known = [e for e in employees if e in states]
            if known:
                owners[key] = max(known, key=lambda e: (states[e].event_at, e))
        return owners

    def check(self, report: PassReport, now: datetime, *, reconcile: bool, cleanup: bool, watch: bool = True) -> None:
        """Read AtHoc back and judge it (:func:`bobosync.reconcile.judge`): every employee's account
        at a reconcile; the accounts whose write lost its answer (``watch``, for
        RECONCILE_SUSPECT_MINUTES) and stale accounts; and, for the auto-cleanup, every value.
        Raises AtHocError when AtHoc cannot be read, AtHocUnavailable when it stops answering."""
        counts = report.counts
        client = self.connect_athoc()
        readings = self._listing_readings()
        every_value = readings is not None or cleanup  # else only the suspect and stale accounts are read
        if reconcile and readings is None:
            raise AtHocError("the reconcile needs a listing of every user and none could be read in this pass")
        states = self.db.desired_states() if reconcile or readings is not None else self.db.watched_states()
        watched = {
            e: st
            for e, st in states.items()
            if watch and e not in self.writer.attempted and (is_suspect(st, now) or st.stale_login is not None)
        }
        if readings is None:
            readings = {}
            wanted = {st.suspect_login for st in watched.values() if is_suspect(st, now)}
            wanted |= {st.stale_login for st in watched.values() if st.stale_login is not None}
            logins = sorted(login for login in wanted if login is not None)
            if logins:
                found = client.read_users(logins, ["LOGIN_ID", self.settings.duty_status_field])
                readings.update({login: user.get(self.settings.duty_status_field, "") for login, user in found.items()})
                counts.read_back += len(logins)
                gone = {login.casefold() for login in logins} - {login.casefold() for login in found}
                for st in watched.values():
                    if st.stale_login is not None and st.stale_login.casefold() in gone:
                        states[st.employee_id] = dataclasses.replace(st, stale_login=None, stale_value=None)
            if cleanup:
                readings.update(client.list_duty_values())
        is_old = stale_duty_judge(self.settings, now)
        if reconcile:
            relevant = {login.casefold() for login in readings}
        else:
            # Without a reconcile only the suspect and stale accounts, and values the cleanup
            # might clear, need their owner's desired state (not every on-duty officer's).
            relevant = {login.casefold() for login, value in readings.items() if is_old(value) is not False}
            relevant |= {
                login.casefold()
                for st in watched.values()
                for login in (st.suspect_login, st.stale_login)
                if login is not None
            }
        owners = self._owners(relevant, states) if relevant else {}
        # A suspect whose last write AtHoc rejected is not waiting for a lost write to land:
        # only a reconcile tries it again (a rejected value would be re-sent every pass).
        suspects = {
            st.suspect_login.casefold()
            for st in watched.values()
            if st.suspect_login is not None
            and is_suspect(st, now)
            and not (st.last_answer or "").startswith(UpdateOutcome.FAILED.value)
        }
        compare = set(owners) if reconcile else suspects
        previous = self._previous_reconcile() if reconcile else None
        rules = Rules(
            datetime_format=self.settings.athoc_datetime_format,
            cleanup_hours=self.settings.auto_cleanup_hours,
            now=now,
            value_is_old=is_old,
            cleanup=cleanup,
            repair=self.settings.reconcile_mode == "repair",
            repaired_since=previous.started_at if previous is not None else None,
        )
        judgement = judge(readings, states, owners, compare, rules)
        audit = self._read_audit(judgement, states, now)
        touched = self._note_judgement(judgement, states, now, report, every_value=every_value)
        for employee_id, state in list(states.items()):
            if state.suspect_login is not None and not is_suspect(state, now):
                states[employee_id] = end_suspicion(state, now)  # the window ran out: stop watching
                touched.append(employee_id)
        if (touched or audit) and not self.dry_run:
            with self.db.transaction():
                self.writer.save(states, touched, now)
                self.db.record_audit(audit)
        if reconcile:
            self._report_systematic(judgement, states, previous, report)
        writes = list({w.login_id.casefold(): w for w in judgement.writes}.values())
        results = self._execute(writes, states, report, now, stop_if_unanswered=False)
        left = [
            r
            for w in writes
            if w.reason is WriteReason.CLEANUP
            and (r := results.get(w.login_id)) is not None
            and r.outcome in (UpdateOutcome.FAILED, UpdateOutcome.UNANSWERED)
        ]
        if left:
            stale = sum(1 for w in writes if w.reason is WriteReason.CLEANUP)
            raise AtHocError(
                f"POST users/SyncByCommonNames: {len(left)} of {stale} stale {self.settings.duty_status_field} "
                f"value(s) not cleared ({left[0].login_id}: {left[0].detail}); the next cleanup tries again",
                method="POST",
                path="users/SyncByCommonNames",
            )
        lost = next((r for r in results.values() if r.outcome is UpdateOutcome.UNANSWERED), None)
        if lost is not None:
            raise AtHocUnavailable(f"AtHoc did not answer ({lost.detail})")

    def _read_audit(self, judgement: Judgement, states: dict[str, DesiredState], now: datetime) -> list[AuditRow]:
        """The read-backs worth a trace row: drift, and values other than the one last read
        (a read that finds what was read before adds nothing; the last read is in the state)."""
        if not self.writer.auditing:
            return []
        repair = self.settings.reconcile_mode == "repair"
        rows = [
            AuditRow(
                now,
                "read",
                "drift",
                d.employee_id,
                d.login_id,
                value=d.athoc_value,
                detail=f"the desired value is {d.desired_value!r}; "
                + ("repairing" if repair else "not repaired (RECONCILE_MODE=report)"),
            )
            for d in judgement.drift
        ]
        drifted = {d.employee_id for d in judgement.drift}
        for employee_id, value in judgement.read.items():
            state = states[employee_id]
            if employee_id not in drifted and value != state.athoc_value:
                rows.append(
                    AuditRow(
                        now,
                        "read",
                        "read",
                        employee_id,
                        state.login_id,
                        value=value,
                        detail="AtHoc holds the desired value",
                    )
                )
        return rows

    def _note_judgement(
        self,
        judgement: Judgement,
        states: dict[str, DesiredState],
        now: datetime,
        report: PassReport,
        *,
        every_value: bool,
    ) -> list[str]:
        """Log what the judgement found; put the values read and forgotten stale accounts in
        ``states``; return the employees whose state changed. ``every_value``: every user's
        value was read (a listing), not only some accounts'."""
        touched: list[str] = []
        for employee_id, value in judgement.read.items():
            states[employee_id] = read_back(end_suspicion(states[employee_id], now), value, now)
            touched.append(employee_id)
        for employee_id in judgement.forget_stale:
            states[employee_id] = dataclasses.replace(states[employee_id], stale_login=None, stale_value=None)
            touched.append(employee_id)
        repair = self.settings.reconcile_mode == "repair"
        for drift in judgement.drift:
            report.counts.drift += 1
            report.drift.append(drift)
            log.warning(
                "drift: employee %s, LOGIN_ID %s: AtHoc holds %r, the desired value is %r; %s",
                drift.employee_id,
                drift.login_id,
                drift.athoc_value,
                drift.desired_value,
                "repairing" if repair else "not repaired (RECONCILE_MODE=report)",
            )
        if judgement.unreadable:
            due = (
                list(judgement.unreadable)
                if self.dry_run
                else self.db.should_warn_unreadable(judgement.unreadable, now, timedelta(days=1))
            )
            for login_id in due:
                log.warning(
                    "AtHoc user %s has %s=%r, which does not match ATHOC_DATETIME_FORMAT %r; not clearing it "
                    "(said once a day)",
                    login_id,
                    self.settings.duty_status_field,
                    judgement.unreadable[login_id],
                    self.settings.athoc_datetime_format,
                )
        if every_value and not self.dry_run:
            # A user not unreadable in a full listing has a readable value or none now: should
            # the unreadable value come back, that is news, said at once.
            self.db.forget_unreadable(judgement.unreadable)
        return touched

    def _previous_reconcile(self) -> Optional[RunRecord]:
        return next((r for r in self.db.recent_runs("reconcile", limit=5) if r.status in ("ok", "partial")), None)

    def _report_systematic(
        self, judgement: Judgement, states: dict[str, DesiredState], previous: Optional[RunRecord], report: PassReport
    ) -> None:
        """Values repaired at the last reconcile (AtHoc said OK) and wrong again now: once, at
        ERROR, since AtHoc evidently does not keep what it accepts."""
        if previous is None:
            return
        since = previous.started_at
        repaired = sum(1 for st in states.values() if st.repaired_at is not None and st.repaired_at >= since)
        again = sum(1 for d in judgement.drift if d.again)
        if not repaired or again * 2 <= repaired:
            return
        report.systematic = True
        message = (
            f"{again} of the {repaired} value(s) repaired at the last reconcile are wrong again although AtHoc "
            f"answered OK: AtHoc accepts {self.settings.duty_status_field} but does not keep it (wrong "
            "attribute name or type? check DUTY_STATUS_FIELD with bobosync check)"
        )
        if previous.counts.get("systematic"):
            log.warning("%s", message)
        else:
            log.error("%s", message)
        report.errors.append(message)

    def run_cleanup(self, now: Optional[datetime] = None) -> int:
        """Only the auto-cleanup: clear duty values older than AUTO_CLEANUP_HOURS. Returns how
        many were cleared; raises AtHocError (recorded in the run history first)."""
        now = as_utc(now or self.clock())
        report = PassReport(started_at=now)
        self._start_pass_state()
        self._checks(report, now, reconcile=False, watch=False)
        if report.errors:
            raise AtHocError(report.errors[0])
        return report.counts.cleared

    def _rebuild_if_due(self, now: datetime) -> None:
        """Once, on the first pass over a database that came from the original tool."""
        due = self.db.rebuild_due()
        if due is None:
            return
        log.warning(
            "this database comes from the original tool, which wrote a book-off's time instead of "
            "clearing it: rebuilding the desired state from the processed files once (bobosync "
            "rebuild-state), so that the reconcile corrects AtHoc"
        )
        try:
            result = self.rebuild_state(now=now)
        except OSError as exc:
            log.warning("rebuild of the desired state skipped: %s; run bobosync rebuild-state --from DIR", exc)
            self.db.finish_run(due, "failed", self.clock(), {}, f"{exc.strerror or exc}")
            return
        self.db.finish_run(due, "ok", self.clock(), result._asdict() | {"folder": str(result.folder)})

    def rebuild_state(
        self, folder: Optional[Path] = None, hours: Optional[float] = None, now: Optional[datetime] = None
    ) -> RebuildReport:
        """Read already-processed BOBO files of the last ``hours`` into the desired state, sending
        nothing: the next reconcile then corrects what AtHoc holds (the original tool wrote a
        book-off's time instead of clearing it). The files are read as a pass reads them and
        their events enter by THE order of events, so an event older than one already known
        changes nothing. Files stay where they are."""
        now = as_utc(now or self.clock())
        folder = (
            Path(folder)
            if folder is not None
            else (
                self.settings.processed_directory if self.settings.move_processed_files else self.settings.csv_directory
            )
        )
        hours = hours if hours is not None else (self.settings.auto_cleanup_hours or REBUILD_DEFAULT_HOURS)
        since_ns = (now - timedelta(hours=hours)).timestamp() * 1e9
        listing = list_waiting_files(folder, now.timestamp(), 0)
        states = [_FileState(f) for f in listing.ready if f.mtime_ns >= since_ns]
        latest = LatestEvents([(state.waiting.mtime_ns, state.name) for state in states])
        for index, state in enumerate(states):
            self._parse_into(state, index, latest, now)
        events = latest.events()
        desired = self.db.desired_states(events)
        fresh, _ = self._intake(events, desired, now, PassReport(started_at=now))
        if not self.dry_run:
            self.db.save_desired_states((desired[e], self.writer.desired(desired[e], now)) for e in fresh)
        result = RebuildReport(
            folder, hours, len(states), sum(s.rows for s in states), sum(len(s.bad) for s in states), len(fresh)
        )
        log.info("desired state rebuilt from %s: %s", folder, result.summary())
        return result

    def run_reconcile(self, now: Optional[datetime] = None) -> PassReport:
        """One reconcile now (``bobosync reconcile``): read every user, refresh the mapping, send
        what the mapping changes ask for, compare every employee's account with the desired
        state and repair per RECONCILE_MODE. A dry run changes nothing and lists the drift."""
        now = as_utc(now or self.clock())
        report = PassReport(started_at=now)
        self._start_pass_state()
        try:
            self.connect_athoc()
            if self._take_listing(now, report):
                self.replay(report, now)
                self._checks(report, now, reconcile=True, watch=True, cleanup=False)
        except (AtHocUnavailable, AtHocError) as exc:
            report.errors.append(str(exc))
            log.error("reconcile failed: %s", exc)
        return report

    def run_sync(self, now: Optional[datetime] = None) -> bool:
        """``--sync-users``: sync the mapping now, send what it changes (pending employees it
        found, collars moved), and reconcile with its listing. True when the sync succeeded."""
        now = as_utc(now or self.clock())
        report = PassReport(started_at=now)
        self._start_pass_state()
        synced = self.sync_worker_mappings(now)
        if self._listing is not None:
            self._follow_up(report, now)
        return synced and not report.errors

    def _checks(
        self, report: PassReport, now: datetime, *, reconcile: bool, watch: bool, cleanup: Optional[bool] = None
    ) -> None:
        """:meth:`check`, recorded in the run history as a ``reconcile`` and/or ``cleanup`` run."""
        cleanup = self.settings.auto_cleanup_hours > 0 if cleanup is None else cleanup
        kinds = [kind for kind, on in (("reconcile", reconcile), ("cleanup", cleanup)) if on]
        runs = {} if self.dry_run else {kind: self.db.start_run(kind, now, os.getpid()) for kind in kinds}
        counts = report.counts
        before = (counts.cleared, counts.drift, counts.repaired)
        error: Optional[str] = None
        try:
            self.check(report, now, reconcile=reconcile, cleanup=cleanup, watch=watch)
        except AtHocUnavailable as exc:
            error = str(exc)
        except AtHocError as exc:
            error = str(exc)
        if error is not None:
            what = " and ".join(kinds) or "read-back"
            message = f"auto-cleanup failed: {error}" if kinds == ["cleanup"] else f"{what} failed: {error}"
            report.errors.append(message)
            log.error("%s", message)
        cleared, drift, repaired = (counts.cleared - before[0], counts.drift - before[1], counts.repaired - before[2])
        if cleanup and error is None:
            log.info(
                "auto-cleanup: cleared %d duty value(s) older than %g h", cleared, self.settings.auto_cleanup_hours
            )
        if reconcile and error is None:
            log.info("reconcile: %d difference(s), %d repaired", drift, repaired)
        for kind, run_id in runs.items():
            run_counts: dict[str, object] = (
                {"cleared": cleared}
                if kind == "cleanup"
                else {"drift": drift, "repaired": repaired, "systematic": int(report.systematic)}
            )
            self.db.finish_run(run_id, "failed" if error else "ok", self.clock(), run_counts, error)

    def run_pass(self, now: Optional[datetime] = None, *, files_only: bool = False) -> PassReport:
        """One whole pass (see the module docstring). Never raises for AtHoc, file or input
        problems: they are logged, recorded and reflected in ``exit_code``.

        ``files_only``: the waiting files and nothing on AtHoc's own schedule (the scheduled
        mapping sync, replays, read-backs, reconcile, auto-cleanup, purges): what ``--watch``
        runs as soon as a file has settled, between its full passes. The syncs a file itself
        calls for (unmapped IDs with a mapping over an hour old) still happen."""
        now = as_utc(now or self.clock())
        report = PassReport(started_at=now)
        started = time.monotonic()
        self._start_pass_state()
        for note in () if files_only else self.settings.env_notes:  # a misspelt setting must not go unnoticed
            log.warning("%s", note)
        run_id = None
        if not self.dry_run:
            interrupted = self.db.mark_interrupted_runs(now)
            if interrupted:
                log.warning("%d earlier run(s) were interrupted before they finished", interrupted)
            run_id = self.db.start_run("pass", now, os.getpid())
            self._rebuild_if_due(now)
            self.mover.recover(self._recovered_move)
            self._adopt_carried_over()
            self._recover_sends(now)
        try:
            self._pass_body(report, now, files_only=files_only)
        except DatabaseError as exc:  # e.g. locked by another process for longer than the busy timeout
            report.errors.append(str(exc))
            log.error("pass stopped: %s; what it could not record is done again by the next pass", exc)
        except Exception as exc:  # the run history must say what happened, whatever it was
            report.errors.append(f"unexpected error: {exc!r}")
            log.exception("pass failed unexpectedly")
        report.seconds = time.monotonic() - started
        log.info("pass %s: %s, %.2f s", report.status, report.counts.summary(), report.seconds)
        if run_id is not None:
            self.db.finish_run(
                run_id, report.status, self.clock(), asdict(report.counts), "; ".join(report.errors) or None
            )
        return report

    def _pass_body(self, report: PassReport, now: datetime, *, files_only: bool) -> None:
        counts = report.counts
        try:
            client = self.connect_athoc()
        except AtHocError as exc:
            report.errors.append(f"cannot connect to AtHoc: {exc}")
            log.error("cannot connect to AtHoc: %s; no file was touched", exc)
            return
        requests_before = client.request_count
        self._check_clock(client, report, self._now())
        self.writer.aging = self._clock_trusted
        try:
            if not files_only and self.should_run_user_mapping_sync(now) and not self.sync_worker_mappings(now):
                report.errors.append("mapping sync failed")
            if self._process_files(report, now):
                log.warning(
                    "replays, read-backs, reconcile and auto-cleanup skipped: AtHoc stopped answering "
                    "in this pass; the next pass runs them"
                )
            elif not files_only or self._not_in_athoc:
                # A LOGIN_ID AtHoc does not have (rare) calls for the sync and the replay now.
                self._after_files(report, now)
        finally:
            counts.requests = client.request_count - requests_before
        if not self.dry_run and self._clock_trusted and not files_only:
            self._purge(now)

    def _check_clock(self, client: AtHocClient, report: PassReport, now: datetime) -> None:
        """Compare this machine's clock (``self.clock``, read as ``now``) with AtHoc's (the
        ``Date`` header of its last answer). Beyond CLOCK_TOLERANCE_MINUTES: ERROR, and the
        pass skips every decision that reads this machine's clock (``_clock_trusted``)."""
        tolerance = self.settings.clock_tolerance
        reading = client.clock_offset
        if tolerance is None:
            return
        if reading is None:
            log.debug("clock check: AtHoc's answers carry no Date header; not checked")
            return
        offset = reading.offset_at(now)
        log.debug(
            "clock check: this machine's clock is %s (give or take %.1f s)",
            describe_offset(offset),
            reading.uncertainty.total_seconds(),
        )
        if not reading.beyond(offset, tolerance):
            return
        self._clock_trusted = False
        message = (
            f"this machine's clock ({show(now)}) is {describe_offset(offset)} ({show(now + offset)}), "
            f"more than CLOCK_TOLERANCE_MINUTES={self.settings.clock_tolerance_minutes:g}; this pass skips "
            "the auto-cleanup, the hold on future events, the SYNC_RETRY_DAYS rule and the purges "
            "(files are still processed): set this machine's clock right (NTP)"
        )
        report.errors.append(message)
        log.error("%s", message)

    def _after_files(self, report: PassReport, now: datetime) -> None:
        """What a pass does once the files are done: a mapping sync if a LOGIN_ID proved stale,
        the reconcile's listing when due, replays, then read-backs, reconcile and cleanup."""
        if self._not_in_athoc and self.settings.sync_mappings and not self._synced_this_pass:
            log.info(
                "%d employee(s) mapped to a LOGIN_ID that is not in AtHoc; syncing the mapping now",
                len(self._not_in_athoc),
            )
            if not self.sync_worker_mappings(now):
                report.errors.append("mapping sync failed")
            self.writer.attempted -= self._not_in_athoc  # a retry for the re-mapped, by the replay
        if self.reconcile_due(now):
            self._take_listing(now, report)
        self._follow_up(report, now)

    def _follow_up(self, report: PassReport, now: datetime) -> None:
        """Replays, then the checks; a listing of every user read in this pass (for the mapping
        sync or because the reconcile was due) always serves a reconcile too. Both read this
        machine's clock (what is too old, how long a write stays suspect): skipped when it is
        not trusted."""
        if not self._clock_trusted:
            log.warning(
                "replays, read-backs, reconcile and auto-cleanup skipped: this machine's clock differs from AtHoc's"
            )
            return
        try:
            self.replay(report, now)
        except AtHocUnavailable as exc:
            report.errors.append(str(exc))
            log.error("AtHoc is not accepting updates: %s; the rest waits for the next pass", exc)
            return
        reconcile = self._listing is not None and self.settings.reconcile_minutes > 0
        self._checks(report, now, reconcile=reconcile, watch=True)

    def _process_files(self, report: PassReport, now: datetime) -> bool:
        """Process the waiting files batch by batch. True when AtHoc stopped answering."""
        try:
            listing, left_in_place = self._list_files(now)
        except OSError as exc:
            message = f"cannot list CSV_DIRECTORY {self.settings.csv_directory}: {exc.strerror or exc}"
            report.errors.append(message)
            log.error("%s", message)
            return False
        report.counts.files_waiting_young = listing.too_young
        for name in listing.bad_names:
            message = (
                f"{name} in CSV_DIRECTORY: its name is not valid UTF-8 text, so it cannot be recorded; "
                "it is left where it is: rename it"
            )
            report.errors.append(message)
            log.error("%s", message)
        for name, problem in listing.unexamined:
            message = f"{name} in CSV_DIRECTORY: {problem}; it is left where it is and looked at again next pass"
            report.errors.append(message)
            log.error("%s", message)
        if listing.too_young:
            log.info(
                "%d file(s) modified in the last %g s left for the next pass",
                listing.too_young,
                self.settings.file_settle_seconds,
            )
        if listing.from_the_future:
            log.warning(
                "%d file(s) have a modification time in the future (%s): is this server's clock "
                "behind the BOBO server's? They wait until this clock reaches their time",
                len(listing.from_the_future),
                ", ".join(listing.from_the_future[:5]),
            )
        log.debug("%d file(s) ready, %d already processed and left in place", len(listing.ready), left_in_place)
        if listing.ready and not self._has_mapping():
            # Without any mapping every row would count as "no AtHoc user" and every file as
            # done: the rows would be lost. Keep the files until a mapping sync succeeds.
            message = (
                f"the worker mapping is empty (no mapping sync has succeeded yet); "
                f"{len(listing.ready)} file(s) kept for the next pass"
            )
            report.errors.append(message)
            log.error("%s", message)
            return False
        if not listing.ready:
            return False
        if 0 < self.settings.batch_size < len(listing.ready):
            # A backlog: resolved as a whole, so that each person's final state is sent once
            # (not every state a later file overwrites); the files are then settled
            # BATCH_SIZE at a time (see _settle).
            log.info(
                "%d files waiting (more than BATCH_SIZE=%d): resolving them together, each person's "
                "latest event sent once",
                len(listing.ready),
                self.settings.batch_size,
            )
        try:
            self.process_file_batch(listing.ready, report, now)
        except (AtHocUnavailable, AtHocAuthError) as exc:
            report.errors.append(str(exc))
            log.error(
                "AtHoc is not accepting updates: %s; the files it did not answer for are left for the next pass", exc
            )
            return True
        return False

    def _start_pass_state(self) -> None:
        """Forget what the previous pass of this process knew about AtHoc and the clocks."""
        self._clock_trusted = True
        self.writer.aging = True
        self._synced_this_pass = False
        self._reported_unmapped = set()
        self._not_in_athoc = set()
        self._listing = None
        self._listing_failed = False
        self._mapping_changed = False
        self._by_login = None
        self.writer.since_listing = None
        self.writer.attempted = set()

    def _adopt_carried_over(self) -> None:
        """Events carried over from schema 3 get their local reading in BOBO_TIMEZONE, and the
        value the earlier version wrote for them (the reconcile then checks AtHoc holds it)."""
        fmt = self.settings.athoc_datetime_format
        adopted = self.db.adopt_carried_over(
            self.settings.bobo_timezone, lambda st: st.event_local.strftime(fmt) if st.is_book_on else ""
        )
        if adopted:
            log.info("desired state: %d employee(s) carried over from the last applied events", adopted)

    def _recover_sends(self, now: datetime) -> None:
        """Writes noted as sending by a run that died before recording the answer are suspect."""
        crashed = self.db.sending_states()
        if not crashed:
            return
        window = self.writer.window
        log.warning(
            "%d write(s) were sent by a run that ended before recording AtHoc's answer; they are read back for %g min",
            len(crashed),
            window.total_seconds() / 60,
        )
        states = {e: lost_in_crash(st, window) for e, st in crashed.items()}
        with self.db.transaction():
            self.db.save_desired_states((st, self.writer.desired(st, now)) for st in states.values())

    def _purge(self, now: datetime) -> None:
        settings = self.settings
        removed_logs = purge_old_logs(settings.log_directory, settings.log_purge_days, now.astimezone().date())
        removed_files = 0
        days = settings.processed_files_purge_days
        if days > 0:
            if settings.move_processed_files:
                removed_files = purge_old_files(settings.processed_directory, days, now, "*.[cC][sS][vV]")
            else:
                try:
                    present = [p.name for p in settings.csv_directory.iterdir()]
                except OSError:
                    present = None  # cannot tell what is still there: forget nothing
                if present is not None:
                    removed_files = self.db.purge_remembered(now - timedelta(days=days), keep=present)
        removed_audit = self.db.purge_audit(now - timedelta(days=settings.audit_retention_days))
        if removed_logs or removed_files or removed_audit:
            log.info(
                "purged %d old log file(s), %d processed file record(s) and %d audit row(s)",
                removed_logs,
                removed_files,
                removed_audit,
            )

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.db.close()

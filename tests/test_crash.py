"""Crash consistency: real passes killed with SIGKILL at chosen instants, then a clean pass.

Each campaign runs the real CLI in subprocesses against one simulator (which lives in this
process, so AtHoc's state survives every child's death) and kills them again and again: at
seeded random instants inside chosen phases (parsing, around the AtHoc call, around database
commits, mid-move, mid-copy between volumes, writing an error note, during the mapping sync,
during the cleanup, after a read-back of lost writes, after judging AtHoc against the desired
state, after replays and repairs; see :data:`tests.harness.KILL_PHASES`) and at purely random times while
the simulator is slowed down. New files keep arriving between runs: good ones, ones with bad
rows, bad ones, ones with updates AtHoc refuses, ones with events old enough to be cleaned up.
Then clean passes run until every file is settled, and the campaign checks:

* every input file is in exactly one of the CSV, processed and failed folders, byte-identical,
  with nothing else there and every failed file beside its ``.error.txt``;
* AtHoc holds exactly what :func:`tests.harness.expected_duty_values` computes from the rows
  written (latest event per mapped employee; stale values cleared; refused users untouched);
* no book-on time sent to a user ever went back in time, and one more pass sends nothing;
* ``PRAGMA integrity_check`` is ok, no move is left in the journal, every file has exactly
  one processing_log row, and the run history marks exactly the killed runs interrupted.

Scale: ``BOBOSYNC_CRASH_KILLS`` kills in all (default 24, spread over three variants: files
moved, files left in place, moves between volumes); ``BOBOSYNC_CRASH_SEED`` changes the
random choices. Heavy run: ``BOBOSYNC_CRASH_KILLS=210 python -m pytest tests/test_crash.py
-p no:timeout -o log_cli=true --log-cli-level=INFO``. POSIX only: SIGKILL does not exist on
Windows, where these tests are skipped.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Optional

import pytest

from bobosync.simulator import AtHocSimulator
from tests.conftest import TLSCerts
from tests.harness import (
    DUTY,
    FMT,
    SYNC_PATH_PART,
    Event,
    InputBook,
    InputFile,
    KillPlan,
    Tally,
    backwards_sends,
    collar_map,
    duty_values,
    expected_duty_values,
    folder_problems,
    integrity_check,
    query,
    run_history_problems,
    sim_env_file,
    start_cli,
    sync_sends,
    wrapped_command,
)

pytestmark = pytest.mark.skipif(os.name == "nt", reason="SIGKILL does not exist on Windows")

log = logging.getLogger(__name__)

KILLS = int(os.environ.get("BOBOSYNC_CRASH_KILLS", "24"))
SEED = int(os.environ.get("BOBOSYNC_CRASH_SEED", "20240617"))

CLEANUP_HOURS = 24.0
MAX_RETRY_ATTEMPTS = 2
EMPLOYEES = [f"{i:05d}" for i in range(1, 31)]  # event rows are about these
EXTERNAL = [f"user{i:05d}@force.example" for i in range(41, 51)]  # stale values set "by others"
UNMAPPED = ["90001", "90002"]  # in the files, not in AtHoc
REFUSED = {"user00007@force.example": "Attribute value rejected", "user00023@force.example": "Locked user"}

#: (phase, lowest N, highest N). "time" is a purely time-based kill.
PHASES: dict[str, tuple[int, int]] = {
    "parse": (1, 14),
    "request": (1, 9),
    "athoc_before": (1, 2),
    "athoc_after": (1, 3),
    "db_uncommitted": (1, 16),
    "db_committed": (1, 16),
    "move_start": (1, 3),
    "move_linked": (1, 3),
    "move_unlinked": (1, 3),
    "copy_synced": (1, 3),
    "error_note": (1, 1),
    "unchanged_checked": (1, 3),
    "mapping_listed": (1, 1),
    "mapping_written": (1, 1),
    "cleanup_queried": (1, 1),
    "cleanup_cleared": (1, 2),
    "read_back": (1, 1),
    "judged": (1, 1),
    "time": (0, 0),
}


#: Phases that certainly fall after a pass recorded its start and before it recorded its end.
MID_PASS = frozenset(
    {
        "parse",
        "athoc_before",
        "athoc_after",
        "move_start",
        "move_linked",
        "move_unlinked",
        "copy_synced",
        "error_note",
        "unchanged_checked",
        "mapping_listed",
        "mapping_written",
        "cleanup_queried",
        "cleanup_cleared",
        "read_back",
        "judged",
    }
)


@dataclass(frozen=True)
class Variant:
    name: str
    move_processed: bool
    cross_device: bool
    phases: tuple[str, ...]
    share: float  # of BOBOSYNC_CRASH_KILLS


VARIANTS = [
    Variant("moved", True, False, tuple(p for p in PHASES if p != "copy_synced"), 0.45),
    Variant(
        "left-in-place",
        False,
        False,
        (
            "parse",
            "request",
            "athoc_after",
            "db_uncommitted",
            "db_committed",
            "move_linked",
            "error_note",
            "unchanged_checked",
            "mapping_written",
            "cleanup_cleared",
            "read_back",
            "judged",
            "time",
        ),
        0.3,
    ),
    Variant(
        "cross-volume",
        True,
        True,
        (
            "move_start",
            "move_linked",
            "move_unlinked",
            "copy_synced",
            "athoc_after",
            "db_committed",
            "error_note",
            "unchanged_checked",
            "time",
        ),
        0.25,
    ),
]


@dataclass
class Outcome:
    label: str
    pid: int
    returncode: int
    stderr: str

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


@dataclass
class Campaign:
    """One crash campaign: a simulator, a folder set, a stream of files and of killed runs."""

    variant: Variant
    sim: AtHocSimulator
    root: Path
    rng: random.Random
    outcomes: list[Outcome] = field(default_factory=list)
    landed: Tally = field(default_factory=Tally)
    missed: Tally = field(default_factory=Tally)

    def __post_init__(self) -> None:
        self.csv_dir = self.root / "crown_files"
        self.processed_dir = self.root / "processed_files"
        self.failed_dir = self.root / "failed_files"
        self.db_path = self.root / "bobo_mapping.db"
        self.book = InputBook(self.csv_dir)
        self.initial = duty_values(self.sim)
        self.env_file = sim_env_file(
            self.sim,
            self.root,
            self.root.parent / "ca.pem",
            {
                "MOVE_PROCESSED_FILES": "true" if self.variant.move_processed else "false",
                "BATCH_SIZE": "2",
                "MAX_USERS_PER_REQUEST": "3",
                "MAX_RETRY_ATTEMPTS": str(MAX_RETRY_ATTEMPTS),
                "AUTO_CLEANUP_HOURS": str(CLEANUP_HOURS),
                "LOG_LEVEL": "INFO",
            },
        )

    # ------------------------------------------------------------------ input

    def add_files(self, count: int) -> None:
        rng = self.rng
        for _ in range(count):
            events = []
            for _ in range(rng.randint(1, 6)):
                pool = UNMAPPED if rng.random() < 0.05 else EMPLOYEES
                employee = pool[rng.randrange(len(pool))]
                when = self.book.clock.stale() if rng.random() < 0.15 else self.book.clock.fresh()
                events.append(Event("BON" if rng.random() < 0.6 else "BOF", employee, when))
            bad = [InputBook.bad_row(EMPLOYEES[0], k) for k in range(rng.randint(1, 2))] if rng.random() < 0.15 else []
            self.book.add(events, bad_rows=bad)

    def grow_a_waiting_file(self) -> None:
        """Append rows to a file still in the CSV folder (moved variants: there it is not yet
        done). A killed run may have read it, even decided about it and journalled its move:
        the checks before a move (and recovery's) must keep it to be read again."""
        waiting = [f for f in self.book.files if not f.bad and (self.csv_dir / f.name).exists()]
        if self.variant.move_processed and waiting:
            item = waiting[self.rng.randrange(len(waiting))]
            self.book.append(
                item, [Event("BON", EMPLOYEES[self.rng.randrange(len(EMPLOYEES))], self.book.clock.fresh())]
            )

    def add_bad_file(self) -> None:
        if self.rng.random() < 0.5:
            self.book.add_unreadable()
        else:
            self.book.add([], bad_rows=[InputBook.bad_row(EMPLOYEES[1], k) for k in range(2)])

    def set_external_stale_value(self) -> None:
        login = EXTERNAL[self.rng.randrange(len(EXTERNAL))]
        self.sim.set_attribute(login, DUTY, self.book.clock.stale().strftime(FMT))

    def force_mapping_sync(self) -> None:
        """What an operator does to force a sync: mark the last one failed."""
        if self.db_path.exists():
            query(self.db_path, "UPDATE sync_tracking SET status = 'error' WHERE sync_type = 'user_mapping'")

    # ------------------------------------------------------------------ runs

    def run(self, plan: Optional[KillPlan], *, kill_after: Optional[float] = None) -> Outcome:
        command = wrapped_command(self.env_file, kill=plan, cross_device=self.variant.cross_device)
        proc = start_cli(command, self.root)
        if kill_after is not None:
            try:
                proc.wait(kill_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        try:
            _, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"a pass ({plan}) hung for 90 s:\n{err[-3000:]}") from None
        label = str(plan) if plan is not None else ("time" if kill_after is not None else "clean")
        outcome = Outcome(label, proc.pid, proc.returncode, err)
        self.outcomes.append(outcome)
        if not outcome.killed:
            assert outcome.returncode in (0, 1), f"{label}: exit {outcome.returncode}\n{err[-3000:]}"
            assert "Traceback" not in err and "unexpectedly" not in err, f"{label}:\n{err[-3000:]}"
        return outcome

    def one_kill(self, phase: str) -> bool:
        """Prepare work for ``phase``, run a pass to be killed there; True if it was."""
        rng = self.rng
        if rng.random() < 0.3:
            self.sim.apply_late_writes()  # AtHoc finishes a request whose answer was lost
        if phase == "read_back":
            # A pass whose write times out on every try (AtHoc applies it later): the write
            # is suspect, and the pass to be killed reads it back.
            self.add_files(1)
            self.sim.fail_next(2, drop=True, hold=True, path_contains=SYNC_PATH_PART)
            self.run(None)
        elif phase == "cleanup_queried":
            self.run(None)  # a mapping sync left due by an earlier kill: its listing would serve the cleanup
        elif phase not in ("cleanup_cleared", "judged") and rng.random() < 0.1:
            self.sim.fail_next(2, drop=True, hold=True, path_contains=SYNC_PATH_PART)
        if rng.random() < 0.85:
            self.add_files(rng.randint(1, 3))
        if (
            phase == "error_note"
            or (phase.startswith("move") and not self.variant.move_processed)
            or rng.random() < 0.1
        ):
            self.add_bad_file()
        if phase.startswith("mapping"):
            self.force_mapping_sync()
        if phase.startswith("cleanup") or rng.random() < 0.2:
            self.set_external_stale_value()
        if phase == "unchanged_checked" or rng.random() < 0.15:
            self.grow_a_waiting_file()
        if phase == "time":
            self.sim.latency = 0.03
            try:
                outcome = self.run(None, kill_after=rng.uniform(0.3, 2.2))
            finally:
                self.sim.latency = 0.0
        else:
            low, high = PHASES[phase]
            outcome = self.run(KillPlan(phase, rng.randint(low, high)))
        (self.landed if outcome.killed else self.missed).add(phase)
        return outcome.killed

    def settle(self) -> None:
        """Clean passes until no file waits (a file refused by AtHoc needs several); lost
        writes still held by AtHoc land first (the read-backs must undo them)."""
        self.sim.clear_faults()
        self.sim.apply_late_writes()
        for _ in range(MAX_RETRY_ATTEMPTS + 3):
            self.run(None)
            if self.waiting_files() == []:
                return
        raise AssertionError(f"files still waiting after clean passes: {self.waiting_files()}")

    def waiting_files(self) -> list[str]:
        present = sorted(p.name for p in self.csv_dir.glob("*.csv"))
        if self.variant.move_processed or not present:
            return present
        remembered = {str(r[0]) for r in query(self.db_path, "SELECT name FROM remembered_files")}
        return [name for name in present if name not in remembered]

    # ------------------------------------------------------------------ checks

    def problems(self) -> list[str]:
        refused_employees = {login[4:9] for login in REFUSED}

        def may_fail(item: InputFile) -> bool:
            return any(e.employee_id in refused_employees for e in item.events)

        problems = folder_problems(
            self.book.files,
            self.csv_dir,
            self.processed_dir,
            self.failed_dir,
            move_processed=self.variant.move_processed,
            may_fail=may_fail,
        )
        expected = expected_duty_values(
            self.book.events(),
            collar_map(self.sim),
            self.initial_with_external(),
            now=datetime.now(),
            cleanup_hours=CLEANUP_HOURS,
            rejected=REFUSED,
        )
        actual = duty_values(self.sim)
        for login in sorted(set(expected) | set(actual)):
            if expected.get(login) != actual.get(login):
                problems.append(f"AtHoc {login}: {actual.get(login)!r}, expected {expected.get(login)!r}")
        problems += backwards_sends(sync_sends(self.sim), ignore=REFUSED)
        integrity = integrity_check(self.db_path)
        if integrity != "ok":
            problems.append(f"integrity_check: {integrity}")
        if query(self.db_path, "SELECT COUNT(*) FROM pending_moves") != [(0,)]:
            problems.append(f"moves left in the journal: {query(self.db_path, 'SELECT * FROM pending_moves')}")
        logged: dict[str, int] = {}
        for (name,) in query(self.db_path, "SELECT filename FROM processing_log"):
            logged[str(name)] = logged.get(str(name), 0) + 1
        for item in self.book.files:
            # A file grown after a killed run decided about it is decided again: once or more.
            if logged.get(item.name, 0) != 1 and not (item.grown and logged.get(item.name, 0) > 1):
                problems.append(f"{item.name}: {logged.get(item.name, 0)} processing_log rows, expected 1")
        killed = [o.pid for o in self.outcomes if o.killed]
        finished = [o.pid for o in self.outcomes if not o.killed]
        mid_pass = [o.pid for o in self.outcomes if o.killed and o.label.split(":")[0] in MID_PASS]
        problems += run_history_problems(self.db_path, killed, finished, mid_pass)
        return problems

    def initial_with_external(self) -> dict[str, str]:
        """Starting values plus the stale values set "by others" along the way (all stale)."""
        values = dict(self.initial)
        for login in EXTERNAL:
            values[login] = "01/01/2000 00:00:00"  # any stale time: the expectation is "cleared"
        return values


def _campaign(variant: Variant, tls_certs: TLSCerts, root: Path, kills: int, seed: int) -> Campaign:
    root.mkdir(parents=True)
    (root / "ca.pem").write_bytes(tls_certs.ca_pem.read_bytes())
    sim = tls_certs.simulator(60)
    sim.row_errors.update(REFUSED)
    sim.start()
    campaign = Campaign(variant, sim, root / "work", random.Random(seed))
    try:
        started = time.monotonic()
        campaign.add_files(3)
        landed = 0
        attempts = 0
        # Every phase of the variant at least once, in a shuffled order, then random phases.
        order = list(variant.phases)
        campaign.rng.shuffle(order)
        while (landed < kills or order) and attempts < 4 * kills + 2 * len(variant.phases):
            attempts += 1
            phase = order.pop() if order else campaign.rng.choice(variant.phases)
            landed += campaign.one_kill(phase)
        campaign.settle()
        before = len(sim.journal)
        final = campaign.run(None)
        assert final.returncode == 0, final.stderr[-3000:]
        assert sync_sends(sim, since=before) == [], "a pass after everything was settled sent updates"
        problems = campaign.problems()
        log.info(
            "crash campaign %s: %d kills in %d runs, %.1f s; landed: %s; missed: %s",
            variant.name,
            landed,
            len(campaign.outcomes),
            time.monotonic() - started,
            campaign.landed,
            campaign.missed,
        )
        assert landed >= kills, f"only {landed} of {kills} kills landed ({campaign.missed} missed)"
        assert not problems, "\n".join(problems[:40])
    finally:
        sim.stop()
    return campaign


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_killed_passes_lose_nothing_and_apply_the_latest_state(
    variant: Variant, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    kills = max(4, math.ceil(KILLS * variant.share))
    _campaign(variant, tls_certs, tmp_path / variant.name, kills, SEED + VARIANTS.index(variant))


def test_kill_between_athoc_and_the_moves_resends_once_and_moves_every_file(
    tls_certs: TLSCerts, tmp_path: Path
) -> None:
    """The instant the design is about: AtHoc has the updates, the database and folders do
    not know yet. The next pass sends the same values again (harmless) and settles."""
    root = tmp_path / "one"
    root.mkdir()
    (root / "ca.pem").write_bytes(tls_certs.ca_pem.read_bytes())
    sim = tls_certs.simulator(60)
    sim.start()
    try:
        variant = Variant("one", True, False, (), 0)
        campaign = Campaign(variant, sim, root / "work", random.Random(SEED))
        campaign.book.add([Event("BON", "00001", campaign.book.clock.fresh())])
        campaign.book.add([Event("BON", "00002", campaign.book.clock.fresh())])
        killed = campaign.run(KillPlan("athoc_after", 1))
        assert killed.killed, killed.stderr[-2000:]
        first = sync_sends(sim)
        assert [login for login, _ in first] == ["user00001@force.example", "user00002@force.example"]
        assert sorted(p.name for p in campaign.csv_dir.glob("*.csv")) == ["in_00001.csv", "in_00002.csv"]
        campaign.run(None)
        assert sync_sends(sim) == first + first  # sent again, same values, once
        assert campaign.problems() == []
    finally:
        sim.stop()


def test_kill_before_the_error_note_still_leaves_the_reason_beside_the_failed_file(
    tls_certs: TLSCerts, tmp_path: Path
) -> None:
    """Killed after a failed file was moved and before its note was written (the note comes
    only once the file is there): recovery writes it from the reason the database recorded."""
    root = tmp_path / "note"
    root.mkdir()
    (root / "ca.pem").write_bytes(tls_certs.ca_pem.read_bytes())
    sim = tls_certs.simulator(60)
    sim.start()
    try:
        campaign = Campaign(Variant("note", True, False, (), 0), sim, root / "work", random.Random(SEED))
        bad = campaign.book.add([], bad_rows=[InputBook.bad_row("00001", 1)])
        killed = campaign.run(KillPlan("error_note", 1))
        assert killed.killed, killed.stderr[-2000:]
        assert (campaign.failed_dir / bad.name).exists()
        assert not (campaign.failed_dir / (bad.name + ".error.txt")).exists()
        campaign.run(None)
        assert campaign.problems() == []
        note = (campaign.failed_dir / (bad.name + ".error.txt")).read_text(encoding="utf-8")
        assert "20240230143000" in note and "row 1" in note
    finally:
        sim.stop()


@pytest.mark.parametrize("phase", ["unchanged_checked", "move_start"])
def test_a_file_grown_after_a_kill_around_its_move_is_read_again_not_moved_unread(
    tls_certs: TLSCerts, tmp_path: Path, phase: str
) -> None:
    """Killed just after the file was found unchanged (decision not committed) or with its
    move journalled and not made; then BOBO appends a row. Neither the next pass's checks nor
    recovery may move it with that row unread."""
    root = tmp_path / phase
    root.mkdir()
    (root / "ca.pem").write_bytes(tls_certs.ca_pem.read_bytes())
    sim = tls_certs.simulator(60)
    sim.start()
    try:
        campaign = Campaign(Variant(phase, True, False, (), 0), sim, root / "work", random.Random(SEED))
        book = campaign.book
        item = book.add([Event("BON", "00004", book.clock.fresh())])
        killed = campaign.run(KillPlan(phase, 1))
        assert killed.killed, killed.stderr[-2000:]
        late = book.clock.fresh()
        book.append(item, [Event("BOF", "00004", late), Event("BON", "00005", late)])
        campaign.settle()
        assert campaign.problems() == []
        assert sim.get_user("user00005@force.example") == {
            **(sim.get_user("user00005@force.example") or {}),
            DUTY: late.strftime(FMT),
        }
    finally:
        sim.stop()


def test_after_a_kill_an_older_event_is_never_sent_over_a_newer_one_already_applied(
    tls_certs: TLSCerts, tmp_path: Path
) -> None:
    """Killed after AtHoc applied X's newer event, with a file R refused (kept for retry) and
    files A (X older), B (X newer) waiting. Before issue 13 the batches then shifted to [R, A],
    [B]; now every waiting file is resolved together, and the kill comes after the one send:
    in the next pass A's older event must not be sent over the newer one AtHoc already holds."""
    root = tmp_path / "shift"
    root.mkdir()
    (root / "ca.pem").write_bytes(tls_certs.ca_pem.read_bytes())
    sim = tls_certs.simulator(60)
    sim.row_errors.update(REFUSED)
    sim.start()
    try:
        campaign = Campaign(Variant("shift", True, False, (), 0), sim, root / "work", random.Random(SEED))
        book = campaign.book
        book.add([Event("BON", "00007", book.clock.fresh())])  # refused by AtHoc: kept for retry
        book.add([Event("BON", "00002", book.clock.fresh())])
        older, newer = book.clock.fresh(), book.clock.fresh()
        book.add([Event("BOF", "00011", older)])
        book.add([Event("BON", "00011", newer)])
        killed = campaign.run(KillPlan("athoc_after", 1))
        assert killed.killed, killed.stderr[-2000:]
        assert sim.get_user("user00011@force.example") == {
            **(sim.get_user("user00011@force.example") or {}),
            DUTY: newer.strftime(FMT),
        }
        campaign.settle()
        sent = [value for login, value in sync_sends(sim) if login == "user00011@force.example"]
        assert sent[0] == newer.strftime(FMT)
        assert "" not in sent, f"the older book-off was sent after the newer book-on was applied: {sent}"
        assert campaign.problems() == []
    finally:
        sim.stop()


def test_a_failed_first_mapping_sync_keeps_every_file_for_the_next_pass(tls_certs: TLSCerts, tmp_path: Path) -> None:
    """No mapping at all (the first sync failed, e.g. a pass killed or AtHoc failing during
    it): no employee can be mapped, and that must not make every row "unmapped" and every
    file done. The files wait; the next pass maps and applies them."""
    root = tmp_path / "nomap"
    root.mkdir()
    (root / "ca.pem").write_bytes(tls_certs.ca_pem.read_bytes())
    sim = tls_certs.simulator(60)
    sim.start()
    try:
        campaign = Campaign(Variant("nomap", True, False, (), 0), sim, root / "work", random.Random(SEED))
        campaign.book.add([Event("BON", "00003", campaign.book.clock.fresh())])
        sim.fail_next(4, 503, path_contains="users/search/basic")
        first = campaign.run(None)
        assert first.returncode == 1
        assert [p.name for p in campaign.csv_dir.glob("*.csv")] == ["in_00001.csv"], first.stderr[-3000:]
        assert sim.get_user("user00003@force.example") == {**(sim.get_user("user00003@force.example") or {}), DUTY: ""}
        sim.clear_faults()
        campaign.force_mapping_sync()
        campaign.settle()
        assert campaign.problems() == []
    finally:
        sim.stop()

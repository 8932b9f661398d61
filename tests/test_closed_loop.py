"""The closed loop (issue 8): each case that used to leave a person wrongly on or off duty,
silently, against the simulator; the reconcile in both modes, systematic drift, suspect
read-backs, the locally judged auto-cleanup, ``bobosync reconcile``; and a property test
mixing events, lost answers, late-applied writes and manual edits.

Passes run in-process with a chosen ``now`` (one per pass); file modification times are set
to match, so nothing is "from the future".
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bobosync.database import BOBODatabase
from bobosync.processor import BOBOProcessor, PassReport
from bobosync.settings import Settings
from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from bobosync.timebase import as_utc, utc_now
from tests.conftest import TLSCerts
from tests.harness import run_cli, sim_env_file
from tests.test_mapping import COLLAR, DUTY, FMT, NOW, duty, login
from tests.test_properties import examples

pytestmark = pytest.mark.usefixtures("propagate_logs")

SYNC = "SyncByCommonNames"


class Loop:
    """Passes at chosen times against one folder set and database; AtHoc's clock (its Date
    header) is set to agree with each pass's time."""

    def __init__(self, settings: Settings, sim: AtHocSimulator) -> None:
        self.settings = settings
        self.sim = sim
        self.count = 0

    def file(self, rows: Sequence[Sequence[str]], written: datetime) -> Path:
        self.count += 1
        path = write_bobo_file(self.settings.csv_directory, rows, written, name=f"f{self.count:03d}.csv")
        os.utime(path, (written.timestamp(), written.timestamp()))
        return path

    def run(self, now: datetime, **changes: Any) -> PassReport:
        processor = self.processor(now, **changes)
        try:
            return processor.run_pass(now)
        finally:
            processor.close()

    def processor(self, now: datetime, **changes: Any) -> BOBOProcessor:
        self.sim.clock_offset = as_utc(now) - utc_now()
        return BOBOProcessor(dataclasses.replace(self.settings, **changes), clock=lambda: now)

    def desired(self, employee_id: str) -> str:
        with BOBODatabase(self.settings.db_path, read_only=True) as db:
            rows = db.desired_states([employee_id])
        return rows[employee_id].source_file if employee_id in rows else ""


@pytest.fixture
def loop(sim_settings: Settings, simulator: AtHocSimulator) -> Loop:
    return Loop(dataclasses.replace(sim_settings, move_processed_files=True), simulator)


def lose_next_write(sim: AtHocSimulator, tries: int = 3) -> None:
    """The next SyncByCommonNames call times out on every try (HTTP_RETRY_ATTEMPTS=3); AtHoc
    keeps the request and applies it when the test says (apply_late_writes)."""
    sim.fail_next(tries, drop=True, hold=True, path_contains=SYNC)


# --------------------------------------------------------------------------- case 1


def test_case_1_a_write_applied_after_a_newer_book_off_is_undone_by_the_read_back(
    simulator: AtHocSimulator, loop: Loop
) -> None:
    on, off = NOW - timedelta(minutes=10), NOW - timedelta(minutes=5)
    loop.file([export_row("BON", "00001", on)], on)
    lose_next_write(simulator)
    first = loop.run(NOW)
    assert first.exit_code == 1 and first.counts.suspect == 1 and duty(simulator, 1) == ""
    loop.file([export_row("BOF", "00001", off)], off)
    second = loop.run(NOW + timedelta(minutes=1))
    assert second.exit_code == 0 and duty(simulator, 1) == ""
    # AtHoc finishes the lost request now, after the book-off: the officer shows on duty.
    assert simulator.apply_late_writes() == 3 and duty(simulator, 1) == on.strftime(FMT)
    third = loop.run(NOW + timedelta(minutes=2))
    assert (third.counts.read_back, third.counts.drift, third.counts.repaired) == (1, 1, 1)
    assert third.exit_code == 0 and duty(simulator, 1) == ""
    # The read-back agreeing does not end the window: the lost request could still land.
    fourth = loop.run(NOW + timedelta(minutes=3))
    assert fourth.counts.read_back == 1 and fourth.counts.drift == 0
    # After RECONCILE_SUSPECT_MINUTES (30) it does end.
    assert loop.run(NOW + timedelta(minutes=12), reconcile_minutes=0).counts.read_back == 1
    assert loop.run(NOW + timedelta(minutes=40), reconcile_minutes=0).counts.read_back == 0
    with BOBODatabase(loop.settings.db_path, read_only=True) as db:
        assert db.watched_states() == {}  # the ended window is forgotten, not looked at every pass


def test_case_1_an_auto_cleanup_clear_landing_after_a_new_book_on_is_undone(
    simulator: AtHocSimulator, loop: Loop
) -> None:
    old = NOW - timedelta(hours=30)
    loop.file([export_row("BON", "00002", old)], old)
    assert loop.run(old + timedelta(minutes=1)).exit_code == 0
    assert duty(simulator, 2) == old.strftime(FMT)
    lose_next_write(simulator)  # the clear of the book-on now over AUTO_CLEANUP_HOURS old
    assert loop.run(NOW).exit_code == 1
    assert duty(simulator, 2) == old.strftime(FMT)
    on = NOW + timedelta(minutes=1)
    loop.file([export_row("BON", "00002", on)], on)
    assert loop.run(NOW + timedelta(minutes=2)).exit_code == 0
    assert duty(simulator, 2) == on.strftime(FMT)
    simulator.apply_late_writes()  # the clear lands: an on-duty officer shown off duty
    assert duty(simulator, 2) == ""
    report = loop.run(NOW + timedelta(minutes=3))
    assert report.counts.repaired == 1 and duty(simulator, 2) == on.strftime(FMT)


# --------------------------------------------------------------------------- case 2


def test_case_2_a_new_starter_is_pending_then_sent_when_a_mapping_sync_finds_them(
    simulator: AtHocSimulator, loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    proc = loop.processor(NOW - timedelta(minutes=30))
    try:
        assert proc.sync_worker_mappings(NOW - timedelta(minutes=30))
    finally:
        proc.close()
    simulator.add_user({"LOGIN_ID": "new.starter@force.example", COLLAR: "07777", DUTY: ""})
    on = NOW - timedelta(minutes=5)
    loop.file([export_row("BON", "07777", on)], on)
    with caplog.at_level(logging.WARNING, logger="bobosync"):
        report = loop.run(NOW, reconcile_minutes=0)
    assert report.exit_code == 0 and report.counts.unmapped == 1 and report.counts.files_done == 1
    assert any("employee 07777 has no AtHoc user" in m for m in caplog.messages)
    assert (simulator.get_user("new.starter@force.example") or {})[DUTY] == ""
    assert loop.desired("07777") == "f001.csv"  # pending, not lost
    proc = loop.processor(NOW + timedelta(minutes=1))
    try:
        assert proc.run_sync(NOW + timedelta(minutes=1))  # --sync-users
    finally:
        proc.close()
    assert (simulator.get_user("new.starter@force.example") or {})[DUTY] == on.strftime(FMT)


def test_a_pending_book_on_too_old_is_not_sent_when_mapped(simulator: AtHocSimulator, loop: Loop) -> None:
    old = NOW - timedelta(hours=30)
    loop.file([export_row("BON", "07778", old), export_row("BOF", "07779", old)], old)
    assert loop.run(old + timedelta(minutes=1), reconcile_minutes=0).counts.unmapped == 2
    simulator.add_user({"LOGIN_ID": "late@force.example", COLLAR: "07778", DUTY: ""})
    simulator.add_user({"LOGIN_ID": "off@force.example", COLLAR: "07779", DUTY: "x"})
    simulator.clear_journal()
    proc = loop.processor(NOW)
    try:
        assert proc.run_sync(NOW)
    finally:
        proc.close()
    sent = [row for e in simulator.requests_to(SYNC) for row in e.json_body]
    assert sent == [{"LOGIN_ID": "off@force.example", DUTY: ""}]  # the book-off is current; the old book-on is not


# --------------------------------------------------------------------------- case 4


def test_case_4_the_desired_state_follows_a_moved_collar_and_clears_the_old_account(
    simulator: AtHocSimulator, loop: Loop
) -> None:
    on = NOW - timedelta(minutes=5)
    loop.file([export_row("BON", "00005", on)], on)
    assert loop.run(NOW).exit_code == 0 and duty(simulator, 5) == on.strftime(FMT)
    simulator.move_attribute(COLLAR, login(5), login(45))
    report = loop.run(NOW + timedelta(minutes=20))  # the reconcile's listing refreshes the mapping
    assert report.exit_code == 0, report.errors
    assert duty(simulator, 45) == on.strftime(FMT)
    assert duty(simulator, 5) == ""  # it held what bobosync wrote there: cleared
    assert report.counts.replayed == 1 and report.counts.cleared == 1


def test_an_old_account_changed_by_someone_else_is_left_alone(simulator: AtHocSimulator, loop: Loop) -> None:
    on = NOW - timedelta(minutes=5)
    loop.file([export_row("BON", "00006", on)], on)
    assert loop.run(NOW).exit_code == 0
    simulator.move_attribute(COLLAR, login(6), login(46))
    simulator.set_attribute(login(6), DUTY, "07/06/2026 08:00:00")  # not bobosync's value
    proc = loop.processor(NOW + timedelta(minutes=1))
    try:
        assert proc.run_sync(NOW + timedelta(minutes=1))
    finally:
        proc.close()
    assert duty(simulator, 46) == on.strftime(FMT)
    assert duty(simulator, 6) == "07/06/2026 08:00:00"


# --------------------------------------------------------------------------- case 5


def test_case_5_a_renamed_login_id_triggers_one_sync_and_a_retry(
    simulator: AtHocSimulator, loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    proc = loop.processor(NOW - timedelta(minutes=10))
    try:
        assert proc.sync_worker_mappings(NOW - timedelta(minutes=10))  # fresh: under an hour old
    finally:
        proc.close()
    simulator.rename_user(login(7), "renamed.seven@force.example")
    on = NOW - timedelta(minutes=2)
    loop.file([export_row("BON", "00007", on)], on)
    with caplog.at_level(logging.INFO, logger="bobosync"):
        report = loop.run(NOW, reconcile_minutes=0)
    assert report.exit_code == 0 and report.counts.not_in_athoc == 1 and report.counts.replayed == 1
    assert (simulator.get_user("renamed.seven@force.example") or {})[DUTY] == on.strftime(FMT)
    assert any("mapped to a LOGIN_ID that is not in AtHoc; syncing the mapping now" in m for m in caplog.messages)


# --------------------------------------------------------------------------- case 7


@pytest.mark.parametrize("server", ["dates as text", "untrimmed dates"])
def test_case_7_the_cleanup_judges_values_itself(
    simulator: AtHocSimulator, loop: Loop, caplog: pytest.LogCaptureFixture, server: str
) -> None:
    """A server comparing dd/mm/yyyy as text, or refusing to read a value with a trailing space
    as a date: every value older than AUTO_CLEANUP_HOURS is cleared all the same, and only those."""
    now = datetime(NOW.year, NOW.month, 2, 12, 0, 0)  # cutoff on the 1st: older values on later days sort after
    assert loop.run(now - timedelta(minutes=1)).exit_code == 0  # mapping synced, reconciled: not due now
    simulator.criteria_lt_as_text = server == "dates as text"
    simulator.criteria_untrimmed_dates = server == "untrimmed dates"
    stale = (now - timedelta(days=3)).strftime(FMT)  # e.g. 29/.. of the month before
    simulator.set_attribute(login(41), DUTY, stale)
    simulator.set_attribute(login(42), DUTY, (now - timedelta(hours=30)).strftime(FMT) + " ")
    simulator.set_attribute(login(43), DUTY, (now - timedelta(hours=2)).strftime(FMT))
    simulator.set_attribute(login(44), DUTY, "00/00/0000 not a date")
    simulator.clear_journal()
    with caplog.at_level(logging.WARNING, logger="bobosync"):
        report = loop.run(now, reconcile_minutes=0)
    assert report.exit_code == 0, report.errors
    assert (duty(simulator, 41), duty(simulator, 42)) == ("", "")
    assert duty(simulator, 43) == (now - timedelta(hours=2)).strftime(FMT)
    assert duty(simulator, 44) == "00/00/0000 not a date"
    assert report.counts.cleared == 2
    criteria = [e.query.get("Criteria") for e in simulator.requests_to("search/basic") if "Criteria" in e.query]
    assert criteria == [f"{DUTY} pr"]  # the server is asked only who has a value
    assert sum("00/00/0000 not a date" in m for m in caplog.messages) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bobosync"):
        loop.run(now + timedelta(minutes=1), reconcile_minutes=0)
        assert not any("not a date" in m for m in caplog.messages)  # once a day
        loop.run(now + timedelta(days=1, minutes=2), reconcile_minutes=0)
    assert sum("not a date" in m for m in caplog.messages) == 1
    # Mended by hand, then broken the same way again within the day: said again at once.
    simulator.set_attribute(login(44), DUTY, (now + timedelta(days=1)).strftime(FMT))
    loop.run(now + timedelta(days=1, minutes=3), reconcile_minutes=0)
    simulator.set_attribute(login(44), DUTY, "00/00/0000 not a date")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bobosync"):
        loop.run(now + timedelta(days=1, minutes=4), reconcile_minutes=0)
    assert sum("not a date" in m for m in caplog.messages) == 1


# --------------------------------------------------------------------------- case 8


def test_case_8_a_manual_edit_is_repaired_at_the_next_reconcile(
    simulator: AtHocSimulator, loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    on = NOW - timedelta(minutes=5)
    loop.file([export_row("BON", "00008", on), export_row("BOF", "00009", on)], on)
    assert loop.run(NOW).exit_code == 0
    simulator.set_attribute(login(8), DUTY, "")  # an operator clears an on-duty officer
    simulator.set_attribute(login(9), DUTY, on.strftime(FMT))  # and puts an off-duty one on
    simulator.set_attribute(login(30), DUTY, on.strftime(FMT))  # a user BOBO never mentioned
    assert loop.run(NOW + timedelta(minutes=5)).counts.drift == 0  # not due yet
    with caplog.at_level(logging.WARNING, logger="bobosync"):
        report = loop.run(NOW + timedelta(minutes=16))
    assert report.exit_code == 0 and (report.counts.drift, report.counts.repaired) == (2, 2)
    assert (duty(simulator, 8), duty(simulator, 9)) == (on.strftime(FMT), "")
    assert duty(simulator, 30) == on.strftime(FMT)  # never touched by the reconcile
    assert any(
        f"drift: employee 00008, LOGIN_ID {login(8)}: AtHoc holds '', the desired value is "
        f"'{on.strftime(FMT)}'; repairing" in m
        for m in caplog.messages
    )
    with BOBODatabase(loop.settings.db_path, read_only=True) as db:
        (run,) = db.recent_runs("reconcile", limit=1)
    assert run.counts == {"drift": 2, "repaired": 2, "systematic": 0}


def test_report_mode_only_reports(simulator: AtHocSimulator, loop: Loop) -> None:
    on = NOW - timedelta(minutes=5)
    loop.file([export_row("BON", "00010", on)], on)
    assert loop.run(NOW).exit_code == 0
    simulator.set_attribute(login(10), DUTY, "")
    simulator.clear_journal()
    report = loop.run(NOW + timedelta(minutes=16), reconcile_mode="report")
    assert (report.counts.drift, report.counts.repaired) == (1, 0) and duty(simulator, 10) == ""
    assert simulator.requests_to(SYNC) == []


def test_systematic_drift_is_an_error_once(
    simulator: AtHocSimulator, loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    on = NOW - timedelta(minutes=5)
    loop.file([export_row("BON", f"{i:05d}", on) for i in (11, 12, 13)], on)
    simulator.discard_attributes = {DUTY}  # AtHoc says OK and keeps nothing
    assert loop.run(NOW).exit_code == 0
    first = loop.run(NOW + timedelta(minutes=16))
    assert (first.counts.drift, first.counts.repaired, first.exit_code) == (3, 3, 0)
    with caplog.at_level(logging.WARNING, logger="bobosync"):
        second = loop.run(NOW + timedelta(minutes=32))
        third = loop.run(NOW + timedelta(minutes=48))
    assert second.exit_code == 1 and second.systematic and third.systematic
    errors = [r for r in caplog.records if "accepts On-Duty-DTG but does not keep it" in r.getMessage()]
    assert [r.levelname for r in errors] == ["ERROR", "WARNING"]


def test_reconcile_command_dry_run_lists_the_drift_and_changes_nothing(
    simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    env = sim_env_file(simulator, tmp_path / "site", tls_certs.ca_pem)
    root = env.parent
    write_bobo_file(
        root / "crown_files",
        [export_row("BON", "00014", NOW - timedelta(minutes=3))],
        NOW - timedelta(minutes=3),
        name="a.csv",
    )
    assert run_cli(env).returncode == 0
    clean = run_cli(env, "reconcile", "--dry-run")
    assert clean.returncode == 0, clean.stderr
    assert "no difference" in clean.stdout
    simulator.set_attribute(login(14), DUTY, "")
    before = (root / "bobo_mapping.db").read_bytes()
    dry = run_cli(env, "reconcile", "--dry-run")
    assert dry.returncode == 1, dry.stderr
    assert f"00014  {login(14)}  AtHoc: (empty)  desired: {(NOW - timedelta(minutes=3)).strftime(FMT)}" in dry.stdout
    assert duty(simulator, 14) == "" and (root / "bobo_mapping.db").read_bytes() == before
    real = run_cli(env, "reconcile")
    assert real.returncode == 1, real.stderr  # drift was found (and repaired)
    assert duty(simulator, 14) == (NOW - timedelta(minutes=3)).strftime(FMT)
    assert run_cli(env, "reconcile").returncode == 0


# --------------------------------------------------------------------------- the property


MAPPED = ("00001", "00002", "00003", "00004")

Step = tuple[str, int, int]  # (kind, employee index or 0, minute)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("event"), st.integers(0, len(MAPPED) - 1), st.integers(0, 1)),
        st.tuples(st.just("lost_event"), st.integers(0, len(MAPPED) - 1), st.integers(0, 1)),
        st.tuples(st.just("late"), st.just(0), st.just(0)),
        st.tuples(st.just("edit"), st.integers(0, len(MAPPED) - 1), st.integers(0, 1)),
        st.tuples(st.just("pass"), st.just(0), st.just(0)),
    ),
    min_size=1,
    max_size=10,
)


@settings(
    max_examples=examples(12),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=steps)
def test_after_a_reconcile_athoc_holds_the_desired_state_whatever_happened(
    simulator: AtHocSimulator, sim_settings: Settings, script: list[Step]
) -> None:
    for employee in MAPPED:  # the simulator outlives the example
        simulator.set_attribute(login(int(employee)), DUTY, "")
    simulator.clear_faults()
    simulator.apply_late_writes()
    simulator.set_attribute(login(int(MAPPED[0])), DUTY, "")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "crown_files").mkdir()
        loop = Loop(
            dataclasses.replace(
                sim_settings,
                csv_directory=root / "crown_files",
                processed_directory=root / "processed",
                failed_files_directory=root / "failed",
                db_path=root / "db.sqlite",
                log_directory=root / "logs",
                move_processed_files=True,
                http_retry_attempts=1,
            ),
            simulator,
        )
        latest: dict[str, tuple[datetime, str]] = {}
        clock = NOW - timedelta(hours=2)
        for kind, index, flavour in script:
            clock += timedelta(minutes=1)
            employee = MAPPED[index]
            if kind in ("event", "lost_event"):
                tx = "BON" if flavour else "BOF"
                latest[employee] = (clock, clock.strftime(FMT) if tx == "BON" else "")
                loop.file([export_row(tx, employee, clock)], clock)
                if kind == "lost_event":
                    lose_next_write(simulator, tries=1)
                loop.run(clock + timedelta(seconds=30), reconcile_minutes=0)
            elif kind == "late":
                simulator.apply_late_writes()
            elif kind == "edit":
                simulator.set_attribute(login(int(employee)), DUTY, "" if flavour else "01/01/2026 09:00:00")
            else:
                loop.run(clock + timedelta(seconds=30), reconcile_minutes=0)
        simulator.clear_faults()
        simulator.apply_late_writes()
        final = loop.run(clock + timedelta(minutes=1))  # the first reconcile of this database
        assert final.errors == [], final.errors
        for employee, (_, value) in latest.items():
            assert duty(simulator, int(employee)) == value, (employee, script)

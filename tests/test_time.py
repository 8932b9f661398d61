"""Time: true instants across DST, the one tie rule, and this machine's clock against AtHoc's.

The six cases of issue 7, each a real pass against the simulator with the pass's clock
injected (``BOBOProcessor(clock=...)``) and the simulator's clock (its ``Date`` header) set to
agree with it, unless the test is about them disagreeing. The machine's zone is Europe/London
for the whole module (TZ, tzset), as on the servers this is about; BOBO_TIMEZONE is set too.
The property test at the end spreads random events over a fall-back and a spring-forward night.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bobosync.database import SCHEMA_VERSION, BOBODatabase
from bobosync.processor import BOBOProcessor, PassReport
from bobosync.resolution import EventOrder
from bobosync.settings import Settings, load_settings
from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from bobosync.status import UNHEALTHY, collect_status
from bobosync.timebase import UTC, ClockOffset, Reading, ZoneReader, _candidates, latest_instant
from tests.conftest import TLSCerts
from tests.test_corpus import write_env

LONDON = ZoneInfo("Europe/London")
FMT = "%d/%m/%Y %H:%M:%S"
DUTY = "On-Duty-DTG"
#: Sunday 25 October 2026: at 02:00 BST the clocks go back to 01:00 GMT.
FALL_BACK = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
#: Sunday 29 March 2026: at 01:00 GMT the clocks go forward to 02:00 BST.
SPRING_FORWARD = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def london_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This machine's own zone is Europe/London (POSIX only: time.tzset)."""
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset to set this machine's zone (POSIX)")
    monkeypatch.setenv("TZ", "Europe/London")
    time.tzset()
    logger = logging.getLogger("bobosync")
    saved = logger.propagate
    logger.propagate = True
    yield
    logger.propagate = saved
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def london(sim_settings: Settings) -> Settings:
    return dataclasses.replace(sim_settings, bobo_timezone=LONDON, move_processed_files=True, sync_mappings=True)


def login(i: int) -> str:
    return f"user{i:05d}@force.example"


def duty(sim: AtHocSimulator, i: int) -> str:
    user = sim.get_user(login(i))
    assert user is not None
    return user.get(DUTY, "")


def reading(instant: datetime) -> datetime:
    """The BOBO reading (naive London wall-clock time) of a true instant."""
    return instant.astimezone(LONDON).replace(tzinfo=None)


def drop(folder: Path, name: str, rows: list[tuple[str, str, datetime]], modified: datetime) -> Path:
    """A BOBO file of (transaction, employee, true instant) rows, written at ``modified``."""
    path = write_bobo_file(folder, [export_row(tx, emp, reading(when)) for tx, emp, when in rows], modified, name=name)
    os.utime(path, (modified.timestamp(), modified.timestamp()))
    return path


def run_pass(
    settings: Settings,
    sim: AtHocSimulator,
    now: datetime,
    *,
    athoc_now: Optional[datetime] = None,
) -> PassReport:
    """One pass with this machine's clock at ``now`` and AtHoc's at ``athoc_now`` (default: the same)."""
    sim.clock_offset = (athoc_now or now) - datetime.now(UTC)
    processor = BOBOProcessor(settings, clock=lambda: now)
    try:
        return processor.run_pass()
    finally:
        processor.close()


# --------------------------------------------------------------------------- the time module


def test_readings_at_both_transitions() -> None:
    reader = ZoneReader(LONDON)
    first, second = FALL_BACK - timedelta(minutes=30), FALL_BACK + timedelta(minutes=30)  # both 01:30
    assert reading(first) == reading(second) == datetime(2026, 10, 25, 1, 30)
    local = datetime(2026, 10, 25, 1, 30)
    # The candidate not after the file's modification time and closest to it.
    assert reader.instant(local, first + timedelta(minutes=5)) == (first, Reading.REPEATED)
    assert reader.instant(local, second + timedelta(minutes=5)) == (second, Reading.REPEATED)
    # Both after it (a file modified before its own event: a wrong clock): the earlier one.
    assert reader.instant(local, first - timedelta(hours=1)) == (first, Reading.REPEATED)
    assert latest_instant(local, LONDON) == (second, Reading.REPEATED)
    # 01:30 does not exist on the spring-forward night: moved forward by the gap (02:30 BST).
    skipped = reader.instant(datetime(2026, 3, 29, 1, 30), SPRING_FORWARD)
    assert skipped == (SPRING_FORWARD + timedelta(minutes=30), Reading.SKIPPED)
    assert reader.instant(datetime(2026, 6, 1, 12, 0), SPRING_FORWARD) == (
        datetime(2026, 6, 1, 11, 0, tzinfo=UTC),
        Reading.EXACT,
    )


@pytest.mark.parametrize("zone", ["Europe/London", "Australia/Lord_Howe", "America/St_Johns", "UTC"])
def test_the_hour_cache_gives_what_the_zone_rules_give(zone: str) -> None:
    """Every minute of the days around both of 2026's changes (Lord Howe moves by 30 min)."""
    reader, fresh = ZoneReader(ZoneInfo(zone)), ZoneInfo(zone)
    witness = datetime(2027, 1, 1, tzinfo=UTC)
    for day in (
        datetime(2026, 3, 28),
        datetime(2026, 4, 4),
        datetime(2026, 10, 3),
        datetime(2026, 10, 24),
        datetime(2026, 11, 1),
    ):
        for minute in range(0, 3 * 24 * 60, 7):
            local = day + timedelta(minutes=minute)
            got = reader.instant(local, witness)
            first, second, kind = _candidates(local, fresh)  # the rules, row by row, no cache
            assert got == (second if kind is Reading.REPEATED else first, kind)
            if got.kind is Reading.EXACT:
                assert got.instant == local.replace(tzinfo=fresh).astimezone(UTC)


def test_clock_offset_from_a_date_header() -> None:
    sent = datetime(2026, 11, 10, 14, 0, 0, tzinfo=UTC)
    reading_ = ClockOffset.from_date_header(
        "Tue, 10 Nov 2026 14:03:00 GMT", sent, sent + timedelta(seconds=2), monotonic=100.0
    )
    assert reading_ is not None
    assert reading_.uncertainty == timedelta(seconds=1.5)  # half the round trip + half a second
    # At the reading: AtHoc is 3 min ahead (+0.5 s for the header's truncation, -1 s half trip).
    assert reading_.offset_at(sent + timedelta(seconds=1), monotonic=99.0) == timedelta(minutes=3, seconds=-0.5)
    # An hour later on the monotonic clock, with this machine's wall clock stepped a day ahead.
    later = reading_.offset_at(sent + timedelta(days=1, hours=1, seconds=1), monotonic=3699.0)
    assert later == timedelta(minutes=3, seconds=-0.5) - timedelta(days=1)
    assert reading_.beyond(later, timedelta(minutes=5))
    assert not reading_.beyond(timedelta(minutes=5), timedelta(minutes=5))
    assert ClockOffset.from_date_header(None, sent, sent) is None
    assert ClockOffset.from_date_header("not a date", sent, sent) is None


def test_settings_validate_the_zones_and_the_tolerance(sim_env: dict[str, str], tmp_path: Path) -> None:
    from bobosync.errors import ConfigError

    base = load_settings(env_file=tmp_path / ".env", environ={})
    assert base.athoc_zone == base.bobo_timezone  # ATHOC_TIMEZONE defaults to BOBO_TIMEZONE
    assert base.clock_tolerance == timedelta(minutes=5)
    chosen = load_settings(
        env_file=tmp_path / ".env",
        environ={
            "BOBO_TIMEZONE": "Europe/London",
            "ATHOC_TIMEZONE": "America/New_York",
            "CLOCK_TOLERANCE_MINUTES": "0",
        },
    )
    assert (chosen.bobo_timezone, chosen.athoc_zone) == (LONDON, ZoneInfo("America/New_York"))
    assert chosen.clock_tolerance is None
    with pytest.raises(ConfigError) as caught:
        load_settings(
            env_file=tmp_path / ".env",
            environ={"BOBO_TIMEZONE": "Europe/Londres", "ATHOC_TIMEZONE": "GMT+1", "CLOCK_TOLERANCE_MINUTES": "-1"},
        )
    text = str(caught.value)
    assert "BOBO_TIMEZONE='Europe/Londres'" in text and "ATHOC_TIMEZONE='GMT+1'" in text
    assert "CLOCK_TOLERANCE_MINUTES=-1.0" in text


# --------------------------------------------------------------------------- case 1: fall-back night


@pytest.mark.parametrize("passes", [1, 2])
def test_fall_back_book_off_forty_minutes_after_book_on_wins(
    simulator: AtHocSimulator, london: Settings, passes: int
) -> None:
    on = FALL_BACK - timedelta(minutes=10)  # 01:50 BST
    off = FALL_BACK + timedelta(minutes=10)  # 01:10 GMT, 20 real minutes later; reads earlier
    csv = london.csv_directory
    drop(csv, "a.csv", [("BON", "00001", on)], on + timedelta(minutes=1))
    if passes == 2:
        assert run_pass(london, simulator, on + timedelta(minutes=2)).exit_code == 0
        assert duty(simulator, 1) == "25/10/2026 01:50:00"
    drop(csv, "b.csv", [("BOF", "00001", off)], off + timedelta(minutes=1))
    report = run_pass(london, simulator, off + timedelta(minutes=2))
    assert report.exit_code == 0, report.errors
    assert duty(simulator, 1) == ""


@pytest.mark.parametrize("passes", [1, 2])
def test_fall_back_book_on_after_book_off_wins(simulator: AtHocSimulator, london: Settings, passes: int) -> None:
    off = FALL_BACK - timedelta(minutes=20)  # 01:40 BST
    on = FALL_BACK + timedelta(minutes=12)  # 01:12 GMT
    csv = london.csv_directory
    simulator.set_attribute(login(2), DUTY, "24/10/2026 18:00:00")
    drop(csv, "a.csv", [("BOF", "00002", off)], off + timedelta(minutes=1))
    if passes == 2:
        assert run_pass(london, simulator, off + timedelta(minutes=2)).exit_code == 0
        assert duty(simulator, 2) == ""
    drop(csv, "b.csv", [("BON", "00002", on)], on + timedelta(minutes=1))
    assert run_pass(london, simulator, on + timedelta(minutes=2)).exit_code == 0
    assert duty(simulator, 2) == "25/10/2026 01:12:00"  # the value is still BOBO's local reading


def test_spring_forward_gap_reading_is_moved_forward_with_a_warning(
    simulator: AtHocSimulator, london: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_bobo_file(
        london.csv_directory, [export_row("BON", "00003", datetime(2026, 3, 29, 1, 30))], SPRING_FORWARD, name="gap.csv"
    )
    stamp = (SPRING_FORWARD + timedelta(minutes=35)).timestamp()
    os.utime(path, (stamp, stamp))
    with caplog.at_level(logging.WARNING, logger="bobosync"):
        report = run_pass(london, simulator, SPRING_FORWARD + timedelta(minutes=40))
    assert report.exit_code == 0 and duty(simulator, 3) == "29/03/2026 01:30:00"
    (warning,) = [r.getMessage() for r in caplog.records if "does not exist" in r.getMessage()]
    assert "gap.csv row 1" in warning and "2026-03-29 02:30:00+01:00" in warning


# --------------------------------------------------------------------------- case 2: cleanup across DST


@pytest.mark.parametrize(
    ("value", "now", "cleared"),
    [
        # Spring: 13:00 GMT on Saturday to 13:30 BST on Sunday is 23.5 real hours: kept.
        ("28/03/2026 13:00:00", datetime(2026, 3, 29, 12, 30, tzinfo=UTC), False),
        ("28/03/2026 13:00:00", datetime(2026, 3, 29, 13, 30, tzinfo=UTC), True),
        # Autumn: 13:00 BST on Saturday to 12:30 GMT on Sunday is 24.5 real hours: cleared.
        ("24/10/2026 13:00:00", datetime(2026, 10, 25, 12, 30, tzinfo=UTC), True),
        ("24/10/2026 13:00:00", datetime(2026, 10, 25, 11, 30, tzinfo=UTC), False),
        # A value read twice (01:30 on the fall-back night) takes the later instant.
        ("25/10/2026 01:30:00", FALL_BACK + timedelta(hours=24, minutes=15), False),
        ("25/10/2026 01:30:00", FALL_BACK + timedelta(hours=24, minutes=45), True),
    ],
)
def test_auto_cleanup_counts_real_hours_across_dst(
    simulator: AtHocSimulator, london: Settings, value: str, now: datetime, cleared: bool
) -> None:
    simulator.set_attribute(login(4), DUTY, value)
    report = run_pass(london, simulator, now)
    assert report.exit_code == 0, report.errors
    assert duty(simulator, 4) == ("" if cleared else value)


# --------------------------------------------------------------------------- case 3: clock a day ahead


def test_a_clock_a_day_ahead_skips_the_cleanup_and_the_mapping_recovers_after(
    simulator: AtHocSimulator, london: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    true_now = datetime(2026, 11, 10, 14, 0, tzinfo=UTC)
    on_duty = (true_now - timedelta(hours=2)).astimezone(LONDON).strftime(FMT)
    simulator.set_attribute(login(5), DUTY, on_duty)
    with caplog.at_level(logging.ERROR, logger="bobosync"):
        report = run_pass(london, simulator, true_now + timedelta(days=1), athoc_now=true_now)
    assert report.exit_code == 1
    (error,) = [r.getMessage() for r in caplog.records if "CLOCK_TOLERANCE_MINUTES" in r.getMessage()]
    assert "2026-11-11 14:00:00+00:00" in error and "2026-11-10 14:00" in error  # both clocks
    assert re.search(r"is (23 h 59|24 h 0) min ahead of AtHoc's", error)  # and the difference
    assert duty(simulator, 5) == on_duty  # the auto-cleanup did not run
    with BOBODatabase(london.db_path, read_only=True) as db:
        state = db.get_sync_state()
    assert state is not None and state.last_sync_time is not None and state.last_sync_time > true_now

    # The clock is set back; an officer new in AtHoc books on. The mapping sync recorded a
    # day ahead counts as due (never fresh), so the new collar number is mapped at once.
    simulator.add_user({"LOGIN_ID": "new.officer@force.example", "Collar-Number": "77777"})
    drop(london.csv_directory, "new.csv", [("BON", "77777", true_now)], true_now + timedelta(seconds=20))
    report = run_pass(london, simulator, true_now + timedelta(minutes=1))
    assert report.exit_code == 0, report.errors
    new = simulator.get_user("new.officer@force.example")
    assert new is not None and new.get(DUTY) == true_now.astimezone(LONDON).strftime(FMT)
    assert duty(simulator, 5) == on_duty


def test_no_date_header_means_no_clock_check(simulator: AtHocSimulator, london: Settings) -> None:
    simulator.send_date = False
    try:
        report = run_pass(london, simulator, datetime.now(UTC) + timedelta(days=3), athoc_now=datetime.now(UTC))
    finally:
        simulator.send_date = True
    assert report.exit_code == 0, report.errors


# --------------------------------------------------------------------------- case 4: one tie rule


@pytest.mark.parametrize(("batch_size", "passes"), [(1, 1), (2, 1), (0, 1), (1, 2), (10, 2)])
def test_two_events_in_the_same_second_end_the_same_whatever_the_batching(
    simulator: AtHocSimulator, london: Settings, batch_size: int, passes: int
) -> None:
    settings = dataclasses.replace(london, batch_size=batch_size)
    when = datetime(2026, 11, 10, 9, 0, 0, tzinfo=UTC)
    drop(settings.csv_directory, "x_on.csv", [("BON", "00006", when)], when + timedelta(seconds=30))
    if passes == 2:
        run_pass(settings, simulator, when + timedelta(minutes=1))
    # A later export says the mistaken book-on was undone in the same second.
    drop(settings.csv_directory, "a_off.csv", [("BOF", "00006", when)], when + timedelta(seconds=40))
    assert run_pass(settings, simulator, when + timedelta(minutes=2)).exit_code == 0
    assert duty(simulator, 6) == ""


# --------------------------------------------------------------------------- case 5: status across DST


def test_status_ages_are_real_time_across_dst(simulator: AtHocSimulator, london: Settings) -> None:
    # Spring: a good pass at 00:59:30 GMT; one real minute later it is 02:00:30 BST.
    assert run_pass(london, simulator, SPRING_FORWARD - timedelta(seconds=30)).exit_code == 0
    with BOBODatabase(london.db_path, read_only=True) as db:
        report = collect_status(london, db, SPRING_FORWARD + timedelta(seconds=30))
    assert report.health != UNHEALTHY, report.reasons
    assert report.passes.last_activity is not None
    # Autumn: a pass at 01:50 BST; 55 real minutes later the wall clock says 01:45 GMT.
    assert run_pass(london, simulator, FALL_BACK - timedelta(minutes=10)).exit_code == 0
    with BOBODatabase(london.db_path, read_only=True) as db:
        report = collect_status(london, db, FALL_BACK + timedelta(minutes=45))
    assert report.health == UNHEALTHY
    assert any("no pass for 55 min" in r.message and "01:50:00+01:00" in r.message for r in report.reasons)


def test_status_counts_a_pass_recorded_in_the_future_as_stale(simulator: AtHocSimulator, london: Settings) -> None:
    when = datetime(2026, 11, 10, 14, 0, tzinfo=UTC)
    run_pass(london, simulator, when + timedelta(days=1), athoc_now=when)
    with BOBODatabase(london.db_path, read_only=True) as db:
        report = collect_status(london, db, when + timedelta(minutes=1))
    assert report.health == UNHEALTHY
    assert any("in the future" in r.message for r in report.reasons)


def test_run_history_is_stored_as_utc_with_microseconds(simulator: AtHocSimulator, london: Settings) -> None:
    from tests.harness import query

    run_pass(london, simulator, datetime(2026, 7, 1, 12, 0, 0, 250000, tzinfo=UTC))
    (started,) = query(london.db_path, "SELECT started_at FROM run_history WHERE kind = 'pass'")
    assert started == ("2026-07-01T12:00:00.250000+00:00",)


# --------------------------------------------------------------------------- case 6: terminal behind


def test_an_older_event_from_a_newer_file_is_reported_as_behind(
    simulator: AtHocSimulator, london: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    when = datetime(2026, 11, 10, 9, 30, tzinfo=UTC)
    drop(london.csv_directory, "first.csv", [("BON", "00007", when)], when + timedelta(seconds=10))
    assert run_pass(london, simulator, when + timedelta(minutes=1)).exit_code == 0
    # A terminal whose clock is 15 minutes behind exports a book-off a little later.
    drop(
        london.csv_directory,
        "second.csv",
        [("BOF", "00007", when - timedelta(minutes=15))],
        when + timedelta(minutes=2),
    )
    with caplog.at_level(logging.WARNING, logger="bobosync"):
        report = run_pass(london, simulator, when + timedelta(minutes=3))
    assert report.counts.behind == 1 and report.counts.superseded == 1
    assert duty(simulator, 7) == "10/11/2026 09:30:00"  # a late file never undoes a newer status
    (warning,) = [r.getMessage() for r in caplog.records if "clock behind" in r.getMessage()]
    for part in ("employee 00007", "second.csv row 1", "first.csv row 1", "09:15:00", "09:30:00"):
        assert part in warning


# --------------------------------------------------------------------------- the property


NIGHTS = (FALL_BACK, SPRING_FORWARD)
EMPLOYEES = ("00011", "00012", "00013")


@st.composite
def nights(draw: st.DrawFn) -> tuple[datetime, list[tuple[datetime, list[tuple[str, str, datetime]]]], int, int]:
    """Files (modification time, rows) over two hours around a DST change, each file written
    up to 50 minutes after its events (truthful: never before them); a batch size; and how
    many files each pass finds."""
    night = draw(st.sampled_from(NIGHTS))
    files = []
    for _ in range(draw(st.integers(1, 6))):
        modified = night + timedelta(minutes=draw(st.integers(-60, 60)))
        rows = [
            (
                draw(st.sampled_from(["BON", "BOF"])),
                draw(st.sampled_from(EMPLOYEES)),
                modified - timedelta(minutes=draw(st.sampled_from([0, 1, 10, 30, 50]))),
            )
            for _ in range(draw(st.integers(1, 4)))
        ]
        files.append((modified, rows))
    return night, files, draw(st.sampled_from([0, 1, 2])), draw(st.integers(1, 3))


@settings(
    max_examples=int(os.environ.get("BOBOSYNC_PROPERTY_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=nights())
def test_any_batching_over_dst_nights_ends_at_the_latest_event_by_true_instant(
    simulator: AtHocSimulator,
    tls_certs: TLSCerts,
    case: tuple[datetime, list[tuple[datetime, list[tuple[str, str, datetime]]]], int, int],
) -> None:
    night, files, batch_size, per_pass = case
    event("fall-back night" if night == FALL_BACK else "spring-forward night")
    reader = ZoneReader(LONDON)
    for modified, rows in files:
        for _, _, when in rows:
            event(f"reading {reader.instant(reading(when), modified).kind.value}")
    for employee in EMPLOYEES:
        simulator.set_attribute(f"user{employee}@force.example", DUTY, "")
    logging.getLogger("bobosync").setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as folder:
            write_env(
                simulator,
                tls_certs.ca_pem,
                Path(folder),
                FILE_SETTLE_SECONDS="0",
                BATCH_SIZE=str(batch_size),
                MOVE_PROCESSED_FILES="true",
                AUTO_CLEANUP_HOURS="0",
                BOBO_TIMEZONE="Europe/London",
            )
            settings_ = load_settings(env_file=Path(folder) / ".env", environ={})
            named = [(modified, f"f{i}.csv", rows) for i, (modified, rows) in enumerate(files)]
            order = sorted(named, key=lambda f: (f[0], f[1]))
            expected: dict[str, tuple[tuple[datetime, datetime, str, int], str, datetime]] = {}
            for modified, name, rows in order:
                for row, (tx, employee, when) in enumerate(rows):
                    key = (when, modified, name, row)
                    if employee not in expected or key > expected[employee][0]:
                        expected[employee] = (key, tx, when)
            for start in range(0, len(order), per_pass):  # files arrive in passes, oldest first
                for modified, name, rows in order[start : start + per_pass]:
                    drop(settings_.csv_directory, name, rows, modified)
                last = order[min(start + per_pass, len(order)) - 1][0]
                report = run_pass(settings_, simulator, last + timedelta(minutes=1))
                assert report.exit_code == 0, report.errors
    finally:
        logging.getLogger("bobosync").setLevel(logging.NOTSET)
    for employee in EMPLOYEES:
        user = simulator.get_user(f"user{employee}@force.example")
        assert user is not None
        want = ""
        if employee in expected and expected[employee][1] == "BON":
            want = reading(expected[employee][2]).strftime(FMT)
        assert user.get(DUTY, "") == want, (employee, expected.get(employee))


# --------------------------------------------------------------------------- schema 1 -> 2


def test_a_schema_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    """What bobosync 2.0 (schema 1; schema 2 only added remembered_files columns) wrote, naive
    local times in a London summer: converted to instants in bobosync's tables, the original's
    formats in the original's tables."""
    import sqlite3

    from bobosync.database import _migrate_0_to_1

    path = tmp_path / "bobo_mapping.db"
    conn = sqlite3.connect(path, isolation_level=None)
    _migrate_0_to_1(conn)
    conn.execute("PRAGMA user_version = 1")
    local = "2026-07-01T13:00:00"  # 12:00 UTC
    conn.execute("INSERT INTO employee_last_event VALUES ('00001', ?, 'BON', 'u1', 'f.csv', ?)", (local, local))
    conn.execute("INSERT INTO events_in_flight VALUES ('00002', ?, ?)", (local, local))
    conn.execute(
        "INSERT INTO run_history (kind, started_at, finished_at, status, duration_seconds) "
        "VALUES ('pass', ?, '2026-07-01T13:00:02', 'ok', 2.0)",
        (local,),
    )
    conn.execute("INSERT INTO remembered_files VALUES ('f.csv', 1, 'aa', 5, ?)", (local,))
    conn.execute("INSERT INTO pending_moves VALUES ('a', 'b', 'aa', ?)", (local,))
    conn.execute("INSERT INTO sync_tracking VALUES ('user_mapping', '2026-07-01', ?, 'success', 3, ?)", (local, local))
    conn.execute(
        "INSERT INTO processing_log (filename, processed_at, records_processed, status) "
        "VALUES ('new.csv', ?, 1, 'success'), ('old.csv', '2026-06-30 08:00:00', 1, 'success')",
        (local,),
    )
    conn.execute("INSERT INTO worker_mapping VALUES ('00001', 'u1', ?)", (local,))
    conn.execute("INSERT INTO file_retry_tracking VALUES ('r.csv', 1, ?, ?, 'x')", (local, local))
    conn.close()

    with BOBODatabase(path) as db:
        assert db.schema_version == SCHEMA_VERSION
        # The last applied event is carried over into the desired state (schema 4); an event
        # in flight is not: its file was kept and is read again.
        (applied,) = db.desired_states().values()
        assert applied.order == EventOrder(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), 0, "f.csv", 0)
        assert (applied.employee_id, applied.login_id) == ("00001", "u1")
        (run,) = db.recent_runs()
        assert (run.started_at, run.duration_seconds) == (datetime(2026, 7, 1, 12, 0, tzinfo=UTC), 2.0)
        state = db.get_sync_state()
        assert state is not None and state.last_sync_time == datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    from tests.harness import query

    instant = "2026-07-01T12:00:00+00:00"
    assert query(path, "SELECT event_at, recorded_at FROM desired_state") == [(instant, instant)]
    assert query(path, "SELECT started_at, finished_at FROM run_history") == [
        ("2026-07-01T12:00:00.000000+00:00", "2026-07-01T12:00:02.000000+00:00")
    ]
    assert query(path, "SELECT processed_at FROM remembered_files") == [(instant,)]
    assert query(path, "SELECT started_at FROM pending_moves") == [(instant,)]
    # The original's tables: CURRENT_TIMESTAMP text (UTC); its own rows were already that.
    assert query(path, "SELECT filename, processed_at FROM processing_log ORDER BY filename") == [
        ("new.csv", "2026-07-01 12:00:00"),
        ("old.csv", "2026-06-30 08:00:00"),
    ]
    assert query(path, "SELECT last_updated FROM worker_mapping") == [("2026-07-01 12:00:00",)]
    assert query(path, "SELECT first_attempt, last_attempt FROM file_retry_tracking") == [
        ("2026-07-01 12:00:00", "2026-07-01 12:00:00")
    ]
    # sync_tracking keeps the local text operators edit; bobosync's column holds the instant.
    assert query(path, "SELECT last_sync_time, last_success_time FROM sync_tracking") == [(local, instant)]

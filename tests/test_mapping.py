"""The worker mapping: collar matching (COLLAR_MATCH), shared collars, and the mapping sync's
second read before a mapped user is dropped; against the simulator where AtHoc is involved."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bobosync.database import BOBODatabase
from bobosync.errors import ConfigError
from bobosync.mapping import mapping_from_users, match_collars, numeric_form, numeric_index, unlisted_logins
from bobosync.processor import BOBOProcessor
from bobosync.settings import Settings, load_settings
from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from tests.legacy_db import create_legacy_database

FMT = "%d/%m/%Y %H:%M:%S"
DUTY = "On-Duty-DTG"
COLLAR = "Collar-Number"
NOW = datetime.now().replace(microsecond=0)


def login(i: int) -> str:
    return f"user{i:05d}@force.example"


def duty(sim: AtHocSimulator, i: int) -> str:
    return (sim.get_user(login(i)) or {}).get(DUTY, "")


pytestmark = pytest.mark.usefixtures("propagate_logs")


def run_pass(settings: Settings, now: datetime = NOW) -> int:
    proc = BOBOProcessor(settings)
    try:
        return proc.run_pass(now).exit_code
    finally:
        proc.close()


# --------------------------------------------------------------------------- pure functions


def test_numeric_form_drops_leading_zeros_of_all_digit_collars_only() -> None:
    assert numeric_form("05990") == "5990"
    assert numeric_form("5990") == "5990"
    assert numeric_form("000") == "0"
    assert numeric_form("PC123") is None
    assert numeric_form("") is None
    assert numeric_form("\u0661\u0662") is None  # Arabic-Indic digits are not a collar number here


def test_match_collars_prefers_the_exact_text_and_never_guesses() -> None:
    mapping = {"5990": "a@x", "005990": "b@x", "123": "c@x", "0123": "c@x", "77": "d@x"}
    wanted = ["5990", "05990", "0123", "00123", "077", "PC1"]
    exact = {e: mapping[e] for e in wanted if e in mapping}
    assert match_collars(wanted, exact).found == {"5990": "a@x", "0123": "c@x"}
    numbers = {n for e in wanted if (n := numeric_form(e)) is not None}
    match = match_collars(wanted, exact, numeric_index(mapping, numbers))
    # 00123 -> 123 and 0123 are the same user: no ambiguity. 05990 -> two users: ambiguous.
    assert match.found == {"5990": "a@x", "0123": "c@x", "00123": "c@x", "077": "d@x"}
    assert match.ambiguous == {"05990": [("005990", "b@x"), ("5990", "a@x")]}


def test_mapping_from_users_orders_shared_collars_and_lists_every_login() -> None:
    users = [
        {"LOGIN_ID": "B@x", COLLAR: " 00007 "},
        {"LOGIN_ID": "a@x", COLLAR: "00007"},
        {"LOGIN_ID": "c@x", COLLAR: ""},
        {"LOGIN_ID": " ", COLLAR: "00009"},
    ]
    read = mapping_from_users(users, COLLAR)
    assert read.mapping == {"00007": "a@x"}
    assert read.shared == {"00007": ["a@x", "B@x"]}
    assert read.listed == frozenset({"a@x", "b@x", "c@x"})
    assert unlisted_logins({"1": "A@x", "2": "gone@x", "3": "Gone@X"}, read.listed) == ["Gone@X", "gone@x"]


def test_database_numeric_mappings(tmp_path: Path) -> None:
    with BOBODatabase(tmp_path / "m.db") as db:
        db.replace_mappings({"5990": "a@x", "05990": "b@x", "0": "z@x", "000": "zz@x", "PC5990": "p@x"}, NOW)
        assert db.numeric_mappings(["5990", "0", "42"]) == {
            "5990": [("05990", "b@x"), ("5990", "a@x")],
            "0": [("0", "z@x"), ("000", "zz@x")],
        }
        assert db.numeric_mappings([]) == {}


def test_collar_match_setting_is_validated(tmp_path: Path) -> None:
    required = (
        "ATHOC_SERVER_URL=https://athoc.example\nCLIENT_ID=c\nCLIENT_SECRET=s\nAPIUSER=u\nPASSWORD=p\nORG_CODE=O\n"
    )
    env = tmp_path / ".env"
    env.write_text(required, encoding="utf-8")
    assert load_settings(env_file=env, environ={}).collar_match == "exact"
    assert load_settings(env_file=env, environ={"COLLAR_MATCH": "Numeric"}).collar_match == "numeric"
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=env, environ={"COLLAR_MATCH": "fuzzy"})
    assert caught.value.problems == ["COLLAR_MATCH='fuzzy': expected one of exact, numeric"]


# --------------------------------------------------------------------------- against AtHoc


@pytest.fixture
def settings(sim_settings: Settings) -> Settings:
    return dataclasses.replace(sim_settings, move_processed_files=True)


def test_case_6_collar_stored_without_its_leading_zero_is_matched_with_numeric(
    simulator: AtHocSimulator, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """AtHoc stores 5990 for BOBO's 05990: with COLLAR_MATCH=numeric the officer is mapped; in
    exact mode the warning says what would match. An ambiguous number is never guessed."""
    simulator.set_attribute(login(7), COLLAR, "5990")
    simulator.set_attribute(login(8), COLLAR, "612")
    simulator.set_attribute(login(9), COLLAR, "0612")
    t = NOW - timedelta(minutes=5)
    write_bobo_file(
        settings.csv_directory, [export_row("BON", "05990", t), export_row("BON", "00612", t)], t, name="a.csv"
    )
    with caplog.at_level(logging.WARNING, logger="bobosync"):
        assert run_pass(settings) == 0
    assert duty(simulator, 7) == ""
    assert any(
        "employee 05990 has no AtHoc user" in m
        and "AtHoc has 5990 (user00007@force.example)" in m
        and "COLLAR_MATCH=numeric" in m
        for m in caplog.messages
    )

    caplog.clear()
    numeric = dataclasses.replace(settings, collar_match="numeric")
    write_bobo_file(
        settings.csv_directory,
        [export_row("BON", "05990", t + timedelta(minutes=1)), export_row("BON", "00612", t + timedelta(minutes=1))],
        t,
        name="b.csv",
    )
    with caplog.at_level(logging.WARNING, logger="bobosync"):
        assert run_pass(numeric) == 0
    assert duty(simulator, 7) == (t + timedelta(minutes=1)).strftime(FMT)
    assert duty(simulator, 8) == duty(simulator, 9) == ""
    assert any(
        "employee 00612 matches several AtHoc users with COLLAR_MATCH=numeric (0612: "
        "user00009@force.example, 612: user00008@force.example)" in m
        for m in caplog.messages
    )


def test_the_numeric_sync_reports_numbers_written_twice(
    simulator: AtHocSimulator, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.set_attribute(login(8), COLLAR, "612")
    simulator.set_attribute(login(9), COLLAR, "0612")
    proc = BOBOProcessor(dataclasses.replace(settings, collar_match="numeric"))
    try:
        with caplog.at_level(logging.WARNING, logger="bobosync"):
            assert proc.sync_worker_mappings(NOW)
    finally:
        proc.close()
    assert any("collar numbers 0612, 612 are the same number on different AtHoc users" in m for m in caplog.messages)


def test_case_3_paging_drift_does_not_drop_a_serving_officer(
    simulator: AtHocSimulator, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A user removed while the mapping sync pages through the listing shifts the Offset
    pages: the officer on the shifted boundary is missing from the listing, and only a
    second read tells that from a leaver."""
    proc = BOBOProcessor(settings)
    try:
        assert proc.sync_worker_mappings(NOW - timedelta(hours=3))
        simulator.max_limit = 10  # pages of 10: user 11 opens page 1
        simulator.remove_user(login(30))  # a leaver
        simulator.after_page(0, lambda sim: sim.remove_user(login(3)))  # listed on page 0, then gone
        with caplog.at_level(logging.INFO, logger="bobosync"):
            assert proc.sync_worker_mappings(NOW - timedelta(minutes=30))
        mappings = proc.db.all_mappings()
        runs = proc.db.recent_runs("mapping_sync", limit=1)
    finally:
        proc.close()
    assert mappings.get("00011") == login(11)
    assert "00030" not in mappings  # the leaver: the second read confirms it
    assert mappings.get("00003") == login(3)  # listed: dropped by the next sync
    assert runs[0].counts["found_by_second_read"] == 1
    assert any("1 mapped user(s) missing from the listing were found by a second read" in m for m in caplog.messages)
    assert any("a second read confirms 1 mapped user(s) are no longer in AtHoc" in m for m in caplog.messages)
    second = [e for e in simulator.requests_to("search/basic") if "Criteria" in e.query]
    assert [e.query["Criteria"] for e in second] == [f"LOGIN_ID eq '{login(11)}' or LOGIN_ID eq '{login(30)}'"]

    t = NOW - timedelta(minutes=2)
    write_bobo_file(settings.csv_directory, [export_row("BON", "00011", t)], t, name="on.csv")
    assert run_pass(settings) == 0
    assert duty(simulator, 11) == t.strftime(FMT)


def test_a_failed_second_read_keeps_the_old_mapping(simulator: AtHocSimulator, settings: Settings) -> None:
    proc = BOBOProcessor(settings)
    try:
        assert proc.sync_worker_mappings(NOW - timedelta(hours=3))
        simulator.remove_user(login(4))
        simulator.fail_next(3, status=503, path_contains="Criteria=")
        assert not proc.sync_worker_mappings(NOW)
        assert proc.db.all_mappings().get("00004") == login(4)
        assert proc.db.get_sync_state() is not None
        state = proc.db.get_sync_state()
        assert state is not None and state.status == "error"
    finally:
        proc.close()


def test_first_sync_on_the_originals_table_drops_its_leavers_and_the_stop_then_guards(
    simulator: AtHocSimulator, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The original only ever added mappings: its table may hold more leavers than staff. With
    no record of a previous complete listing, a complete one is accepted (removals at WARNING);
    after that the safety stop compares with the listing bobosync recorded."""
    leavers = {f"L{i:03d}": f"gone{i}" for i in range(120)}
    create_legacy_database(
        settings.db_path, {**leavers, "00001": login(1)}, last_sync=(datetime(2025, 6, 1, 20, 0), "completed")
    )
    proc = BOBOProcessor(settings)
    try:
        with caplog.at_level(logging.WARNING, logger="bobosync"):
            assert proc.sync_worker_mappings(NOW - timedelta(hours=3))
        mappings = proc.db.all_mappings()
        assert len(mappings) == 50 and not set(leavers) & set(mappings)
        warning = [r for r in caplog.records if "no record of a previous complete listing" in r.getMessage()]
        assert len(warning) == 1 and warning[0].levelno == logging.WARNING
        assert "120 mapping(s)" in warning[0].getMessage() and "L119" in warning[0].getMessage()
        state = proc.db.get_sync_state()
        assert state is not None and state.listing_mappings == 50

        for i in range(1, 31):  # 30 of 50 gone at once: refused
            simulator.remove_user(login(i))
        assert not proc.sync_worker_mappings(NOW)
        assert len(proc.db.all_mappings()) == 50
        state = proc.db.get_sync_state()
        assert state is not None and state.status == "error" and state.listing_mappings == 50
    finally:
        proc.close()

"""``bobosync trace ID`` (issue 12, section 1): one person's story, read from the audit that
real passes against the HTTPS simulator write.

Passes run in-process with a chosen ``now`` (see :class:`tests.test_closed_loop.Loop`); the
trace is read with the same ``now``; the CLI runs once as a real subprocess.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bobosync.database import BOBODatabase
from bobosync.settings import Settings
from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from bobosync.trace import collect_trace, render_text, run_trace
from tests.conftest import TLSCerts
from tests.harness import run_cli, sim_env_file
from tests.test_closed_loop import Loop
from tests.test_mapping import COLLAR, DUTY, FMT, NOW, duty, login

pytestmark = pytest.mark.usefixtures("propagate_logs")


@pytest.fixture
def loop(sim_settings: Settings, simulator: AtHocSimulator) -> Loop:
    return Loop(sim_settings, simulator)


def entries(loop: Loop, query: str, now: datetime) -> list[dict[str, Any]]:
    """The trace of ``query`` as its JSON says it."""
    out = io.StringIO()
    run_trace(loop.settings, query, as_json=True, out=out, now=now)
    return list(json.loads(out.getvalue())["entries"])


def text(loop: Loop, query: str, now: datetime) -> str:
    return render_text(collect_trace(loop.settings, query, now), loop.settings.bobo_timezone)


def sync(loop: Loop, now: datetime) -> None:
    """``--sync-users`` at ``now``: the mapping is read again and what it changes is sent."""
    processor = loop.processor(now)
    try:
        assert processor.run_sync(now)
    finally:
        processor.close()


def kinds(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(row["kind"], row["outcome"]) for row in rows]


def test_a_book_on_sent_is_traced_with_athocs_answer_and_the_current_values(loop: Loop) -> None:
    on = NOW - timedelta(minutes=5)
    loop.file([export_row("BON", "00001", on)], on)
    assert loop.run(NOW).exit_code == 0
    rows = entries(loop, "00001", NOW)
    assert ("mapping", "mapped") in kinds(rows)  # the first sync mapped the collar number
    event = next(row for row in rows if row["kind"] == "event")
    assert (event["outcome"], event["transaction"], event["file"], event["row"], event["login_id"]) == (
        "sent",
        "BON",
        "f001.csv",
        1,
        login(1),
    )
    write = next(row for row in rows if row["kind"] == "write")
    assert (write["outcome"], write["value"], write["login_id"]) == ("applied", on.strftime(FMT), login(1))
    assert kinds(rows).index(("event", "sent")) < kinds(rows).index(("write", "applied"))  # oldest first
    out = io.StringIO()
    run_trace(loop.settings, "00001", as_json=True, out=out, now=NOW)
    person = json.loads(out.getvalue())["people"][0]
    assert (person["mapped"], person["login_id"], person["desired_value"]) == (True, login(1), on.strftime(FMT))
    shown = text(loop, "00001", NOW)
    assert f"mapped to AtHoc user {login(1)}" in shown and "sent to AtHoc" in shown
    assert "AtHoc answered applied" in shown and f"desired now: {on.strftime(FMT)!r}" in shown
    # By LOGIN_ID, in any case: the same story.
    assert entries(loop, login(1).upper(), NOW) == rows


def test_an_earlier_row_is_superseded_and_a_late_older_event_is_not_newer(loop: Loop) -> None:
    on, off, late = NOW - timedelta(minutes=20), NOW - timedelta(minutes=10), NOW - timedelta(minutes=15)
    loop.file([export_row("BON", "00002", on), export_row("BOF", "00002", off)], off)
    assert loop.run(NOW).exit_code == 0
    loop.file([export_row("BON", "00002", late)], NOW)
    assert loop.run(NOW + timedelta(minutes=1)).exit_code == 0
    events = [row for row in entries(loop, "00002", NOW + timedelta(minutes=1)) if row["kind"] == "event"]
    assert [(e["transaction"], e["file"], e["row"], e["outcome"]) for e in events] == [
        ("BON", "f001.csv", 1, "superseded"),
        ("BOF", "f001.csv", 2, "sent"),
        ("BON", "f002.csv", 1, "not newer"),
    ]
    assert "f001.csv row 2" in events[0]["detail"] and "f001.csv row 2" in events[2]["detail"]
    assert duty(loop.sim, 2) == ""


def test_a_future_event_is_held_and_an_unmapped_one_pending_until_mapped(loop: Loop, simulator: AtHocSimulator) -> None:
    ahead, on = NOW + timedelta(hours=3), NOW - timedelta(minutes=5)
    loop.file([export_row("BON", "00003", ahead), export_row("BON", "77777", on)], NOW)
    loop.run(NOW)
    assert kinds(entries(loop, "00003", NOW)).count(("event", "held as future")) == 1
    assert [r["outcome"] for r in entries(loop, "77777", NOW) if r["kind"] == "event"] == ["pending"]
    shown = text(loop, "77777", NOW)
    assert "employee 77777: UNMAPPED" in shown and "pending: unmapped" in shown
    simulator.add_user({"LOGIN_ID": "new.officer@force.example", COLLAR: "77777"})
    later = NOW + timedelta(minutes=1)
    sync(loop, later)
    rows = entries(loop, "77777", later)
    # The sync maps the collar, the pending event is sent, and the next read-back sees it.
    assert kinds(rows)[-3:] == [("mapping", "mapped"), ("write", "applied"), ("read", "read")]
    assert rows[-2]["detail"].startswith("replay") and rows[-2]["login_id"] == "new.officer@force.example"
    assert rows[-1]["value"] == on.strftime(FMT)
    assert simulator.get_user("new.officer@force.example")[DUTY] == on.strftime(FMT)  # type: ignore[index]


def test_a_reconcile_repair_a_cleanup_clear_and_a_mapping_change_are_traced(
    loop: Loop, simulator: AtHocSimulator
) -> None:
    on = NOW - timedelta(hours=20)
    loop.file([export_row("BON", "00004", on)], on)
    loop.file([export_row("BON", "00005", on)], on)
    assert loop.run(on + timedelta(minutes=1)).exit_code == 0
    simulator.set_attribute(login(4), DUTY, "")  # an operator's edit
    assert loop.run(on + timedelta(minutes=30)).counts.repaired == 1
    rows = entries(loop, "00004", on + timedelta(minutes=30))
    assert kinds(rows)[-2:] == [("read", "drift"), ("write", "applied")]
    assert rows[-2]["value"] == "" and rows[-1]["detail"].startswith("repair") and duty(simulator, 4) != ""
    # 25 hours after the book-on the auto-cleanup clears it.
    assert loop.run(on + timedelta(hours=25)).exit_code == 0 and duty(simulator, 4) == ""
    clear = entries(loop, login(4), on + timedelta(hours=25))[-1]
    assert (clear["kind"], clear["value"], clear["detail"].split(":")[0]) == ("write", "", "cleanup")
    assert f"sent '' (empty: off duty) to {login(4)} (employee 00004): AtHoc answered applied; cleanup" in text(
        loop, "00004", on + timedelta(hours=25)
    )
    # Collar 00005 moves to user 6 (whose own collar goes): both mapping changes are traced.
    simulator.move_attribute(COLLAR, login(5), login(6))
    later = on + timedelta(hours=26)
    sync(loop, later)
    mapping = [r for r in entries(loop, "00005", later) if r["kind"] == "mapping" and r["employee_id"] == "00005"]
    assert (mapping[-1]["outcome"], mapping[-1]["login_id"], mapping[-1]["detail"]) == (
        "mapped",
        login(6),
        f"was {login(5)}",
    )
    shown = text(loop, "00005", later)
    assert f"collar number 00005 mapped to {login(6)}; was {login(5)}" in shown
    # The account's other collar number, which it no longer holds, shows in the same story.
    assert f"collar number 00006 mapping removed from {login(6)}" in shown


def test_an_unknown_id_is_said_to_be_unknown(loop: Loop) -> None:
    loop.file([export_row("BON", "00001", NOW)], NOW)
    loop.run(NOW)
    out = io.StringIO()
    assert run_trace(loop.settings, "99999", out=out, now=NOW) == 1
    assert "99999 is unknown" in out.getvalue()
    out = io.StringIO()
    assert run_trace(loop.settings, "99999", as_json=True, out=out, now=NOW) == 1
    data = json.loads(out.getvalue())
    assert (data["known"], data["people"], data["entries"]) == (False, [], [])
    # The same number written without its leading zeros: the mapped collar is named.
    out = io.StringIO()
    assert run_trace(loop.settings, "1", out=out, now=NOW) == 1
    assert f"written differently: 00001 ({login(1)})" in out.getvalue()


def test_audit_rows_are_purged_after_the_retention_and_not_kept_when_it_is_zero(loop: Loop) -> None:
    loop.file([export_row("BON", "00001", NOW)], NOW)
    loop.run(NOW)
    assert entries(loop, "00001", NOW)
    with BOBODatabase(loop.settings.db_path, read_only=True) as db:
        assert db.audit_rows(["00001"], [], NOW - timedelta(days=1))
    # A trace only looks back AUDIT_RETENTION_DAYS, and the next pass after that purges.
    assert entries(loop, "00001", NOW + timedelta(days=31)) == []
    loop.run(NOW + timedelta(days=31))
    with sqlite3.connect(loop.settings.db_path) as conn:
        left = conn.execute(
            "SELECT COUNT(*) FROM audit_log WHERE recorded_at < ?",
            ((NOW + timedelta(days=1)).astimezone().isoformat(),),
        ).fetchone()[0]
    assert left == 0
    off = dataclasses.replace(loop.settings, audit_retention_days=0)
    loop.settings = off
    loop.file([export_row("BOF", "00001", NOW + timedelta(days=32))], NOW + timedelta(days=32))
    loop.run(NOW + timedelta(days=32, minutes=1))
    with sqlite3.connect(off.db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 0


def test_the_audit_holds_only_what_the_trace_shows(loop: Loop) -> None:
    """No GPS or other CSV columns: the table's columns are exactly these."""
    loop.run(NOW)
    with sqlite3.connect(loop.settings.db_path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(audit_log)")]
    assert columns == [
        "id",
        "recorded_at",
        "employee_id",
        "login_id",
        "kind",
        "transaction_type",
        "event_at",
        "source_file",
        "source_row",
        "value",
        "outcome",
        "detail",
        "events",
    ]


def test_trace_runs_as_a_command(simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path) -> None:
    env = sim_env_file(simulator, tmp_path / "site", tls_certs.ca_pem)
    write_bobo_file(
        tmp_path / "site" / "crown_files",
        [export_row("BON", "00007", datetime.now())],
        datetime.now() - timedelta(seconds=30),
    )
    assert run_cli(env).returncode == 0
    shown = run_cli(env, "trace", "00007")
    assert shown.returncode == 0, shown.stderr
    assert f"mapped to AtHoc user {login(7)}" in shown.stdout and "AtHoc answered applied" in shown.stdout
    data = json.loads(run_cli(env, "trace", login(7), "--json").stdout)
    assert data["known"] and data["people"][0]["employee_id"] == "00007"
    unknown = run_cli(env, "trace", "nobody@force.example")
    assert unknown.returncode == 1 and "is unknown" in unknown.stdout

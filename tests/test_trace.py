"""``bobosync trace ID`` (issue 12): the audit recorded by real passes against the HTTPS
simulator, read back per employee ID or LOGIN_ID; the CLI's text and ``--json``; the purge."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from bobosync.database import AuditEntry, BOBODatabase
from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from bobosync.trace import Trace, collect_trace, render_json, render_text
from tests.conftest import TLSCerts
from tests.harness import run_cli, sim_env_file
from tests.test_closed_loop import Loop, loop  # noqa: F401  (the fixture)
from tests.test_mapping import COLLAR, DUTY, FMT, NOW, duty, login


def trace(loop: Loop, query: str, now: datetime) -> Trace:  # noqa: F811
    return collect_trace(loop.settings, query, now)


def details(t: Trace, kind: str) -> list[str]:
    return [e.detail for e in t.entries if e.kind == kind]


def test_a_persons_story_events_writes_repair_and_cleanup(simulator: AtHocSimulator, loop: Loop) -> None:  # noqa: F811
    off, on = NOW - timedelta(minutes=20), NOW - timedelta(minutes=10)
    loop.file([export_row("BOF", "00001", off), export_row("BON", "00001", on)], on)
    assert loop.run(NOW).exit_code == 0 and duty(simulator, 1) == on.strftime(FMT)

    # A late row, older than the book-on applied: not newer, not applied.
    late = NOW - timedelta(minutes=15)
    loop.file([export_row("BOF", "00001", late)], NOW + timedelta(minutes=1))
    assert loop.run(NOW + timedelta(minutes=2)).exit_code == 0 and duty(simulator, 1) == on.strftime(FMT)

    # Someone clears AtHoc by hand: the reconcile reads the drift and repairs it.
    simulator.set_attribute(login(1), DUTY, "")
    assert loop.run(NOW + timedelta(minutes=30)).counts.repaired == 1

    # A day and more later the book-on is past AUTO_CLEANUP_HOURS: cleared.
    assert loop.run(NOW + timedelta(hours=30)).counts.cleared == 1
    assert duty(simulator, 1) == ""

    t = trace(loop, "00001", NOW + timedelta(hours=30, minutes=1))
    assert t.known and t.mapped == {"00001": login(1)}
    events = [(e.transaction_type, e.source_file, e.source_row, e.detail) for e in t.entries if e.kind == "event"]
    assert events[0][:3] == ("BOF", "f001.csv", 1) and events[0][3].startswith("superseded by a newer event")
    assert events[1][:3] == ("BON", "f001.csv", 2) and events[1][3] == "sent to AtHoc"
    kinds = [e.kind for e in t.entries]
    assert kinds.index("event") < kinds.index("write")  # the event, then what was sent for it
    assert events[2][:3] == ("BOF", "f002.csv", 1) and events[2][3].startswith("not newer than the applied event")
    writes = [(e.value, e.detail) for e in t.entries if e.kind == "write"]
    assert writes[0] == (on.strftime(FMT), "event: AtHoc answered applied: Updated")
    assert any(d.startswith("repair: AtHoc answered applied") for _, d in writes)
    assert writes[-1][0] == "" and writes[-1][1].startswith("cleanup: AtHoc answered applied")
    assert any(d.startswith("drift: AtHoc holds ''") and "repairing" in d for d in details(t, "read"))
    assert [e.at for e in t.entries] == sorted(e.at for e in t.entries)  # oldest first
    state = t.desired["00001"]
    assert t.desired_values["00001"] == "" and state.athoc_value == "" and state.written_value == ""

    # The LOGIN_ID (any case) finds the same story; the text shows local times, file and row.
    by_login = trace(loop, login(1).upper(), NOW + timedelta(hours=30, minutes=1))
    assert by_login.entries == t.entries
    text = render_text(t)
    assert "f002.csv row 1: not newer than the applied event (f001.csv row 2)" in text
    assert f"BON at {on.astimezone().isoformat(sep=' ', timespec='seconds')} from f001.csv row 2" in text
    assert "mapped to LOGIN_ID user00001@force.example" in text and "cleanup: AtHoc answered" in text


def test_an_event_held_as_future_is_recorded_once(simulator: AtHocSimulator, loop: Loop) -> None:  # noqa: F811
    ahead = NOW + timedelta(hours=3)
    loop.file([export_row("BON", "00003", ahead)], NOW)
    assert loop.run(NOW).counts.held == 1
    assert loop.run(NOW + timedelta(minutes=1)).counts.held == 1  # the file is retried
    t = trace(loop, "00003", NOW + timedelta(minutes=2))
    assert details(t, "event") == ["held back: dated in the future (the file is retried)"]
    assert duty(simulator, 3) == "" and "00003" not in t.desired


def test_unmapped_pending_then_mapped_and_mapping_changes(simulator: AtHocSimulator, loop: Loop) -> None:  # noqa: F811
    proc = loop.processor(NOW - timedelta(minutes=30))
    try:
        assert proc.sync_worker_mappings(NOW - timedelta(minutes=30))
    finally:
        proc.close()
    on = NOW - timedelta(minutes=5)
    loop.file([export_row("BON", "07777", on)], on)
    assert loop.run(NOW, reconcile_minutes=0).counts.unmapped == 1
    pending = trace(loop, "07777", NOW)
    assert pending.known and pending.mapped == {}
    assert details(pending, "event") == ["pending: no AtHoc user has this collar number yet (sent once mapped)"]
    assert "employee 07777: unmapped" in render_text(pending)
    assert "last written: never; last read from AtHoc: never" in render_text(pending)

    simulator.add_user({"LOGIN_ID": "new.starter@force.example", COLLAR: "07777", DUTY: ""})
    proc = loop.processor(NOW + timedelta(minutes=1))
    try:
        assert proc.run_sync(NOW + timedelta(minutes=1))
    finally:
        proc.close()
    simulator.move_attribute(COLLAR, "new.starter@force.example", login(47))
    assert loop.run(NOW + timedelta(minutes=40)).exit_code == 0  # the reconcile's listing moves the mapping

    t = trace(loop, "07777", NOW + timedelta(minutes=41))
    mapping = details(t, "mapping")
    assert mapping == ["mapped to new.starter@force.example",
                       f"mapping changed from new.starter@force.example to {login(47)}"]
    writes = [(e.login_id, e.detail.split(":")[0]) for e in t.entries if e.kind == "write"]
    assert ("new.starter@force.example", "replay") in writes and (login(47), "replay") in writes
    assert t.mapped == {"07777": login(47)} and duty(simulator, 47) == on.strftime(FMT)


def test_the_audit_is_purged_after_audit_retention_days(simulator: AtHocSimulator, loop: Loop) -> None:  # noqa: F811
    with BOBODatabase(loop.settings.db_path) as db:
        db.add_audit([AuditEntry(NOW - timedelta(days=8), "mapping", "old", "00009", login(9)),
                      AuditEntry(NOW - timedelta(days=6), "mapping", "recent", "00009", login(9))])
    loop.run(NOW, audit_retention_days=7)
    with BOBODatabase(loop.settings.db_path, read_only=True) as db:
        kept = db.audit_for(["00009"], [], NOW - timedelta(days=365))
    assert [e.detail for e in kept if e.kind == "mapping" and e.detail in ("old", "recent")] == ["recent"]


def test_trace_command_unknown_id_and_json(simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path) -> None:
    env = sim_env_file(simulator, tmp_path / "site", tls_certs.ca_pem)
    on = NOW - timedelta(minutes=3)
    write_bobo_file(env.parent / "crown_files", [export_row("BON", "00014", on)], on, name="a.csv")
    assert run_cli(env).returncode == 0

    unknown = run_cli(env, "trace", "99999")
    assert unknown.returncode == 1 and "99999: unknown" in unknown.stdout

    known = run_cli(env, "trace", "00014", "--json")
    assert known.returncode == 0, known.stderr
    data = json.loads(known.stdout)
    assert data["known"] is True and data["employees"] == [
        {"employee_id": "00014", "login_id": login(14), "mapped": True}]
    event = next(e for e in data["entries"] if e["kind"] == "event")
    assert (event["transaction_type"], event["source_file"], event["source_row"], event["detail"]) == (
        "BON", "a.csv", 1, "sent to AtHoc")
    assert data["current"][0]["desired_value"] == on.strftime(FMT)
    assert data["current"][0]["written_value"] == on.strftime(FMT)
    assert data["current"][0]["last_answer"] == "applied: Updated"
    text = run_cli(env, "trace", login(14))
    assert text.returncode == 0 and "a.csv row 1: sent to AtHoc" in text.stdout


def test_render_json_of_a_missing_database_says_so(tmp_path: Path, loop: Loop) -> None:  # noqa: F811
    t = collect_trace(loop.settings, "00001", NOW)
    assert t.problem is not None and "no database" in t.problem
    assert json.loads(render_json(t))["known"] is False

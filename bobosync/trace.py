"""``bobosync trace ID``: one person's story, for "I never got the alert".

Given an employee ID (collar number) or a LOGIN_ID, everything bobosync recorded about that
person in the last AUDIT_RETENTION_DAYS, oldest first (the ``audit_log`` rows the processor,
the writer, the reconcile and the mapping sync add; see :class:`bobosync.database.AuditRow`),
then what bobosync wants AtHoc to hold now (the desired state) and what AtHoc held when last
read. Read-only: the database is opened read-only and AtHoc is not asked.

Times are shown in this machine's local time with their offset; an event's own time in
BOBO_TIMEZONE, as the BOBO terminal wrote it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Optional, TextIO

from .database import BOBODatabase
from .desired import DesiredState, desired_value
from .settings import Settings
from .store import AuditRow
from .timebase import as_utc, show, utc_now

__all__ = ["Person", "Trace", "collect_trace", "render_json", "render_text", "run_trace"]

#: What an event's outcome means, for the text output.
_EVENT_OUTCOMES = {
    "sent": "sent to AtHoc",
    "superseded": "superseded",
    "not newer": "not applied: not newer",
    "unchanged": "not sent again",
    "held as future": "held back: dated in the future",
    "pending": "pending: unmapped",
}
_MAPPING_OUTCOMES = {"mapped": "mapped to", "unmapped": "mapping removed from"}


@dataclass(frozen=True)
class Person:
    """One employee ID the trace found, with its mapping and desired state."""

    employee_id: str
    #: the AtHoc user the collar number maps to now (None: unmapped)
    login_id: Optional[str]
    state: Optional[DesiredState]
    #: the value AtHoc should hold now ("" = no duty value); None without a desired state
    desired: Optional[str]


@dataclass(frozen=True)
class Trace:
    query: str
    since: datetime
    now: datetime
    retention_days: int
    people: list[Person] = field(default_factory=list)
    entries: list[AuditRow] = field(default_factory=list)
    #: for an unknown all-digit ID: mapped collar numbers that are the same number written
    #: differently (``5990`` for ``05990``), with their LOGIN_IDs
    similar: list[tuple[str, str]] = field(default_factory=list)

    @property
    def known(self) -> bool:
        return bool(self.people or self.entries)


def collect_trace(settings: Settings, query: str, now: Optional[datetime] = None) -> Trace:
    """Everything recorded about ``query`` (an employee ID or a LOGIN_ID, any case) since
    AUDIT_RETENTION_DAYS before ``now``."""
    now = as_utc(now or utc_now())
    days = settings.audit_retention_days
    since = now - timedelta(days=days)
    hours = settings.auto_cleanup_hours
    with BOBODatabase(settings.db_path, read_only=True) as db:
        employees = list(dict.fromkeys([query, *db.employees_of_login(query)]))
        mapped = db.get_usernames(employees)
        states = db.desired_states(employees)
        logins = {query, *mapped.values(), *(st.login_id for st in states.values() if st.login_id)}
        entries = [entry for row in db.audit_rows(employees, logins, since) for entry in _expand(row)]
        number = query.lstrip("0") or "0"
        similar = (
            [pair for pair in db.numeric_mappings([number]).get(number, []) if pair[0] != query]
            if query.isdigit() and query.isascii()
            else []
        )
    seen = {row.employee_id for row in entries if row.employee_id}
    people = [
        Person(
            e,
            mapped.get(e),
            states.get(e),
            desired_value(states[e], now, settings.athoc_datetime_format, hours) if e in states else None,
        )
        for e in employees
        if e in mapped or e in states or e in seen
    ]
    return Trace(query, since, now, days, people, entries, similar)


def _expand(row: AuditRow) -> list[AuditRow]:
    """A ``superseded`` row as the events it lists, each an ``event`` row; others as they are."""
    if row.kind != "superseded" or not row.events:
        return [row]
    return [
        row._replace(
            kind="event",
            transaction_type=transaction,
            event_at=datetime.fromisoformat(instant),
            source_file=name,
            source_row=number,
            events=None,
        )
        for transaction, instant, name, number in json.loads(row.events)
    ]


def _local(value: Optional[datetime], zone: Optional[tzinfo] = None) -> str:
    if value is None or zone is None:
        return show(value)
    return as_utc(value).astimezone(zone).isoformat(sep=" ", timespec="seconds")


def _value(value: Optional[str]) -> str:
    """A duty value for people: quoted, and the empty one said to mean off duty."""
    return "'' (empty: off duty)" if value == "" else repr(value)


def _describe(row: AuditRow, zone: tzinfo) -> str:
    """One entry as a line of text (without its time)."""
    if row.kind == "event":
        place = f"{row.source_file} row {row.source_row}"
        text = (
            f"event {row.transaction_type} of {_local(row.event_at, zone)} (employee {row.employee_id}, "
            f"{place}): {_EVENT_OUTCOMES.get(row.outcome, row.outcome)}"
        )
        if row.login_id:
            text += f" (to {row.login_id})"
    elif row.kind == "write":
        who = f"{row.login_id}" + (f" (employee {row.employee_id})" if row.employee_id else "")
        text = f"sent {_value(row.value)} to {who}: AtHoc answered {row.outcome}"
    elif row.kind == "read":
        label = "DRIFT: AtHoc holds" if row.outcome == "drift" else "read back: AtHoc holds"
        text = f"{label} {_value(row.value)} for {row.login_id} (employee {row.employee_id})"
    elif row.kind == "mapping":
        text = f"collar number {row.employee_id} {_MAPPING_OUTCOMES.get(row.outcome, row.outcome)} {row.login_id}"
    else:
        text = f"{row.kind} {row.outcome}"
    return f"{text}; {row.detail}" if row.detail else text


def render_text(trace: Trace, bobo_zone: tzinfo) -> str:
    lines = [
        f"bobosync trace {trace.query}: the last {trace.retention_days} day(s), since {show(trace.since)} "
        "(times are this machine's local time; event times BOBO_TIMEZONE's)"
    ]
    if not trace.known:
        lines.append(
            f"{trace.query} is unknown: no employee ID or LOGIN_ID of that name is mapped, has a desired "
            "state or was seen in that time"
        )
        if trace.similar:
            lines.append(
                "mapped collar numbers that are the same number written differently: "
                + ", ".join(f"{collar} ({login})" for collar, login in trace.similar)
            )
        return "\n".join(lines) + "\n"
    for person in trace.people:
        lines.append("")
        if person.login_id is None:
            lines.append(
                f"employee {person.employee_id}: UNMAPPED: no AtHoc user has this collar number; its "
                "events are kept and sent once one has (after a mapping sync)"
            )
        else:
            lines.append(f"employee {person.employee_id}: mapped to AtHoc user {person.login_id}")
        state = person.state
        if state is None:
            lines.append("  desired now: nothing (no event of this employee has been kept)")
            continue
        lines.append(
            f"  desired now: {_value(person.desired)} (from {state.transaction.value} of "
            f"{_local(state.event_at, bobo_zone)}, {state.source_file} row {state.order.row})"
        )
        lines.append(
            f"  last written: {_value(state.written_value)} to {state.login_id} at {show(state.written_at)}"
            if state.written_value is not None
            else "  last written: nothing AtHoc accepted"
        )
        if state.last_answer:
            lines.append(f"  AtHoc's last answer: {state.last_answer} at {show(state.answered_at)}")
        lines.append(
            f"  AtHoc held when last read: {_value(state.athoc_value)} at {show(state.athoc_read_at)}"
            if state.athoc_value is not None
            else "  AtHoc held when last read: never read back"
        )
    lines.append("")
    if not trace.entries:
        lines.append("nothing recorded in that time")
    for row in trace.entries:
        lines.append(f"{show(row.recorded_at)}  {_describe(row, bobo_zone)}")
    return "\n".join(lines) + "\n"


def _iso(value: Optional[datetime]) -> Optional[str]:
    return None if value is None else as_utc(value).isoformat()


def render_json(trace: Trace) -> str:
    def person(p: Person) -> dict[str, Any]:
        st = p.state
        return {
            "employee_id": p.employee_id,
            "mapped": p.login_id is not None,
            "login_id": p.login_id,
            "desired_value": p.desired,
            "event": None
            if st is None
            else {
                "transaction": st.transaction.value,
                "at": _iso(st.event_at),
                "file": st.source_file,
                "row": st.order.row,
            },
            "written_value": None if st is None else st.written_value,
            "written_to": None if st is None else st.login_id,
            "written_at": None if st is None else _iso(st.written_at),
            "last_answer": None if st is None else st.last_answer,
            "athoc_value": None if st is None else st.athoc_value,
            "athoc_read_at": None if st is None else _iso(st.athoc_read_at),
        }

    data = {
        "query": trace.query,
        "known": trace.known,
        "retention_days": trace.retention_days,
        "since": _iso(trace.since),
        "now": _iso(trace.now),
        "people": [person(p) for p in trace.people],
        "similar": [{"employee_id": collar, "login_id": login} for collar, login in trace.similar],
        "entries": [
            {
                "recorded_at": _iso(r.recorded_at),
                "kind": r.kind,
                "outcome": r.outcome,
                "employee_id": r.employee_id,
                "login_id": r.login_id,
                "transaction": r.transaction_type,
                "event_at": _iso(r.event_at),
                "file": r.source_file,
                "row": r.source_row,
                "value": r.value,
                "detail": r.detail,
            }
            for r in trace.entries
        ],
    }
    return json.dumps(data, indent=2) + "\n"


def run_trace(
    settings: Settings, query: str, *, as_json: bool = False, out: TextIO = sys.stdout, now: Optional[datetime] = None
) -> int:
    """``bobosync trace``: 0 when ``query`` is known, 1 when it is not."""
    trace = collect_trace(settings, query, now)
    out.write(render_json(trace) if as_json else render_text(trace, settings.bobo_timezone))
    out.flush()
    return 0 if trace.known else 1

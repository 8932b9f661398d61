"""``bobosync trace ID``: one person's story, from the audit and the desired state.

The ID is an employee ID (a collar number, as BOBO writes it) or a LOGIN_ID (any letter case).
The trace lists, oldest first, the audit rows of the last AUDIT_RETENTION_DAYS (events seen and
what became of them, values sent with AtHoc's answers, read-backs and drift, mapping changes:
see :class:`bobosync.database.AuditEntry`), then the current mapping, desired state and last
value read from AtHoc. It reads the database only (read-only) and never asks AtHoc.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Optional, TextIO

from .database import AuditEntry, BOBODatabase
from .desired import DesiredState, desired_value
from .errors import DatabaseError
from .settings import Settings
from .timebase import as_utc, show, utc_now

__all__ = ["Trace", "collect_trace", "render_json", "render_text", "run_trace"]

EXIT_FOUND, EXIT_UNKNOWN = 0, 1


@dataclass
class Trace:
    query: str
    since: datetime
    #: AUDIT_RETENTION_DAYS
    days: int
    #: employee ID -> LOGIN_ID mapped to now (several employees can map to one LOGIN_ID)
    mapped: dict[str, str] = field(default_factory=dict)
    entries: list[AuditEntry] = field(default_factory=list)
    desired: dict[str, DesiredState] = field(default_factory=dict)
    #: employee ID -> the value AtHoc should hold now
    desired_values: dict[str, str] = field(default_factory=dict)
    #: why nothing can be shown (no database), or None
    problem: Optional[str] = None

    @property
    def employee_ids(self) -> list[str]:
        return sorted({*self.mapped, *self.desired, *(e.employee_id for e in self.entries if e.employee_id)})

    @property
    def known(self) -> bool:
        return bool(self.mapped or self.desired or self.entries)


def collect_trace(settings: Settings, query: str, now: datetime) -> Trace:
    """Everything the database knows about ``query`` (see the module docstring)."""
    query, now = query.strip(), as_utc(now)
    trace = Trace(query, now - timedelta(days=settings.audit_retention_days), settings.audit_retention_days)
    if not settings.db_path.exists():
        trace.problem = f"no database at {settings.db_path} (DB_PATH): bobosync has not run yet"
        return trace
    try:
        db = BOBODatabase(settings.db_path, read_only=True)
    except DatabaseError as exc:
        trace.problem = str(exc)
        return trace
    try:
        mappings = db.all_mappings()
        folded = query.casefold()
        trace.mapped = {e: login for e, login in mappings.items() if e == query or login.casefold() == folded}
        states = db.desired_states()
        # An employee ID: that collar number's rows. A LOGIN_ID: the rows on that account too
        # (a cleanup clear, an employee mapped there before).
        employees = {query, *trace.mapped}
        employees |= {e for e, st in states.items() if st.login_id is not None and st.login_id.casefold() == folded}
        trace.entries = db.audit_for(employees, [query], trace.since)
        trace.desired = {e: states[e] for e in sorted(employees) if e in states}
    finally:
        db.close()
    hours = settings.auto_cleanup_hours
    trace.desired_values = {e: desired_value(st, now, settings.athoc_datetime_format, hours)
                            for e, st in trace.desired.items()}
    return trace


def render_text(trace: Trace) -> str:
    lines = [f"trace of {trace.query} since {show(trace.since)} (times are this machine's local time)"]
    if trace.problem is not None:
        return "\n".join([*lines, trace.problem, ""])
    if not trace.known:
        lines.append(f"{trace.query}: unknown: no employee ID or LOGIN_ID of that name is mapped, and no event, "
                     "write or mapping change for it is on record")
        return "\n".join([*lines, ""])
    for employee_id in trace.employee_ids:
        login = trace.mapped.get(employee_id)
        lines.append(f"employee {employee_id}: " + (f"mapped to LOGIN_ID {login}" if login
                                                    else "unmapped: no AtHoc user has this collar number now"))
    for entry in trace.entries:
        lines.append(f"{show(entry.at)}  {_describe(entry)}")
    if not trace.entries:
        lines.append(f"no events, writes or changes on record in the last {trace.days} day(s) "
                     "(AUDIT_RETENTION_DAYS)")
    for employee_id, state in trace.desired.items():
        wanted = trace.desired_values.get(employee_id, "")
        lines.append(f"now, employee {employee_id}: desired {state.transaction.value} "
                     f"({state.order.file_name} row {state.order.row}, event {show(state.event_at)}), "
                     f"AtHoc should hold {wanted!r}; last written: " + (
                         f"{state.written_value!r} to {state.login_id} at {show(state.written_at)} "
                         f"({state.last_answer or 'no answer'})" if state.written_at is not None else "never")
                     + "; last read from AtHoc: " + (
                         f"{state.athoc_value!r} at {show(state.athoc_read_at)}"
                         if state.athoc_read_at is not None else "never"))
    return "\n".join([*lines, ""])


def _describe(entry: AuditEntry) -> str:
    who = f"employee {entry.employee_id}" if entry.employee_id else f"LOGIN_ID {entry.login_id}"
    if entry.kind == "event":
        return (f"{who}: {entry.transaction_type} at {show(entry.event_at)} from {entry.source_file} "
                f"row {entry.source_row}: {entry.detail}")
    if entry.kind == "write":
        return f"{who}: sent {entry.value!r} to {entry.login_id}: {entry.detail}"
    return f"{who}: {entry.detail}"


def _iso(value: Optional[datetime]) -> Optional[str]:
    return None if value is None else as_utc(value).isoformat()


def render_json(trace: Trace) -> str:
    data: dict[str, Any] = {
        "query": trace.query,
        "since": _iso(trace.since),
        "known": trace.known,
        "problem": trace.problem,
        "employees": [
            {"employee_id": e, "login_id": trace.mapped.get(e), "mapped": e in trace.mapped}
            for e in trace.employee_ids
        ],
        "entries": [
            {"at": _iso(x.at), "kind": x.kind, "employee_id": x.employee_id, "login_id": x.login_id,
             "event_at": _iso(x.event_at), "transaction_type": x.transaction_type, "source_file": x.source_file,
             "source_row": x.source_row, "value": x.value, "detail": x.detail}
            for x in trace.entries
        ],
        "current": [
            {"employee_id": e, "transaction_type": st.transaction.value, "event_at": _iso(st.event_at),
             "source_file": st.order.file_name, "source_row": st.order.row,
             "desired_value": trace.desired_values.get(e), "login_id": st.login_id,
             "written_value": st.written_value, "written_at": _iso(st.written_at), "last_answer": st.last_answer,
             "athoc_value": st.athoc_value, "athoc_read_at": _iso(st.athoc_read_at)}
            for e, st in trace.desired.items()
        ],
    }
    return json.dumps(data, indent=2) + "\n"


def run_trace(settings: Settings, query: str, *, as_json: bool = False, out: TextIO = sys.stdout,
              now: Optional[datetime] = None) -> int:
    """``bobosync trace ID``: 0 when the ID is known, 1 when unknown (or no database)."""
    trace = collect_trace(settings, query, now or utc_now())
    out.write(render_json(trace) if as_json else render_text(trace))
    out.flush()
    return EXIT_FOUND if trace.known and trace.problem is None else EXIT_UNKNOWN

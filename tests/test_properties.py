"""Property-based tests (hypothesis) of the two promises that no list of examples can cover.

1. Reading never fails on any input: whatever bytes a file holds, :func:`read_bobo_file`
   raises nothing but InputFileError, and then only for a file that is not text; otherwise
   every non-blank record comes out as an entry or a bad row, on its own physical line number.
   (tests/test_bobo_csv.py checks rows made by a csv writer against the complete rules;
   these inputs are raw: unbalanced quotes, lone CRs, NULs, mixed line endings, any bytes.)
2. Ordering and idempotence: events spread over files and passes in any order, ties in time
   included, run through real passes against the AtHoc simulator, leave AtHoc at the latest
   event per employee; a late file never undoes a newer status; a second pass over the same
   inputs sends nothing.

``BOBOSYNC_PROPERTY_EXAMPLES=500 python -m pytest tests/test_properties.py`` runs more examples.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional, Union
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bobosync import bobo_csv
from bobosync.bobo_csv import BadRow, BOBOEntry, Transaction, read_bobo_file
from bobosync.errors import InputFileError
from bobosync.processor import BOBOProcessor
from bobosync.settings import load_settings
from bobosync.simulator import AtHocSimulator
from tests.conftest import TLSCerts
from tests.test_corpus import write_env

EXAMPLES = int(os.environ.get("BOBOSYNC_PROPERTY_EXAMPLES", "0") or 0)
FMT = "%d/%m/%Y %H:%M:%S"
DUTY = "On-Duty-DTG"


def examples(default: int) -> int:
    return EXAMPLES or default


# ================================================================ 1. reading never fails

GOOD = "BON,00001,PAY1,20240617,143000,20240617143000,1,51.4816,-3.1791,5.0"
PIECES = st.sampled_from(
    [
        GOOD,
        GOOD.replace("PAY1", '"PAY1'),
        GOOD.replace("PAY1", '"PAY,\n1"'),
        GOOD.lower(),
        "BON",
        "BOF",
        " bof ",
        "XYZ",
        "00001",
        "5990",
        "20240617143000",
        "20240230143000",
        "20240617250000",
        ",",
        ",,,,,,,,,",
        '"',
        '""',
        "\r",
        "\n",
        "\r\n",
        "\ufeff",
        "\x00",
        " ",
        "\t",
        "Zoë",
        "€",
        "日本",
        "\u00a0",
        "=1+2",
        "Transaction_Type",
        "Employee_ID,Status,Timestamp",
        "On Duty",
        "off duty",
        "2024-06-17 14:30:00",
        "x" * 80,
        # 10-column rows whose USED cells hold quoted line breaks: their reasons quote the cell.
        '"B\nON",00001,P,D,T,20240617143000,1,2,3,4',
        'BON,"00\r\n001",P,D,T,20240617143000,1,2,3,4',
        'BOF,00001,P,D,T,"2024\n0617143000",1,2,3,4',
        'BOF,,P,D,T,20240617143000,1,2,3,"\n"',
        '00001,"On\nDuty",2024-06-17 14:30:00',
        '00001,Off Duty,"2024-06-17\r14:30:00"',
    ]
)
LINE = st.lists(st.one_of(PIECES, st.text(max_size=6)), max_size=8).map("".join)
TEXT = st.lists(st.tuples(LINE, st.sampled_from(["\r\n", "\n", "\r", ""])), max_size=16).map(
    lambda lines: "".join(line + end for line, end in lines)
)
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16", "latin-1"])


def _as_text(body: bytes) -> Optional[str]:
    """What a reader must make of these bytes (UTF-8 BOM already removed, no UTF-16 BOM):
    UTF-8, else cp1252, else nothing (not text)."""
    for encoding in ("utf-8", "cp1252"):
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            pass
    return None


def _record_lines(text: str) -> list[int]:
    """The first physical line of every non-blank record except a leading header, by the
    csv module alone: the rows a reader must account for."""
    reader = csv.reader(io.StringIO(text, newline=""))
    starts: list[int] = []
    last = 0
    header_possible = True
    for cells in reader:
        start, last = last + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if header_possible:
            header_possible = False
            first = [cell.replace("\ufeff", "").strip().casefold() for cell in cells]
            while first and not first[-1]:
                first.pop()
            if first[:1] == ["transaction_type"] or first == ["employee_id", "status", "timestamp"]:
                continue
        starts.append(start)
    return starts


@settings(max_examples=examples(200), deadline=None)
@given(
    content=st.one_of(
        st.tuples(TEXT, ENCODINGS).map(lambda t: t[0].encode(t[1], errors="replace")),
        st.binary(max_size=400),
        st.tuples(TEXT, st.binary(max_size=8), TEXT).map(lambda t: t[0].encode() + t[1] + t[2].encode()),
        st.tuples(TEXT, st.sampled_from(["utf-16-le", "utf-16-be"])).map(
            lambda t: ("\ufeff" + t[0]).encode(t[1], errors="replace")
        ),
    ),
    block=st.sampled_from([1, 64, bobo_csv._BLOCK_CHARS]),
    chunk=st.sampled_from([7, bobo_csv._CHUNK]),
)
def test_reading_any_bytes_gives_entries_and_bad_rows_or_input_file_error(
    content: bytes, block: int, chunk: int
) -> None:
    body = content[3:] if content.startswith(codecs.BOM_UTF8) else content
    text = None if b"\0" in body else _as_text(body)
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if content.startswith(bom):  # UTF-16 says so with its byte-order mark
            try:
                text = content[2:].decode(codec)
            except UnicodeDecodeError:
                text = None
            text = None if text is None or "\0" in text else text
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "any.csv"
        path.write_bytes(content)
        with mock.patch.object(bobo_csv, "_BLOCK_CHARS", block), mock.patch.object(bobo_csv, "_CHUNK", chunk):
            try:
                items: list[Union[BOBOEntry, BadRow]] = list(read_bobo_file(path))
            except InputFileError as exc:
                assert text is None, f"a text file was refused: {exc.reason}"
                assert exc.reason and "\n" not in exc.reason
                return
    assert text is not None, "a file that is not text (NUL byte, or neither UTF-8 nor cp1252) was read"
    # Every non-blank record is accounted for, as an entry or a bad row, on its first line.
    assert [item.row_number for item in items] == _record_lines(text)
    for item in items:
        if isinstance(item, BOBOEntry):
            assert isinstance(item.transaction, Transaction)
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", item.employee_id)
            assert isinstance(item.event_time, datetime)
        else:
            # A reason goes into one log line: never a line break, never unbounded.
            assert item.reason and "\n" not in item.reason and "\r" not in item.reason
            assert len(item.reason) < 200


# ================================================================ 2. ordering and idempotence

BASE = datetime(2024, 6, 17, 14, 30)
MAPPED = ("00001", "00002", "00003")
UNMAPPED = "99999"
JUNK = (
    "",
    "   ",
    ",,,,,,,,,",
    "XYZ,00001,P,20240617,143000,20240617143059,1,2,3,4",
    "BOF,00002,P,20240617,143000,20240230143000,1,2,3,4",
    "BON,,P,20240617,143000,20240617143059,1,2,3,4",
    "BOF,00003,P,20240617,143000,20240617143059",
    "garbage",
)


@dataclasses.dataclass(frozen=True)
class Event:
    employee: str
    tx: str  # BON / BOF
    second: int  # seconds after BASE: a window of 5 s, so equal times are common

    @property
    def time(self) -> datetime:
        return BASE + timedelta(seconds=self.second)

    @property
    def value(self) -> str:
        """The duty value this event puts in AtHoc."""
        return self.time.strftime(FMT) if self.tx == "BON" else ""

    def row(self) -> str:
        t = self.time
        return f"{self.tx},{self.employee},PAY,{t:%Y%m%d},{t:%H%M%S},{t:%Y%m%d%H%M%S},1,51.5,-3.2,5.0"


@dataclasses.dataclass(frozen=True)
class Scenario:
    files: list[list[Event]]  # file -> its events, in row order
    junk: list[list[tuple[int, str]]]  # file -> (position among its rows, junk line)
    passes: list[list[int]]  # pass -> the files that arrive for it, oldest first
    batch_size: int
    move_processed: bool

    def name(self, index: int) -> str:
        return f"f{index:02d}.csv"

    def lines(self, index: int) -> list[str]:
        lines = [e.row() for e in self.files[index]]
        for position, junk in sorted(self.junk[index], reverse=True):
            lines.insert(min(position, len(lines)), junk)
        return lines


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """Events of a few employees in a 5-second window, on 2 to 7 files arriving over 1 to 3
    passes. Tuned so that ties matter often (measured: about one example in five turns on
    a tie between files of a batch or rows of a file): at least one twin, the same employee
    and second with the other transaction, and more than one file."""
    events = draw(
        st.lists(
            st.builds(Event, st.sampled_from((*MAPPED, UNMAPPED)), st.sampled_from(["BON", "BOF"]), st.integers(0, 4)),
            min_size=1,
            max_size=24,
        )
    )
    for index in draw(st.lists(st.integers(0, len(events) - 1), min_size=1, max_size=3)):
        twin = events[index]
        events.append(Event(twin.employee, "BOF" if twin.tx == "BON" else "BON", twin.second))
    n_files = draw(st.integers(2, 7))
    files: list[list[Event]] = [[] for _ in range(n_files)]
    for event in events:
        files[draw(st.integers(0, n_files - 1))].append(event)
    junk = [draw(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(JUNK)), max_size=2)) for _ in files]
    n_passes = draw(st.integers(1, 3))
    passes: list[list[int]] = [[] for _ in range(n_passes)]
    for index in draw(st.permutations(range(n_files))):  # arrival order within a pass too
        passes[draw(st.integers(0, n_passes - 1))].append(index)
    return Scenario(files, junk, passes, draw(st.sampled_from([0, 2, 10, 1])), draw(st.booleans()))


class Model:
    """The rule as the README states it: THE order of events is (time, file in arrival order,
    row); per batch the greatest event per employee is kept, and it is sent only when it is
    greater than the last event applied for that employee and says something new (the same
    time with the same transaction is that state again: recorded, not sent). Employees
    without an AtHoc user are never sent or remembered."""

    def __init__(self) -> None:
        self.applied: dict[str, tuple[tuple[int, int, int], Event]] = {}

    def run_pass(self, files: list[tuple[int, list[Event]]], batch_size: int) -> list[tuple[str, str]]:
        """``files``: (arrival number, events) of the files of one pass, in arrival order."""
        sends: list[tuple[str, str]] = []
        # More files than BATCH_SIZE: the whole backlog is resolved together (issue 13).
        size = len(files) or 1
        for start in range(0, len(files), size):
            latest: dict[str, tuple[tuple[int, int, int], Event]] = {}
            for arrival, events in files[start : start + size]:
                for row, event in enumerate(events):
                    key = (event.second, arrival, row)
                    if event.employee not in latest or key > latest[event.employee][0]:
                        latest[event.employee] = (key, event)
            for employee, (key, event) in latest.items():
                held = self.applied.get(employee)
                if employee not in MAPPED or (held is not None and key <= held[0]):
                    continue
                self.applied[employee] = (key, event)
                if held is None or (event.second, event.tx) != (held[1].second, held[1].tx):
                    sends.append((login(employee), event.value))
        return sends


def login(employee: str) -> str:
    return f"user{employee}@force.example"


def athoc_values(sim: AtHocSimulator) -> dict[str, str]:
    values = {}
    for employee in MAPPED:
        user = sim.get_user(login(employee))
        assert user is not None
        values[employee] = user.get(DUTY, "")
    return values


def sent(sim: AtHocSimulator) -> list[tuple[str, str]]:
    return [
        (str(row["LOGIN_ID"]), str(row[DUTY]))
        for entry in sim.requests_to("SyncByCommonNames")
        for row in entry.json_body
    ]


@dataclasses.dataclass
class Run:
    """One example's folders, settings and the simulator."""

    base: Path
    sim: AtHocSimulator
    ca_pem: Path
    scenario: Scenario

    def __post_init__(self) -> None:
        write_env(
            self.sim,
            self.ca_pem,
            self.base,
            FILE_SETTLE_SECONDS="0",
            BATCH_SIZE=str(self.scenario.batch_size),
            MOVE_PROCESSED_FILES=str(self.scenario.move_processed).lower(),
        )
        self.settings = load_settings(env_file=self.base / ".env", environ={})
        self.arrivals = 0

    def arrive(self, name: str, lines: list[str]) -> Path:
        """A file lands in the CSV folder, modified after every file before it."""
        path = self.settings.csv_directory / name
        path.write_bytes("".join(line + "\r\n" for line in lines).encode("ascii"))
        self.arrivals += 1
        stamp = time.time() - 10_000 + self.arrivals
        os.utime(path, (stamp, stamp))
        return path

    def run_pass(self) -> tuple[int, int, int]:
        """A pass as the command runs it (a new processor each time); (exit code, rows, bad rows)."""
        self.sim.clear_journal()
        processor = BOBOProcessor(self.settings)
        try:
            report = processor.run_pass()
        finally:
            processor.close()
        assert report.errors == [], report.errors
        return report.exit_code, report.counts.rows, report.counts.bad_rows

    def processing_log(self) -> Counter[str]:
        with sqlite3.connect(self.settings.db_path) as conn:
            return Counter(str(name) for (name,) in conn.execute("SELECT filename FROM processing_log"))


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Hundreds of passes: keep their INFO lines out of the captured output."""
    logger = logging.getLogger("bobosync")
    saved = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(saved)


@settings(
    max_examples=examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_any_order_of_files_and_passes_ends_at_the_latest_event_and_a_second_run_sends_nothing(
    simulator: AtHocSimulator, tls_certs: TLSCerts, quiet_logs: None, scenario: Scenario
) -> None:
    for employee in MAPPED:  # the simulator outlives the example: start from nobody on duty
        simulator.set_attribute(login(employee), DUTY, "")
    model = Model()
    seen: dict[str, list[Event]] = {}  # every event of the passes so far, per employee
    with tempfile.TemporaryDirectory() as folder:
        run = Run(Path(folder), simulator, tls_certs.ca_pem, scenario)
        for pass_files in scenario.passes:
            for index in pass_files:
                run.arrive(scenario.name(index), scenario.lines(index))
            before = {e: max(ev.second for ev in evs) for e, evs in seen.items()}
            code, rows, bad = run.run_pass()
            files = [scenario.files[i] for i in pass_files]
            for events in files:
                for event in events:
                    seen.setdefault(event.employee, []).append(event)

            # Every row accounted for; bad rows never stop the good ones.
            assert code == 0
            assert rows == sum(len(events) for events in files)
            assert bad == sum(1 for i in pass_files for _, junk in scenario.junk[i] if junk.strip(", "))
            # Exactly what the rule sends, and AtHoc holds the latest event applied.
            arrivals = range(run.arrivals - len(pass_files) + 1, run.arrivals + 1)
            expected = model.run_pass(list(zip(arrivals, files)), scenario.batch_size)
            assert sorted(sent(simulator)) == sorted(expected)
            state = athoc_values(simulator)
            assert state == {e: (model.applied[e][1].value if e in model.applied else "") for e in MAPPED}
            # Independently of the model: the duty value comes from an event at the latest time
            # seen for that employee, and an employee whose events in this pass are all older
            # than one of an earlier pass is not sent at all (a late file never undoes anything).
            for employee in MAPPED:
                if employee in seen:
                    latest = max(ev.second for ev in seen[employee])
                    assert state[employee] in {ev.value for ev in seen[employee] if ev.second == latest}
                mine = [ev.second for events in files for ev in events if ev.employee == employee]
                if mine and employee in before and max(mine) < before[employee]:
                    assert login(employee) not in dict(sent(simulator))

        # The same inputs again: nothing is sent, nothing changes.
        settled = athoc_values(simulator)
        csv_dir = run.settings.csv_directory
        if scenario.move_processed:  # put every file back where BOBO left it
            for folder_name in (run.settings.processed_directory, run.settings.failed_files_directory):
                for path in sorted(Path(folder_name).glob("*.csv")) if Path(folder_name).is_dir() else []:
                    shutil.move(str(path), str(csv_dir / path.name))
        else:  # the originals are still there (remembered): touch them, and add copies under new
            # names, keeping their modification times (a copy modified later would be a later
            # file, whose event at an equal time but with the other transaction rightly wins)
            for path in sorted(csv_dir.glob("f*.csv")):
                shutil.copy2(path, csv_dir / ("again_" + path.name))
                os.utime(path, None)
            for path in sorted(run.settings.failed_files_directory.glob("*.csv")):
                shutil.copy2(path, csv_dir / ("again_" + path.name))
        code, _, _ = run.run_pass()
        assert code == 0
        assert sent(simulator) == []
        assert athoc_values(simulator) == settled
        # ...and every file was looked at again (moved back out, or remembered and skipped).
        names = [scenario.name(i) for i in range(len(scenario.files))]
        log = run.processing_log()
        if scenario.move_processed:
            assert all(log[name] == 2 for name in names), log
        else:
            assert all(log["again_" + name] == 1 for name in names), log

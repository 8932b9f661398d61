"""Writing BOBO export files (``reference/bobo-csv.md``) for tests, benchmarks and demos.

Files are written the way a careful exporter would: under a temporary name that does not end
in ``.csv``, then linked into place, so a reader listing ``*.csv`` never sees half a file, and
an existing file is never overwritten.
"""

from __future__ import annotations

import csv
import io
import os
import random
import zlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional, Union

__all__ = [
    "EXPORT_HEADER",
    "SIMPLE_HEADER",
    "bobo_file_name",
    "export_row",
    "generate_bobo_files",
    "simple_row",
    "write_bobo_file",
]

EXPORT_HEADER = [
    "Transaction_Type",
    "Employee_ID",
    "Payroll_ID",
    "Clocking_Date",
    "Clocking_Time",
    "DateTime_Created",
    "Geo_Status",
    "Geo_Latitude",
    "Geo_Longitude",
    "Geo_Accuracy",
]
SIMPLE_HEADER = ["Employee_ID", "Status", "Timestamp"]
_SIMPLE_STATUS = {"BON": "On Duty", "BOF": "Off Duty"}

# A few places to clock on from (latitude, longitude): police stations, roughly.
_PLACES = (
    (51.5074, -0.1278),
    (53.4808, -2.2426),
    (52.4862, -1.8904),
    (55.8642, -4.2518),
    (51.4816, -3.1791),
    (54.5973, -5.9301),
    (53.8008, -1.5491),
    (50.7184, -3.5339),
)


def bobo_file_name(when: datetime) -> str:
    """``BOBO_YYYYMMDD_HHMMSS_output.csv``."""
    return f"BOBO_{when:%Y%m%d_%H%M%S}_output.csv"


def export_row(
    transaction: str,
    employee_id: str,
    when: datetime,
    *,
    payroll_id: Optional[str] = None,
) -> list[str]:
    """One 10-column export row; Geo columns are plausible and deterministic per employee."""
    seed = zlib.crc32(employee_id.encode("utf-8"))
    lat, lon = _PLACES[seed % len(_PLACES)]
    jitter_lat = ((seed >> 8) % 2000 - 1000) / 100000
    jitter_lon = ((seed >> 16) % 2000 - 1000) / 100000
    return [
        transaction,
        employee_id,
        payroll_id if payroll_id is not None else f"PAY{employee_id}",
        when.strftime("%Y%m%d"),
        when.strftime("%H%M%S"),
        when.strftime("%Y%m%d%H%M%S"),
        str(1 + seed % 3),
        f"{lat + jitter_lat:.4f}",
        f"{lon + jitter_lon:.4f}",
        f"{5 + (seed >> 4) % 20:.1f}",
    ]


def simple_row(row: Sequence[str]) -> list[str]:
    """The 3-column ``Employee_ID,Status,Timestamp`` form of a row.

    A 10-column export row is converted (``BON`` -> ``On Duty``, ``DateTime_Created`` ->
    ``YYYY-MM-DD HH:MM:SS``); any other row is returned as it is.
    """
    if len(row) != len(EXPORT_HEADER):
        return list(row)
    transaction = row[0].strip().upper()
    status = _SIMPLE_STATUS.get(transaction, row[0])
    try:
        stamp = datetime.strptime(row[5].strip(), "%Y%m%d%H%M%S").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        stamp = row[5]
    return [row[1], status, stamp]


def write_bobo_file(
    directory: Union[str, Path],
    rows: Sequence[Sequence[str]],
    when: datetime,
    *,
    header: bool = False,
    simple: bool = False,
    encoding: str = "utf-8",
    bom: bool = False,
    crlf: bool = True,
    name: Optional[str] = None,
) -> Path:
    """Write one BOBO file atomically and return its path.

    Named ``BOBO_YYYYMMDD_HHMMSS_output.csv`` from ``when``; when that name is taken, the next
    free second is used. With ``name`` that exact name is used (FileExistsError when taken).
    ``simple=True`` writes the 3-column form with its header (10-column rows are converted).
    ``bom`` puts a byte-order mark first (encode ``"\\ufeff"`` in ``encoding``).
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if crlf else "\n")
    if simple:
        writer.writerow(SIMPLE_HEADER)
        writer.writerows(simple_row(r) for r in rows)
    else:
        if header:
            writer.writerow(EXPORT_HEADER)
        writer.writerows(list(r) for r in rows)
    data = (("\ufeff" if bom else "") + buffer.getvalue()).encode(encoding)

    temp = folder / f".bobo-{os.getpid()}-{random.getrandbits(40):010x}.tmp"
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        if name is not None:
            target = folder / name
            _publish(temp, target)
            return target
        moment = when.replace(microsecond=0)
        for _ in range(100000):
            target = folder / bobo_file_name(moment)
            try:
                _publish(temp, target)
                return target
            except FileExistsError:
                moment += timedelta(seconds=1)
        raise FileExistsError(f"no free BOBO file name in {folder} after {when}")
    finally:
        temp.unlink(missing_ok=True)


def _publish(temp: Path, target: Path) -> None:
    """Make ``temp``'s content appear as ``target`` in one step, never replacing a file."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise
    except OSError:
        # No hard links on this file system: rename, after checking (small race accepted).
        if target.exists():
            raise FileExistsError(str(target)) from None
        os.rename(temp, target)


def generate_bobo_files(
    directory: Union[str, Path],
    employee_ids: Sequence[str],
    *,
    files: int,
    start: datetime,
    rows_per_file: tuple[int, int] = (5, 25),
    seed: int = 0,
    step_seconds: int = 60,
) -> list[Path]:
    """Write ``files`` realistic export files, ``step_seconds`` apart from ``start``.

    Deterministic for a given ``seed``. File ``i`` is stamped ``start + i * step_seconds`` and
    holds events from the window before that moment, in increasing time order, so events
    increase across files too. Each event mostly toggles the employee's state (book on, then
    off); now and then someone books on twice (a forgotten book-off), as in real exports.
    """
    if not employee_ids:
        raise ValueError("employee_ids is empty")
    low, high = rows_per_file
    if low < 0 or high < low:
        raise ValueError(f"rows_per_file={rows_per_file!r}: expected (low, high) with 0 <= low <= high")
    if step_seconds < 1:
        raise ValueError("step_seconds must be at least 1")
    rng = random.Random(seed)
    on_duty: dict[str, bool] = {}
    paths: list[Path] = []
    start = start.replace(microsecond=0)
    for index in range(files):
        stamp = start + timedelta(seconds=index * step_seconds)
        count = rng.randint(low, high)
        # Seconds before the file's stamp: distinct when the window allows it.
        if count <= step_seconds:
            offsets = sorted(rng.sample(range(step_seconds), count), reverse=True)
        else:
            offsets = sorted((rng.randrange(step_seconds) for _ in range(count)), reverse=True)
        rows: list[list[str]] = []
        for offset in offsets:
            employee = employee_ids[rng.randrange(len(employee_ids))]
            was_on = on_duty.get(employee, False)
            book_on = not was_on if rng.random() < 0.92 else was_on
            on_duty[employee] = book_on
            when = stamp - timedelta(seconds=offset)
            rows.append(export_row("BON" if book_on else "BOF", employee, when))
        paths.append(write_bobo_file(directory, rows, stamp))
    return paths

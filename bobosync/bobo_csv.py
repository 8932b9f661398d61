"""Reading BOBO duty files: both formats, BOM, cp1252, streaming.

Two layouts are understood (see ``docs`` and the BOBO reference), each stated once as a
:class:`Layout` in :data:`LAYOUTS`:

* the 10-column export, normally without a header::

      BON,12345,PAY001,20240617,143000,20240617143000,1,40.7128,-74.0060,5.0

  Only ``Transaction_Type`` (0), ``Employee_ID`` (1) and ``DateTime_Created`` (5) are used;
  the other columns are never checked. A header row (first non-blank row whose first cell is
  ``Transaction_Type``) is skipped silently.
* the hand-made 3-column form, always with its header ``Employee_ID,Status,Timestamp``.

:func:`read_bobo_file` checks the whole file first (NUL bytes, UTF-8 or else cp1252, or
UTF-16 when it starts with its byte-order mark, as Excel's "Unicode Text" does), chunk by
chunk, and raises :class:`~bobosync.errors.InputFileError` when the file cannot be read at
all. It then yields, lazily and in file order, one :class:`BOBOEntry` per good record and one
:class:`BadRow` per bad one; blank lines yield nothing. Memory does not grow with the number
of rows.

The export path is the hot path (a catch-up after an outage can mean a million rows). Lines
are taken in blocks of a few KiB; a block whose every line is a plainly well-formed row (one
regex, then the dates) is turned into entries by C-level iterators, with no Python code per
row. Any other block is read line by line, and any line that is not plainly well formed goes
through the csv module and :meth:`Layout.check_row`, the one complete statement of the rules
(which :meth:`BOBOEntry.from_csv_row` uses too). The fast paths only ever accept rows the
complete check accepts, with the same result: a property test compares them on generated
files.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import enum
import functools
import hashlib
import io
import itertools
import operator
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Callable, NamedTuple, Optional, TextIO, Union

from .errors import BadRowError, InputFileError

__all__ = [
    "EXPORT",
    "EXPORT_COLUMNS",
    "FILE_SUFFIX",
    "LAYOUTS",
    "SIMPLE",
    "SIMPLE_COLUMNS",
    "BOBOEntry",
    "BadRow",
    "BadRowError",
    "Layout",
    "Transaction",
    "file_fingerprint",
    "is_bobo_file_name",
    "layout_of_header",
    "read_bobo_file",
]

#: Column names of the 10-column export, in order.
EXPORT_COLUMNS = (
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
)
#: Column names of the hand-made 3-column form (its header is mandatory).
SIMPLE_COLUMNS = ("Employee_ID", "Status", "Timestamp")

#: Which files in a folder are BOBO files: the one statement of the file pattern (any case).
FILE_SUFFIX = ".csv"


def is_bobo_file_name(name: str) -> bool:
    """``*.csv`` in any case (``SHIFT.CSV`` too, as Windows would match it)."""
    return name.lower().endswith(FILE_SUFFIX)


#: Files up to this size are read and decoded in one go; bigger ones are checked chunk by
#: chunk (of this size) and then parsed from the file as a stream.
_CHUNK = 1 << 20
#: Rows are parsed in blocks of whole lines of about this many characters. Small blocks keep
#: the objects of a block in the CPU caches (measured: 4-16 KiB is best).
_BLOCK_CHARS = 1 << 13
_UTF8_BOM = codecs.BOM_UTF8
_SHOW_MAX = 40
_MAX_ID_LEN = 64
#: What an Employee_ID (collar number) must look like; `check` holds AtHoc's collar numbers to it.
EMPLOYEE_ID_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{_MAX_ID_LEN - 1}}}")
_SIMPLE_TS_RE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", re.ASCII)


class Transaction(str, enum.Enum):
    """The transaction type of a BOBO row."""

    BOOK_ON = "BON"
    BOOK_OFF = "BOF"


class BadRow(NamedTuple):
    """A record of a BOBO file that was rejected (yielded by :func:`read_bobo_file`)."""

    row_number: int  # 1-based physical line on which the record starts
    reason: str
    #: The record runs to the end of the file and its last line has no line ending: the
    #: writer may not have finished it yet (only ever true of the last record of a file).
    open_end: bool = False


class BOBOEntry(NamedTuple):
    """One book-on or book-off event. Immutable (a named tuple: cheap to create)."""

    transaction: Transaction
    employee_id: str  # text, leading zeros kept
    event_time: datetime  # naive local time: DateTime_Created (export) or Timestamp (simple)
    row_number: int  # 1-based physical line on which the record starts; 0 if not from a file

    @classmethod
    def from_csv_row(cls, row: Sequence[str], row_number: int = 0) -> BOBOEntry:
        """Parse one row of the 10-column export; raise :class:`BadRowError` if it is bad."""
        result = EXPORT.check_row(row, row_number)
        if result is None:
            raise BadRowError("blank row")
        if isinstance(result, BadRow):
            raise BadRowError(result.reason)
        return result

    @property
    def is_book_on(self) -> bool:
        return self.transaction is Transaction.BOOK_ON


# -- dates ---------------------------------------------------------------------------------


def _ts14_ints(value: str) -> datetime:
    """``YYYYMMDDHHMMSS`` (already known to be 14 characters) -> datetime; ValueError if not."""
    if not (value.isdigit() and value.isascii()):
        raise ValueError("not 14 digits")
    return datetime(
        int(value[0:4]),
        int(value[4:6]),
        int(value[6:8]),
        int(value[8:10]),
        int(value[10:12]),
        int(value[12:14]),
    )


def _fromiso_basic_is_exact() -> bool:
    """Can ``datetime.fromisoformat`` parse ``YYYYMMDDTHHMMSS`` exactly like :func:`_ts14_ints`?

    Python 3.11+ reads the ISO basic format, in C, several times faster than slicing and
    ``int()``. It is used on the hot path only where it gives the same answers as the slow
    way for digit strings (some versions could read hour 24 as the next midnight).
    """
    probes = (
        "20240617143005",
        "20240229235959",
        "20240230143000",
        "20240617240000",
        "20240617236000",
        "20240617235960",
        "00000101000000",
        "20241301000000",
    )
    for probe in probes:
        try:
            expected: Optional[datetime] = _ts14_ints(probe)
        except ValueError:
            expected = None
        try:
            got: Optional[datetime] = datetime.fromisoformat(probe[:8] + "T" + probe[8:])
        except ValueError:
            got = None
        if got != expected or (got is not None and got.tzinfo is not None):
            return False
    return True


_FAST_ISO = _fromiso_basic_is_exact()


def _parse_ts14(value: str) -> datetime:
    """Strict ``YYYYMMDDHHMMSS`` (14 ASCII digits, a real date and time) -> datetime."""
    if len(value) != 14:
        raise ValueError("not 14 digits")
    return _ts14_ints(value)


def _parse_simple_ts(value: str) -> datetime:
    """Strict ``YYYY-MM-DD HH:MM:SS`` -> datetime."""
    if _SIMPLE_TS_RE.fullmatch(value) is None:
        raise ValueError("wrong shape")
    return datetime(
        int(value[0:4]),
        int(value[5:7]),
        int(value[8:10]),
        int(value[11:13]),
        int(value[14:16]),
        int(value[17:19]),
    )


# -- the complete row checks ------------------------------------------------------------------


def _show(value: str) -> str:
    """A cell value for a reason: quoted, and cut short when long."""
    if len(value) > _SHOW_MAX:
        value = value[:_SHOW_MAX] + "..."
    return repr(value)


def _is_blank(row: Sequence[str]) -> bool:
    return not any(cell.strip() for cell in row)


def _column_count_problem(row: Sequence[str], expected: int) -> Optional[str]:
    n = len(row)
    if n == expected:
        return None
    if n > expected and _is_blank(row[expected:]):
        return None  # trailing empty cells, as spreadsheets write them
    return f"expected {expected} columns, found {n}"


def _read_employee_id(cell: str) -> tuple[str, Optional[str]]:
    value = cell.strip()
    return value, _employee_id_problem(value)


def _employee_id_problem(value: str) -> Optional[str]:
    if not value:
        return "missing Employee_ID"
    if EMPLOYEE_ID_PATTERN.fullmatch(value) is None:
        return f"invalid Employee_ID {_show(value)}"
    return None


class Vocabulary(NamedTuple):
    """The words a layout's transaction column may hold."""

    words: Mapping[str, Transaction]  # casefolded spelling -> transaction
    noun: str  # how a reason names the column's values ("transaction type")
    expected: str  # how a reason names the words ("BON or BOF")
    collapse_spaces: bool  # inner runs of white space count as one space ("On  Duty")
    ascii_only: bool  # a cell with any non-ASCII character is never a word


class TimeFormat(NamedTuple):
    """How a layout writes the moment of a booking (a naive local wall-clock reading)."""

    shape: str  # how a reason names it ("YYYYMMDDHHMMSS")
    parse: Callable[[str], datetime]  # strict; ValueError when the text is not one


@dataclasses.dataclass(frozen=True)
class Layout:
    """One BOBO file layout, stated once: its columns, its header and its rules.

    The complete check of a row (:meth:`check_row`), header recognition (:meth:`is_header`)
    and the export's fast path (:func:`_good_row_regex`, the split in :func:`_slow_block`) are
    all derived from these fields. The three used cells are checked in column order, so a row
    with several faults is reported by its leftmost one. A new layout is one more instance in
    :data:`LAYOUTS`; every layout but the headerless one needs its header row.
    """

    name: str
    columns: tuple[str, ...]
    transaction_column: int
    employee_column: int
    time_column: int
    vocabulary: Vocabulary
    time: TimeFormat
    #: A header is recognised by its first cell alone (the export), or else it must name
    #: every column, in order (trailing empty cells aside).
    header_by_first_cell: bool = False
    #: Files that start without a header row are of this layout (one layout says so).
    headerless: bool = False
    _steps: tuple[tuple[int, int, Callable[[str], tuple[Any, Optional[str]]]], ...] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def is_header(self, row: Sequence[str]) -> bool:
        cells = [cell.replace("\ufeff", "").strip().casefold() for cell in row]
        names = [name.casefold() for name in self.columns]
        if self.header_by_first_cell:
            return bool(cells) and cells[0] == names[0]
        while cells and not cells[-1]:
            cells.pop()
        return cells == names

    def __post_init__(self) -> None:
        # The used cells in column order, each with its slot in the entry and its reader:
        # worked out once, as check_row runs for every row off the fast path.
        steps = sorted(
            [
                (self.transaction_column, 0, self._read_transaction),
                (self.employee_column, 1, _read_employee_id),
                (self.time_column, 2, self._read_time),
            ],
            key=operator.itemgetter(0),
        )
        object.__setattr__(self, "_steps", tuple(steps))

    def check_row(self, row: Sequence[str], row_number: int) -> Union[BOBOEntry, BadRow, None]:
        """Every rule for one row of this layout. None means a blank row (skip it)."""
        if _is_blank(row):
            return None
        problem = _column_count_problem(row, len(self.columns))
        if problem is not None:
            return BadRow(row_number, problem)
        found: list[Any] = [None, None, None]  # transaction, Employee_ID, moment
        for column, slot, read in self._steps:
            cell = row[column].replace("\ufeff", "") if column == 0 else row[column]
            found[slot], problem = read(cell)
            if problem is not None:
                return BadRow(row_number, problem)
        return BOBOEntry(found[0], found[1], found[2], row_number)

    def _read_transaction(self, cell: str) -> tuple[Optional[Transaction], Optional[str]]:
        vocabulary = self.vocabulary
        text = " ".join(cell.split()) if vocabulary.collapse_spaces else cell.strip()
        if not text:
            return None, f"missing {self.columns[self.transaction_column]}"
        transaction = None
        if text.isascii() or not vocabulary.ascii_only:
            transaction = vocabulary.words.get(text.casefold())
        if transaction is None:
            return None, f"unknown {vocabulary.noun} {_show(text)} (expected {vocabulary.expected})"
        return transaction, None

    def _read_time(self, cell: str) -> tuple[Optional[datetime], Optional[str]]:
        text = cell.strip()
        name = self.columns[self.time_column]
        if not text:
            return None, f"missing {name}"
        try:
            return self.time.parse(text), None
        except ValueError:
            return None, f"invalid {name} {_show(text)} (expected {self.time.shape})"


#: The moment format of the export's DateTime_Created; the fast path reads it in C.
TS14 = TimeFormat("YYYYMMDDHHMMSS", _parse_ts14)

#: The 10-column export, normally without a header. Only Transaction_Type, Employee_ID and
#: DateTime_Created are used; the other columns are never checked.
EXPORT = Layout(
    name="export",
    columns=EXPORT_COLUMNS,
    transaction_column=0,
    employee_column=1,
    time_column=5,
    vocabulary=Vocabulary(
        {t.value.casefold(): t for t in Transaction},
        noun="transaction type",
        expected="BON or BOF",
        collapse_spaces=False,
        ascii_only=True,
    ),
    time=TS14,
    header_by_first_cell=True,
    headerless=True,
)
#: The hand-made 3-column form; its header is mandatory.
SIMPLE = Layout(
    name="simple",
    columns=SIMPLE_COLUMNS,
    transaction_column=1,
    employee_column=0,
    time_column=2,
    vocabulary=Vocabulary(
        {"on duty": Transaction.BOOK_ON, "off duty": Transaction.BOOK_OFF},
        noun="Status",
        expected="On Duty or Off Duty",
        collapse_spaces=True,
        ascii_only=False,
    ),
    time=TimeFormat("YYYY-MM-DD HH:MM:SS", _parse_simple_ts),
)
#: Every layout, in the order their headers are tried.
LAYOUTS: tuple[Layout, ...] = (EXPORT, SIMPLE)


def layout_of_header(row: Sequence[str]) -> Optional[Layout]:
    """The layout whose header ``row`` is, or None when it is not a header row."""
    return next((layout for layout in LAYOUTS if layout.is_header(row)), None)


def _headerless_layout() -> Layout:
    """The layout of files that start without a header: the one the fast path is built for.

    The fast path reads the used cells in the order transaction, employee, moment, the moment
    in :data:`TS14`; a definition it cannot serve is refused here, at import.
    """
    (layout,) = (layout for layout in LAYOUTS if layout.headerless)
    if not (
        layout.transaction_column < layout.employee_column < layout.time_column
        and layout.time is TS14
        and layout.vocabulary.ascii_only
        and not layout.vocabulary.collapse_spaces
    ):
        raise RuntimeError(f"the fast path cannot read the {layout.name} layout")
    return layout


_FAST = _headerless_layout()
#: The transaction codes the fast path accepts exactly as written (upper case, no spaces).
_FAST_CODES = {word.upper(): t for word, t in _FAST.vocabulary.words.items()}


# -- getting at the text ----------------------------------------------------------------------


class _Text(NamedTuple):
    """What :func:`_inspect` found out about a file: enough to parse it."""

    text: Optional[str]  # the whole decoded text (small files), or None: stream from the file
    encoding: str  # "utf-8", "cp1252", "utf-16-le" or "utf-16-be"
    skip: int  # bytes to skip at the start (a byte-order mark)
    ascii_only: bool  # every character after the BOM is ASCII


#: UTF-16 byte-order marks and the codec that reads what follows them.
_UTF16_BOMS = ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def _utf16_codec(start: bytes) -> Optional[str]:
    return next((codec for bom, codec in _UTF16_BOMS if start.startswith(bom)), None)


def _os_reason(path: Path, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError) or (
        isinstance(exc, PermissionError) and os.path.isdir(path)  # Windows says EACCES
    ):
        return "is a directory, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot read file: {exc.strerror or exc}"


def _not_text(offset: int, byte: int) -> str:
    return f"not text: neither UTF-8 nor cp1252 (byte 0x{byte:02X} at offset {offset})"


def _binary(offset: int) -> str:
    return f"binary content (NUL byte at offset {offset})"


def _not_utf16(offset: int, codec: str) -> str:
    return f"not text: the byte-order mark says {codec.upper()[:6]}, but bytes at offset {offset} are not"


def _decode_utf16(path: Path, data: bytes, codec: str) -> _Text:
    try:
        text = data[2:].decode(codec)
    except UnicodeDecodeError as exc:
        raise InputFileError(path, _not_utf16(2 + exc.start, codec)) from None
    nul = text.find("\0")
    if nul >= 0:
        raise InputFileError(path, _binary(2 + len(text[:nul].encode(codec))))
    return _Text(text, codec, 2, text.isascii())


def _decode_whole(path: Path, data: bytes) -> _Text:
    codec = _utf16_codec(data)
    if codec is not None:
        return _decode_utf16(path, data, codec)
    skip = 3 if data.startswith(_UTF8_BOM) else 0
    nul = data.find(b"\0")
    if nul >= 0:
        raise InputFileError(path, _binary(nul))
    body = data[skip:] if skip else data
    if body.isascii():
        return _Text(body.decode("ascii"), "utf-8", skip, True)
    try:
        return _Text(body.decode("utf-8"), "utf-8", skip, False)
    except UnicodeDecodeError:
        pass
    try:
        return _Text(body.decode("cp1252"), "cp1252", skip, False)
    except UnicodeDecodeError as exc:
        raise InputFileError(path, _not_text(skip + exc.start, body[exc.start])) from None


def _check_big(path: Path, f: BinaryIO) -> _Text:
    """Check a big file chunk by chunk: NUL bytes, UTF-8 (incrementally), else cp1252."""
    first = f.read(_CHUNK)
    codec = _utf16_codec(first)
    if codec is not None:
        return _check_big_utf16(path, f, first, codec)
    skip = 3 if first.startswith(_UTF8_BOM) else 0
    utf8 = codecs.getincrementaldecoder("utf-8")()
    utf8_ok = True
    ascii_only = True
    chunk = first[skip:]
    offset = skip
    while chunk:
        nul = chunk.find(b"\0")
        if nul >= 0:
            raise InputFileError(path, _binary(offset + nul))
        if ascii_only and not chunk.isascii():
            ascii_only = False
        if utf8_ok and not ascii_only:
            try:
                utf8.decode(chunk)
            except UnicodeDecodeError:
                utf8_ok = False
        offset += len(chunk)
        chunk = f.read(_CHUNK)
    if utf8_ok:
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8_ok = False
    if utf8_ok:
        return _Text(None, "utf-8", skip, ascii_only)

    f.seek(skip)
    offset = skip
    chunk = f.read(_CHUNK)
    while chunk:
        try:
            chunk.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise InputFileError(path, _not_text(offset + exc.start, chunk[exc.start])) from None
        offset += len(chunk)
        chunk = f.read(_CHUNK)
    return _Text(None, "cp1252", skip, False)


def _check_big_utf16(path: Path, f: BinaryIO, first: bytes, codec: str) -> _Text:
    """Check a big UTF-16 file chunk by chunk: it decodes, and holds no NUL character."""
    decoder = codecs.getincrementaldecoder(codec)()
    ascii_only = True
    chunk, offset = first[2:], 2
    while True:
        final = not chunk
        try:
            text = decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            raise InputFileError(path, _not_utf16(offset + exc.start, codec)) from None
        nul = text.find("\0")
        if nul >= 0:  # (a byte held over from the last chunk may shift this offset by one)
            raise InputFileError(path, _binary(offset + len(text[:nul].encode(codec))))
        ascii_only = ascii_only and text.isascii()
        if final:
            return _Text(None, codec, 2, ascii_only)
        offset += len(chunk)
        chunk = f.read(_CHUNK)


def _inspect(path: Path) -> _Text:
    """Check that ``path`` is a readable text file and choose its encoding.

    Small files are read and decoded here in one go. Bigger ones are read chunk by chunk, the
    UTF-8 check made with an incremental decoder (so memory stays bounded), and cp1252
    checked the same way when UTF-8 fails.
    """
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise InputFileError(path, "is a directory, not a file")
            if not stat.S_ISREG(st.st_mode):
                raise InputFileError(path, "not a regular file")
            if st.st_size <= _CHUNK:
                # Sized by fstat, one read: no 1 MiB buffer for a 2 KiB file. A file still
                # being written may have grown since; that is fine, we read what is there.
                return _decode_whole(path, f.read())
            return _check_big(path, f)
    except OSError as exc:
        raise InputFileError(path, _os_reason(path, exc), exc) from None


# -- parsing --------------------------------------------------------------------------------


def read_bobo_file(path: Path) -> Iterator[Union[BOBOEntry, BadRow]]:
    """Read one BOBO file: a lazy stream of :class:`BOBOEntry` and :class:`BadRow`, in order.

    The file is checked when this is called (not on the first ``next()``): it raises
    :class:`~bobosync.errors.InputFileError` if the file is missing, not readable, a
    directory, holds a NUL byte, or is neither UTF-8 (with or without BOM) nor cp1252. If the
    file changes under our feet while it is being read and becomes undecodable, the iterator
    raises InputFileError too. Nothing else escapes: broken records (including ones the csv
    module refuses, such as an oversized field) are yielded as BadRow and reading goes on.
    Blank lines and a header row yield nothing.
    """
    found = _inspect(path)  # (a str path works too; Path(path) would cost a re-parse)
    return itertools.chain.from_iterable(_blocks(path, found))


# How the rows get out: _blocks() yields one iterator per block of lines (about _BLOCK_CHARS
# characters) and read_bobo_file chains them. A block in which every line is a well-formed
# export row (the normal case) becomes a pipeline of C-level iterators (regex findall, map,
# zip): no Python code runs per row. Any other block goes through _slow_block(), one line at
# a time, and within it every line that is not plainly well formed goes through the csv
# module and the layout's check_row, the one complete statement of the rules.


@functools.lru_cache(maxsize=4)
def _good_row_regex(field_limit: int) -> re.Pattern[str]:
    """One well-formed line of the headerless layout, capturing (type, ID, YYYYMMDD, HHMMSS).

    Built from the layout's definition; exactly the lines the fast path of :func:`_slow_block`
    accepts, before the date check: the layout's number of cells; no quote, CR, LF or NUL
    inside a cell (so the csv module would split the line on its commas), none longer than
    the csv field limit; a transaction code exactly as written (BON/BOF); an ID of 1 to 64
    ASCII letters and digits; 14 ASCII digits. Anchored on each line (MULTILINE); the CR of a
    CRLF may come just before the LF (or the end of the text).
    """
    cells = [f'[^,"\\r\\n\\x00]{{0,{field_limit}}}'] * len(_FAST.columns)
    cells[_FAST.transaction_column] = "(" + "|".join(map(re.escape, _FAST_CODES)) + ")"
    cells[_FAST.employee_column] = f"([A-Za-z0-9]{{1,{_MAX_ID_LEN}}})"
    cells[_FAST.time_column] = "([0-9]{8})([0-9]{6})"
    return re.compile("^" + ",".join(cells) + "\\r?$", re.MULTILINE)


def _blocks(path: Path, found: _Text) -> Iterator[Iterator[Union[BOBOEntry, BadRow]]]:
    try:
        if found.text is not None:
            yield from _file_blocks(io.StringIO(found.text, newline=""), found.ascii_only)
            return
        with open(path, "rb") as raw:
            raw.seek(found.skip)
            with io.TextIOWrapper(raw, encoding=found.encoding, newline="") as lines:
                yield from _file_blocks(lines, found.ascii_only)
    except UnicodeDecodeError as exc:
        raise InputFileError(path, f"file changed while being read: {exc.reason}") from None
    except OSError as exc:
        raise InputFileError(path, _os_reason(path, exc), exc) from None


def _read_record(first: str, rest: Iterator[str]) -> tuple[Sequence[str], Optional[str], int, bool]:
    """Parse the CSV record that starts with line ``first``, taking more lines from ``rest``
    while a quoted field runs on. Returns ``(cells, csv error or None, lines used, open end)``,
    the last saying that the record's last line has no line ending (the end of the file).

    A record always ends at the end of a line, so a fresh reader per record splits a file
    exactly as one reader over the whole file would.
    """
    taken: list[str] = []  # the lines after ``first`` that the record took

    def lines() -> Iterator[str]:
        yield first
        for line in rest:
            taken.append(line)
            yield line

    reader = csv.reader(lines())
    try:
        row: Sequence[str] = next(reader)
    except csv.Error as exc:
        return (), f"unreadable CSV record: {exc}", reader.line_num, _open_end(taken[-1] if taken else first)
    except StopIteration:  # pragma: no cover - a reader given a line always yields a row
        return (), None, 1, False
    open_end = _open_end(taken[-1] if taken else first)
    # Only a record that holds something counts: a lone quote before blank lines loses nothing.
    if taken and not _is_blank(row) and _quote_never_closed(first, taken):
        return (
            (),
            (
                f"{UNCLOSED_QUOTE}: the {len(taken)} line(s) after it, to the end of the file, "
                "were swallowed by this record and not read"
            ),
            reader.line_num,
            open_end,
        )
    return row, None, reader.line_num, open_end


def _open_end(line: str) -> bool:
    """A line without a line ending: only the last line of a file can be one."""
    return not line.endswith(("\n", "\r"))


def _flag_open_end(item: Union[BOBOEntry, BadRow, None], open_end: bool) -> Union[BOBOEntry, BadRow, None]:
    if open_end and isinstance(item, BadRow):
        return item._replace(open_end=True)
    return item


#: The start of the reason given when an opening quote is never closed: every later line of
#: the file became part of one broken record, so the file cannot be trusted as read.
UNCLOSED_QUOTE = "a quoted field is never closed"


def swallows_rest(bad: BadRow) -> bool:
    """True when this bad row took the rest of its file with it (an unclosed quote)."""
    return bad.reason.startswith(UNCLOSED_QUOTE)


def _quote_never_closed(first: str, taken: list[str]) -> bool:
    """The lenient reader ends an unclosed quote at the end of the file; a strict one says so."""
    try:
        next(csv.reader(itertools.chain((first,), taken), strict=True))
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


class _LineCounter:
    """Physical lines consumed so far, shared between a block generator and its caller."""

    __slots__ = ("lineno",)

    def __init__(self, lineno: int) -> None:
        self.lineno = lineno


def _file_blocks(f: TextIO, ascii_only: bool) -> Iterator[Iterator[Union[BOBOEntry, BadRow]]]:
    lineno = 0  # physical lines consumed so far
    good_rows = _good_row_regex(csv.field_size_limit())

    # The first non-blank record says which layout this is. A first line that is a good
    # export row (the usual case) settles it at once and goes with the first block.
    layout = _FAST
    first: list[Union[BOBOEntry, BadRow]] = []
    pending: list[str] = []
    for line in f:
        if good_rows.match(line):
            pending.append(line)
            break
        start = lineno + 1
        row, error, used, open_end = _read_record(line, f)
        lineno += used
        if error is not None:
            first.append(BadRow(start, error, open_end))
            break
        if _is_blank(row):
            continue
        header = layout_of_header(row)
        if header is None:
            item = _flag_open_end(_FAST.check_row(row, start), open_end)
            if item is not None:
                first.append(item)
        else:
            layout = header
        break
    if first:
        yield iter(first)
    if layout is not _FAST:
        yield _iter_layout(f, lineno, layout)
        return

    new_entry: Callable[..., BOBOEntry] = tuple.__new__
    repeat = itertools.repeat
    add = operator.add
    fromiso = datetime.fromisoformat
    tx_of = _FAST_CODES.__getitem__
    while True:
        block = f.readlines(_BLOCK_CHARS)
        if pending:
            block[:0] = pending
            pending = []
        if not block:
            return
        n = len(block)
        rows = good_rows.findall("".join(block))
        if len(rows) == n:
            # Every line is a good row (a lone CR inside a line would split it in two for
            # the csv module and give fewer matches than lines). Only the dates remain to be
            # checked: all at once, in C.
            codes, ids, days, times = zip(*rows)
            try:
                if _FAST_ISO:
                    when = list(map(fromiso, map(add, map(add, days, repeat("T")), times)))
                else:
                    when = list(map(_day_time, days, times))
            except ValueError:
                pass  # some date is not real: the slow way will say which
            else:
                numbers = range(lineno + 1, lineno + n + 1)
                lineno += n
                yield map(new_entry, repeat(BOBOEntry), zip(map(tx_of, codes), ids, when, numbers))
                continue
        # chain.from_iterable asks for the next block only once this one is exhausted, so
        # the line count is up to date when we get here again.
        counter = _LineCounter(lineno)
        yield _slow_block(iter(block), f, counter, ascii_only)
        lineno = counter.lineno


def _day_time(day: str, time: str) -> datetime:
    """``YYYYMMDD`` and ``HHMMSS``, known to be ASCII digits (the regex matched) -> datetime.

    Python 3.9 and 3.10 only (no ISO basic format in fromisoformat); ValueError if not real.
    """
    return datetime(int(day[:4]), int(day[4:6]), int(day[6:]), int(time[:2]), int(time[2:4]), int(time[4:]))


def _slow_block(
    lines: Iterator[str], f: TextIO, counter: _LineCounter, ascii_only: bool
) -> Iterator[Union[BOBOEntry, BadRow]]:
    """The rows of one block of export lines, one line at a time.

    A record whose quoted field runs on past the block's last line takes the lines it needs
    from ``f`` (the rest of the file).

    A line holding no quote or NUL, no longer than the csv field limit, is split on ',' as the csv
    module would split it (the line ending stays on the last cell, which is never used). It is
    accepted right here only when cheap checks prove that the layout's check_row would accept
    it with the same result: its number of cells; a transaction code exactly as written; an
    alphanumeric ASCII ID of at most 64 characters (so nothing to trim); 14 digits forming a
    real date and time. Every other line goes through the csv module and the complete checks.
    """
    rest = itertools.chain(lines, f)
    lineno = counter.lineno
    limit = csv.field_size_limit()
    tx_get = _FAST_CODES.get
    new_entry: Callable[..., BOBOEntry] = tuple.__new__
    max_id = _MAX_ID_LEN
    # Split just past the moment's cell: the used cells, then the rest unsplit.
    splits = _FAST.time_column + 1
    used_cells = operator.itemgetter(_FAST.transaction_column, _FAST.employee_column, _FAST.time_column, splits)
    commas_after = len(_FAST.columns) - splits - 1  # in that unsplit rest
    check_row = _FAST.check_row
    for line in lines:
        lineno += 1
        if '"' not in line and "\x00" not in line and len(line) <= limit:
            try:
                code, employee_id, created, tail = used_cells(line.split(",", splits))
            except IndexError:
                pass  # fewer cells
            else:
                transaction = tx_get(code)
                if (
                    transaction is not None
                    and tail.count(",") == commas_after
                    and employee_id.isalnum()
                    and len(employee_id) <= max_id
                    and (ascii_only or employee_id.isascii())
                    and len(created) == 14
                    and created.isdigit()
                ):
                    try:
                        if _FAST_ISO:
                            when = datetime.fromisoformat(created[:8] + "T" + created[8:])
                        else:
                            when = _ts14_ints(created)
                    except ValueError:
                        pass  # not a real date and time: the complete check says so
                    else:
                        yield new_entry(BOBOEntry, (transaction, employee_id, when, lineno))
                        continue
        start = lineno
        row, error, used, open_end = _read_record(line, rest)
        lineno += used - 1
        if error is not None:
            yield BadRow(start, error, open_end)
            continue
        item = _flag_open_end(check_row(row, start), open_end)
        if item is not None:
            yield item
    counter.lineno = lineno


def _iter_layout(f: TextIO, lineno: int, layout: Layout) -> Iterator[Union[BOBOEntry, BadRow]]:
    """The rest of a file in ``layout``, its header already read (``lineno`` lines so far)."""
    latest = [""]  # the last line the reader took: a record's last line once it yields it

    def lines() -> Iterator[str]:
        for line in f:
            latest[0] = line
            yield line

    reader = csv.reader(lines())
    last = 0
    while True:
        try:
            for row in reader:
                start, last = lineno + last + 1, reader.line_num
                item = _flag_open_end(layout.check_row(row, start), _open_end(latest[0]))
                if item is not None:
                    yield item
            return
        except csv.Error as exc:
            start, last = lineno + last + 1, reader.line_num
            yield BadRow(start, f"unreadable CSV record: {exc}", _open_end(latest[0]))


def file_fingerprint(path: Path) -> tuple[int, str]:
    """``(size in bytes, SHA-256 hex digest)`` of a file, read in chunks.

    Raises InputFileError when the file cannot be read.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            chunk = f.read(_CHUNK)
            while chunk:
                size += len(chunk)
                digest.update(chunk)
                chunk = f.read(_CHUNK)
    except OSError as exc:
        raise InputFileError(path, _os_reason(Path(path), exc), exc) from None
    return size, digest.hexdigest()

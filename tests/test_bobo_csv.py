"""Reading BOBO files (bobosync.bobo_csv): every rule, on real files in tmp_path."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import sys
import tracemalloc
from datetime import datetime
from pathlib import Path
from typing import Optional, Union
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bobosync import bobo_csv
from bobosync.bobo_csv import (
    BadRow,
    BOBOEntry,
    Transaction,
    file_fingerprint,
    read_bobo_file,
    swallows_rest,
)
from bobosync.errors import BadRowError, InputFileError

Item = Union[BOBOEntry, BadRow]

HEADER = (
    "Transaction_Type,Employee_ID,Payroll_ID,Clocking_Date,Clocking_Time,"
    "DateTime_Created,Geo_Status,Geo_Latitude,Geo_Longitude,Geo_Accuracy"
)


def row(
    tx: str = "BON",
    emp: str = "12345",
    created: str = "20240617143000",
    payroll: str = "PAY001",
    geo: str = "1",
) -> str:
    """One 10-column export line (no line ending)."""
    return f"{tx},{emp},{payroll},{created[:8]},{created[8:]},{created},{geo},40.7128,-74.0060,5.0"


def write(tmp_path: Path, content: Union[str, bytes], name: str = "BOBO_test.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def read(tmp_path: Path, content: Union[str, bytes]) -> list[Item]:
    return list(read_bobo_file(write(tmp_path, content)))


def entries(items: list[Item]) -> list[BOBOEntry]:
    return [i for i in items if isinstance(i, BOBOEntry)]


def bad(items: list[Item]) -> list[BadRow]:
    return [i for i in items if isinstance(i, BadRow)]


def one_line(tmp_path: Path, line: str) -> Item:
    """The result for ``line``, checked the same in every position the reader treats apart:
    first record of the file; in a block of good rows (the regex fast path); in a block that
    has a bad row (the line-by-line path, with its own fast path)."""
    alone = read(tmp_path, line + "\r\n")
    assert len(alone) == 1, alone
    good, broken = row(emp="G1"), row("XYZ", emp="B1")
    in_good_block = read(tmp_path, f"{good}\r\n{good}\r\n{line}\r\n{good}\r\n")
    in_mixed_block = read(tmp_path, f"{good}\r\n{broken}\r\n{line}\r\n{good}\r\n")
    assert len(in_good_block) == len(in_mixed_block) == 4
    for item in (in_good_block[2], in_mixed_block[2]):
        assert item == alone[0]._replace(row_number=3)
    return alone[0]


def only_bad(tmp_path: Path, line: str) -> BadRow:
    item = one_line(tmp_path, line)
    assert isinstance(item, BadRow), item
    return item


def only_entry(tmp_path: Path, line: str) -> BOBOEntry:
    item = one_line(tmp_path, line)
    assert isinstance(item, BOBOEntry), item
    return item


# -- the export format ----------------------------------------------------------------------


def test_export_rows_become_entries(tmp_path: Path) -> None:
    items = read(
        tmp_path,
        row("BON", "12345", "20240617143000") + "\r\n" + row("BOF", "67890", "20240617143100") + "\r\n",
    )
    assert items == [
        BOBOEntry(Transaction.BOOK_ON, "12345", datetime(2024, 6, 17, 14, 30, 0), 1),
        BOBOEntry(Transaction.BOOK_OFF, "67890", datetime(2024, 6, 17, 14, 31, 0), 2),
    ]
    first, second = entries(items)
    assert first.is_book_on and not second.is_book_on
    assert first.transaction == "BON" and isinstance(first.transaction, Transaction)
    assert type(first.employee_id) is str


def test_event_time_is_datetime_created_not_clocking_columns(tmp_path: Path) -> None:
    line = "BON,12345,PAY001,20240101,010101,20240617143005,1,40.7,-74.0,5.0"
    assert only_entry(tmp_path, line).event_time == datetime(2024, 6, 17, 14, 30, 5)


def test_reader_returns_iterator_and_checks_file_eagerly(tmp_path: Path) -> None:
    path = write(tmp_path, row() + "\n")
    it = read_bobo_file(path)
    assert iter(it) is it
    assert len(list(it)) == 1
    assert len(list(read_bobo_file(str(path)))) == 1  # type: ignore[arg-type]
    with pytest.raises(InputFileError):
        read_bobo_file(tmp_path / "missing.csv")  # raised by the call, before any next()


@pytest.mark.parametrize(
    "header",
    [HEADER, HEADER.lower(), HEADER.upper(), "  Transaction_Type ,Employee_ID", HEADER + ",,"],
)
def test_export_header_is_skipped_silently(tmp_path: Path, header: str) -> None:
    items = read(tmp_path, header + "\r\n" + row() + "\r\n")
    assert items == [BOBOEntry(Transaction.BOOK_ON, "12345", datetime(2024, 6, 17, 14, 30), 2)]


def test_header_after_blank_lines_and_bom_is_skipped(tmp_path: Path) -> None:
    content = codecs.BOM_UTF8 + ("\r\n  \r\n,,,\r\n" + HEADER + "\r\n" + row() + "\r\n").encode()
    items = read(tmp_path, content)
    assert items == [BOBOEntry(Transaction.BOOK_ON, "12345", datetime(2024, 6, 17, 14, 30), 5)]


def test_header_row_later_in_the_file_is_a_bad_row(tmp_path: Path) -> None:
    items = read(tmp_path, row() + "\n" + HEADER + "\n")
    assert len(entries(items)) == 1
    assert bad(items) == [BadRow(2, "unknown transaction type 'Transaction_Type' (expected BON or BOF)")]


def test_blank_lines_are_skipped_and_row_numbers_are_physical_lines(tmp_path: Path) -> None:
    content = "\n" + row(emp="1") + "\n\n   \n,,,,,,,,,\n" + row(emp="2") + "\n\n"
    items = read(tmp_path, content)
    assert [(e.employee_id, e.row_number) for e in entries(items)] == [("1", 2), ("2", 6)]
    assert bad(items) == []


def test_empty_file_and_blank_only_file_yield_nothing(tmp_path: Path) -> None:
    assert read(tmp_path, b"") == []
    assert read(tmp_path, "\r\n\r\n  \r\n") == []
    assert read(tmp_path, HEADER + "\r\n") == []
    assert read(tmp_path, codecs.BOM_UTF8) == []


@pytest.mark.parametrize("ending", ["\r\n", "\n", "\r"])
def test_line_endings(tmp_path: Path, ending: str) -> None:
    content = ending.join([row(emp="1"), row(emp="2"), "XYZ,3", row(emp="4")]) + ending
    items = read(tmp_path, content)
    assert [(e.employee_id, e.row_number) for e in entries(items)] == [("1", 1), ("2", 2), ("4", 4)]
    assert [b.row_number for b in bad(items)] == [3]


def test_mixed_line_endings_and_no_final_newline(tmp_path: Path) -> None:
    content = row(emp="1") + "\r\n" + row(emp="2") + "\n" + row(emp="3") + "\r" + row(emp="4")
    items = read(tmp_path, content)
    assert [(e.employee_id, e.row_number) for e in entries(items)] == [
        ("1", 1),
        ("2", 2),
        ("3", 3),
        ("4", 4),
    ]


# -- encodings ------------------------------------------------------------------------------


def test_utf8_bom_does_not_turn_book_on_into_book_off(tmp_path: Path) -> None:
    items = read(tmp_path, codecs.BOM_UTF8 + (row("BON") + "\r\n").encode())
    assert len(items) == 1 and isinstance(items[0], BOBOEntry)
    assert items[0].transaction is Transaction.BOOK_ON


def test_bom_character_in_cell_is_stripped(tmp_path: Path) -> None:
    # A BOM in the text itself (files glued together), not at the start of the bytes.
    items = read(tmp_path, row(emp="1") + "\n\ufeff" + row("BON", emp="2") + "\n")
    assert [(e.transaction, e.employee_id) for e in entries(items)] == [
        (Transaction.BOOK_ON, "1"),
        (Transaction.BOOK_ON, "2"),
    ]
    entry = BOBOEntry.from_csv_row(["\ufeffBON", *row(emp="3").split(",")[1:]])
    assert entry.transaction is Transaction.BOOK_ON


def test_cp1252_file_is_read(tmp_path: Path) -> None:
    content = row(payroll="Zoë") + "\r\n" + row("BOF", emp="05990", payroll="Ærø") + "\r\n"
    data = content.encode("cp1252")
    assert b"\xeb" in data
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    items = read(tmp_path, data)
    assert [(e.transaction, e.employee_id) for e in entries(items)] == [
        (Transaction.BOOK_ON, "12345"),
        (Transaction.BOOK_OFF, "05990"),
    ]
    assert bad(items) == []


def test_utf8_non_ascii_file_is_read(tmp_path: Path) -> None:
    items = read(tmp_path, (row(payroll="Zoë") + "\n" + row(emp="Zoë") + "\n").encode("utf-8"))
    assert len(entries(items)) == 1
    assert bad(items) == [BadRow(2, "invalid Employee_ID 'Zoë'")]


def test_bom_followed_by_cp1252_bytes(tmp_path: Path) -> None:
    data = codecs.BOM_UTF8 + (row(payroll="Zoë") + "\r\n").encode("cp1252")
    items = read(tmp_path, data)
    assert len(items) == 1 and isinstance(items[0], BOBOEntry)
    assert items[0].transaction is Transaction.BOOK_ON


def test_bytes_invalid_in_cp1252_too_are_refused(tmp_path: Path) -> None:
    data = (row() + "\r\n").encode() + b"BON,1,PAY\x81,x\r\n"
    path = write(tmp_path, data)
    with pytest.raises(InputFileError) as info:
        read_bobo_file(path)
    offset = data.index(b"\x81")
    assert info.value.reason == (f"not text: neither UTF-8 nor cp1252 (byte 0x81 at offset {offset})")
    assert info.value.path == path


def test_nul_byte_means_binary(tmp_path: Path) -> None:
    data = (row() + "\r\n").encode() + b"BON,1,\x00,x\r\n"
    with pytest.raises(InputFileError) as info:
        read_bobo_file(write(tmp_path, data))
    assert info.value.reason == f"binary content (NUL byte at offset {data.index(0)})"


def test_binary_file_is_refused(tmp_path: Path) -> None:
    data = b"PK\x03\x04" + bytes(range(256))
    with pytest.raises(InputFileError, match="binary content"):
        read_bobo_file(write(tmp_path, data))


# -- files that cannot be read ----------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as info:
        read_bobo_file(tmp_path / "nope.csv")
    assert info.value.reason == "file not found"
    assert "nope.csv" in str(info.value)


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    with pytest.raises(InputFileError) as info:
        read_bobo_file(folder)
    assert info.value.reason == "is a directory, not a file"


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_device_is_not_a_regular_file() -> None:
    with pytest.raises(InputFileError) as info:
        read_bobo_file(Path("/dev/null"))
    assert info.value.reason == "not a regular file"


@pytest.mark.skipif(
    sys.platform == "win32" or (hasattr(os, "geteuid") and os.geteuid() == 0),
    reason="needs POSIX permissions and a non-root user",
)
def test_permission_denied(tmp_path: Path) -> None:
    path = write(tmp_path, row() + "\n")
    path.chmod(0)
    try:
        with pytest.raises(InputFileError) as info:
            read_bobo_file(path)
        assert info.value.reason == "permission denied"
    finally:
        path.chmod(0o644)


def test_permission_denied_is_mapped(tmp_path: Path) -> None:
    # Runs as root too: the OS error itself is simulated.
    path = write(tmp_path, row() + "\n")
    denied = PermissionError(13, "Permission denied")
    with mock.patch("builtins.open", side_effect=denied), pytest.raises(InputFileError) as info:
        read_bobo_file(path)
    assert info.value.reason == "permission denied"


# -- transaction types ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tx", "expected"),
    [
        ("BON", Transaction.BOOK_ON),
        ("bon", Transaction.BOOK_ON),
        (" BON ", Transaction.BOOK_ON),
        ("Bon", Transaction.BOOK_ON),
        ("BOF", Transaction.BOOK_OFF),
        ("bof", Transaction.BOOK_OFF),
        ("\tBOF  ", Transaction.BOOK_OFF),
    ],
)
def test_transaction_type_case_and_padding(tmp_path: Path, tx: str, expected: Transaction) -> None:
    assert only_entry(tmp_path, row(tx)).transaction is expected


def fullwidth(text: str) -> str:
    """``text`` in full-width forms (letters and digits that look ASCII but are not)."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


@pytest.mark.parametrize("tx", ["XYZ", "BONX", "B0N", "BO", "ON", "OFF", fullwidth("BON"), "1"])
def test_unknown_transaction_type_is_a_bad_row_never_book_off(tmp_path: Path, tx: str) -> None:
    assert only_bad(tmp_path, row(tx)).reason == (f"unknown transaction type {tx!r} (expected BON or BOF)")


def test_missing_transaction_type(tmp_path: Path) -> None:
    assert only_bad(tmp_path, row("  ")).reason == "missing Transaction_Type"


# -- Employee_ID ----------------------------------------------------------------------------


def test_employee_id_keeps_leading_zeros(tmp_path: Path) -> None:
    items = read(tmp_path, row(emp="05990") + "\n" + row(emp="5990") + "\n")
    ids = [e.employee_id for e in entries(items)]
    assert ids == ["05990", "5990"]
    assert ids[0] != ids[1]


@pytest.mark.parametrize("emp", ["A", "PAY001", "ab-12.3_x", "x" * 64, "9" * 64, " 05990 "])
def test_valid_employee_ids(tmp_path: Path, emp: str) -> None:
    assert only_entry(tmp_path, row(emp=emp)).employee_id == emp.strip()


def test_missing_employee_id(tmp_path: Path) -> None:
    assert only_bad(tmp_path, row(emp="")).reason == "missing Employee_ID"
    assert only_bad(tmp_path, row(emp="   ")).reason == "missing Employee_ID"


@pytest.mark.parametrize(
    "emp",
    [
        "=cmd|' /C calc'!A0",
        "=1+1",
        "+123",
        "-123",
        "@SUM(A1)",
        ".123",
        "12 34",
        "x" * 65,
        "Zoë",
        fullwidth("123"),
        "12\t34",
    ],
)
def test_invalid_employee_ids(tmp_path: Path, emp: str) -> None:
    reason = only_bad(tmp_path, row(emp=emp)).reason
    shown = emp if len(emp) <= 40 else emp[:40] + "..."
    assert reason == f"invalid Employee_ID {shown!r}"


def test_long_values_are_cut_short_in_reasons(tmp_path: Path) -> None:
    reason = only_bad(tmp_path, row(emp="=" + "A" * 500)).reason
    assert len(reason) < 80
    assert reason.startswith("invalid Employee_ID '=AAAA") and reason.endswith("...'")


# -- DateTime_Created -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "created",
    [
        "20240230143000",  # 30 February
        "20230229120000",  # not a leap year
        "20240617250000",  # hour 25
        "20240617240000",  # hour 24
        "20240617236000",  # minute 60
        "20240617235960",  # second 60
        "20241317143000",  # month 13
        "20240017143000",  # month 0
        "00000101000000",  # year 0
        "2024061714300",  # 13 digits
        "202406171430000",  # 15 digits
        "2024-06-17T14:3",  # 15 characters, not digits
        "2024061714300x",
        "20240617 43000",
        "+0240617143000",
        "2024-W01143000",  # an ISO week date: fromisoformat would take it
        "20240617T14:30Z"[:14],
        "٢٠٢٤٠٦١٧١٤٣٠٠٠",  # Arabic-Indic digits: int() would take them
        fullwidth("20240617143000"),
    ],
)
def test_invalid_datetime_created(tmp_path: Path, created: str) -> None:
    line = f"BON,12345,PAY001,20240617,143000,{created},1,40.7,-74.0,5.0"
    shown = created if len(created) <= 40 else created[:40] + "..."
    assert only_bad(tmp_path, line).reason == (f"invalid DateTime_Created {shown!r} (expected YYYYMMDDHHMMSS)")


def test_missing_datetime_created(tmp_path: Path) -> None:
    line = "BON,12345,PAY001,20240617,143000,,1,40.7,-74.0,5.0"
    assert only_bad(tmp_path, line).reason == "missing DateTime_Created"


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        ("20240229000000", datetime(2024, 2, 29)),
        ("20000229235959", datetime(2000, 2, 29, 23, 59, 59)),
        ("00010101000000", datetime(1, 1, 1)),
        ("99991231235959", datetime(9999, 12, 31, 23, 59, 59)),
        (" 20240617143000 ", datetime(2024, 6, 17, 14, 30)),
    ],
)
def test_valid_datetime_created(tmp_path: Path, created: str, expected: datetime) -> None:
    line = f"BON,12345,PAY001,20240617,143000,{created},1,40.7,-74.0,5.0"
    assert only_entry(tmp_path, line).event_time == expected


# -- columns --------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 6, 7, 9])
def test_too_few_columns(tmp_path: Path, count: int) -> None:
    cells = row().split(",")[:count]
    assert only_bad(tmp_path, ",".join(cells)).reason == f"expected 10 columns, found {count}"


def test_extra_columns_with_content_are_refused(tmp_path: Path) -> None:
    assert only_bad(tmp_path, row() + ",extra").reason == "expected 10 columns, found 11"
    assert only_bad(tmp_path, row() + ",,x,").reason == "expected 10 columns, found 13"


def test_trailing_empty_columns_are_accepted(tmp_path: Path) -> None:
    assert only_entry(tmp_path, row() + ",").employee_id == "12345"
    assert only_entry(tmp_path, row() + ",,,  ,").employee_id == "12345"


def test_ignored_columns_never_reject_a_row(tmp_path: Path) -> None:
    for line in [
        "BON,12345,,,,20240617143000,,,,",
        "BON,12345,???,not a date,nope,20240617143000,x,north,west,far",
        "BON,12345,PAY001,20240617,143000,20240617143000,,40.7,-74.0,",
        "BON,12345,Zoë  O'Brien,20240617,143000,20240617143000,9, , ,",
    ]:
        assert only_entry(tmp_path, line).event_time == datetime(2024, 6, 17, 14, 30)


def test_quoted_fields_with_commas_and_newlines(tmp_path: Path) -> None:
    content = (
        'BON,1,"PAY,001",20240617,143000,20240617143000,1,"40,7",-74.0,5.0\r\n'
        'BOF,2,"multi\r\nline\nnote",20240617,143000,20240617143001,1,2,3,4\r\n'
        '"BON","3",P,D,T,"20240617143002",,,,\r\n'
        "BON,4,P,D,T,20240617143003,1,2,3,4\r\n"
    )
    items = read(tmp_path, content)
    assert [(e.employee_id, e.row_number, e.event_time.second) for e in entries(items)] == [
        ("1", 1, 0),
        ("2", 2, 1),
        ("3", 5, 2),
        ("4", 6, 3),
    ]
    assert bad(items) == []


def test_quoted_field_whose_lines_each_look_like_rows(tmp_path: Path) -> None:
    # Line by line, both physical lines are well-formed rows; as CSV they are one record
    # of 5 cells. Checked in a block of good rows and in a block holding a bad row.
    tricky = 'BON,1,"P,D,T,20240617143000,1,2,3,4\r\nBON,2,P,D,T,20240617143001,1,2",3,4\r\n'
    for prefix in ["", row(emp="G") + "\r\n", row(emp="G") + "\r\n" + row("XYZ") + "\r\n"]:
        items = read(tmp_path, prefix + tricky + row(emp="H") + "\r\n")
        n = prefix.count("\n")
        assert items[-2:] == [
            BadRow(n + 1, "expected 10 columns, found 5"),
            BOBOEntry(Transaction.BOOK_ON, "H", datetime(2024, 6, 17, 14, 30), n + 3),
        ]


def test_unterminated_quote_at_end_of_file(tmp_path: Path) -> None:
    items = read(tmp_path, row(emp="1") + '\nBON,2,"never closed,\n' + row(emp="3") + "\n")
    assert [e.employee_id for e in entries(items)] == ["1"]
    (broken,) = bad(items)
    assert broken.row_number == 2 and swallows_rest(broken)
    assert broken.reason.startswith("a quoted field is never closed: the 1 line(s) after it")


# -- oversized records and the csv field limit ---------------------------------------------------


def test_ten_megabyte_line_is_a_bad_row_and_reading_goes_on(tmp_path: Path) -> None:
    huge = "BON,1,PAY" + "x" * (10 * 1024 * 1024) + ",20240617,143000,20240617143000,1,2,3,4"
    content = row(emp="0") + "\r\n" + huge + "\r\n" + row(emp="2") + "\r\n"
    items = read(tmp_path, content)
    assert [(e.employee_id, e.row_number) for e in entries(items)] == [("0", 1), ("2", 3)]
    (bad_row,) = bad(items)
    assert bad_row.row_number == 2
    assert bad_row.reason.startswith("unreadable CSV record: field larger than field limit")


def test_oversized_field_in_a_small_file(tmp_path: Path) -> None:
    big = "y" * (csv.field_size_limit() + 10)
    content = row(emp="0") + "\n" + row(emp="1", payroll=big) + "\n" + row(emp="2") + "\n"
    assert len(content) < 1024 * 1024  # the in-memory path
    items = read(tmp_path, content)
    assert [(e.employee_id, e.row_number) for e in entries(items)] == [("0", 1), ("2", 3)]
    assert [b.row_number for b in bad(items)] == [2]
    assert "field larger than field limit" in bad(items)[0].reason


def test_oversized_quoted_field_spanning_lines(tmp_path: Path) -> None:
    big = ("z" * 1000 + "\n") * 200  # 200 lines inside one quoted field
    content = row(emp="0") + '\nBON,1,"' + big + '",x\n' + row(emp="2") + "\n"
    items = read(tmp_path, content)
    assert entries(items)[0].row_number == 1
    assert [b.row_number for b in bad(items)][:1] == [2]
    assert all(isinstance(i, (BOBOEntry, BadRow)) for i in items)


# -- big files (streamed from disk) -----------------------------------------------------------------


def test_big_file_is_streamed_and_parsed_like_a_small_one(tmp_path: Path) -> None:
    lines = [row(emp=str(n), created=f"20240617{n % 24:02d}{n % 60:02d}00") for n in range(30000)]
    lines[100] = row("XYZ")
    lines[20000] = ""
    content = "\r\n".join(lines) + "\r\n"
    assert len(content) > 2 * 1024 * 1024
    items = read(tmp_path, content)
    assert len(items) == 29999
    assert bad(items) == [BadRow(101, "unknown transaction type 'XYZ' (expected BON or BOF)")]
    numbers = [e.row_number for e in entries(items)]
    assert numbers == [n + 1 for n in range(30000) if n not in (100, 20000)]


def test_big_cp1252_file(tmp_path: Path) -> None:
    content = "".join(row(emp=str(n), payroll="Zoë") + "\n" for n in range(20000))
    items = read(tmp_path, content.encode("cp1252"))
    assert len(entries(items)) == 20000


def test_big_file_with_late_bad_bytes_is_refused_before_any_row(tmp_path: Path) -> None:
    data = ("".join(row(emp=str(n)) + "\n" for n in range(20000))).encode() + b"\x81\n"
    with pytest.raises(InputFileError) as info:
        read_bobo_file(write(tmp_path, data))
    assert info.value.reason == (f"not text: neither UTF-8 nor cp1252 (byte 0x81 at offset {len(data) - 2})")
    data = data[:-2] + b"\x00\n"
    with pytest.raises(InputFileError) as info:
        read_bobo_file(write(tmp_path, data))
    assert info.value.reason == f"binary content (NUL byte at offset {len(data) - 2})"


def test_big_file_with_bom_and_utf8(tmp_path: Path) -> None:
    content = "".join(row(emp=str(n), payroll="Zoë") + "\n" for n in range(20000))
    items = read(tmp_path, codecs.BOM_UTF8 + content.encode())
    assert len(entries(items)) == 20000
    assert entries(items)[0].transaction is Transaction.BOOK_ON


def test_memory_does_not_grow_with_rows(tmp_path: Path) -> None:
    def peak(rows: int) -> int:
        path = write(tmp_path, "".join(row(emp=str(n % 5000)) + "\n" for n in range(rows)))
        tracemalloc.start()
        try:
            count = sum(1 for _ in read_bobo_file(path))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert count == rows

    small, large = peak(20_000), peak(120_000)  # ~1.3 MB and ~8 MB of CSV
    assert large < 4 * 1024 * 1024
    assert large < small * 2


def test_file_changed_to_undecodable_while_streaming(tmp_path: Path) -> None:
    content = "".join(row(emp=str(n)) + "\n" for n in range(20000))
    path = write(tmp_path, content)
    it = read_bobo_file(path)
    data = bytearray(path.read_bytes())
    data[-30] = 0x81
    path.write_bytes(bytes(data))  # now neither UTF-8 nor ... read as UTF-8 as decided
    with pytest.raises(InputFileError, match="file changed while being read"):
        list(it)


# -- the simple 3-column form -----------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Employee_ID,Status,Timestamp",
        "employee_id,status,timestamp",
        " EMPLOYEE_ID , Status ,TIMESTAMP ",
        "Employee_ID,Status,Timestamp,,",
        "\ufeffEmployee_ID,Status,Timestamp",
    ],
)
def test_simple_form(tmp_path: Path, header: str) -> None:
    content = header + "\r\n12345,On Duty,2024-06-17 14:30:00\r\n" + "\r\n" + "05990,Off Duty,2024-06-17 14:31:00\r\n"
    items = read(tmp_path, content)
    assert items == [
        BOBOEntry(Transaction.BOOK_ON, "12345", datetime(2024, 6, 17, 14, 30), 2),
        BOBOEntry(Transaction.BOOK_OFF, "05990", datetime(2024, 6, 17, 14, 31), 4),
    ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("On Duty", Transaction.BOOK_ON),
        ("on duty", Transaction.BOOK_ON),
        ("  ON   DUTY ", Transaction.BOOK_ON),
        ("On\tDuty", Transaction.BOOK_ON),
        ("Off Duty", Transaction.BOOK_OFF),
        ("OFF DUTY", Transaction.BOOK_OFF),
        ("off  duty", Transaction.BOOK_OFF),
    ],
)
def test_simple_status(tmp_path: Path, status: str, expected: Transaction) -> None:
    items = read(tmp_path, f"Employee_ID,Status,Timestamp\n1,{status},2024-06-17 14:30:00\n")
    assert [e.transaction for e in entries(items)] == [expected]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1,Onduty,2024-06-17 14:30:00", "unknown Status 'Onduty' (expected On Duty or Off Duty)"),
        ("1,BON,2024-06-17 14:30:00", "unknown Status 'BON' (expected On Duty or Off Duty)"),
        ("1,,2024-06-17 14:30:00", "missing Status"),
        ("1,On Duty,", "missing Timestamp"),
        ("1,On Duty,2024-06-17T14:30:00", "invalid Timestamp '2024-06-17T14:30:00' (expected YYYY-MM-DD HH:MM:SS)"),
        ("1,On Duty,2024-02-30 14:30:00", "invalid Timestamp '2024-02-30 14:30:00' (expected YYYY-MM-DD HH:MM:SS)"),
        ("1,On Duty,2024-06-17 25:00:00", "invalid Timestamp '2024-06-17 25:00:00' (expected YYYY-MM-DD HH:MM:SS)"),
        ("1,On Duty,20240617143000", "invalid Timestamp '20240617143000' (expected YYYY-MM-DD HH:MM:SS)"),
        (",On Duty,2024-06-17 14:30:00", "missing Employee_ID"),
        ("=1+1,On Duty,2024-06-17 14:30:00", "invalid Employee_ID '=1+1'"),
        ("1,On Duty", "expected 3 columns, found 2"),
        ("1,On Duty,2024-06-17 14:30:00,x", "expected 3 columns, found 4"),
    ],
)
def test_simple_bad_rows(tmp_path: Path, line: str, reason: str) -> None:
    items = read(tmp_path, "Employee_ID,Status,Timestamp\n" + line + "\n")
    assert items == [BadRow(2, reason)]


def test_simple_trailing_empty_columns_and_padding(tmp_path: Path) -> None:
    items = read(tmp_path, "Employee_ID,Status,Timestamp\n 05990 , On Duty , 2024-06-17 14:30:00 ,,\n")
    assert items == [BOBOEntry(Transaction.BOOK_ON, "05990", datetime(2024, 6, 17, 14, 30), 2)]


def test_simple_form_needs_its_header(tmp_path: Path) -> None:
    assert only_bad(tmp_path, "12345,On Duty,2024-06-17 14:30:00").reason == ("expected 10 columns, found 3")


def test_simple_oversized_field(tmp_path: Path) -> None:
    big = "y" * (csv.field_size_limit() + 10)
    content = f"Employee_ID,Status,Timestamp\n1,{big},x\n2,On Duty,2024-06-17 14:30:00\n"
    items = read(tmp_path, content)
    assert [b.row_number for b in bad(items)] == [2]
    assert entries(items) == [BOBOEntry(Transaction.BOOK_ON, "2", datetime(2024, 6, 17, 14, 30), 3)]


# -- from_csv_row ---------------------------------------------------------------------------


def test_from_csv_row() -> None:
    entry = BOBOEntry.from_csv_row(row("bof", " 05990 ").split(","), 7)
    assert entry == BOBOEntry(Transaction.BOOK_OFF, "05990", datetime(2024, 6, 17, 14, 30), 7)
    assert BOBOEntry.from_csv_row(row().split(",")).row_number == 0
    with pytest.raises(BadRowError) as info:
        BOBOEntry.from_csv_row(row("XYZ").split(","))
    assert info.value.reason == "unknown transaction type 'XYZ' (expected BON or BOF)"
    assert isinstance(info.value, ValueError)
    with pytest.raises(BadRowError, match="expected 10 columns, found 3"):
        BOBOEntry.from_csv_row(["BON", "1", "2"])
    with pytest.raises(BadRowError, match="blank row"):
        BOBOEntry.from_csv_row(["", " "])


def test_entries_are_immutable() -> None:
    entry = BOBOEntry.from_csv_row(row().split(","))
    with pytest.raises(AttributeError):
        entry.employee_id = "x"  # type: ignore[misc]


# -- file_fingerprint -------------------------------------------------------------------------


def test_file_fingerprint(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = write(tmp_path, data)
    assert file_fingerprint(path) == (len(data), hashlib.sha256(data).hexdigest())
    assert file_fingerprint(write(tmp_path, b"", "empty.csv")) == (
        0,
        hashlib.sha256(b"").hexdigest(),
    )
    with pytest.raises(InputFileError, match="file not found"):
        file_fingerprint(tmp_path / "missing.csv")


# -- properties -----------------------------------------------------------------------------

_CELL_CHARS = st.characters(
    exclude_categories=["Cs"],  # lone surrogates cannot be written at all
    exclude_characters="\x00",  # NUL: the whole file is refused (tested above)
)
_SPECIAL = st.sampled_from(
    [
        "",
        " ",
        ",",
        '"',
        "\r",
        "\n",
        "\r\n",
        "\ufeff",
        "BON",
        "BOF",
        "bon",
        " BOF ",
        "XYZ",
        "05990",
        "=cmd|' /C calc'!A0",
        "20240617143000",
        "20240230143000",
        "20240617250000",
        "2024-06-17 14:30:00",
        "On Duty",
        "off  duty",
        "Transaction_Type",
        "Employee_ID",
        "Status",
        "Timestamp",
        "Zoë",
        "٢٠٢٤",
        "x" * 70,
        "=1+1",
        "+1",
        "-1",
        "1.5",
        "a_b",
        "1 ",
        "BON ",
        "20240617143000 ",
    ]
)
_CELL = st.one_of(_SPECIAL, st.text(_CELL_CHARS, max_size=12))


def _good_export_row() -> st.SearchStrategy[list[str]]:
    return st.builds(
        lambda tx, emp, t, extra: [tx, emp, "P", t[:8], t[8:], t, "1", "2", "3", "4", *extra],
        st.sampled_from(["BON", "BOF", "bon", " BON"]),
        st.from_regex(r"[A-Za-z0-9]{1,6}", fullmatch=True),
        st.datetimes(min_value=datetime(1, 1, 1)).map(lambda d: d.strftime("%Y%m%d%H%M%S")),
        st.sampled_from([[], [], [], [""], ["", " "], ["x"]]),
    )


def _mutated_row() -> st.SearchStrategy[list[str]]:
    def mutate(cells: list[str], index: int, value: str) -> list[str]:
        cells = list(cells)
        if cells:
            cells[index % len(cells)] = value
        return cells

    return st.builds(mutate, _good_export_row(), st.integers(0, 11), _CELL)


_ROWS = st.lists(
    st.one_of(
        _good_export_row(),
        _good_export_row(),
        _mutated_row(),
        st.lists(_CELL, max_size=12),
        st.just([]),
        st.just(["", "", ""]),
    ),
    max_size=25,
)


def _records(text: str) -> list[tuple[int, list[str]]]:
    """(first physical line, cells) of each CSV record of ``text``, by the csv module alone."""
    reader = csv.reader(io.StringIO(text, newline=""))
    out = []
    last = 0
    for cells in reader:
        out.append((last + 1, cells))
        last = reader.line_num
    return out


def _expected(text: str) -> list[Item]:
    """What read_bobo_file must give for ``text``, from the complete checks alone (the
    oracle): csv.reader over the whole text, then the layout's check_row."""
    out: list[Item] = []
    layout: Optional[bobo_csv.Layout] = None
    for start, cells in _records(text):
        if all(not c.strip() for c in cells):
            continue
        if layout is None:
            layout = bobo_csv.layout_of_header(cells)
            if layout is not None:
                continue
            layout = bobo_csv.EXPORT
        item = layout.check_row(cells, start)
        assert item is not None
        out.append(item)
    return out


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=_ROWS,
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]),
    ending=st.sampled_from(["\r\n", "\n"]),
    block=st.sampled_from([1, 64, 300, bobo_csv._BLOCK_CHARS]),
    chunk=st.sampled_from([16, bobo_csv._CHUNK]),
)
def test_property_any_rows_give_entries_or_bad_rows(
    tmp_path: Path,
    rows: list[list[str]],
    encoding: str,
    ending: str,
    block: int,
    chunk: int,
) -> None:
    texts = []
    for cells in rows:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=ending).writerow(cells)
        texts.append(buffer.getvalue())
    content = "".join(texts)
    try:
        data = content.encode(encoding)
    except UnicodeEncodeError:
        data = content.encode("utf-8")
    path = write(tmp_path, data, "prop.csv")

    with mock.patch.object(bobo_csv, "_BLOCK_CHARS", block), mock.patch.object(bobo_csv, "_CHUNK", chunk):
        try:
            items = list(read_bobo_file(path))
        except InputFileError:
            return  # the only exception allowed (e.g. a C1 control char that cp1252 lacks)

    # Every non-blank record (as the csv module splits the text; csv.writer does not quote a
    # lone CR, so that can differ from ``rows``) is an entry or a bad row, the header aside.
    body = data[3:] if data.startswith(codecs.BOM_UTF8) else data
    try:
        text = body.decode("utf-8")  # what the reader will see (cp1252 bytes can be UTF-8)
    except UnicodeDecodeError:
        text = body.decode("cp1252")
    records = [cells for _, cells in _records(text) if any(c.strip() for c in cells)]
    header = 1 if records and bobo_csv.layout_of_header(records[0]) is not None else 0
    assert all(isinstance(i, (BOBOEntry, BadRow)) for i in items)
    assert len(items) == len(records) - header
    # ...and exactly what the complete rules give, row numbers included: the fast paths
    # (block regex, line split) never change a result.
    assert items == _expected(text)


@settings(max_examples=200, deadline=None)
@given(cells=st.lists(_CELL, max_size=12), row_number=st.integers(0, 10**6))
def test_property_from_csv_row_raises_only_bad_row_error(cells: list[str], row_number: int) -> None:
    try:
        entry = BOBOEntry.from_csv_row(cells, row_number)
    except BadRowError as exc:
        assert exc.reason and len(exc.reason) < 120
    else:
        assert entry.row_number == row_number
        assert entry.employee_id == entry.employee_id.strip() != ""
        assert isinstance(entry.event_time, datetime) and entry.event_time.tzinfo is None


def test_a_lone_quote_before_blank_lines_loses_nothing_and_is_not_reported(tmp_path: Path) -> None:
    # Found by the property test: b'"\r\n\r\n' swallows only blank lines.
    path = tmp_path / "q.csv"
    path.write_bytes(b'"\r\n\r\n')
    assert list(read_bobo_file(path)) == []


# -- UTF-16 with a byte-order mark (Excel's "Unicode Text") ----------------------------------


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("big", [False, True], ids=["whole", "streamed"])
def test_utf16_with_bom_is_read_whole_or_streamed(tmp_path: Path, codec: str, big: bool) -> None:
    rows = [row("BON", "05990", payroll="Zoë €"), row("BOF", "12345")]
    text = "\ufeff" + "\r\n".join(rows) + "\r\n"
    with mock.patch.object(bobo_csv, "_CHUNK", 16 if big else bobo_csv._CHUNK):
        items = read(tmp_path, text.encode(codec))
    assert [(e.transaction, e.employee_id, e.row_number) for e in items if isinstance(e, BOBOEntry)] == [
        (Transaction.BOOK_ON, "05990", 1),
        (Transaction.BOOK_OFF, "12345", 2),
    ]
    assert len(items) == 2


@pytest.mark.parametrize("big", [False, True], ids=["whole", "streamed"])
def test_utf16_that_does_not_decode_or_holds_a_nul_is_refused(tmp_path: Path, big: bool) -> None:
    with mock.patch.object(bobo_csv, "_CHUNK", 16 if big else bobo_csv._CHUNK):
        with pytest.raises(InputFileError, match=r"not text: the byte-order mark says UTF-16, but bytes at offset"):
            read(tmp_path, codecs.BOM_UTF16_LE + (row() + "\r\n").encode("utf-16-le") + b"\x00\xd8x")
        at = 2 + 2 * len(row() + "\r\n")  # the BOM, then two bytes a character
        with pytest.raises(InputFileError, match=rf"binary content \(NUL byte at offset {at}\)"):
            read(tmp_path, codecs.BOM_UTF16_LE + (row() + "\r\n\0").encode("utf-16-le"))


# -- a last record without a line ending --------------------------------------------------------


@pytest.mark.parametrize("tail", ["BOF,0000", 'BOF,"00001,x', "BON,12345,P,2024"], ids=["cut", "quote", "short"])
def test_a_bad_last_record_without_a_line_ending_is_flagged_open_ended(tmp_path: Path, tail: str) -> None:
    items = read(tmp_path, row() + "\r\n" + tail)
    assert isinstance(items[0], BOBOEntry) and isinstance(items[-1], BadRow)
    assert items[-1].open_end and items[-1].row_number == 2


def test_only_an_unterminated_last_record_is_open_ended(tmp_path: Path) -> None:
    items = read(tmp_path, "XYZ,1\r\n" + row() + "\r\nBOF,2\r\n")
    assert [b.open_end for b in items if isinstance(b, BadRow)] == [False, False]
    assert read(tmp_path, row())[0] == BOBOEntry(Transaction.BOOK_ON, "12345", datetime(2024, 6, 17, 14, 30), 1)
    simple = read(tmp_path, "Employee_ID,Status,Timestamp\r\n12345,On Duty,2024-06-17 14:30:00\r\n1,On")
    assert isinstance(simple[-1], BadRow) and simple[-1].open_end and simple[-1].row_number == 3
    assert [b for b in read(tmp_path, "Employee_ID,Status,Timestamp\r\n1,On\r\n") if isinstance(b, BadRow)] == [
        BadRow(2, "expected 3 columns, found 2")
    ]


# --------------------------------------------------------------------------- layouts


def test_a_new_layout_is_one_definition_in_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A third layout (columns in another order, its own words and time format) needs nothing
    but its definition: header recognition and every row rule follow from it."""
    roster = bobo_csv.Layout(
        name="roster",
        columns=("When", "Collar", "Station", "Event"),
        transaction_column=3,
        employee_column=1,
        time_column=0,
        vocabulary=bobo_csv.Vocabulary(
            {"start": Transaction.BOOK_ON, "finish": Transaction.BOOK_OFF},
            noun="Event",
            expected="Start or Finish",
            collapse_spaces=True,
            ascii_only=False,
        ),
        time=bobo_csv.SIMPLE.time,
    )
    monkeypatch.setattr(bobo_csv, "LAYOUTS", (*bobo_csv.LAYOUTS, roster))
    path = write(
        tmp_path,
        "When,Collar,Station,Event\r\n"
        "2024-06-17 14:30:00,0042,North,Start\r\n"
        "2024-06-17 22:00:00,0042,North, FINISH \r\n"
        "2024-06-17 22:00:00,0043,North,Lunch\r\n"
        "yesterday,0044,North,Lunch\r\n",
    )
    assert list(read_bobo_file(path)) == [
        BOBOEntry(Transaction.BOOK_ON, "0042", datetime(2024, 6, 17, 14, 30), 2),
        BOBOEntry(Transaction.BOOK_OFF, "0042", datetime(2024, 6, 17, 22, 0), 3),
        BadRow(4, "unknown Event 'Lunch' (expected Start or Finish)"),
        # The leftmost fault is the one reported: the time comes first in this layout.
        BadRow(5, "invalid When 'yesterday' (expected YYYY-MM-DD HH:MM:SS)"),
    ]
    # Without the definition the same file is an export file with ten bad rows' worth of faults.
    monkeypatch.setattr(bobo_csv, "LAYOUTS", (bobo_csv.EXPORT, bobo_csv.SIMPLE))
    assert all(isinstance(item, BadRow) for item in read_bobo_file(path))


def test_the_fast_path_pattern_is_built_from_the_export_definition() -> None:
    good = bobo_csv._good_row_regex(100)
    assert good.pattern.startswith("^(BON|BOF),([A-Za-z0-9]{1,64}),")
    row = ["BON", "12345", "P1", "20240617", "143000", "20240617143000", "1", "40.7", "-74.0", "5.0"]
    assert good.findall(",".join(row) + "\r\n") == [("BON", "12345", "20240617", "143000")]
    assert not good.match(",".join([*row, "x"]))  # one cell too many
    assert not good.match(",".join(row[:-1]))  # one too few
    assert bobo_csv.is_bobo_file_name("SHIFT.CSV") and not bobo_csv.is_bobo_file_name("shift.csv.tmp")

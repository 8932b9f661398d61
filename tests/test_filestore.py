"""Listing waiting files and moves that never overwrite and survive a crash."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bobosync.database import BOBODatabase
from bobosync.filestore import (
    FileMover,
    Fingerprint,
    changed_since,
    free_destination,
    is_transient,
    list_waiting_files,
    purge_old_files,
    read_error_note,
    read_snapshot,
    remembered_match,
    sha256_of,
    write_error_note,
)
from bobosync.store import RememberedFile
from bobosync.timebase import as_utc

NOW = datetime(2025, 6, 17, 14, 0, 0)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[BOBODatabase]:
    database = BOBODatabase(tmp_path / "db" / "bobo_mapping.db")
    yield database
    database.close()


def make(
    path: Path, content: bytes = b"BON,00001,P,20250617,140000,20250617140000,1,0,0,0\n", mtime: float | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_listing_oldest_first_any_case_regular_files_only(tmp_path: Path) -> None:
    base = NOW.timestamp()
    make(tmp_path / "b.csv", mtime=base - 100)
    make(tmp_path / "a.csv", mtime=base - 100)
    make(tmp_path / "OLD.CSV", mtime=base - 500)
    make(tmp_path / "young.csv", mtime=base - 1)
    make(tmp_path / "notes.txt", mtime=base - 900)
    (tmp_path / "dir.csv").mkdir()
    listing = list_waiting_files(tmp_path, base, settle_seconds=5)
    assert [f.name for f in listing.ready] == ["OLD.CSV", "a.csv", "b.csv"]
    assert listing.too_young == 1


def test_listing_a_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        list_waiting_files(tmp_path / "missing", NOW.timestamp(), 0)


def test_free_destination_adds_a_suffix_on_clash(tmp_path: Path) -> None:
    assert free_destination(tmp_path, "x.csv") == tmp_path / "x.csv"
    make(tmp_path / "x.csv")
    make(tmp_path / "x_1.csv")
    assert free_destination(tmp_path, "x.csv") == tmp_path / "x_2.csv"
    assert free_destination(tmp_path, "x.csv", frozenset({"x_2.csv"})) == tmp_path / "x_3.csv"


def test_move_never_overwrites_and_clears_the_journal(tmp_path: Path, db: BOBODatabase) -> None:
    mover = FileMover(db, lambda: NOW)
    dest = tmp_path / "processed"
    existing = make(dest / "f.csv", b"someone else's file\n")
    src = make(tmp_path / "in" / "f.csv")
    sha = sha256_of(src)
    with db.transaction():
        dst = mover.journal(src, dest, sha)
    assert dst == dest / "f_1.csv"
    assert [m.src for m in db.pending_moves()] == [str(src)]
    final = mover.move(src, dst, sha)
    assert final == dest / "f_1.csv" and not src.exists()
    assert sha256_of(final) == sha
    assert existing.read_bytes() == b"someone else's file\n"
    assert db.pending_moves() == []


def test_move_picks_a_new_name_if_the_chosen_one_got_taken(tmp_path: Path, db: BOBODatabase) -> None:
    mover = FileMover(db, lambda: NOW)
    src = make(tmp_path / "in" / "f.csv")
    sha = sha256_of(src)
    with db.transaction():
        dst = mover.journal(src, tmp_path / "out", sha)
    make(dst, b"arrived meanwhile\n")
    final = mover.move(src, dst, sha)
    assert final == tmp_path / "out" / "f_1.csv"
    assert dst.read_bytes() == b"arrived meanwhile\n"


def other_volume() -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != Path(tempfile.gettempdir()).stat().st_dev:
        return shm
    return None


@pytest.mark.skipif(other_volume() is None, reason="no second file system available")
def test_move_across_volumes_copies_verifies_and_deletes(tmp_path: Path, db: BOBODatabase) -> None:
    volume = other_volume()
    assert volume is not None
    with tempfile.TemporaryDirectory(dir=volume) as far:
        src = make(tmp_path / "in" / "x.csv", b"A" * 300_000, mtime=NOW.timestamp())
        sha = sha256_of(src)
        mover = FileMover(db, lambda: NOW)
        with db.transaction():
            dst = mover.journal(src, Path(far) / "processed", sha)
        final = mover.move(src, dst, sha)
        assert not src.exists()
        assert sha256_of(final) == sha
        assert final.stat().st_mtime == NOW.timestamp()  # metadata kept: purge goes by age
        assert not list(final.parent.glob(".*partial"))


def test_move_failure_leaves_the_source_and_drops_the_journal(tmp_path: Path, db: BOBODatabase) -> None:
    mover = FileMover(db, lambda: NOW)
    src = make(tmp_path / "in" / "f.csv")
    sha = sha256_of(src)
    blocker = make(tmp_path / "not-a-dir")  # a file where the destination folder should be
    with pytest.raises(OSError):
        mover.move(src, blocker / "f.csv", sha)
    assert src.exists()
    assert db.pending_moves() == []


# Recovery: each test builds the state a crash at one instant leaves behind.


def journalled(tmp_path: Path, db: BOBODatabase) -> tuple[FileMover, Path, Path, str]:
    mover = FileMover(db, lambda: NOW)
    src = make(tmp_path / "in" / "f.csv")
    sha = sha256_of(src)
    with db.transaction():
        dst = mover.journal(src, tmp_path / "out", sha)
    return mover, src, dst, sha


def test_recover_crash_before_the_move_completes_it(tmp_path: Path, db: BOBODatabase) -> None:
    mover, src, dst, sha = journalled(tmp_path, db)
    make(dst.with_name(f".{dst.name}.partial"), b"half a co")  # a cross-volume copy cut short
    assert mover.recover() == 1
    assert not src.exists() and sha256_of(dst) == sha
    assert not dst.with_name(f".{dst.name}.partial").exists()
    assert db.pending_moves() == []


def test_recover_crash_between_placing_and_deleting_source(tmp_path: Path, db: BOBODatabase) -> None:
    mover, src, dst, sha = journalled(tmp_path, db)
    os.link(src, dst)  # the hard link was made, the unlink of the source was not
    assert mover.recover() == 1
    assert not src.exists() and sha256_of(dst) == sha


def test_recover_keeps_both_when_destination_differs(tmp_path: Path, db: BOBODatabase) -> None:
    mover, src, dst, _ = journalled(tmp_path, db)
    make(dst, b"different\n")
    mover.recover()
    assert src.exists() and dst.read_bytes() == b"different\n"
    assert db.pending_moves() == []


def test_recover_after_a_completed_move_only_forgets(tmp_path: Path, db: BOBODatabase) -> None:
    mover, src, dst, sha = journalled(tmp_path, db)
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.rename(src, dst)
    assert mover.recover() == 1
    assert sha256_of(dst) == sha and db.pending_moves() == []


def test_purge_old_files_by_age(tmp_path: Path) -> None:
    old = make(tmp_path / "old.csv", mtime=(NOW - timedelta(days=31)).timestamp())
    new = make(tmp_path / "new.csv", mtime=(NOW - timedelta(days=29)).timestamp())
    assert purge_old_files(tmp_path, 30, NOW) == 1
    assert not old.exists() and new.exists()
    assert purge_old_files(tmp_path, 0, NOW + timedelta(days=400)) == 0


def test_error_note_beside_the_file(tmp_path: Path) -> None:
    note = write_error_note(tmp_path / "f.csv", "no valid row", NOW)
    assert note == tmp_path / "f.csv.error.txt"
    assert "Reason: no valid row" in note.read_text(encoding="utf-8")
    # the one reader of what the one writer wrote (status and the demo use it)
    read = read_error_note(tmp_path / "f.csv")
    assert read is not None and read.reason == "no valid row" and read.failed_at == as_utc(NOW)
    assert read_error_note(tmp_path / "other.csv") is None
    (tmp_path / "old.csv.error.txt").write_text("free text of an older note\n", encoding="utf-8")
    older = read_error_note(tmp_path / "old.csv")
    assert older is not None and older.reason == "free text of an older note"


def test_listing_names_files_from_the_future(tmp_path: Path) -> None:
    base = NOW.timestamp()
    make(tmp_path / "skewed.csv", mtime=base + 3600)
    make(tmp_path / "writing.csv", mtime=base - 1)
    listing = list_waiting_files(tmp_path, base, settle_seconds=5)
    assert listing.ready == [] and listing.too_young == 2
    assert listing.from_the_future == ("skewed.csv",)


# ---------------------------------------------------------------- what was read, and transient errors


def _windows_error(winerror: int) -> PermissionError:
    exc = PermissionError(13, "The process cannot access the file", "x.csv")
    exc.winerror = winerror  # type: ignore[attr-defined]  # what Windows sets
    return exc


@pytest.mark.parametrize(
    "exc, transient",
    [
        (PermissionError(13, "Permission denied"), True),
        (_windows_error(32), True),
        (_windows_error(33), True),
        (OSError(16, "Device or resource busy"), True),
        (FileNotFoundError(2, "No such file"), False),
        (IsADirectoryError(21, "Is a directory"), False),
        (OSError(5, "Input/output error"), False),
        (ValueError("not an OS error"), False),
    ],
)
def test_which_read_errors_are_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_a_snapshot_is_still_what_was_read_until_the_content_changes(tmp_path: Path) -> None:
    path = make(tmp_path / "a.csv", b"BON,1\r\n", mtime=NOW.timestamp())
    snap = read_snapshot(path)
    assert snap.sha256 == sha256_of(path) and snap.last_byte == ord("\n")
    assert snap.fingerprint == Fingerprint.of(os.stat(path))
    assert changed_since(path, snap) is None
    os.utime(path, (NOW.timestamp() + 5, NOW.timestamp() + 5))  # touched: hashed again, same content
    assert changed_since(path, snap) is None
    path.write_bytes(b"BOF,1\r\n")
    assert changed_since(path, snap) == "its content changed since it was read"
    path.write_bytes(b"BOF,1\r\nBON,2\r\n")
    assert changed_since(path, snap) == "its size changed from 7 to 14 bytes since it was read"
    path.unlink()
    assert "no longer in CSV_DIRECTORY" in str(changed_since(path, snap))


def test_remembered_match_reads_the_file_only_when_the_fingerprint_differs(tmp_path: Path) -> None:
    path = make(tmp_path / "a.csv", b"BON,1\r\n", mtime=NOW.timestamp())
    (waiting,) = list_waiting_files(tmp_path, NOW.timestamp() + 60, 0).ready
    digest = sha256_of(path)
    fp = waiting.fingerprint
    same = RememberedFile("a.csv", fp.size, digest, fp.mtime_ns, NOW, fp.ctime_ns, fp.file_id)
    old = RememberedFile("a.csv", fp.size, digest, fp.mtime_ns, NOW)  # schema 1: no ctime, no file ID
    other = RememberedFile("a.csv", fp.size, "0" * 64, fp.mtime_ns, NOW)

    def never(p: Path) -> str:
        raise AssertionError("hashed although the fingerprint matched")

    assert remembered_match(waiting, [same], never) is same
    assert remembered_match(waiting, [old]) is old
    assert remembered_match(waiting, [other]) is None
    assert remembered_match(waiting, [RememberedFile("a.csv", 99, digest, fp.mtime_ns, NOW)], never) is None


def test_recovery_finishes_a_move_killed_between_link_and_unlink_without_reading_the_file(
    db: BOBODatabase, tmp_path: Path
) -> None:
    """A file that could not be read (journalled without a hash) and was hard-linked into the
    failed folder when the run died: both names are one file, so the source name goes."""
    src = make(tmp_path / "in" / "locked.csv")
    dst = tmp_path / "failed" / "locked.csv"
    dst.parent.mkdir()
    os.link(src, dst)
    db.add_pending_move(str(src), str(dst), "", NOW)
    assert FileMover(db).recover() == 1
    assert not src.exists() and dst.is_file() and db.pending_moves() == []


def test_recovery_leaves_a_file_that_changed_since_its_move_was_decided(db: BOBODatabase, tmp_path: Path) -> None:
    src = make(tmp_path / "in" / "a.csv")
    db.add_pending_move(str(src), str(tmp_path / "done" / "a.csv"), sha256_of(src), NOW)
    with open(src, "ab") as f:
        f.write(b"BOF,00001,P,20250617,140500,20250617140500,1,0,0,0\n")
    assert FileMover(db).recover() == 1
    assert src.is_file() and not (tmp_path / "done" / "a.csv").exists() and db.pending_moves() == []

"""The folders: which BOBO files are waiting, and moving files without ever losing one.

Moves are crash-safe. Before a file is moved, the move (source, destination, SHA-256) is
written to the database's ``pending_moves`` journal in the same transaction that records the
file as done or failed. Then:

* same volume: an atomic no-clobber rename (``os.rename`` on Windows refuses to replace;
  on POSIX a hard link to the new name, then unlinking the old one, which is atomic and
  no-clobber too);
* another volume: copy to a hidden ``.<name>.partial`` file in the destination, flush it to
  disk, check its SHA-256, rename it to the final name, and only then delete the source.

Whatever instant the process dies at, the next pass calls :meth:`FileMover.recover`, which
finishes every journalled move (or undoes a half-made copy), so each input file ends up in
exactly one of the CSV, processed or failed folders with its content unchanged.

A file is moved (or remembered) only as it was read. :func:`read_snapshot` takes its
:class:`Fingerprint` (size, modification time in ns, change time in ns, file ID) from the very
handle it hashes; just before the decision about the file is committed, :func:`changed_since`
compares the file in the folder with it (and re-hashes only when some part differs), so a file
appended to, rewritten or replaced while the pass was under way stays for the next pass.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, NamedTuple, Optional

from .bobo_csv import is_bobo_file_name
from .database import parse_datetime
from .store import FileRecords, RememberedFile
from .timebase import show

log = logging.getLogger(__name__)

_WINDOWS_NOT_SAME_DEVICE = 17  # ERROR_NOT_SAME_DEVICE
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
_CHUNK = 1 << 20
#: Windows ERROR_SHARING_VIOLATION and ERROR_LOCK_VIOLATION: another process (BOBO still
#: writing, an antivirus scanner, a backup) holds the file open without sharing it.
_WINDOWS_IN_USE = frozenset({32, 33})
#: POSIX "in use": a busy device or file.
_ERRNO_IN_USE = frozenset({errno.EBUSY, errno.ETXTBSY})


def is_transient(exc: BaseException) -> bool:
    """Is this read error likely to go away by itself (retry the file later, do not fail it)?

    Permission denied (an ACL fixed later; on Windows also every sharing or lock violation,
    which Python raises as PermissionError with ``winerror`` 32 or 33), and "in use". Not: a
    file that is gone, a directory, a bad file name, an I/O error.
    """
    if not isinstance(exc, OSError) or isinstance(exc, FileNotFoundError):
        return False
    if isinstance(exc, IsADirectoryError):
        return False
    return (
        isinstance(exc, PermissionError)
        or getattr(exc, "winerror", None) in _WINDOWS_IN_USE
        or exc.errno in _ERRNO_IN_USE
    )


class Fingerprint(NamedTuple):
    """What says, without reading it, that a file is still the one that was read.

    ``ctime_ns`` is the change time on POSIX (moved by every write, chmod or rename) and the
    creation time on Windows; ``file_id`` the inode, or the Windows file index (a file
    replaced by another of the same name gets a new one).
    """

    size: int
    mtime_ns: int
    ctime_ns: int
    file_id: int

    @classmethod
    def of(cls, st: os.stat_result, file_id: Optional[int] = None) -> Fingerprint:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino if file_id is None else file_id)


@dataclass(frozen=True)
class WaitingFile:
    """A ``*.csv`` file in the CSV folder, as seen when the folder was listed."""

    path: Path
    size: int
    mtime_ns: int
    ctime_ns: int = 0
    file_id: int = 0

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def fingerprint(self) -> Fingerprint:
        return Fingerprint(self.size, self.mtime_ns, self.ctime_ns, self.file_id)


@dataclass(frozen=True)
class Snapshot:
    """A file as it was read: its fingerprint (taken from the open handle) and SHA-256."""

    fingerprint: Fingerprint
    sha256: str
    #: The last byte of the file (None when empty): the caller can tell whether it ends a line.
    last_byte: Optional[int] = None


@dataclass(frozen=True)
class Listing:
    ready: list[WaitingFile]
    #: Modified less than FILE_SETTLE_SECONDS ago: probably still being written.
    too_young: int
    #: Files left out because their name is not valid Unicode (e.g. cp1252 bytes on a Linux
    #: mount of a Windows share): it could not be recorded. Shown with the bad bytes escaped.
    bad_names: tuple[str, ...] = ()
    #: Among the too young: modified more than a minute in the future (clock skew between the
    #: BOBO server and this one). They wait until this clock passes their time.
    from_the_future: tuple[str, ...] = ()
    #: (name, reason) of files that could not even be examined (their own stat failed): that
    #: file's problem only, reported by name; the others are listed as usual.
    unexamined: tuple[tuple[str, str], ...] = ()
    #: POSIX time at which the first of the too young (not from the future) has settled, if
    #: any is unchanged until then: when ``--watch`` looks again.
    settles_at: Optional[float] = None


#: A modification time this far ahead of our clock is skew, not a file being written now.
CLOCK_SKEW_SECONDS = 60.0


def printable_name(name: str) -> str:
    """A file name as text that can always be logged and stored: bytes that are not valid
    UTF-8 (surrogate-escaped by Python) are shown as ``\\xNN``."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    return name


def list_waiting_files(directory: Path, now: float, settle_seconds: float) -> Listing:
    """``*.csv`` (any case) regular files, oldest modification first, then by name.

    ``now`` is a POSIX timestamp. Raises OSError when the folder cannot be listed.
    """
    ready: list[WaitingFile] = []
    too_young = 0
    bad_names: list[str] = []
    future: list[str] = []
    unexamined: list[tuple[str, str]] = []
    settles_at: Optional[float] = None
    with os.scandir(directory) as entries:
        for entry in entries:
            if not is_bobo_file_name(entry.name):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                stat = entry.stat(follow_symlinks=False)
                # Windows' directory listing has no file index (st_ino 0); inode() asks for it.
                file_id = stat.st_ino or entry.inode()
            except FileNotFoundError:
                continue  # gone between listing and stat: nothing to do
            except OSError as exc:
                unexamined.append((printable_name(entry.name), exc.strerror or str(exc)))
                continue
            if settle_seconds > 0 and now - stat.st_mtime < settle_seconds:
                too_young += 1
                if stat.st_mtime - now > CLOCK_SKEW_SECONDS:
                    future.append(printable_name(entry.name))
                else:
                    settled = stat.st_mtime + settle_seconds
                    settles_at = settled if settles_at is None else min(settles_at, settled)
                continue
            shown = printable_name(entry.name)
            if shown != entry.name:
                bad_names.append(shown)
                continue
            ready.append(WaitingFile(Path(entry.path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, file_id))
    ready.sort(key=lambda f: (f.mtime_ns, f.name))
    return Listing(
        ready, too_young, tuple(sorted(bad_names)), tuple(sorted(future)), tuple(sorted(unexamined)), settles_at
    )


def sha256_of(path: Path) -> str:
    return read_snapshot(path).sha256


def read_snapshot(path: Path) -> Snapshot:
    """Hash ``path`` and take its fingerprint from the same open handle. Raises OSError."""
    digest = hashlib.sha256()
    last: Optional[int] = None
    with open(path, "rb") as handle:
        fingerprint = Fingerprint.of(os.fstat(handle.fileno()))
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
            last = chunk[-1]
    return Snapshot(fingerprint, digest.hexdigest(), last)


def changed_since(path: Path, read: Snapshot) -> Optional[str]:
    """None when ``path`` is still the file that was read; else why not, in a few words.

    Size, modification and change times and file ID equal: unchanged, nothing read. Any of
    them different (a touch, a chmod, a copy tool that restores the time): the file is hashed
    again, and only a different SHA-256 makes it changed.
    """
    try:
        now = Fingerprint.of(os.stat(path))
    except FileNotFoundError:
        return "it is no longer in CSV_DIRECTORY (renamed or moved away by another program)"
    except OSError as exc:
        return f"it cannot be examined again: {exc.strerror or exc}"
    if now == read.fingerprint:
        return None
    if now.size != read.fingerprint.size:
        return f"its size changed from {read.fingerprint.size:,} to {now.size:,} bytes since it was read"
    try:
        again = sha256_of(path)
    except OSError as exc:
        return f"it changed and cannot be read again to compare: {exc.strerror or exc}"
    return None if again == read.sha256 else "its content changed since it was read"


def remembered_match(
    waiting: WaitingFile, known: list[RememberedFile], hash_of: Callable[[Path], str] = sha256_of
) -> Optional[RememberedFile]:
    """The remembered version (MOVE_PROCESSED_FILES=false) that ``waiting`` still is, if any.

    A remembered fingerprint equal in every part: that one, without reading the file. Same
    size but some other part different: the file is hashed (``hash_of`` may raise OSError),
    and a remembered version of that size and hash is a match. A different hash is a new file.
    """
    fingerprint = waiting.fingerprint
    same_size = [r for r in known if r.size == waiting.size]
    for remembered in same_size:
        if remembered.fingerprint == fingerprint:
            return remembered
    if not same_size:
        return None
    digest = hash_of(waiting.path)
    return next((r for r in same_size if r.sha256 == digest), None)


@dataclass(frozen=True)
class ToProcess:
    """The listing's ready files split as a pass decides: to process, or already processed
    and left in place (MOVE_PROCESSED_FILES=false), or not comparable now."""

    ready: list[WaitingFile]
    #: Processed files left in place: remembered, not waiting.
    left_in_place: list[tuple[WaitingFile, RememberedFile]]
    #: Probably a processed file, but it cannot be read to compare now: (file, reason).
    not_compared: list[tuple[WaitingFile, str]]


def files_to_process(listing: Listing, move_processed_files: bool, db: FileRecords) -> ToProcess:
    """Which of ``listing.ready`` a pass processes: THE decision, used by the pass and by
    ``status`` alike. Reads the database only (``remembered_by_name``), changes nothing."""
    if move_processed_files or not listing.ready:
        return ToProcess(list(listing.ready), [], [])
    remembered = db.remembered_by_name(f.name for f in listing.ready)
    result = ToProcess([], [], [])
    for waiting in listing.ready:
        try:
            match = remembered_match(waiting, remembered.get(waiting.name, []))
        except OSError as exc:
            reason = f"cannot read it to compare with the processed file of that name: {exc.strerror or exc}"
            result.not_compared.append((waiting, reason))
            continue
        if match is None:
            result.ready.append(waiting)
        else:
            result.left_in_place.append((waiting, match))
    return result


def free_destination(dest_dir: Path, name: str, taken: AbstractSet[str] = frozenset()) -> Path:
    """``dest_dir/name``, or ``stem_1.ext``, ``stem_2.ext``... if that name is already used."""
    stem, suffix = os.path.splitext(name)
    candidate = dest_dir / name
    n = 0
    while candidate.name in taken or os.path.lexists(candidate) or os.path.lexists(_partial(candidate)):
        n += 1
        candidate = dest_dir / f"{stem}_{n}{suffix}"
    return candidate


def _partial(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.partial")


def _is_cross_device(exc: OSError) -> bool:
    return exc.errno == errno.EXDEV or getattr(exc, "winerror", None) == _WINDOWS_NOT_SAME_DEVICE


def _rename_no_clobber(src: Path, dst: Path) -> None:
    """Rename on one volume, never replacing ``dst``. Raises FileExistsError if it exists."""
    if os.name == "nt":
        os.rename(src, dst)  # Windows refuses to replace an existing file
        return
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        # A file system without hard links (some SMB or FAT mounts). The single-instance
        # lock keeps other bobosync runs out of the gap between the check and the rename.
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "destination exists", str(dst)) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def _copy_verified(src: Path, dst: Path, sha256: str) -> None:
    """Copy across volumes: partial file, fsync, checksum, rename, then delete the source."""
    partial = _partial(dst)
    try:
        with open(src, "rb") as reader, open(partial, "xb") as writer:
            shutil.copyfileobj(reader, writer, _CHUNK)
            writer.flush()
            os.fsync(writer.fileno())
        copied = sha256_of(partial)
        if copied != sha256:
            raise OSError(errno.EIO, f"copy of {src.name} does not match the original (SHA-256)")
        shutil.copystat(src, partial)
        _rename_no_clobber(partial, dst)
    except BaseException:
        _unlink_quietly(partial)
        raise
    src.unlink()


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)


class FileMover:
    """Moves journalled in ``pending_moves``; see the module docstring."""

    def __init__(self, db: FileRecords, clock: Callable[[], datetime] = datetime.now) -> None:
        self.db = db
        self.clock = clock

    def journal(self, src: Path, dest_dir: Path, sha256: str, taken: AbstractSet[str] = frozenset()) -> Path:
        """Choose a free destination and record the intended move. Call inside a transaction
        together with whatever made the file done, so the decision and the move are one fact.
        A folder that cannot be created fails the move (the file stays, see :meth:`move`), not
        the transaction holding the decision."""
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.debug("cannot create %s yet: %s", dest_dir, exc)
        dst = free_destination(dest_dir, src.name, taken)
        self.db.add_pending_move(str(src), str(dst), sha256, self.clock())
        return dst

    def move(self, src: Path, dst: Path, sha256: str, *, forget: bool = True) -> Path:
        """Carry out a journalled move; returns where the file now is.

        On an error the source is left where it was, the journal entry is dropped (the next
        pass decides again) and the OSError propagates. ``forget=False`` leaves the journal
        entry of a successful move for the caller to drop, so that a batch of moves costs one
        commit rather than one each (an entry left by a crash is finished by :meth:`recover`:
        the file is already at its destination).
        """
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            final = self._move(src, dst, sha256)
        except OSError:
            self.db.remove_pending_move(str(src))
            raise
        if forget:
            self.db.remove_pending_move(str(src))
        return final

    def _move(self, src: Path, dst: Path, sha256: str) -> Path:
        for _ in range(100):
            try:
                try:
                    _rename_no_clobber(src, dst)
                except OSError as exc:
                    if not _is_cross_device(exc):
                        raise
                    _copy_verified(src, dst, sha256)
                return dst
            except FileExistsError:
                # Someone put a file with that name there since it was chosen.
                dst = free_destination(dst.parent, src.name)
                self.db.add_pending_move(str(src), str(dst), sha256, self.clock())
        raise OSError(errno.EEXIST, f"no free name for {src.name} in {dst.parent}")

    def recover(self, placed: Optional[Callable[[Path, Path], None]] = None) -> int:
        """Finish the moves a crashed run left half done. Returns how many were found.

        ``placed(src, final)`` is called for each journalled file now at its destination, so
        the caller can finish what it meant to do around the move (a failed file's note).
        """
        pending = self.db.pending_moves()
        for move in pending:
            src, dst = Path(move.src), Path(move.dst)
            _unlink_quietly(_partial(dst))
            src_there, dst_there = src.exists(), dst.exists()
            final: Optional[Path] = None
            try:
                if src_there and dst_there:
                    # Same file (the crash fell between the hard link and the unlink), or a
                    # finished copy (between placing it and deleting the source).
                    if os.path.samefile(src, dst) or sha256_of(dst) == move.sha256:
                        src.unlink()  # the crash fell between placing the copy and deleting the source
                        final = dst
                        log.info("recovered interrupted move: %s is in %s", src.name, dst.parent)
                    else:
                        log.warning("interrupted move of %s: %s holds other content; kept both", src, dst)
                elif src_there and move.sha256 and sha256_of(src) != move.sha256:
                    # Written to since the decision (BOBO appending, a copy tool): the decision
                    # was about other content. Left for the pass, which reads it again.
                    log.warning(
                        "interrupted move of %s: the file changed since it was decided; left in place to be read again",
                        src.name,
                    )
                elif src_there:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    final = self._move(src, dst, move.sha256)
                    log.info("completed interrupted move of %s to %s", src.name, final)
                elif dst_there:
                    final = dst
                else:
                    log.error(
                        "interrupted move of %s: file is in neither %s nor its source folder", src.name, dst.parent
                    )
            except OSError as exc:
                log.error("could not complete interrupted move of %s to %s: %s", src, dst, exc)
            if final is not None and placed is not None:
                placed(src, final)
            self.db.remove_pending_move(move.src)
        return len(pending)


def purge_old_files(directory: Path, days: int, now: datetime, pattern: str = "*") -> int:
    """Delete regular files in ``directory`` last modified more than ``days`` days ago."""
    if days <= 0 or not directory.is_dir():
        return 0
    cutoff = (now - timedelta(days=days)).timestamp()
    removed = 0
    for path in directory.glob(pattern):
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError as exc:
            log.warning("could not purge %s: %s", path, exc)
    return removed


def error_note_path(csv_path: Path) -> Path:
    """Where the failure note of ``csv_path`` is: ``<name>.error.txt`` beside it."""
    return csv_path.with_name(csv_path.name + ".error.txt")


class ErrorNote(NamedTuple):
    reason: str
    #: From the note's ``Failed:`` line, else the note's modification time.
    failed_at: datetime


def write_error_note(csv_path: Path, reason: str, when: datetime) -> Optional[Path]:
    """Write ``<name>.error.txt`` beside a failed file. Never raises: the move matters more."""
    note = error_note_path(csv_path)
    try:
        note.write_text(
            f"File: {csv_path.name}\nFailed: {show(when)}\nReason: {reason}\n",
            encoding="utf-8",
        )
    except OSError as exc:
        log.error("could not write %s: %s", note, exc)
        return None
    return note


def read_error_note(csv_path: Path) -> Optional[ErrorNote]:
    """The failure note beside ``csv_path`` as :func:`write_error_note` wrote it (or an older
    note: any text, its first ``Reason:`` line if it has one); None when there is none."""
    note = error_note_path(csv_path)
    try:
        text = note.read_text(encoding="utf-8", errors="replace")
        failed_at = datetime.fromtimestamp(note.stat().st_mtime, timezone.utc).replace(microsecond=0)
    except OSError:
        return None
    reason: Optional[str] = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "reason" and reason is None:
            reason = value.strip()
        elif key.strip().lower() == "failed":
            failed_at = parse_datetime(value.strip()) or failed_at  # with offset, or local (older notes)
    return ErrorNote(reason if reason is not None else text.strip() or "(empty .error.txt)", failed_at)

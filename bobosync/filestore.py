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
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Optional

from .database import BOBODatabase

log = logging.getLogger(__name__)

_WINDOWS_NOT_SAME_DEVICE = 17  # ERROR_NOT_SAME_DEVICE
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class WaitingFile:
    """A ``*.csv`` file in the CSV folder, as seen when the folder was listed."""

    path: Path
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.name


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
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.name.lower().endswith(".csv"):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished or unreadable between listing and stat: next pass
            if settle_seconds > 0 and now - stat.st_mtime < settle_seconds:
                too_young += 1
                if stat.st_mtime - now > CLOCK_SKEW_SECONDS:
                    future.append(printable_name(entry.name))
                continue
            shown = printable_name(entry.name)
            if shown != entry.name:
                bad_names.append(shown)
                continue
            ready.append(WaitingFile(Path(entry.path), stat.st_size, stat.st_mtime_ns))
    ready.sort(key=lambda f: (f.mtime_ns, f.name))
    return Listing(ready, too_young, tuple(sorted(bad_names)), tuple(sorted(future)))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


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

    def __init__(self, db: BOBODatabase, clock: Callable[[], datetime] = datetime.now) -> None:
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
                    if sha256_of(dst) == move.sha256:
                        src.unlink()  # the crash fell between placing the copy and deleting the source
                        final = dst
                        log.info("recovered interrupted move: %s is in %s", src.name, dst.parent)
                    else:
                        log.warning("interrupted move of %s: %s holds other content; kept both", src, dst)
                elif src_there:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    final = self._move(src, dst, move.sha256)
                    log.info("completed interrupted move of %s to %s", src.name, final)
                elif dst_there:
                    final = dst
                else:
                    log.error("interrupted move of %s: file is in neither %s nor its source folder",
                              src.name, dst.parent)
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


def write_error_note(csv_path: Path, reason: str, when: datetime) -> Optional[Path]:
    """Write ``<name>.error.txt`` beside a failed file. Never raises: the move matters more."""
    note = csv_path.with_name(csv_path.name + ".error.txt")
    try:
        note.write_text(
            f"File: {csv_path.name}\nFailed: {when:%Y-%m-%d %H:%M:%S}\nReason: {reason}\n",
            encoding="utf-8",
        )
    except OSError as exc:
        log.error("could not write %s: %s", note, exc)
        return None
    return note

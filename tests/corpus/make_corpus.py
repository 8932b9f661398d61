"""Makes the corpus inputs that are not committed as files (see README.md beside this file).

Each ``NN_name.csv.expected.json`` here with a ``"generate"`` key has no input beside it: the
input is made at test time by the function of that name in :data:`GENERATORS`, because it is
huge (a 10 MB line), cannot live in git (a directory named ``x.csv``, a file without read
permission, a file name that is not UTF-8), or depends on the moment (a file still being
written). Each generator gets the folder to write into and the expected file's stem, and
returns the path it made, or None when this platform cannot make it (the case is then left
out of the run, with a warning).

``python tests/corpus/make_corpus.py DEST`` makes them all in DEST, to look at;
``python tests/corpus/make_corpus.py --index`` prints the table of cases for README.md.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Optional

Generator = Callable[[Path, str], Optional[Path]]

#: One 10-column export row, on 17 June 2024 at 14:30:00.
ROW = "{tx},{emp},PAY{emp},20240617,143000,20240617143000,1,51.4816,-3.1791,5.0\r\n"


def ten_mb_single_line(folder: Path, stem: str) -> Optional[Path]:
    """A single 10 MB line: a book-off whose Payroll_ID holds ten million characters, no
    line ending. Far past the csv field limit: one bad row, no valid row."""
    path = folder / stem
    with open(path, "wb") as f:
        f.write(b"BOF,00067,PAY")
        f.write(b"x" * (10 * 1024 * 1024))
        f.write(b",20240617,143000,20240617143000,1,51.4816,-3.1791,5.0")
    return path


def still_being_written(folder: Path, stem: str) -> Optional[Path]:
    """BOBO is half way through writing: the last row stops in the middle. Its modification
    time is set to now by the test (expected ``"mtime": "now"``)."""
    path = folder / stem
    path.write_bytes((ROW.format(tx="BON", emp="00068") + "BOF,00069,PAY0006").encode("ascii"))
    return path


def directory_named_csv(folder: Path, stem: str) -> Optional[Path]:
    """A directory whose name ends in .csv, with a good BOBO file inside it."""
    path = folder / stem
    path.mkdir()
    (path / "inside.csv").write_bytes(ROW.format(tx="BOF", emp="00070").encode("ascii"))
    return path


def no_read_permission(folder: Path, stem: str) -> Optional[Path]:
    """A good book-off nobody may read (mode 000). POSIX only: on Windows the mode bits do
    not stop reading."""
    if os.name == "nt":
        return None
    path = folder / stem
    path.write_bytes(ROW.format(tx="BOF", emp="00071").encode("ascii"))
    path.chmod(0)
    return path


def non_ascii_name(folder: Path, stem: str) -> Optional[Path]:
    """A good book-on in a file whose name holds accented, CJK and currency characters."""
    path = folder / stem.replace("non_ascii_name", "BOBO_Zoë_Ó_Briain_日本_€")
    try:
        path.write_bytes(ROW.format(tx="BON", emp="00072").encode("ascii"))
    except (OSError, UnicodeError):
        return None
    return path


def cp1252_file_name(folder: Path, stem: str) -> Optional[Path]:
    """A good book-on in a file whose name is cp1252 bytes, not UTF-8 (``Zo\\xeb``): what a
    Windows share mounted on Linux without a character-set option shows. Only on file systems
    that take any bytes (Linux); None elsewhere."""
    if os.name == "nt" or sys.platform == "darwin":
        return None
    name = stem.replace("cp1252_file_name", "BOBO_Zo\xeb").encode("cp1252")
    raw = os.path.join(os.fsencode(folder), name)
    try:
        with open(raw, "wb") as f:
            f.write(ROW.format(tx="BON", emp="00073").encode("ascii"))
    except (OSError, UnicodeError):
        return None
    return Path(os.fsdecode(raw))


GENERATORS: Mapping[str, Generator] = {
    f.__name__: f
    for f in (
        ten_mb_single_line,
        still_being_written,
        directory_named_csv,
        no_read_permission,
        non_ascii_name,
        cp1252_file_name,
    )
}


def generate(folder: Path, stem: str, kind: str) -> Optional[Path]:
    """Make the input of the corpus case ``stem`` (``NN_name.csv``) in ``folder``."""
    return GENERATORS[kind](folder, stem)


HERE = Path(__file__).resolve().parent
SUFFIX = ".expected.json"


def index_line(expected: Path) -> str:
    """The README.md table row of one case: file, outcome, the trap."""
    data = json.loads(expected.read_text(encoding="utf-8"))
    name = expected.name[: -len(SUFFIX)]
    made = " (generated)" if data.get("generate") else ""
    about = str(data["about"]).replace("|", "\\|")
    return f"| `{name}`{made} | {data['outcome']} | {about} |"


def main(argv: list[str]) -> int:
    if argv == ["--index"]:
        for expected in sorted(HERE.glob("*" + SUFFIX)):
            sys.stdout.write(index_line(expected) + "\n")
        return 0
    if len(argv) != 1:
        sys.stdout.write(__doc__ or "")
        return 2
    dest = Path(argv[0])
    dest.mkdir(parents=True, exist_ok=True)
    for expected in sorted(HERE.glob("*" + SUFFIX)):
        kind = json.loads(expected.read_text(encoding="utf-8")).get("generate")
        if kind:
            made = generate(dest, expected.name[: -len(SUFFIX)], kind)
            sys.stdout.write(f"{kind}: {made if made is not None else 'not possible here'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

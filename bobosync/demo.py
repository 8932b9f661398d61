"""``bobosync demo``: the real pass against the built-in AtHoc simulator, no set-up needed.

Starts the simulator on a free loopback port, writes a working folder (its own ``.env``, CSV,
processed and failed folders, database, logs), generates a realistic set of BOBO files (both
formats, a bad row, an unreadable file, a late out-of-order file, an unknown employee ID),
runs two passes through the same code as production (:func:`bobosync.cli.main`), and prints who
is now on duty in AtHoc and what happened to each file.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Optional, TextIO

from .bobo_csv import is_bobo_file_name
from .filestore import read_error_note
from .simulator import SIM_CREDENTIALS, AtHocSimulator, export_row, generate_bobo_files, make_users, write_bobo_file

log = logging.getLogger(__name__)

DUTY_FIELD = "On-Duty-DTG"


def write_demo_env(folder: Path, url: str) -> Path:
    """A ``.env`` for the simulator; folders relative to it, as an operator would write it."""
    env = folder / ".env"
    env.write_text(
        "\n".join(
            [
                "# Written by `bobosync demo`: points at the built-in AtHoc simulator.",
                f"ATHOC_SERVER_URL={url}",
                f"CLIENT_ID={SIM_CREDENTIALS['client_id']}",
                f"CLIENT_SECRET={SIM_CREDENTIALS['client_secret']}",
                f"APIUSER={SIM_CREDENTIALS['username']}",
                f"PASSWORD={SIM_CREDENTIALS['password']}",
                f"ORG_CODE={SIM_CREDENTIALS['org_code']}",
                "CSV_DIRECTORY=crown_files",
                "PROCESSED_DIRECTORY=processed_files",
                "FAILED_FILES_DIRECTORY=failed_files",
                "MOVE_PROCESSED_FILES=true",
                "FILE_SETTLE_SECONDS=0",
                "DB_PATH=bobo_mapping.db",
                "LOG_DIRECTORY=logs",
                "HTTP_RETRY_BACKOFF_SECONDS=0.2",
                "",
            ]
        ),
        encoding="utf-8",
    )
    return env


def write_demo_files(csv_dir: Path, now: datetime) -> None:
    """A morning's worth of BOBO traffic, with the traps real exports have."""
    collars = [f"{i:05d}" for i in range(1, 61)]
    start = now - timedelta(minutes=30)
    generate_bobo_files(csv_dir, collars, files=8, start=start, rows_per_file=(5, 15), seed=7)
    # The 3-column hand-made form.
    write_bobo_file(
        csv_dir,
        [export_row("BON", "00061", now - timedelta(minutes=5))],
        now - timedelta(minutes=4),
        simple=True,
        name="handmade_roster.csv",
    )
    # A bad row among good ones, and an employee ID AtHoc does not know.
    write_bobo_file(
        csv_dir,
        [
            export_row("BON", "00062", now - timedelta(minutes=3)),
            ["XYZ", "00063", "P", "", "", "20250617140000", "", "", "", ""],
            export_row("BON", "99999", now - timedelta(minutes=3)),
        ],
        now - timedelta(minutes=3),
        name="BOBO_with_bad_row_output.csv",
    )
    # A late file: yesterday's book-on for 00062 must not undo today's.
    write_bobo_file(
        csv_dir,
        [export_row("BOF", "00062", now - timedelta(hours=20))],
        now - timedelta(minutes=2),
        name="BOBO_late_arrival_output.csv",
    )
    # A file that is not text at all.
    (csv_dir / "BOBO_corrupt_output.csv").write_bytes(b"\x00\x01\x02binary\xff\xfe")


def _on_duty(sim: AtHocSimulator) -> list[str]:
    """Collar numbers of the users the simulator shows on duty, in collar order."""
    return sorted(attrs.get("Collar-Number", "") for attrs in sim.users.values() if attrs.get(DUTY_FIELD))


def _bobo_files(folder: Path) -> list[Path]:
    """The BOBO files in ``folder``, by name; none when it was never created."""
    return sorted(p for p in folder.iterdir() if is_bobo_file_name(p.name)) if folder.is_dir() else []


def run_demo(
    main: Callable[[list[str]], int],
    directory: Optional[Path] = None,
    users: int = 300,
    out: TextIO = sys.stdout,
) -> int:
    """The demo; ``main`` is the CLI's entry point, so that every pass is a production pass."""
    if directory is not None and Path(directory).exists() and any(Path(directory).iterdir()):
        # An old database against a fresh simulator would show a false picture (its events
        # "already applied", nobody on duty): refuse rather than mislead, or delete anything.
        out.write(
            f"demo: {directory} is not empty (a demo ran there before?). Give a new folder to --dir, "
            "or delete this one first.\n"
        )
        return 2
    temporary = directory is None
    folder = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="bobosync-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "crown_files").mkdir(exist_ok=True)
    now = datetime.now().replace(microsecond=0)
    with AtHocSimulator(users=make_users(users)) as sim:
        env = write_demo_env(folder, sim.url)
        write_demo_files(folder / "crown_files", now)
        out.write(f"bobosync demo in {folder}\nAtHoc simulator at {sim.url} with {users} users\n\n")
        out.flush()
        code = main(["--env-file", str(env)])
        # A minute later: two people book off. The second pass sends only that news.
        later = datetime.now().replace(microsecond=0)
        booking_off = _on_duty(sim)[:2]
        write_bobo_file(
            folder / "crown_files",
            [export_row("BOF", collar, later) for collar in booking_off],
            later,
            name="BOBO_later_book_offs_output.csv",
        )
        out.write(f"\n--- a second pass, after {' and '.join(booking_off)} booked off ---\n\n")
        out.flush()
        code = max(code, main(["--env-file", str(env)]))
        on_duty = sorted(
            (attrs.get("Collar-Number", ""), login, attrs.get(DUTY_FIELD, ""))
            for login, attrs in sim.users.items()
            if attrs.get(DUTY_FIELD)
        )
        requests = len(sim.journal)
    out.write(f"\nPass exit code: {code}   AtHoc requests: {requests}\n")
    out.write(f"\nOn duty in AtHoc now: {len(on_duty)} user(s)\n")
    for collar, login, value in on_duty:
        out.write(f"  {collar:<8} {login:<28} {DUTY_FIELD} = {value}\n")
    still_on = {collar for collar, _, _ in on_duty}
    out.write(
        "Booked off by the second pass: "
        + ", ".join(f"{collar} ({'still on duty!' if collar in still_on else 'off duty'})" for collar in booking_off)
        + "\n"
    )
    processed = [p.name for p in _bobo_files(folder / "processed_files")]
    out.write(f"\nProcessed files: {len(processed)} (in {folder / 'processed_files'})\n")
    failed = _bobo_files(folder / "failed_files")
    out.write(f"Failed files: {len(failed)}\n")
    for path in failed:
        note = read_error_note(path)
        out.write(f"  {path.name}: {note.reason if note is not None else '?'}\n")
    out.write(
        f"\nLook at: {folder / 'logs' / 'bobo_processor.log'} (the log), {folder / 'bobo_mapping.db'} "
        f"(run_history, processing_log), {env} (the configuration used).\n"
    )
    if temporary:
        out.write(f"The demo folder {folder} is left for you to look at; delete it when you are done.\n")
    return 0 if code in (0, 1) else code

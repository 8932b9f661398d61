"""The ``bobosync`` command. Exit codes: 0 all done (or nothing to do, or another run holds
the lock), 1 something left for retry or AtHoc failed, 2 configuration error."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from .depcheck import require_dependencies

# Before any module that imports a third-party package: a missing one is named, not a traceback.
require_dependencies()

from .errors import AtHocError, BoboSyncError, ConfigError, ForcedStop, LockHeld
from .locking import SingleInstanceLock
from .logsetup import LOGGER_NAME, configure_logging
from .settings import LOG_LEVELS, SECRET_NAMES, Settings, load_settings
from .stopping import stop_signals
from .version import __version__

log = logging.getLogger(LOGGER_NAME)

EXIT_OK, EXIT_INCOMPLETE, EXIT_CONFIG = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bobosync",
        usage="%(prog)s [OPTIONS] [COMMAND ...]",
        description="Apply BOBO book-on/book-off files to the AtHoc duty-status field. Without a COMMAND: "
        "one pass (or, with --watch, a pass every POLL_INTERVAL_SECONDS).",
        epilog="Exit codes: 0 all done, 1 something left for retry or AtHoc failed, 2 configuration error.",
    )
    parser.add_argument("--env-file", type=Path, metavar="PATH", help="the .env file to read")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--watch", action="store_true", help="repeat the pass every POLL_INTERVAL_SECONDS until stopped")
    mode.add_argument("--dry-run", action="store_true", help="show the updates a pass would send; change nothing")
    mode.add_argument("--sync-users", action="store_true", help="sync the worker mapping from AtHoc now, then exit")
    mode.add_argument(
        "--cleanup-only", action="store_true", help="only clear duty values older than AUTO_CLEANUP_HOURS"
    )
    parser.add_argument("--interval", type=float, metavar="N", help="seconds between passes (only with --watch)")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help=f"override LOG_LEVEL: {', '.join(LOG_LEVELS)} (any letter case)",
    )
    parser.add_argument("--version", action="version", version=f"bobosync {__version__}")
    # Subcommands also accept --env-file after their name; SUPPRESS keeps a value given
    # before the name from being overwritten by the subcommand's default.
    env_file = argparse.ArgumentParser(add_help=False)
    env_file.add_argument(
        "--env-file", type=Path, metavar="PATH", default=argparse.SUPPRESS, help="the .env file to read"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands (optional)")
    demo = commands.add_parser("demo", help="run a pass against the built-in AtHoc simulator (no set-up needed)")
    demo.add_argument("--dir", type=Path, help="working folder to create (default: a new temporary folder)")
    demo.add_argument("--users", type=int, default=300, help="AtHoc users in the simulator (default 300)")
    status = commands.add_parser(
        "status",
        parents=[env_file],
        help="show health: last passes, sync, files, errors",
        description="Show the health of bobosync from its database and folders (AtHoc only with --live).",
        epilog="Exit codes: 0 healthy, 1 warning, 2 unhealthy (the reasons are listed first).",
    )
    status.add_argument("--live", action="store_true", help="also ask AtHoc who is marked on duty now")
    status.add_argument("--json", action="store_true", help="the same data as JSON, for monitoring systems")
    commands.add_parser(
        "check",
        parents=[env_file],
        help="verify configuration, folders and AtHoc before going live",
        description="Verify the configuration, folders, database, network, TLS, AtHoc login and fields, and the "
        "SMTP server when health e-mails are on. Changes nothing and sends nothing.",
        epilog="Exit codes: 0 nothing FAILed (read any WARN lines), 1 at least one check FAILed.",
    )
    commands.add_parser(
        "notify-test",
        parents=[env_file],
        help="send a test health e-mail to NOTIFY_EMAIL_TO",
        description="Send a test e-mail with the current status to NOTIFY_EMAIL_TO, as health e-mails are sent.",
        epilog="Exit codes: 0 sent, 1 not sent (the reason is printed), 2 configuration error or e-mail not "
        "configured.",
    )
    trace = commands.add_parser(
        "trace",
        parents=[env_file],
        help="one person's story: events, what became of them, AtHoc's answers",
        description="Show, oldest first, what bobosync saw and did about one person in the last "
        "AUDIT_RETENTION_DAYS: each event (time, BON/BOF, file and row) and what became of it, each "
        "value sent and AtHoc's answer, read-backs and repairs, cleanup clears, mapping changes; then "
        "the desired value and what AtHoc held when last read. Reads the database only.",
        epilog="Exit codes: 0 the ID is known, 1 it is unknown, 2 configuration error.",
    )
    trace.add_argument("id", metavar="ID", help="an employee ID (collar number, e.g. 05990) or an AtHoc LOGIN_ID")
    trace.add_argument("--json", action="store_true", help="the same data as JSON")
    reconcile = commands.add_parser(
        "reconcile",
        parents=[env_file],
        help="compare AtHoc with the desired state now and repair the differences (RECONCILE_MODE)",
        description="Read every AtHoc user, refresh the mapping, and compare each BOBO employee's duty value "
        "with the desired state; repair the differences per RECONCILE_MODE.",
        epilog="Exit codes: 0 AtHoc agrees with the desired state, 1 it did not (or the reconcile failed).",
    )
    reconcile.add_argument(
        "--dry-run",
        dest="reconcile_dry_run",
        action="store_true",
        help="only list the differences (employee, LOGIN_ID, AtHoc value, desired value)",
    )
    rebuild = commands.add_parser(
        "rebuild-state",
        parents=[env_file],
        help="read already-processed BOBO files into the desired state, sending nothing (after an upgrade)",
        description="Read the BOBO files of the last N hours from a folder (default PROCESSED_DIRECTORY, or "
        "CSV_DIRECTORY when MOVE_PROCESSED_FILES=false) into the desired state, by the usual order of "
        "events, without sending anything and without moving any file. The next reconcile then "
        "corrects AtHoc: after an upgrade from the original tool, people it booked off but left "
        "holding a book-off time are cleared. The first pass on a database from the original tool "
        "runs it once by itself.",
        epilog="Exit codes: 0 done, 1 the folder cannot be read, 2 configuration error.",
    )
    rebuild.add_argument(
        "--from",
        dest="rebuild_from",
        type=Path,
        metavar="DIR",
        help="the folder to read (default PROCESSED_DIRECTORY, or CSV_DIRECTORY when MOVE_PROCESSED_FILES=false)",
    )
    rebuild.add_argument(
        "--hours",
        dest="rebuild_hours",
        type=float,
        metavar="N",
        help="how far back, by file modification time (default AUTO_CLEANUP_HOURS, or 24 when that is 0)",
    )
    secret = commands.add_parser(
        "set-secret",
        parents=[env_file],
        help="store PASSWORD, CLIENT_SECRET or SMTP_PASSWORD in the operating system's credential store",
        description="Store a secret in the operating system's credential store (Windows Credential Manager, "
        "macOS Keychain, a Secret Service on Linux), so that .env can say NAME=keyring. The value is "
        "asked twice with typing hidden, or read from standard input when that is not a terminal. "
        "Run it as the account that runs bobosync.",
        epilog="Exit codes: 0 stored, 2 nothing stored (the reason is printed).",
    )
    secret.add_argument("name", choices=SECRET_NAMES)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(main, args.dir, args.users)
    if args.command == "check":
        from .check import run_check

        return run_check(args.env_file, sys.stdout)
    if args.command == "set-secret":
        from .set_secret import run_set_secret

        return run_set_secret(args.name, args.env_file, sys.stdout)
    if args.interval is not None and not args.watch:
        build_parser().error("--interval works only with --watch (a single pass has no interval)")
    if args.interval is not None and args.interval <= 0:
        build_parser().error("--interval must be above 0")
    try:
        settings = load_settings(args.env_file)
    except ConfigError as exc:
        configure_logging("INFO", None)
        log.error("%s", exc)
        return EXIT_CONFIG
    if args.command in ("status", "notify-test", "trace"):
        configure_logging(args.log_level or "WARNING", None, secrets=settings.secret_values())
        if args.command == "trace":
            from .trace import run_trace

            return run_trace(settings, args.id, as_json=args.json, out=sys.stdout)
        if args.command == "notify-test":
            from .notify import run_notify_test

            return run_notify_test(settings, sys.stdout)
        from .status import run_status

        return run_status(settings, live=args.live, as_json=args.json, out=sys.stdout)
    # A dry run changes nothing, not even the log folder: it logs to the console only.
    log_directory = None if args.dry_run else settings.log_directory
    configure_logging(args.log_level or settings.log_level, log_directory, secrets=settings.secret_values())
    log.debug("settings %s", settings.env_source)
    try:
        if args.command == "reconcile" and args.reconcile_dry_run:
            return _reconcile(settings, dry_run=True)
        if args.dry_run:
            return _dry_run(settings)
        lock = SingleInstanceLock(settings.lock_path)
        if args.watch and not _wait_for_lock(lock, args.interval or settings.poll_interval_seconds):
            return EXIT_OK
        with lock:
            return _run(settings, args)
    except LockHeld as exc:
        log.info("%s; nothing to do", exc)
        return EXIT_OK
    except BoboSyncError as exc:
        log.error("%s", exc)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        log.warning("interrupted")
        return EXIT_INCOMPLETE


def _wait_for_lock(lock: SingleInstanceLock, interval: float) -> bool:
    """``--watch`` is a service: when another run holds the lock, wait for it rather than exit
    (a supervisor would otherwise see a clean exit and leave the service stopped). True once
    the lock is held; False when a stop signal (Ctrl-C, SIGTERM, Ctrl-Break) came first: that
    is a clean stop, as it is during the passes."""
    announced = False
    with stop_signals() as stop:
        while not stop.is_set():
            try:
                lock.acquire()
                return True
            except LockHeld as exc:
                if not announced:
                    log.info("%s; waiting for it to finish", exc)
                    announced = True
            deadline = time.monotonic() + min(interval, 5.0)
            while not stop.is_set() and time.monotonic() < deadline:
                stop.wait(0.2)  # short naps: a signal is seen at once on every platform
    log.info("stop requested while waiting for the lock; no pass was run")
    return False


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from .processor import BOBOProcessor
    from .worker import Worker

    if args.command == "reconcile":
        return _reconcile(settings, dry_run=False)
    processor = BOBOProcessor(settings)
    try:
        if args.command == "rebuild-state":
            try:
                result = processor.rebuild_state(args.rebuild_from, args.rebuild_hours)
            except OSError as exc:
                log.error("rebuild-state: cannot read %s: %s", exc.filename or args.rebuild_from, exc.strerror or exc)
                return EXIT_INCOMPLETE
            sys.stdout.write(f"Desired state rebuilt from {result.folder}: {result.summary()}.\n")
            return EXIT_OK
        if args.sync_users:
            return EXIT_OK if processor.run_sync() else EXIT_INCOMPLETE
        if args.cleanup_only:
            if settings.auto_cleanup_hours <= 0:
                log.info("AUTO_CLEANUP_HOURS is 0: auto-cleanup is off")
                return EXIT_OK
            try:
                processor.run_cleanup()
            except AtHocError:
                return EXIT_INCOMPLETE  # logged by the cleanup
            return EXIT_OK
        worker = Worker(processor, args.interval or settings.poll_interval_seconds)
        try:
            return worker.run(watch=args.watch)
        except ForcedStop as exc:
            log.warning("stopped at once (%s); the next run completes the work", exc)
            return EXIT_INCOMPLETE
    finally:
        processor.close()


def _reconcile(settings: Settings, *, dry_run: bool) -> int:
    """``bobosync reconcile [--dry-run]``: exit 0 when AtHoc agrees with the desired state, 1
    when it did not (or the reconcile failed)."""
    from .processor import BOBOProcessor

    processor = BOBOProcessor(settings, dry_run=dry_run)
    try:
        report = processor.run_reconcile()
    finally:
        processor.close()
    out = sys.stdout
    if report.errors:
        out.write(f"Reconcile failed: {report.errors[0]}\n")
        return EXIT_INCOMPLETE
    if not report.drift:
        out.write("Reconcile: no difference between AtHoc and the desired state.\n")
        return EXIT_OK
    if dry_run:
        done = "nothing was changed"
    elif settings.reconcile_mode == "repair":
        done = f"{report.counts.repaired} repaired"
    else:
        done = "not repaired (RECONCILE_MODE=report)"
    out.write(f"Reconcile{' (dry run)' if dry_run else ''}: {len(report.drift)} difference(s); {done}.\n")
    for drift in report.drift:
        out.write(
            f"  {drift.employee_id}  {drift.login_id}  AtHoc: {drift.athoc_value or '(empty)'}  "
            f"desired: {drift.desired_value or '(empty)'}\n"
        )
    return EXIT_INCOMPLETE


def _dry_run(settings: Settings) -> int:
    from .processor import BOBOProcessor

    processor = BOBOProcessor(settings, dry_run=True)
    try:
        report = processor.run_pass()
    finally:
        processor.close()
    out = sys.stdout
    if report.errors:
        # Say it here too: "0 updates would be sent" alone would read as "nothing to do".
        out.write("Dry run could not finish: " + "; ".join(report.errors) + "\n")
        out.write(f"Of what it could see, {len(report.planned)} update(s) would be sent; nothing was changed.\n")
    else:
        out.write(f"Dry run: {len(report.planned)} update(s) would be sent; nothing was changed.\n")
    if report.planned:
        width = max(len(p.login_id) for p in report.planned)
        for planned in report.planned:
            shown = planned.value if planned.value else "(clear: off duty)"
            source = f"{planned.source} row {planned.row}" if planned.row else f"({planned.source})"
            out.write(f"  {planned.login_id:<{width}}  employee {planned.employee_id:<8} {shown:<20} {source}\n")
    return report.exit_code

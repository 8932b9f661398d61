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

from . import __version__
from .errors import AtHocError, BoboSyncError, ConfigError, LockHeld
from .locking import SingleInstanceLock
from .logsetup import LOGGER_NAME, configure_logging
from .settings import Settings, load_settings

log = logging.getLogger(LOGGER_NAME)

EXIT_OK, EXIT_INCOMPLETE, EXIT_CONFIG = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bobosync",
        description="Apply BOBO book-on/book-off files to the AtHoc duty-status field.",
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
    parser.add_argument("--interval", type=float, metavar="N", help="seconds between passes with --watch")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="override LOG_LEVEL")
    parser.add_argument("--version", action="version", version=f"bobosync {__version__}")
    # Subcommands also accept --env-file after their name; SUPPRESS keeps a value given
    # before the name from being overwritten by the subcommand's default.
    env_file = argparse.ArgumentParser(add_help=False)
    env_file.add_argument("--env-file", type=Path, metavar="PATH", default=argparse.SUPPRESS,
                          help="the .env file to read")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="run a pass against the built-in AtHoc simulator (no set-up needed)")
    demo.add_argument("--dir", type=Path, help="working folder to create (default: a new temporary folder)")
    demo.add_argument("--users", type=int, default=300, help="AtHoc users in the simulator (default 300)")
    status = commands.add_parser("status", parents=[env_file], help="show health: last passes, sync, files, errors")
    status.add_argument("--live", action="store_true", help="also ask AtHoc who is marked on duty now")
    status.add_argument("--json", action="store_true", help="the same data as JSON, for monitoring systems")
    commands.add_parser("check", parents=[env_file], help="verify configuration, folders and AtHoc before going live")
    secret = commands.add_parser("set-secret", parents=[env_file],
                                 help="store PASSWORD or CLIENT_SECRET in the operating system's credential store")
    secret.add_argument("name", choices=("PASSWORD", "CLIENT_SECRET"))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.dir, args.users)
    if args.command == "check":
        from .check import run_check

        return run_check(args.env_file, sys.stdout)
    if args.command == "set-secret":
        from .secret_store import run_set_secret

        return run_set_secret(args.name, args.env_file, sys.stdout)
    if args.interval is not None and args.interval <= 0:
        build_parser().error("--interval must be above 0")
    try:
        settings = load_settings(args.env_file)
    except ConfigError as exc:
        configure_logging("INFO", None)
        log.error("%s", exc)
        return EXIT_CONFIG
    if args.command == "status":
        from .status import run_status

        configure_logging(args.log_level or "WARNING", None, secrets=settings.secret_values())
        return run_status(settings, live=args.live, as_json=args.json, out=sys.stdout)
    configure_logging(args.log_level or settings.log_level, settings.log_directory, secrets=settings.secret_values())
    if settings.env_file is not None:
        log.debug("configuration read from %s", settings.env_file)
    try:
        if args.dry_run:
            return _dry_run(settings)
        lock = SingleInstanceLock(settings.lock_path)
        if args.watch:
            _wait_for_lock(lock, args.interval or settings.poll_interval_seconds)
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


def _wait_for_lock(lock: SingleInstanceLock, interval: float) -> None:
    """``--watch`` is a service: when another run holds the lock, wait for it rather than exit
    (a supervisor would otherwise see a clean exit and leave the service stopped)."""
    announced = False
    while True:
        try:
            lock.acquire()
            return
        except LockHeld as exc:
            if not announced:
                log.info("%s; waiting for it to finish", exc)
                announced = True
            time.sleep(min(interval, 5.0))


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from .processor import BOBOProcessor
    from .worker import ForcedStop, Worker

    processor = BOBOProcessor(settings)
    try:
        if args.sync_users:
            return EXIT_OK if processor.sync_worker_mappings() else EXIT_INCOMPLETE
        if args.cleanup_only:
            if settings.auto_cleanup_hours <= 0:
                log.info("AUTO_CLEANUP_HOURS is 0: auto-cleanup is off")
                return EXIT_OK
            try:
                processor.run_cleanup()
            except AtHocError as exc:
                log.error("auto-cleanup failed: %s", exc)
                return EXIT_INCOMPLETE
            return EXIT_OK
        worker = Worker(processor, args.interval or settings.poll_interval_seconds)
        try:
            return worker.run(watch=args.watch)
        except ForcedStop as exc:
            log.warning("stopped at once (%s); the next run completes the work", exc)
            return EXIT_INCOMPLETE
    finally:
        processor.close()


def _dry_run(settings: Settings) -> int:
    from .processor import BOBOProcessor

    processor = BOBOProcessor(settings, dry_run=True)
    try:
        report = processor.run_pass()
    finally:
        processor.close()
    out = sys.stdout
    out.write(f"Dry run: {len(report.planned)} update(s) would be sent; nothing was changed.\n")
    if report.planned:
        width = max(len(p[0]) for p in report.planned)
        for login_id, employee_id, value, file_name, row in report.planned:
            shown = value if value else "(clear: off duty)"
            out.write(f"  {login_id:<{width}}  employee {employee_id:<8} {shown:<20} {file_name} row {row}\n")
    return report.exit_code

"""Command line of the AtHoc simulator.

``python -m bobosync.simulator [serve] --port 8443 [--host 127.0.0.1] [--users 50]
[--tls [--tls-dir DIR] | --certfile cert.pem --keyfile key.pem] [--token-lifetime 3600]`` runs
the server in the foreground until Ctrl-C or SIGTERM. It logs the URL (stderr) and prints a
ready-to-copy ``.env`` block (stdout); with ``--tls`` it makes a throwaway CA and server
certificate first, and the block names the CA file in SSL_CERT_PATH.

``python -m bobosync.simulator generate DIR --files 10 [--users 50] [--seed 0]`` writes BOBO
export files for collar numbers 00001..N, a minute apart, the last one stamped now.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Optional

from .generator import generate_bobo_files
from .server import AtHocSimulator, make_users

log = logging.getLogger("bobosync.simulator")

_COMMANDS = ("serve", "generate")


def _parse_start(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a date-time such as 2025-06-17T13:46:00") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bobosync.simulator",
        description="AtHoc simulator for bobosync (serve is the default command).",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the simulated AtHoc server (default)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=0, help="port (0 = any free port)")
    serve.add_argument("--users", type=int, default=50, help="number of users (default 50)")
    serve.add_argument("--certfile", type=Path, help="PEM certificate (chain): serve HTTPS")
    serve.add_argument("--keyfile", type=Path, help="PEM private key of --certfile")
    serve.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a throwaway CA and certificate made now; prints the CA file to trust (SSL_CERT_PATH)",
    )
    serve.add_argument(
        "--tls-dir",
        type=Path,
        metavar="DIR",
        help="where --tls writes its files (default: a new temporary folder, kept)",
    )
    serve.add_argument("--token-lifetime", type=float, default=3600.0, help="seconds")
    serve.add_argument("--datetime-format", default="%d/%m/%Y %H:%M:%S", help="the organization's format")

    generate = commands.add_parser("generate", help="write BOBO export files")
    generate.add_argument("directory", type=Path, help="folder to write the files to")
    generate.add_argument("--files", type=int, required=True, help="number of files")
    generate.add_argument("--users", type=int, default=50, help="collar numbers 00001..N")
    generate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    generate.add_argument(
        "--start",
        type=_parse_start,
        help="time of the first file; files are a minute apart (default: the last file is stamped now)",
    )
    return parser


def _env_block(sim: AtHocSimulator, certfile: Optional[Path], ca_pem: Optional[Path] = None) -> str:
    creds = sim.credentials
    lines = [
        "# bobosync .env for the AtHoc simulator",
        f"ATHOC_SERVER_URL={sim.url}",
        f"CLIENT_ID={creds['client_id']}",
        f"CLIENT_SECRET={creds['client_secret']}",
        f"APIUSER={creds['username']}",
        f"PASSWORD={creds['password']}",
        f"ORG_CODE={creds['org_code']}",
    ]
    if ca_pem is not None:
        lines.append(f"SSL_CERT_PATH={ca_pem}")
    elif certfile is not None:
        lines.append(
            f"# SSL_CERT_PATH=<the CA that signed {certfile}> (or the certificate itself when it is self-signed)"
        )
    return "\n".join(lines)


def _serve(args: argparse.Namespace) -> int:
    if (args.certfile is None) != (args.keyfile is None):
        log.error("--certfile and --keyfile go together")
        return 2
    ca_pem: Optional[Path] = None
    if args.tls:
        if args.certfile is not None:
            log.error("--tls makes its own certificate: give --tls or --certfile/--keyfile, not both")
            return 2
        from .certs import make_throwaway_tls  # imports the cryptography package only now

        folder = args.tls_dir or Path(tempfile.mkdtemp(prefix="bobosync-sim-tls-"))
        files = make_throwaway_tls(folder, list(dict.fromkeys((args.host, "127.0.0.1", "localhost"))))
        args.certfile, args.keyfile, ca_pem = files.certfile, files.keyfile, files.ca_pem
        log.info(
            "throwaway CA written to %s: trust it with SSL_CERT_PATH=%s (delete %s when done)", folder, ca_pem, folder
        )
    sim = AtHocSimulator(
        make_users(args.users),
        host=args.host,
        port=args.port,
        certfile=args.certfile,
        keyfile=args.keyfile,
        token_lifetime=args.token_lifetime,
        datetime_format=args.datetime_format,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    try:
        sim.start()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    try:
        print(_env_block(sim, args.certfile, ca_pem), flush=True)
        log.info("%d users; Ctrl-C or SIGTERM stops", len(sim.users))
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    log.info("AtHoc simulator stopped")
    return 0


def _generate(args: argparse.Namespace) -> int:
    if args.files < 0 or args.users < 1:
        log.error("--files must be 0 or more and --users at least 1")
        return 2
    if args.start is not None:
        start = args.start
    else:  # into the past: the last file at about now, so that no event is in the future
        start = datetime.now().replace(microsecond=0) - timedelta(seconds=60 * max(0, args.files - 1))
    employees = [f"{i:05d}" for i in range(1, args.users + 1)]
    paths = generate_bobo_files(args.directory, employees, files=args.files, start=start, seed=args.seed)
    log.info("wrote %d BOBO file(s) to %s", len(paths), args.directory)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # "serve" is the default command: insert it unless a command (or top-level help) is given.
    position = 0
    while position < len(arguments) and arguments[position].startswith("--log-level"):
        position += 1 if "=" in arguments[position] else 2
    following = arguments[position] if position < len(arguments) else None
    if following not in (*_COMMANDS, "-h", "--help"):
        arguments.insert(min(position, len(arguments)), "serve")
    args = build_parser().parse_args(arguments)
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "generate":
        return _generate(args)
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())

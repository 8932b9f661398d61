"""``python -m bobosync set-secret NAME``: store PASSWORD, CLIENT_SECRET or SMTP_PASSWORD in the
operating system's credential store (see :mod:`bobosync.secret_store` for the naming and the
input rules)."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Optional, TextIO

from .errors import ConfigError, KeyringUnavailable
from .secret_store import (
    KEYRING_VALUE,
    NO_STORE_ADVICE,
    SCOPE_SETTINGS,
    SERVICE,
    current_account,
    describe_error,
    entry_name,
    open_store,
    server_key,
    store_name,
)
from .settings import SECRET_NAMES, read_raw_values

EXIT_OK, EXIT_FAILED = 0, 2


class _Refused(Exception):
    """set-secret got no acceptable value; the message says why (never the value)."""


def run_set_secret(
    name: str,
    env_file: Optional[Path],
    out: TextIO,
    *,
    err: Optional[TextIO] = None,
    stdin: Optional[TextIO] = None,
    environ: Optional[Mapping[str, str]] = None,
    prompt: Callable[[str], str] = getpass.getpass,
) -> int:
    """``python -m bobosync set-secret NAME``: store NAME in the credential store.

    Exit code 0 stored (and read back), 2 nothing stored: a setting missing, no usable
    credential store, an empty value or two entries that differ, or the store refused."""
    err = sys.stderr if err is None else err
    stdin = sys.stdin if stdin is None else stdin
    environ = os.environ if environ is None else environ
    if name not in SECRET_NAMES:
        err.write(f"set-secret: {name!r} is not one of {', '.join(SECRET_NAMES)}\n")
        return EXIT_FAILED
    try:
        used_file, raw = read_raw_values((*SCOPE_SETTINGS, name), env_file, environ)
    except ConfigError as exc:
        err.write(f"set-secret: {exc}\n")
        return EXIT_FAILED
    server_url, org_code, apiuser = (raw[key] or "" for key in SCOPE_SETTINGS)
    missing = [key for key, ok in zip(SCOPE_SETTINGS, (server_key(server_url), org_code, apiuser)) if not ok]
    where = str(used_file) if used_file is not None else "the .env file"
    if missing:
        err.write(
            f"set-secret: set {', '.join(missing)} in {where} first: the credential-store entry is "
            "named after ATHOC_SERVER_URL, ORG_CODE and APIUSER. Nothing was stored.\n"
        )
        return EXIT_FAILED
    try:
        backend = open_store()
    except KeyringUnavailable as exc:
        err.write(f"set-secret: {exc}. Nothing was stored.\n{NO_STORE_ADVICE}.\n")
        return EXIT_FAILED
    try:
        value = _read_value(name, stdin, prompt)
    except _Refused as exc:
        err.write(f"set-secret: {exc}. Nothing was stored.\n")
        return EXIT_FAILED
    entry = entry_name(name, server_url, org_code, apiuser)
    try:
        backend.set_password(SERVICE, entry, value)
        stored = backend.get_password(SERVICE, entry)
    except Exception as exc:
        err.write(
            f"set-secret: the credential store ({store_name(backend)}) failed: "
            f"{describe_error(exc, value)}. Nothing usable was stored.\n"
        )
        return EXIT_FAILED
    if stored != value:
        err.write(
            f"set-secret: the credential store ({store_name(backend)}) did not give the value back "
            "after storing it. Keep the value in the .env file instead.\n"
        )
        return EXIT_FAILED
    account = current_account()
    out.write(
        f"{name} stored in the credential store ({store_name(backend)}) of account {account!r}: "
        f"service '{SERVICE}', entry '{entry}'.\n"
    )
    given = raw[name] or ""
    if given and given.lower() != KEYRING_VALUE:
        source = "the process environment" if environ.get(name) else where
        out.write(
            f"Note: {name} still has a plain value in {source}, which is used instead of the "
            f"credential store. Change it to {name}=keyring (or leave it empty).\n"
        )
    else:
        out.write(f"bobosync reads it from there while {name} is 'keyring' or empty in {where}.\n")
    out.write(
        f"Only account {account!r} can read it: run bobosync (Task Scheduler, systemd, cron) as that "
        "account, and run set-secret again whenever the value changes.\n"
    )
    return EXIT_OK


def _read_value(name: str, stdin: Optional[TextIO], prompt: Callable[[str], str]) -> str:
    """Twice with echo off from a terminal; one line from a pipe. Stripped; never empty."""
    try:
        if stdin is not None and stdin.isatty():
            first = prompt(f"{name} (typing is hidden): ")
            second = prompt(f"{name} again: ")
            if first != second:
                raise _Refused("the two entries differ")
            value = first
        elif stdin is not None:
            value = stdin.readline()
        else:
            raise _Refused("no input: run it from a terminal, or pipe the value into it")
    except (EOFError, KeyboardInterrupt) as exc:
        raise _Refused("cancelled") from exc
    value = value.strip()
    if not value:
        raise _Refused(f"empty value: {name} must not be empty")
    return value

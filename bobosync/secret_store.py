"""PASSWORD, CLIENT_SECRET and SMTP_PASSWORD kept in the operating system's credential store,
not in ``.env``.

The store is reached through the ``keyring`` library: Windows Credential Manager, the macOS
Keychain, or a Secret Service on Linux (GNOME Keyring, KWallet, KeePassXC). ``python -m bobosync
set-secret PASSWORD`` stores a value; the setting written as ``PASSWORD=keyring`` (or left
empty) in ``.env`` makes :func:`bobosync.settings.load_settings` read it back. A plain value in
``.env`` or the environment is used as before and the store is never asked.

Naming: service ``bobosync``, entry (keyring's "username") ``<host>/<ORG_CODE>/<APIUSER>/<NAME>``,
for example ``athoc.example.org/ORG1/svc-bobo/PASSWORD``, where ``<host>`` is the host (and port,
if one is given) of ATHOC_SERVER_URL. Two installs on one account for different AtHoc servers,
organizations or operators therefore never share an entry. Entries belong to the operating-system
account that stored them: ``set-secret`` must run as the account that runs bobosync.

Input: from a terminal the value is asked twice with echo off (getpass) and both must match.
When standard input is not a terminal (a pipe, for automation) one line is read from it, with no
confirmation. Either way surrounding whitespace is dropped, as for ``.env`` values, and an empty
value is refused. The value is never printed, logged or put into an error message.

This module imports ``keyring`` only when a value is actually looked up or stored.
"""

from __future__ import annotations

import getpass
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional
from urllib.parse import urlsplit

from .errors import KeyringUnavailable

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

log = logging.getLogger(__name__)

SERVICE = "bobosync"
#: The ``.env`` value that means "read this one from the credential store" (any letter case).
KEYRING_VALUE = "keyring"
#: The settings the entry is named after.
SCOPE_SETTINGS = ("ATHOC_SERVER_URL", "ORG_CODE", "APIUSER")

NO_STORE_ADVICE = (
    "Windows (Credential Manager) and macOS (Keychain) have one built in; on Linux a Secret "
    "Service (GNOME Keyring, KWallet or KeePassXC) must be running in the account's D-Bus "
    "session, which a server or a service account usually lacks. There, keep the value in the "
    ".env file instead and make that file readable only by the account that runs bobosync "
    "(for example chmod 640, owner root, group bobosync)"
)


# ---------------------------------------------------------------- naming


def server_key(server_url: str) -> str:
    """``host`` or ``host:port`` of ATHOC_SERVER_URL, lower case; empty when there is none."""
    parts = urlsplit(server_url.strip())
    host = (parts.hostname or "").lower()
    if not host:
        return ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def entry_name(name: str, server_url: str, org_code: str, apiuser: str) -> str:
    """The entry for ``name`` under service ``bobosync``: ``<host>/<ORG_CODE>/<APIUSER>/<NAME>``."""
    return f"{server_key(server_url)}/{org_code}/{apiuser}/{name}"


def set_secret_command(name: str, env_file: Optional[Path] = None) -> str:
    """The command that stores ``name``, for messages."""
    option = ""
    if env_file is not None:
        shown = str(env_file)
        option = f' --env-file "{shown}"' if " " in shown else f" --env-file {shown}"
    return f"python -m bobosync{option} set-secret {name}"


def current_account() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in the environment nor the password database
        return "(unknown account)"


# ---------------------------------------------------------------- the store


def open_store() -> KeyringBackend:
    """The credential store keyring chose. Raises KeyringUnavailable when there is none usable."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null
    except ImportError as exc:
        raise KeyringUnavailable("the keyring library is not installed (pip install keyring)") from exc
    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # a bad PYTHON_KEYRING_BACKEND, a broken backend plug-in
        raise KeyringUnavailable(f"the credential store could not be opened ({describe_error(exc)})") from exc
    unusable = isinstance(backend, (fail.Keyring, null.Keyring)) or (
        isinstance(backend, chainer.ChainerBackend) and not backend.backends
    )
    if unusable:
        raise KeyringUnavailable(
            f"no credential store is available to account {current_account()!r} "
            f"(keyring backend: {store_name(backend)})"
        )
    return backend


def store_name(backend: KeyringBackend) -> str:
    return str(getattr(type(backend), "name", type(backend).__name__))


def describe_error(exc: BaseException, secret: str = "") -> str:
    """``Type: message``, short, with ``secret`` blanked out should a backend ever echo it."""
    text = str(exc)
    if secret:
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_secret(name: str, server_url: str, org_code: str, apiuser: str) -> Optional[str]:
    """The stored value, or None when there is no entry. Raises KeyringUnavailable."""
    backend = open_store()
    entry = entry_name(name, server_url, org_code, apiuser)
    try:
        value = backend.get_password(SERVICE, entry)
    except Exception as exc:
        raise KeyringUnavailable(
            f"the credential store ({store_name(backend)}) could not be read: {describe_error(exc)}"
        ) from exc
    log.debug("credential store %s: entry %s %s", store_name(backend), entry, "found" if value else "not found")
    return value or None


def resolve_secret(
    name: str,
    given: str,
    server_url: str,
    org_code: str,
    apiuser: str,
    env_file: Optional[Path],
) -> tuple[Optional[str], Optional[str]]:
    """For the settings: ``given`` is the raw value (``keyring`` or empty). Returns the value
    from the credential store and no problem, or no value and one problem line naming ``name``."""
    explicit = given.strip().lower() == KEYRING_VALUE
    command = set_secret_command(name, env_file)
    if not (server_key(server_url) and org_code and apiuser):
        if explicit:
            return None, (
                f"{name}=keyring: the credential-store entry is named after ATHOC_SERVER_URL, "
                "ORG_CODE and APIUSER; set those first"
            )
        return None, f"{name}: required, not set (in the environment or the .env file)"
    try:
        value = read_secret(name, server_url, org_code, apiuser)
    except KeyringUnavailable as exc:
        fix = "put the value in the .env file instead, readable only by the account that runs bobosync"
        if explicit:
            return None, f"{name}=keyring: {exc}; {fix}"
        return None, (
            f"{name}: required, not set in the environment or the .env file, and the credential "
            f"store cannot be read: {exc}; {fix}"
        )
    if value:
        return value, None
    entry = entry_name(name, server_url, org_code, apiuser)
    if explicit:
        return None, (
            f"{name}=keyring: no entry '{entry}' (service '{SERVICE}') in the credential store of "
            f"account {current_account()!r}; store it with: {command}"
        )
    return None, (
        f"{name}: required, not set (in the environment, the .env file or the credential store of "
        f"account {current_account()!r}); put it in the .env file, or store it with: {command}"
    )

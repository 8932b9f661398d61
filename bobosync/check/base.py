"""The state every subject's checks share (:class:`CheckerBase`)."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from ..settings import Settings

#: A certificate expiring within this many days is a WARN.
CERT_WARN_DAYS = 30
#: Longest wait for a TCP connection or TLS handshake made by the check itself, seconds.
PROBE_TIMEOUT_CAP_SECONDS = 15.0


class CheckerBase:
    """The state the checks share: the settings once read, the proxy, the AtHoc client.

    ``environ`` replaces the process environment for reading the settings (tests); proxies
    from the environment are always taken from the process environment, as requests does.
    """

    def __init__(self, env_file: Optional[Path] = None, environ: Optional[Mapping[str, str]] = None) -> None:
        self.env_file = env_file
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.settings: Optional[Settings] = None
        self._client: Any = None  # AtHocClient once authenticated
        self._proxy: Optional[str] = None
        self._tls_probe_possible = True

    def _settings(self) -> Settings:
        assert self.settings is not None, "configuration step not run"
        return self.settings

    def _timeout(self) -> float:
        return min(self._settings().request_timeout_seconds, PROBE_TIMEOUT_CAP_SECONDS)


def os_error(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return exc.strerror or str(exc) or type(exc).__name__


def write_test(folder: Path) -> Optional[str]:
    """None when a file can be created and deleted in ``folder``; else why not."""
    try:
        handle, name = tempfile.mkstemp(prefix=".bobosync-check-", suffix=".tmp", dir=str(folder))
    except OSError as exc:
        return f"cannot create a file: {os_error(exc)}"
    os.close(handle)
    try:
        os.unlink(name)
    except OSError as exc:
        return f"cannot delete a file: {os_error(exc)}"
    return None

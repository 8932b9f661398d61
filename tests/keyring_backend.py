"""A keyring backend for tests: a JSON file, so that no test ever touches a real credential store.

In-process: :func:`use_keyring` swaps keyring's backend and puts the old one back. In a child
process: ``PYTHON_KEYRING_BACKEND=tests.keyring_backend.FileKeyring`` (with the repository root on
PYTHONPATH) and ``BOBOSYNC_TEST_KEYRING=<file>``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import keyring
import keyring.core
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import KeyringError, PasswordDeleteError

PATH_VARIABLE = "BOBOSYNC_TEST_KEYRING"
BACKEND_NAME = "tests.keyring_backend.FileKeyring"


class FileKeyring(KeyringBackend):
    """Entries in one JSON file: ``{"service": {"username": "password"}}``."""

    priority = 1

    def __init__(self, path: Optional[Path] = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.path = path if path is not None else Path(os.environ[PATH_VARIABLE])

    def _load(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        data: dict[str, dict[str, str]] = json.loads(self.path.read_text(encoding="utf-8"))
        return data

    def get_password(self, service: str, username: str) -> Optional[str]:
        return self._load().get(service, {}).get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data.setdefault(service, {})[username] = password
        self.path.write_text(json.dumps(data), encoding="utf-8")

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if username not in data.get(service, {}):
            raise PasswordDeleteError(username)
        del data[service][username]
        self.path.write_text(json.dumps(data), encoding="utf-8")


class BrokenKeyring(KeyringBackend):
    """A store that fails on every call, as a locked or unreachable one does."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.calls = 0

    def get_password(self, service: str, username: str) -> Optional[str]:
        self.calls += 1
        raise KeyringError("the collection is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        self.calls += 1
        raise KeyringError("the collection is locked")

    def delete_password(self, service: str, username: str) -> None:
        self.calls += 1
        raise KeyringError("the collection is locked")


def no_store() -> KeyringBackend:
    """keyring's own "no backend found" placeholder, as on a server without a Secret Service."""
    backend: KeyringBackend = fail.Keyring()  # type: ignore[no-untyped-call]
    return backend


@contextmanager
def use_keyring(backend: KeyringBackend) -> Iterator[KeyringBackend]:
    """Make ``backend`` keyring's backend for the duration; the previous one is put back."""
    previous = keyring.core._keyring_backend
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.core._keyring_backend = previous

"""Is every third-party package bobosync needs installed? Checked before anything imports them.

Standard library only, so that it runs in an environment that lacks them all: an upgraded site
whose old venv holds only the original tool's requests, python-dotenv and tenacity would
otherwise stop with a ``ModuleNotFoundError`` traceback on every scheduled run. Instead the
operator reads which packages are missing and the one command that installs them, online or
from a wheelhouse (``python3 dev.py wheelhouse``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

#: Each runtime dependency, as pip names it (requirements.txt, pyproject.toml), and the module it
#: provides. tests/test_depcheck.py keeps the three lists in agreement.
RUNTIME_PACKAGES: Mapping[str, str] = {
    "requests": "requests",
    "urllib3": "urllib3",
    "python-dotenv": "dotenv",
    "tenacity": "tenacity",
    "keyring": "keyring",
    "cryptography": "cryptography",
    "tzlocal": "tzlocal",
    "tzdata": "tzdata",
}

#: The exit code when packages are missing: the same as a configuration the run cannot start with.
EXIT_MISSING = 2

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"


def missing_packages(packages: Mapping[str, str] = RUNTIME_PACKAGES) -> list[str]:
    """The pip names of the packages whose module cannot be found, in declaration order."""
    return [name for name, module in packages.items() if importlib.util.find_spec(module) is None]


def missing_message(missing: Iterable[str], python: str = sys.executable, requirements: Path = REQUIREMENTS) -> str:
    names = ", ".join(missing)
    return (
        f"bobosync cannot start: these Python packages are not installed for {python}: {names}\n"
        f"Install them (with network access):\n"
        f'  "{python}" -m pip install -r "{requirements}"\n'
        f"or, on a machine without network, from a wheelhouse folder DIR made by `python3 dev.py wheelhouse`:\n"
        f'  "{python}" -m pip install --no-index --find-links DIR -r "{requirements}"\n'
    )


def require_dependencies() -> None:
    """Exit with :data:`EXIT_MISSING` and the install commands when any runtime package is missing."""
    missing = missing_packages()
    if missing:
        # Logging is not set up yet (its settings need python-dotenv): this goes straight to stderr.
        sys.stderr.write(missing_message(missing))
        raise SystemExit(EXIT_MISSING)

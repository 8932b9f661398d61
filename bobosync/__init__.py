"""bobosync: keeps on-duty status in BlackBerry AtHoc in step with BOBO book-on/book-off files.

``from bobosync import AtHocClient, BOBOProcessor`` works in a REPL; the names are loaded on
first use so that ``import bobosync`` (and the CLI start-up) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

_EXPORTS = {
    "AtHocClient": "bobosync.client",
    "UpdateOutcome": "bobosync.client",
    "UpdateResult": "bobosync.client",
    "BOBOProcessor": "bobosync.processor",
    "BOBOEntry": "bobosync.bobo_csv",
    "BOBODatabase": "bobosync.database",
    "Settings": "bobosync.settings",
    "load_settings": "bobosync.settings",
}

__all__ = [
    "AtHocClient",
    "BOBODatabase",
    "BOBOEntry",
    "BOBOProcessor",
    "Settings",
    "UpdateOutcome",
    "UpdateResult",
    "__version__",
    "load_settings",
]

if TYPE_CHECKING:
    from .bobo_csv import BOBOEntry
    from .client import AtHocClient, UpdateOutcome, UpdateResult
    from .database import BOBODatabase
    from .processor import BOBOProcessor
    from .settings import Settings, load_settings


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'bobosync' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)

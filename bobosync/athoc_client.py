"""Compatibility module: ``from athoc_client import AtHocClient`` inside ``bobosync/`` gives the
original tool's client API (:mod:`bobosync.original_api`, over :mod:`bobosync.client`)."""

import sys
from pathlib import Path

if not __package__:
    # Imported as a top-level module from inside bobosync/: make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bobosync.client import UpdateOutcome, UpdateResult
from bobosync.original_api import AtHocClient

__all__ = ["AtHocClient", "UpdateOutcome", "UpdateResult"]

"""Compatibility module: ``from athoc_client import AtHocClient`` inside ``bobosync/``, as with
the original tool. The client itself lives in :mod:`bobosync.client`."""

import sys
from pathlib import Path

if not __package__:
    # Imported as a top-level module from inside bobosync/: make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bobosync.client import AtHocClient, UpdateOutcome, UpdateResult

__all__ = ["AtHocClient", "UpdateOutcome", "UpdateResult"]

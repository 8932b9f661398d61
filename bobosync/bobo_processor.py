"""Compatibility entry point, as the original tool was called.

``python bobosync/bobo_processor.py`` from the repository root, ``python bobo_processor.py``
from inside ``bobosync/`` (how existing Task Scheduler installs call it), and
``from bobo_processor import BOBOProcessor`` in a REPL started inside ``bobosync/``, which gives
the original tool's API (:mod:`bobosync.original_api`).
"""

import sys
from pathlib import Path

if not __package__:
    # Run as a script, or imported as a top-level module: make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bobosync.depcheck import require_dependencies

require_dependencies()

from bobosync.cli import main
from bobosync.original_api import BOBODatabase, BOBOEntry, BOBOProcessor

__all__ = ["BOBODatabase", "BOBOEntry", "BOBOProcessor", "main"]

if __name__ == "__main__":
    sys.exit(main())

"""An AtHoc simulator (HTTPS, token, users/search/basic, SyncByCommonNames) and BOBO file
generation, for the test suite, benchmarks and demos. Standard library only.

``python -m bobosync.simulator --port 8443 --certfile cert.pem --keyfile key.pem`` runs it;
``python -m bobosync.simulator generate DIR --files 10`` writes BOBO files.
"""

from __future__ import annotations

from .criteria import Criteria, CriteriaError, parse_criteria
from .generator import (
    EXPORT_HEADER,
    SIMPLE_HEADER,
    bobo_file_name,
    export_row,
    generate_bobo_files,
    simple_row,
    write_bobo_file,
)
from .server import SIM_CREDENTIALS, AtHocSimulator, Fault, JournalEntry, make_users

__all__ = [
    "EXPORT_HEADER",
    "SIMPLE_HEADER",
    "SIM_CREDENTIALS",
    "AtHocSimulator",
    "Criteria",
    "CriteriaError",
    "Fault",
    "JournalEntry",
    "bobo_file_name",
    "export_row",
    "generate_bobo_files",
    "make_users",
    "parse_criteria",
    "simple_row",
    "write_bobo_file",
]

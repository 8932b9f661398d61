"""The metrics file: the figures of the last pass and the health, in the Prometheus text format.

With METRICS_FILE set, :func:`bobosync.monitoring.after_pass` writes it after every pass, for
the textfile collectors of node_exporter (``--collector.textfile.directory``) and
windows_exporter (``textfile`` collector): the name should end in ``.prom``.

The file is replaced atomically: written under a temporary name in the same folder (not
ending in ``.prom``, so a collector never reads half a file), flushed to disk, then renamed
over the old one. On Windows a collector that has the old file open makes the rename fail
for a moment (a sharing violation): it is tried again a few times before giving up.

Every figure is a gauge. Counts of the pass are ``bobosync_last_pass_<count>`` (one per field
of :class:`~bobosync.counts.PassCounts`, so a count added there appears here too); times are
Unix timestamps plus ``..._age_seconds`` / ``bobosync_seconds_since_last_success``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Optional, Union

from .processor import PassReport
from .settings import Settings
from .status import EXIT_CODES, StatusReport
from .version import __version__

#: Runs whose last success is exported, by run-history kind.
SUCCESS_KINDS = ("mapping_sync", "cleanup", "reconcile")
#: Tries of the final rename when the old file is held open (Windows), and the pause between.
REPLACE_ATTEMPTS = 5
REPLACE_PAUSE_SECONDS = 0.1

PASS_STATUSES = ("ok", "partial", "failed")

#: HELP texts of the pass counts; a count not listed here gets a generic one.
COUNT_HELP = {
    "files": "Files the last pass took up.",
    "files_done": "Files the last pass finished (processed folder, or remembered in place).",
    "files_retry": "Files the last pass kept for a retry.",
    "files_failed": "Files the last pass moved to the failed folder.",
    "files_waiting_young": "Files left for the next pass because they were modified a moment ago.",
    "rows": "Valid rows read by the last pass.",
    "bad_rows": "Rows the last pass skipped as invalid.",
    "updates_sent": "Duty-status updates the last pass sent to AtHoc.",
    "applied": "Updates AtHoc applied in the last pass.",
    "not_in_athoc": "Updates whose LOGIN_ID AtHoc does not know, in the last pass.",
    "failed": "Updates AtHoc rejected or did not answer, in the last pass.",
    "held": "Events held back by the last pass as dated in the future.",
    "unmapped": "Employee IDs with no AtHoc user, in the last pass.",
    "superseded": "Events the last pass did not send because a newer one exists.",
    "cleared": "Stale duty values cleared by the auto-cleanup of the last pass.",
    "requests": "HTTP requests the last pass sent to AtHoc.",
    "drift": "Users whose AtHoc value differed from the desired one, found by the last pass.",
    "repaired": "Users whose drifted AtHoc value the last pass repaired.",
}

Number = Union[int, float]


class _Writer:
    """Collects metric families in the text format: HELP, TYPE, then the samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def gauge(self, name: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], Number]]) -> None:
        rows = list(samples)
        if not rows:
            return
        self.lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self.lines.append(f"# TYPE {name} gauge")
        for labels, value in rows:
            label_text = ",".join(f'{key}="{_escape_label(val)}"' for key, val in labels.items())
            self.lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}")

    def one(self, name: str, help_text: str, value: Optional[Number]) -> None:
        if value is not None:
            self.gauge(name, help_text, [({}, value)])

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: Number) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render_metrics(
    settings: Settings,
    report: PassReport,
    status: StatusReport,
    finished_at: datetime,
    last_success: Mapping[str, Optional[datetime]],
) -> str:
    """The metrics file for one pass: its figures, the health ``bobosync status`` reports now,
    and when each kind of run last succeeded (``last_success``: run kind -> time)."""
    out = _Writer()
    now = finished_at.timestamp()
    out.gauge(
        "bobosync_info",
        "bobosync version and AtHoc organization (always 1).",
        [({"version": __version__, "org": settings.org_code}, 1)],
    )
    out.one("bobosync_last_pass_timestamp_seconds", "When the last pass finished (Unix time).", now)
    out.one(
        "bobosync_last_pass_start_timestamp_seconds",
        "When the last pass started (Unix time).",
        report.started_at.timestamp(),
    )
    out.one("bobosync_last_pass_duration_seconds", "How long the last pass took.", round(report.seconds, 6))
    out.gauge(
        "bobosync_last_pass_status",
        "1 for the status of the last pass (ok, partial or failed).",
        [({"status": name}, int(report.status == name)) for name in PASS_STATUSES],
    )
    out.one(
        "bobosync_last_pass_exit_code",
        "Exit code of the last pass: 0 all done, 1 something left or AtHoc failed.",
        report.exit_code,
    )
    for count in dataclasses.fields(report.counts):
        value = getattr(report.counts, count.name)
        if isinstance(value, int) and not isinstance(value, bool):
            out.one(
                f"bobosync_last_pass_{count.name}",
                COUNT_HELP.get(count.name, f"The {count.name.replace('_', ' ')} count of the last pass."),
                value,
            )

    out.gauge(
        "bobosync_health",
        "1 for the health bobosync status reports (healthy, warning, unhealthy).",
        [({"level": level}, int(status.health == level)) for level in EXIT_CODES],
    )
    out.one(
        "bobosync_health_code",
        "The health as bobosync status's exit code: 0 healthy, 1 warning, 2 unhealthy.",
        status.exit_code,
    )
    out.one("bobosync_health_reasons", "How many reasons the health is not healthy.", len(status.reasons))

    files = status.files
    if files.csv_error is None:
        out.one("bobosync_files_waiting", "Files waiting in CSV_DIRECTORY.", len(files.waiting))
        out.one(
            "bobosync_oldest_waiting_file_age_seconds",
            "Age of the oldest file waiting in CSV_DIRECTORY (0 when none waits).",
            files.oldest_waiting_seconds or 0.0,
        )
    if files.failed_error is None:
        out.one("bobosync_files_failed", "Files in FAILED_FILES_DIRECTORY.", len(files.failed))
    if status.database_error is None:
        out.one(
            "bobosync_worker_mappings", "Worker mappings (collar number -> AtHoc user).", status.mapping_sync.mappings
        )

    known = {kind: when for kind, when in last_success.items() if when is not None}
    out.gauge(
        "bobosync_last_success_timestamp_seconds",
        "When each kind of run last succeeded (Unix time).",
        [({"run": kind}, when.timestamp()) for kind, when in known.items()],
    )
    out.gauge(
        "bobosync_seconds_since_last_success",
        "Seconds since each kind of run last succeeded.",
        [({"run": kind}, round(max(0.0, now - when.timestamp()), 3)) for kind, when in known.items()],
    )
    return out.text()


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (see the module docstring). Raises OSError."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(text.encode("utf-8"))  # bytes: "\n" line ends on Windows too
            handle.flush()
            os.fsync(handle.fileno())
        for attempt in range(1, REPLACE_ATTEMPTS + 1):
            try:
                os.replace(temp, path)
                return
            except PermissionError:  # Windows: the collector has the old file open right now
                if attempt == REPLACE_ATTEMPTS:
                    raise
                time.sleep(REPLACE_PAUSE_SECONDS)
    finally:
        with contextlib.suppress(OSError):  # gone after the rename; else nothing more to do
            temp.unlink()

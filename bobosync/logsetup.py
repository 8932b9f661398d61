"""Logging set-up: the ``bobosync`` logger, a daily rotated file, the console, redaction.

``bobo_processor.log`` in LOG_DIRECTORY rolls over at midnight to
``bobo_processor.log.YYYY-MM-DD``; files older than LOG_PURGE_DAYS are deleted by the pass.
Every handler carries a :class:`RedactingFilter`: whatever a message says, a registered secret
(password, client secret, access token) is replaced by ``***`` before it is written. The code
never logs secrets on purpose; the filter is the second line of defence.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
import threading
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Optional

from .redaction import MIN_SECRET_LENGTH, redact_values

LOGGER_NAME = "bobosync"
LOG_FILE_NAME = "bobo_processor.log"
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_ROTATED = re.compile(re.escape(LOG_FILE_NAME) + r"\.(\d{4}-\d{2}-\d{2})$")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Never let ``value`` reach a log line (short values are ignored: they would mangle text)."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    with _secrets_lock:
        secrets = tuple(_secrets)
    return redact_values(text, secrets)


class RedactingFilter(logging.Filter):
    """Renders the message once, redacted, so neither args nor tracebacks can leak a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def configure_logging(
    level: str,
    log_directory: Optional[Path],
    *,
    console: bool = True,
    secrets: tuple[str, ...] = (),
) -> logging.Logger:
    """(Re)configure the ``bobosync`` logger. Safe to call more than once (tests, REPL)."""
    for secret in secrets:
        register_secret(secret)
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if getattr(handler, "_bobosync", False):
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(level)
    logger.propagate = False
    formatter = logging.Formatter(LOG_FORMAT)
    handlers: list[logging.Handler] = []
    if log_directory is not None:
        log_directory.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.TimedRotatingFileHandler(
                log_directory / LOG_FILE_NAME, when="midnight", encoding="utf-8", delay=True
            )
        )
    if console:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RedactingFilter())
        handler._bobosync = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return logger


def purge_old_logs(log_directory: Path, days: int, today: date) -> int:
    """Delete rotated logs dated more than ``days`` days before ``today``. 0 days = keep all."""
    if days <= 0 or not log_directory.is_dir():
        return 0
    cutoff = today - timedelta(days=days)
    removed = 0
    for path in log_directory.iterdir():
        match = _ROTATED.match(path.name)
        if not match:
            continue
        try:
            dated = datetime.strptime(match.group(1), "%Y-%m-%d").date()
        except ValueError:
            continue
        if dated < cutoff:
            try:
                path.unlink()
                removed += 1
            except OSError as exc:
                logging.getLogger(__name__).warning("could not delete old log %s: %s", path, exc)
    return removed

"""What an installation of the original tool leaves behind that bobosync reads differently:
settings it ignores, values whose meaning changed (or that it refuses), and the original's
virtual environment. Each finding names the setting or the folder and says what to change
(see UPGRADING.md)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Optional

from ..settings import FALSE_WORDS, PLAIN_SETTINGS, TRUE_WORDS
from .results import CheckResult, warn

#: Settings only the original read: bobosync ignores them.
ORIGINAL_ONLY_SETTINGS = {
    "GRANT_TYPE": "bobosync always asks for a password-grant token",
}
#: Boolean settings: the original took only ``true`` (any case) as true.
_BOOLEANS = tuple(spec.name for spec in PLAIN_SETTINGS if spec.kind == "boolean")
#: The original's number settings whose edge values mean something else in bobosync.
_CHANGED: dict[tuple[str, str], tuple[str, str]] = {
    ("AUTO_CLEANUP_HOURS", "0"): (
        "the original cleared EVERY duty value on every run; in bobosync 0 turns the auto-cleanup off",
        "set the age after which a forgotten book-on is cleared (the original's default was 24), or "
        "keep 0 if the cleanup is really not wanted",
    ),
    ("BATCH_SIZE", "0"): (
        "the original stopped with exit 1 whenever files waited; bobosync settles every waiting file in one "
        "transaction",
        "nothing to change if that is what you want; 10 is the default",
    ),
}


def original_leftovers(file_values: Mapping[str, Optional[str]], env_file: Optional[Path]) -> Iterator[CheckResult]:
    """The findings for one ``.env`` file's values (as written, before validation)."""
    for name, reason in ORIGINAL_ONLY_SETTINGS.items():
        if name in file_values:
            yield warn(
                name,
                f"set for the original tool; {reason}, so this setting is ignored",
                f"delete the {name} line from the .env file",
            )
    for name in _BOOLEANS:
        value = (file_values.get(name) or "").strip()
        if value and value.lower() not in ("true", "false"):
            yield warn(
                name,
                f"{value!r}: the original took only 'true' as true, so it read this as false; "
                f"bobosync reads {value!r} as {_bobosync_boolean(value)}",
                f"write {name}=true or {name}=false, whichever you mean",
            )
    for (name, edge), (detail, fix) in _CHANGED.items():
        if (file_values.get(name) or "").strip() == edge:
            yield warn(name, f"{edge}: {detail}", fix)
    if env_file is not None:
        old_venv = env_file.parent / "myenv"
        if old_venv.is_dir():
            yield warn(
                "myenv",
                f"{old_venv} is the original tool's virtual environment; bobosync does not use it "
                "(its wrappers run the .venv that `python3 dev.py` or UPGRADING.md's install makes)",
                f"once bobosync runs from the scheduled task, delete {old_venv}",
            )


def _bobosync_boolean(value: str) -> str:
    lowered = value.lower()
    return "true" if lowered in TRUE_WORDS else "false" if lowered in FALSE_WORDS else "invalid (refused)"

"""What a pass did, counted: :class:`PassCounts`. The pipeline's parts (the writer, the
processor) add to it; the summary line, the run history, status and the metrics read it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass
class PassCounts:
    """What a pass did; the summary line and the run history are made from this."""

    files: int = 0
    files_done: int = 0
    files_retry: int = 0
    files_failed: int = 0
    files_waiting_young: int = 0
    #: Read, then left in CSV_DIRECTORY with nothing decided: still being written (a last
    #: line cut short), changed since it was read, or gone since it was listed.
    files_left: int = 0
    rows: int = 0
    bad_rows: int = 0
    updates_sent: int = 0
    applied: int = 0
    not_in_athoc: int = 0
    failed: int = 0
    held: int = 0
    unmapped: int = 0
    superseded: int = 0
    cleared: int = 0
    #: Events that lost to a newer applied one although their file is newer (terminal clock behind?).
    behind: int = 0
    #: values AtHoc held that differ from the desired ones (reconcile or read-back)
    drift: int = 0
    #: of those, repaired (AtHoc answered OK)
    repaired: int = 0
    #: desired values sent again: newly mapped employees, collars moved, writes that did not land
    replayed: int = 0
    #: users read back because a write to them lost its answer
    read_back: int = 0
    #: writes whose answer was lost in this pass (read back in the following passes)
    suspect: int = 0
    requests: int = 0

    def summary(self) -> str:
        return (
            f"files {self.files} (done {self.files_done}, retry {self.files_retry}, "
            f"failed {self.files_failed}), rows {self.rows}, bad rows {self.bad_rows}, "
            f"updates sent {self.updates_sent}, applied {self.applied}, "
            f"not in AtHoc {self.not_in_athoc}, failed {self.failed}, held {self.held}, unmapped {self.unmapped}, "
            f"superseded {self.superseded}, behind {self.behind}, cleared {self.cleared}, "
            f"drift {self.drift}, repaired {self.repaired}"
        )

    @classmethod
    def from_record(cls, recorded: Mapping[str, Any]) -> PassCounts:
        """The counts a run-history row holds (``asdict`` of an earlier pass): a count missing
        or not a number is 0, a name no longer counted is ignored. The one way they are read
        back, so a renamed field is a type error, not a silent 0."""
        values = {}
        for field in fields(cls):
            value = recorded.get(field.name, 0)
            values[field.name] = value if isinstance(value, int) and not isinstance(value, bool) else 0
        return cls(**values)

"""What one check found (:class:`CheckResult`), its line in the output, and the summary."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

#: Examples shown in one line.
MAX_EXAMPLES = 3
#: Width of the name column.
NAME_WIDTH = 22


class Status(str, enum.Enum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"

    @property
    def label(self) -> str:
        return "[ OK ]" if self is Status.OK else f"[{self.value}]"


@dataclass(frozen=True)
class CheckResult:
    """One line of the check's output (and its fix, for WARN and FAIL)."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        head = f"{self.status.label} {(self.name + ':'):<{NAME_WIDTH + 1}} {self.detail}"
        if self.fix and self.status in (Status.WARN, Status.FAIL):
            return [head, f"{'':6} {'fix:':<{NAME_WIDTH + 1}} {self.fix}"]
        return [head]


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.OK, detail)


def warn(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, Status.WARN, detail, fix)


def fail(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, Status.FAIL, detail, fix)


def skip(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.SKIP, detail)


def format_summary(results: Sequence[CheckResult]) -> str:
    counts = Counter(r.status for r in results)
    text = (
        f"summary: {counts[Status.OK]} OK, {counts[Status.WARN]} WARN, {counts[Status.FAIL]} FAIL, "
        f"{counts[Status.SKIP]} skipped"
    )
    if counts[Status.FAIL]:
        return text + " - NOT ready: fix the FAIL lines and run bobosync check again"
    if counts[Status.WARN]:
        return text + " - ready, but read the WARN lines"
    return text + " - ready"

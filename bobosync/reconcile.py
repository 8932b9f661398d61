"""Judging what AtHoc holds against the desired state: drift, stale accounts and stale values.

:func:`judge` takes readings (LOGIN_ID -> the duty value AtHoc holds) from a listing or a
read-back and decides, per user, with these rules:

* **an employee's account** (a user some employee in the desired state maps to now): when the
  user is in ``compare`` (every account at a reconcile; suspect accounts at a read-back), a
  value that does not agree with the desired one is *drift*, reported, and repaired unless
  ``repair`` is off. Otherwise only the cleanup rule below applies, and only when the desired
  value is empty: bobosync never clears a value it wants there.
* **a stale account** (one an employee no longer maps to, that bobosync wrote to): cleared if
  it still holds exactly what bobosync wrote there, forgotten otherwise.
* **any other user** (BOBO never mentioned them): only the auto-cleanup touches them, clearing
  a value older than AUTO_CLEANUP_HOURS; a value that cannot be read is never cleared.

Pure: the caller reads AtHoc, sends the writes and records the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, NamedTuple, Optional

from .desired import DesiredState, Write, WriteReason, desired_value, values_agree

__all__ = ["Drift", "Judgement", "Rules", "judge"]


class Drift(NamedTuple):
    """An employee's account holding another value than the desired one."""

    employee_id: str
    login_id: str
    athoc_value: str
    desired_value: str
    #: a reconcile repaired this employee since ``repaired_since`` and AtHoc answered OK
    again: bool


@dataclass
class Judgement:
    drift: list[Drift] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    #: LOGIN_ID -> a value the auto-cleanup could not read (never cleared)
    unreadable: dict[str, str] = field(default_factory=dict)
    #: employee ID -> the value read from their account (the accounts compared)
    read: dict[str, str] = field(default_factory=dict)
    #: employees whose stale account holds something else now: nothing left to clear there
    forget_stale: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Rules:
    """How to judge: the organization's format, AUTO_CLEANUP_HOURS, and the time."""

    datetime_format: str
    cleanup_hours: float
    now: datetime
    #: a value -> True when older than AUTO_CLEANUP_HOURS, False when not, None when unreadable
    value_is_old: Callable[[str], Optional[bool]]
    #: whether to clear values older than AUTO_CLEANUP_HOURS
    cleanup: bool
    #: whether to repair drift (RECONCILE_MODE=repair) or only report it
    repair: bool
    #: a repair since this time counts as "repaired before" (systematic drift)
    repaired_since: Optional[datetime] = None


def judge(
    readings: Mapping[str, str],
    states: Mapping[str, DesiredState],
    owners: Mapping[str, str],
    compare: Set[str],
    rules: Rules,
) -> Judgement:
    """Judge ``readings`` (see the module docstring).

    ``owners``: casefolded LOGIN_ID -> the employee mapped to it now (employees in ``states``
    only). ``compare``: casefolded LOGIN_IDs whose owner's value is checked for drift.
    """
    result = Judgement()
    stale_owners = {
        state.stale_login.casefold(): state
        for state in states.values()
        if state.stale_login is not None and state.stale_value is not None
    }
    for login_id, value in readings.items():
        key = login_id.casefold()
        employee_id = owners.get(key)
        if employee_id is not None:
            _judge_account(login_id, value, states[employee_id], key in compare, rules, result)
            continue
        stale = stale_owners.get(key)
        if stale is not None:
            if values_agree(value, stale.stale_value or "", rules.datetime_format) and value.strip():
                result.writes.append(Write(login_id, "", stale.employee_id, WriteReason.STALE))
            else:
                # Someone else wrote there since (or cleared it): nothing of bobosync's to clear.
                result.forget_stale.append(stale.employee_id)
            continue
        _judge_cleanup(login_id, value, None, rules, result)
    return result


def _judge_account(
    login_id: str, value: str, state: DesiredState, compare: bool, rules: Rules, result: Judgement
) -> None:
    wanted = desired_value(state, rules.now, rules.datetime_format, rules.cleanup_hours)
    if compare:
        result.read[state.employee_id] = value
    if compare and not values_agree(value, wanted, rules.datetime_format):
        again = (
            rules.repaired_since is not None
            and state.repaired_at is not None
            and state.repaired_at >= rules.repaired_since
        )
        result.drift.append(Drift(state.employee_id, login_id, value, wanted, again))
        if rules.repair:
            result.writes.append(Write(login_id, wanted, state.employee_id, WriteReason.REPAIR))
        return
    if not wanted:
        _judge_cleanup(login_id, value, state.employee_id, rules, result)


def _judge_cleanup(login_id: str, value: str, employee_id: Optional[str], rules: Rules, result: Judgement) -> None:
    if not rules.cleanup or not value.strip():
        return
    old = rules.value_is_old(value)
    if old is None:
        result.unreadable[login_id] = value
    elif old:
        result.writes.append(Write(login_id, "", employee_id, WriteReason.CLEANUP))

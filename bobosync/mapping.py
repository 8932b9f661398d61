"""The worker mapping: which AtHoc user (LOGIN_ID) a BOBO Employee_ID (collar number) is.

Built from a listing of AtHoc users by :func:`mapping_from_users`; looked up by
:func:`match_collars`. Pure functions: reading AtHoc and the database is the caller's job.

* A collar is the COLLAR_ID_FIELD value as AtHoc holds it, trimmed. The mapping table keeps it
  so (the original tool's ``worker_mapping.employee_id``), whatever COLLAR_MATCH says.
* ``COLLAR_MATCH=exact``: a BOBO ID matches the collar with the same text (``05990`` and
  ``5990`` differ). ``numeric``: the same text first; failing that, an all-digit ID matches the
  all-digit collars with the same number (leading zeros ignored), provided they all belong to
  one user. Several users is an ambiguity: reported, never guessed.
* A collar held by several users goes to the first LOGIN_ID in case-insensitive order
  (deterministic), reported at every mapping sync.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

from .settings import COLLAR_MATCH_MODES

__all__ = [
    "COLLAR_MATCH_MODES",
    "CollarMatch",
    "MappingRead",
    "mapping_from_users",
    "match_collars",
    "numeric_form",
    "numeric_index",
    "unlisted_logins",
]


def numeric_form(collar: str) -> Optional[str]:
    """The number of an all-digit collar without its leading zeros (``"05990"`` -> ``"5990"``,
    ``"000"`` -> ``"0"``); None when the collar is not all ASCII digits."""
    if not collar or not (collar.isascii() and collar.isdigit()):
        return None
    return collar.lstrip("0") or "0"


@dataclass(frozen=True)
class MappingRead:
    """A mapping built from one listing."""

    #: collar -> LOGIN_ID
    mapping: dict[str, str]
    #: collar held by several users -> their LOGIN_IDs, the one used first
    shared: dict[str, list[str]] = field(default_factory=dict)
    #: LOGIN_IDs (casefolded) of every user in the listing, with or without a collar
    listed: frozenset[str] = frozenset()


def _ordered(logins: Iterable[str]) -> list[str]:
    return sorted(set(logins), key=lambda s: (s.casefold(), s))


def mapping_from_users(users: Iterable[Mapping[str, str]], collar_field: str) -> MappingRead:
    """collar -> LOGIN_ID from listed users (see the module docstring for shared collars)."""
    holders: dict[str, list[str]] = {}
    listed: set[str] = set()
    for user in users:
        login_id = (user.get("LOGIN_ID") or "").strip()
        if not login_id:
            continue
        listed.add(login_id.casefold())
        collar = (user.get(collar_field) or "").strip()
        if collar:
            holders.setdefault(collar, []).append(login_id)
    mapping: dict[str, str] = {}
    shared: dict[str, list[str]] = {}
    for collar, logins in holders.items():
        ordered = _ordered(logins)
        if len(ordered) > 1:
            shared[collar] = ordered
        mapping[collar] = ordered[0]
    return MappingRead(mapping, shared, frozenset(listed))


def unlisted_logins(existing: Mapping[str, str], listed: frozenset[str]) -> list[str]:
    """The LOGIN_IDs of ``existing`` mappings (collar -> LOGIN_ID) whose user is missing from a
    listing altogether (``listed``: casefolded LOGIN_IDs). Before such a mapping is dropped, a
    second read must confirm the user is gone: users removed or added while a listing pages
    through AtHoc shift its pages, and a serving officer can fall between two of them."""
    return _ordered(login for login in existing.values() if login.casefold() not in listed)


@dataclass(frozen=True)
class CollarMatch:
    """What :func:`match_collars` found."""

    #: employee ID -> LOGIN_ID
    found: dict[str, str]
    #: employee ID -> the (collar, LOGIN_ID) pairs it matches numerically, several users
    ambiguous: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def match_collars(
    employee_ids: Sequence[str],
    exact: Mapping[str, str],
    numeric: Optional[Mapping[str, Sequence[tuple[str, str]]]] = None,
) -> CollarMatch:
    """Match BOBO employee IDs to LOGIN_IDs.

    ``exact``: employee ID -> LOGIN_ID for the IDs whose collar text is in the mapping.
    ``numeric`` (COLLAR_MATCH=numeric, None otherwise): numeric form -> every (collar,
    LOGIN_ID) of the mapping with that number, for the IDs ``exact`` did not match.
    """
    found = {e: exact[e] for e in employee_ids if e in exact}
    ambiguous: dict[str, list[tuple[str, str]]] = {}
    if numeric is None:
        return CollarMatch(found)
    for employee_id in employee_ids:
        if employee_id in found:
            continue
        number = numeric_form(employee_id)
        candidates = sorted(set(numeric.get(number, ()))) if number is not None else []
        logins = {login.casefold() for _, login in candidates}
        if len(logins) == 1:
            found[employee_id] = candidates[0][1]
        elif logins:
            ambiguous[employee_id] = candidates
    return CollarMatch(found, ambiguous)


def numeric_index(mapping: Mapping[str, str], numbers: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """numeric form -> (collar, LOGIN_ID) of the all-digit collars of ``mapping`` with one of
    the given ``numbers`` (for a mapping held in memory; the database answers this itself)."""
    wanted = set(numbers)
    index: dict[str, list[tuple[str, str]]] = {}
    for collar, login in mapping.items():
        number = numeric_form(collar)
        if number is not None and number in wanted:
            index.setdefault(number, []).append((collar, login))
    return index

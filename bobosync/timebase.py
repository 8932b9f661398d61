"""Time in bobosync: zones, true instants, and this machine's clock against AtHoc's.

Inside bobosync every moment is an *instant*: an aware datetime in UTC. Times come in three
other shapes, each converted here and nowhere else:

* **BOBO readings** (DateTime_Created, Timestamp): local wall-clock times in BOBO_TIMEZONE,
  with no offset. At the autumn fall-back a reading occurs twice, at the spring-forward it
  does not occur at all. :meth:`ZoneReader.instant` resolves both (see :class:`Reading`).
* **AtHoc duty values**: local readings in ATHOC_TIMEZONE, in ATHOC_DATETIME_FORMAT. The
  auto-cleanup reads them with :func:`latest_instant`: a repeated reading takes the *later*
  instant, so nothing is cleared before AUTO_CLEANUP_HOURS real hours.
* **naive datetimes** handed in by callers (``datetime.now()``, the original tool's
  ``sync_tracking`` text): this machine's local time, converted by :func:`as_utc`.

People are shown local times with their offset (:func:`show`). The SYNC_HOUR rule is also
local (this machine's zone): that is what an operator means by 20:00.

:class:`ClockOffset` compares this machine's clock with the ``Date`` header of an AtHoc answer.
"""

from __future__ import annotations

import enum
import time
from datetime import datetime, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime
from typing import NamedTuple, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "FUTURE_MARGIN",
    "UTC",
    "ClockOffset",
    "Reading",
    "ResolvedReading",
    "ZoneReader",
    "as_utc",
    "describe_offset",
    "latest_instant",
    "machine_zone",
    "show",
    "utc_now",
    "zone_named",
]

UTC = timezone.utc

#: A stored time less than this ahead of the clock is rounding or jitter, not "in the future".
FUTURE_MARGIN = timedelta(minutes=1)

#: The ``Date`` header has whole seconds: AtHoc's clock is known to within this much.
_DATE_RESOLUTION = timedelta(seconds=1)


def utc_now() -> datetime:
    """This machine's clock, as an instant."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` as an instant. A naive value is this machine's local time (``datetime.now()``)."""
    return value.astimezone(UTC)


def show(value: Optional[datetime]) -> str:
    """An instant for people: this machine's local time with its offset, e.g.
    ``2026-10-25 01:30:00+01:00``; ``never`` for None."""
    if value is None:
        return "never"
    return as_utc(value).astimezone().isoformat(sep=" ", timespec="seconds")


def machine_zone() -> ZoneInfo:
    """This machine's own IANA zone, found portably (Windows included) by ``tzlocal``.
    Raises ValueError when it cannot be determined."""
    import tzlocal  # imported here: only start-up needs it

    try:
        return zone_named(tzlocal.get_localzone_name())
    except Exception as exc:  # tzlocal raises its own errors, ValueError or LookupError
        raise ValueError(f"this machine's time zone cannot be determined ({exc})") from exc


def zone_named(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (``Europe/London``); ValueError if there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"no IANA time zone named {name!r}") from exc


class Reading(enum.Enum):
    """What kind of local reading a wall-clock time is in its zone."""

    EXACT = "exact"  # occurs once
    REPEATED = "repeated"  # occurs twice (autumn fall-back): two candidate instants
    SKIPPED = "skipped"  # never occurs (spring-forward gap): moved forward by the gap


class ResolvedReading(NamedTuple):
    instant: datetime
    kind: Reading


def _candidates(local: datetime, zone: tzinfo) -> tuple[datetime, datetime, Reading]:
    """The instants of the first (fold 0) and second (fold 1) reading of ``local`` in ``zone``.

    PEP 495: fold 0 takes the offset in force before a transition, fold 1 the one after. At a
    fall-back the offset before is the larger one (two instants); in a spring-forward gap it is
    the smaller one, and fold 0 gives the reading moved forward by the gap.
    """
    before = local.replace(tzinfo=zone, fold=0).utcoffset()
    after = local.replace(tzinfo=zone, fold=1).utcoffset()
    assert before is not None and after is not None  # a zone gives every reading an offset
    first = (local - before).replace(tzinfo=UTC)
    if before == after:
        return first, first, Reading.EXACT
    if before > after:
        return first, (local - after).replace(tzinfo=UTC), Reading.REPEATED
    return first, first, Reading.SKIPPED


def latest_instant(local: datetime, zone: tzinfo) -> ResolvedReading:
    """``local`` read in ``zone``, a repeated reading taking the later of its two instants."""
    _, second, kind = _candidates(local, zone)
    return ResolvedReading(second, kind)


class ZoneReader:
    """Turns local readings of one zone into instants (BOBO_TIMEZONE for BOBO's files).

    This runs once per row of every file, so it remembers, per local hour, the one offset in
    force throughout that hour when there is one (no transition inside it): a row then costs a
    dict lookup and a subtraction. Hours holding a transition are worked out row by row."""

    __slots__ = ("_hours", "zone")

    _MAX_HOURS = 100_000

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        self._hours: dict[tuple[int, int, int, int], Optional[timedelta]] = {}

    def _hour_offset(self, local: datetime) -> Optional[timedelta]:
        """The offset in force during the whole local hour of ``local``; None if it changes."""
        key = (local.year, local.month, local.day, local.hour)
        try:
            return self._hours[key]
        except KeyError:
            pass
        start = local.replace(minute=0, second=0, microsecond=0)
        offsets = {
            moment.replace(tzinfo=self.zone, fold=fold).utcoffset()
            for moment in (start, start + timedelta(minutes=59, seconds=59, microseconds=999999))
            for fold in (0, 1)
        }
        # The same offset at both ends of the hour, with both folds: no transition in between
        # (no zone has two transitions within an hour).
        offset = offsets.pop() if len(offsets) == 1 else None
        if len(self._hours) >= self._MAX_HOURS:
            self._hours.clear()
        self._hours[key] = offset
        return offset

    def instant(self, local: datetime, witness: datetime) -> ResolvedReading:
        """The instant of the reading ``local``. A repeated reading is resolved by ``witness``,
        a true instant not before the event (the file's modification time): the candidate not
        after it and closest to it, or the earlier one when both lie after it."""
        offset = self._hour_offset(local)
        if offset is not None:
            return ResolvedReading((local - offset).replace(tzinfo=UTC), Reading.EXACT)
        first, second, kind = _candidates(local, self.zone)
        if kind is Reading.REPEATED and second <= witness:
            return ResolvedReading(second, kind)
        return ResolvedReading(first, kind)


class ClockOffset(NamedTuple):
    """This machine's clock against AtHoc's, from the ``Date`` header of one answer.

    ``athoc`` is AtHoc's clock half-way through the round trip, when this machine's clock read
    ``local`` and its monotonic clock ``monotonic``; ``uncertainty`` is half the round trip plus
    the header's one-second resolution.
    """

    athoc: datetime
    local: datetime
    uncertainty: timedelta
    monotonic: float

    @classmethod
    def from_date_header(
        cls, header: Optional[str], sent: datetime, received: datetime, monotonic: Optional[float] = None
    ) -> Optional[ClockOffset]:
        """None when there is no ``Date`` header or it cannot be read. ``monotonic``: the
        monotonic clock at ``received`` (default: now)."""
        if not header:
            return None
        try:
            stamped = parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError):
            return None
        if stamped.tzinfo is None:  # "-0000": UTC by RFC 5322
            stamped = stamped.replace(tzinfo=UTC)
        half_trip = max(timedelta(0), received - sent) / 2
        mid_monotonic = (time.monotonic() if monotonic is None else monotonic) - half_trip.total_seconds()
        # The header truncates to the second: AtHoc's clock read somewhere in [stamped, +1 s).
        return cls(
            as_utc(stamped) + _DATE_RESOLUTION / 2, sent + half_trip, half_trip + _DATE_RESOLUTION / 2, mid_monotonic
        )

    def offset_at(self, now: datetime, monotonic: Optional[float] = None) -> timedelta:
        """AtHoc's clock minus this machine's clock ``now`` (positive: this machine is behind).

        AtHoc's clock is carried forward from the reading by the time elapsed since on the
        monotonic clock (``monotonic``, default now), which no change of the wall clock moves:
        a long-lived client (``--watch``) still sees a clock that was stepped since."""
        elapsed = (time.monotonic() if monotonic is None else monotonic) - self.monotonic
        return self.athoc + timedelta(seconds=elapsed) - as_utc(now)

    def beyond(self, offset: timedelta, tolerance: timedelta) -> bool:
        """Does ``offset`` exceed ``tolerance`` even allowing for the reading's uncertainty?"""
        return abs(offset) - self.uncertainty > tolerance


def describe_offset(offset: timedelta) -> str:
    """``3 min 5 s behind AtHoc's`` / ``1 d 2 h ahead of AtHoc's`` / ``in step with AtHoc's``."""
    seconds = offset.total_seconds()
    size = abs(seconds)
    if size < 0.5:
        return "in step with AtHoc's"
    if size < 90:
        amount = f"{size:.1f} s"
        return f"{amount} {'behind' if seconds > 0 else 'ahead of'} AtHoc's"
    size = round(size)
    if size < 5400:
        amount = f"{int(size // 60)} min {int(size % 60)} s"
    elif size < 172800:
        amount = f"{int(size // 3600)} h {int(size % 3600 // 60)} min"
    else:
        amount = f"{int(size // 86400)} d {int(size % 86400 // 3600)} h"
    return f"{amount} {'behind' if seconds > 0 else 'ahead of'} AtHoc's"

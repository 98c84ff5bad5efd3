"""Business-time arithmetic: pure functions over a region's calendar (no database, no clock).

A calendar is a time zone, business hours per weekday (local wall-clock minutes since midnight)
and a set of holidays. Wall-clock hours are turned into instants by zoneinfo, so a day on which
daylight saving starts or ends is handled by the time zone database, not by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# A calendar without a single business hour would never reach a deadline; stop searching after this.
_HORIZON_DAYS = 3 * 366
_DAY_MINUTES = 24 * 60

Intervals = tuple[tuple[int, int], ...]  # (start, end) minutes since local midnight, end ≤ 1440


@dataclass(frozen=True)
class BusinessCalendar:
    zone: ZoneInfo
    # Monday is 0, as date.weekday(); a missing weekday has no business hours.
    hours: dict[int, Intervals]
    is_holiday: Callable[[date], bool] = field(default=lambda day: False)

    def intervals(self, day: date) -> Intervals:
        """The business hours of one local date (none on a holiday)."""
        intervals = self.hours.get(day.weekday(), ())
        if not intervals or self.is_holiday(day):
            return ()
        return intervals

    def instant(self, day: date, minute: int) -> datetime:
        """The UTC instant of a local wall-clock minute (1440 is the next midnight). A wall time
        skipped by a spring-forward change maps past the gap, as zoneinfo resolves it."""
        if minute == _DAY_MINUTES:
            day, minute = day + timedelta(days=1), 0
        local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=self.zone)
        return local.astimezone(UTC)


ALWAYS_OPEN = BusinessCalendar(ZoneInfo("UTC"), {weekday: ((0, _DAY_MINUTES),) for weekday in range(7)})


def _open_periods(calendar: BusinessCalendar, start: datetime) -> Iterable[tuple[datetime, datetime]]:
    """The business periods (UTC) from `start` onwards, the first one clipped to begin at `start`."""
    day = start.astimezone(calendar.zone).date()
    for _ in range(_HORIZON_DAYS):
        for begin, end in calendar.intervals(day):
            opens, closes = calendar.instant(day, begin), calendar.instant(day, end)
            if closes <= start:
                continue
            yield max(opens, start), closes
        day += timedelta(days=1)


def add_business_time(calendar: BusinessCalendar, start: datetime, seconds: float) -> datetime:
    """The instant at which `seconds` of business time have passed since `start`.

    A zero duration that starts outside business hours is reached when business next opens.
    """
    start = start.astimezone(UTC)
    remaining = timedelta(seconds=seconds)
    for opens, closes in _open_periods(calendar, start):
        available = closes - opens
        if remaining <= available:
            return opens + remaining
        remaining -= available
    raise ValueError("the calendar has no business hours within the next three years")


def business_seconds_between(calendar: BusinessCalendar, start: datetime, end: datetime) -> float:
    """Business time from `start` to `end` in seconds (negative when `end` comes first)."""
    if end < start:
        return -business_seconds_between(calendar, end, start)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    total = timedelta()
    for opens, closes in _open_periods(calendar, start):
        if opens >= end:
            break
        total += min(closes, end) - opens
    return total.total_seconds()


def parse_hours(ranges: Iterable[tuple[int, str, str]]) -> dict[int, Intervals]:
    """Business hours from (weekday, "HH:MM", "HH:MM") rows; "24:00" ends a day. Raises ValueError
    (with the index of the bad row) on a malformed time, an empty range or overlapping ranges."""
    by_day: dict[int, list[tuple[int, int, int]]] = {}
    for index, (weekday, start, end) in enumerate(ranges):
        if not isinstance(weekday, int) or not 0 <= weekday <= 6:
            raise HoursError(index, "weekday must be 0 (Monday) to 6 (Sunday)")
        begin, finish = _minute(start, index), _minute(end, index)
        if finish <= begin:
            raise HoursError(index, f"{start}–{end} ends before it starts")
        by_day.setdefault(weekday, []).append((begin, finish, index))
    hours: dict[int, Intervals] = {}
    for weekday, rows in by_day.items():
        rows.sort()
        for (_, previous_end, _), (begin, _, index) in zip(rows, rows[1:], strict=False):
            if begin < previous_end:
                raise HoursError(index, "business hours overlap on the same weekday")
        hours[weekday] = tuple((begin, finish) for begin, finish, _ in rows)
    return hours


class HoursError(ValueError):
    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


def _minute(value: str, index: int) -> int:
    try:
        hours, minutes = (int(part) for part in str(value).split(":"))
    except ValueError:
        raise HoursError(index, f"{value!r} is not a time (HH:MM)") from None
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise HoursError(index, f"{value!r} is not a time (HH:MM)")
    return hours * 60 + minutes


def format_minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"

"""Business-time arithmetic in two regions, across a weekend, public and calendar holidays, and
daylight-saving changes. Every expected instant is worked out by hand in the comment beside it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.business_time import add_business_time, business_seconds_between
from app.errors import ErrorCode, UserError
from app.models import Region
from app.services.calendars import calendar_of, checked_business_hours, checked_holiday_country, checked_time_zone

HOUR = 3600
WEEKDAYS_9_TO_5 = [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)]
WEEKDAYS_8_TO_6 = [{"weekday": d, "start": "08:00", "end": "18:00"} for d in range(5)]
COMPANY_DAY = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//casegraph test//EN
BEGIN:VEVENT
UID:company-day@example.com
DTSTART;VALUE=DATE:20250710
DTEND;VALUE=DATE:20250711
RRULE:FREQ=YEARLY
SUMMARY:Company day
END:VEVENT
END:VCALENDAR
"""


def region(id: int, **values) -> Region:
    return Region(id=id, updated_at=datetime(2026, 1, 1, tzinfo=UTC), **values)


LONDON = calendar_of(
    region(
        1,
        time_zone="Europe/London",
        business_hours=WEEKDAYS_9_TO_5,
        holiday_country="GB",
        holiday_subdivision="ENG",
        holiday_calendar=COMPANY_DAY,
    )
)
NEW_YORK = calendar_of(region(2, time_zone="America/New_York", business_hours=WEEKDAYS_8_TO_6, holiday_country="US"))
LONDON_ALL_DAY = calendar_of(
    region(
        3,
        time_zone="Europe/London",
        business_hours=[{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)],
    )
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("calendar", "start", "hours", "expected"),
    [
        # London, Thu 2 Apr 2026 16:00 BST (15:00 UTC) + 8 h: 1 h on Thursday; Good Friday, the
        # weekend and Easter Monday are off; 7 h from Tue 7 Apr 09:00 BST → 16:00 BST = 15:00 UTC.
        (LONDON, utc(2026, 4, 2, 15), 8, utc(2026, 4, 7, 15)),
        # London, Fri 27 Mar 2026 15:00 GMT + 4 h: 2 h on Friday; clocks go forward on Sunday 29;
        # 2 h from Mon 30 Mar 09:00 BST → 11:00 BST = 10:00 UTC (not 11:00 UTC as in GMT).
        (LONDON, utc(2026, 3, 27, 15), 4, utc(2026, 3, 30, 10)),
        # London, Thu 9 Jul 2026 16:00 BST + 2 h: 1 h Thursday; Fri 10 Jul is the iCal company day
        # (a yearly rule from 2025); 1 h from Mon 13 Jul 09:00 BST → 10:00 BST = 09:00 UTC.
        (LONDON, utc(2026, 7, 9, 15), 2, utc(2026, 7, 13, 9)),
        # New York, Fri 6 Mar 2026 17:00 EST (22:00 UTC) + 3 h: 1 h Friday; DST starts Sun 8 Mar;
        # 2 h from Mon 9 Mar 08:00 EDT → 10:00 EDT = 14:00 UTC.
        (NEW_YORK, utc(2026, 3, 6, 22), 3, utc(2026, 3, 9, 14)),
        # New York, Wed 25 Nov 2026 16:00 EST (21:00 UTC) + 5 h: 2 h Wednesday; Thanksgiving (Thu 26)
        # is off; 3 h from Fri 27 Nov 08:00 EST → 11:00 EST = 16:00 UTC.
        (NEW_YORK, utc(2026, 11, 25, 21), 5, utc(2026, 11, 27, 16)),
        # Starting on a Saturday: New York, Sat 7 Mar 2026 12:00 EST + 1 h: the clock starts Monday
        # 9 Mar 08:00 EDT → 09:00 EDT = 13:00 UTC.
        (NEW_YORK, utc(2026, 3, 7, 17), 1, utc(2026, 3, 9, 13)),
        # Around the clock in London: Sat 28 Mar 12:00 GMT + 24 h: 12 h on Saturday, then Sunday has
        # only 23 real hours; 12 h after Sun 00:00 GMT is 12:00 UTC = 13:00 BST.
        (LONDON_ALL_DAY, utc(2026, 3, 28, 12), 24, utc(2026, 3, 29, 12)),
        # Ending exactly when business closes stays on that day: Mon 9 Mar 2026 08:00 EDT + 10 h = 18:00 EDT.
        (NEW_YORK, utc(2026, 3, 9, 12), 10, utc(2026, 3, 9, 22)),
    ],
)
def test_deadlines_in_business_time(calendar, start, hours, expected):
    assert add_business_time(calendar, start, hours * HOUR) == expected


def test_business_time_between_two_instants_across_the_autumn_change():
    # London, Fri 23 Oct 2026 16:00 BST (15:00 UTC) to Mon 26 Oct 10:00 GMT (10:00 UTC): clocks
    # go back on Sunday 25; 1 h on Friday + 1 h on Monday.
    assert business_seconds_between(LONDON, utc(2026, 10, 23, 15), utc(2026, 10, 26, 10)) == 2 * HOUR
    assert business_seconds_between(LONDON, utc(2026, 10, 26, 10), utc(2026, 10, 23, 15)) == -2 * HOUR
    # Around the clock, the autumn Sunday has 25 real hours.
    assert (
        business_seconds_between(LONDON_ALL_DAY, utc(2026, 10, 25, 0) - timedelta(hours=1), utc(2026, 10, 26))
        == 25 * HOUR
    )


def test_adding_then_measuring_gives_back_the_duration():
    start = utc(2026, 3, 26, 10, 17)
    for hours in (1, 7, 8, 9, 40, 123):
        for calendar in (LONDON, NEW_YORK):
            assert (
                business_seconds_between(calendar, start, add_business_time(calendar, start, hours * HOUR))
                == hours * HOUR
            )


def test_a_calendar_without_business_hours_never_reaches_a_deadline():
    closed = calendar_of(region(4, time_zone="UTC", business_hours=[]))
    with pytest.raises(ValueError):
        add_business_time(closed, utc(2026, 1, 1), HOUR)


@pytest.mark.parametrize(
    ("check", "code", "field"),
    [
        (lambda: checked_time_zone("Europe/Londres"), ErrorCode.UNKNOWN_TIME_ZONE, "timeZone"),
        (lambda: checked_time_zone("../../etc/passwd"), ErrorCode.UNKNOWN_TIME_ZONE, "timeZone"),
        (lambda: checked_holiday_country("XX", None), ErrorCode.UNKNOWN_COUNTRY, "holidayCountry"),
        (lambda: checked_holiday_country("GB", "Mordor"), ErrorCode.UNKNOWN_COUNTRY, "holidaySubdivision"),
        (
            lambda: checked_business_hours(
                [{"weekday": 0, "start": "09:00", "end": "13:00"}, {"weekday": 0, "start": "12:00", "end": "17:00"}]
            ),
            ErrorCode.OVERLAPPING_HOURS,
            "businessHours.1",
        ),
        (
            lambda: checked_business_hours([{"weekday": 0, "start": "17:00", "end": "09:00"}]),
            ErrorCode.INVALID,
            "businessHours.0",
        ),
        (
            lambda: checked_business_hours([{"weekday": 7, "start": "09:00", "end": "17:00"}]),
            ErrorCode.INVALID,
            "businessHours.0",
        ),
        (
            lambda: checked_business_hours([{"weekday": 1, "start": "9h", "end": "17:00"}]),
            ErrorCode.INVALID,
            "businessHours.0",
        ),
    ],
)
def test_bad_calendar_input_is_refused_with_a_code(check, code, field):
    with pytest.raises(UserError) as refused:
        check()
    assert (refused.value.code, refused.value.field) == (code, field)


def test_business_hours_are_stored_sorted_and_split_shifts_allowed():
    stored = checked_business_hours(
        [
            {"weekday": 2, "start": "13:30", "end": "18:00"},
            {"weekday": 2, "start": "08:00", "end": "12:00"},
            {"weekday": 0, "start": "9:00", "end": "24:00"},
        ]
    )
    assert stored == [
        {"weekday": 0, "start": "09:00", "end": "24:00"},
        {"weekday": 2, "start": "08:00", "end": "12:00"},
        {"weekday": 2, "start": "13:30", "end": "18:00"},
    ]

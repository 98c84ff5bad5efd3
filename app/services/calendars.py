"""Calendars: regions (time zone, business hours, holidays) and the business calendar a case's clock counts in."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import holidays
import icalendar
from dateutil.rrule import rrulestr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.business_time import ALWAYS_OPEN, BusinessCalendar, HoursError, format_minute, parse_hours
from app.errors import ErrorCode, UserError, not_found
from app.models import Region
from app.services import audit

_UNSET = object()
# Recurring iCal holidays are expanded this many years past their first date.
_RECURRENCE_YEARS = 30


# ---- validation -------------------------------------------------------------------------------


def checked_time_zone(value: object, field: str = "timeZone") -> str:
    """An IANA time zone name zoneinfo knows."""
    if not isinstance(value, str) or not value.strip():
        raise UserError(ErrorCode.REQUIRED, "a region needs a time zone", field)
    name = value.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(ErrorCode.UNKNOWN_TIME_ZONE, f"{name!r} is not an IANA time zone", field) from None
    if name not in _zones():
        raise UserError(ErrorCode.UNKNOWN_TIME_ZONE, f"{name!r} is not an IANA time zone", field)
    return name


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def checked_business_hours(value: object, field: str = "businessHours") -> list[dict[str, Any]]:
    """Business hours as stored: [{"weekday", "start", "end"}], sorted, no overlap on a weekday."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise UserError(ErrorCode.INVALID, "business hours are a list of {weekday, start, end}", field)
    try:
        hours = parse_hours((item.get("weekday"), item.get("start"), item.get("end")) for item in value)
    except HoursError as error:
        code = ErrorCode.OVERLAPPING_HOURS if "overlap" in error.message else ErrorCode.INVALID
        raise UserError(code, error.message, f"{field}.{error.index}") from None
    return [
        {"weekday": weekday, "start": format_minute(begin), "end": format_minute(end)}
        for weekday in sorted(hours)
        for begin, end in hours[weekday]
    ]


def checked_holiday_country(country: object, subdivision: object) -> tuple[str | None, str | None]:
    """A country (and subdivision) the `holidays` package knows, upper-cased; (None, None) for none."""
    if country is None or (isinstance(country, str) and not country.strip()):
        if subdivision:
            raise UserError(ErrorCode.INVALID, "a holiday subdivision needs a country", "holidaySubdivision")
        return None, None
    if not isinstance(country, str):
        raise UserError(ErrorCode.UNKNOWN_COUNTRY, "the holiday country is an ISO 3166 code", "holidayCountry")
    code = country.strip().upper()
    supported = holidays.list_supported_countries()
    if code not in supported:
        raise UserError(ErrorCode.UNKNOWN_COUNTRY, f"no public holidays are known for {code!r}", "holidayCountry")
    if subdivision is None or (isinstance(subdivision, str) and not subdivision.strip()):
        return code, None
    subdiv = str(subdivision).strip().upper()
    if subdiv not in {s.upper() for s in supported[code]}:
        raise UserError(ErrorCode.UNKNOWN_COUNTRY, f"{code} has no subdivision {subdiv!r}", "holidaySubdivision")
    return code, subdiv


def ical_days(document: str) -> dict[date, str]:
    """The days covered by an iCalendar document's events (all-day ranges and recurrence rules
    expanded), each with its event's summary."""
    calendar = icalendar.Calendar.from_ical(document)
    days: dict[date, str] = {}
    for event in calendar.walk("VEVENT"):
        name = str(event.get("SUMMARY") or "Holiday")
        start = event.decoded("DTSTART")
        first = start.date() if isinstance(start, datetime) else start
        if "DTEND" in event:
            end = event.decoded("DTEND")
            end = end.date() if isinstance(end, datetime) else end
            length = max((end - first).days, 1)
        else:
            length = 1
        starts = [first]
        if "RRULE" in event:
            rule = rrulestr(event["RRULE"].to_ical().decode(), dtstart=datetime.combine(first, datetime.min.time()))
            horizon = datetime.combine(first.replace(year=first.year + _RECURRENCE_YEARS), datetime.min.time())
            starts = [occurrence.date() for occurrence in rule.between(datetime.min, horizon, inc=True)]
        for day in starts:
            for offset in range(length):
                days.setdefault(day + timedelta(days=offset), name)
    return days


def ical_dates(document: str) -> frozenset[date]:
    return frozenset(ical_days(document))


def checked_holiday_calendar(value: object, field: str = "holidayCalendar") -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise UserError(ErrorCode.INVALID, "the holiday calendar is an iCalendar document", field)
    try:
        ical_dates(value)
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(ErrorCode.INVALID, f"not a readable iCalendar document: {error}", field) from None
    return value


async def _check_name(session: AsyncSession, name: object, exclude_id: int | None = None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise UserError(ErrorCode.REQUIRED, "a region needs a name", "name")
    query = select(Region.id).where(Region.name == name.strip())
    if exclude_id is not None:
        query = query.where(Region.id != exclude_id)
    if await session.scalar(query) is not None:
        raise UserError(ErrorCode.DUPLICATE, f"a region named {name.strip()!r} exists", "name")
    return name.strip()


# ---- regions ----------------------------------------------------------------------------------


def snapshot(region: Region) -> dict[str, Any]:
    return {
        "name": region.name,
        "description": region.description,
        "time_zone": region.time_zone,
        "business_hours": region.business_hours,
        "holiday_country": region.holiday_country,
        "holiday_subdivision": region.holiday_subdivision,
        "holiday_calendar": region.holiday_calendar,
        "is_default": region.is_default,
    }


async def _make_only_default(session: AsyncSession, region_id: int) -> None:
    await session.execute(update(Region).where(Region.is_default, Region.id != region_id).values(is_default=False))


async def create_region(
    session: AsyncSession,
    *,
    actor: Actor,
    name: str,
    time_zone: str,
    business_hours: list[dict[str, Any]] | None = None,
    description: str | None = None,
    holiday_country: str | None = None,
    holiday_subdivision: str | None = None,
    holiday_calendar: str | None = None,
    is_default: bool = False,
) -> Region:
    """Add a region; with `is_default` it becomes the region of cases whose workflow names none."""
    country, subdivision = checked_holiday_country(holiday_country, holiday_subdivision)
    region = Region(
        name=await _check_name(session, name),
        description=description,
        time_zone=checked_time_zone(time_zone),
        business_hours=checked_business_hours(business_hours or []),
        holiday_country=country,
        holiday_subdivision=subdivision,
        holiday_calendar=checked_holiday_calendar(holiday_calendar),
        is_default=False,
    )
    session.add(region)
    await session.flush()
    if is_default:
        await _make_only_default(session, region.id)
        region.is_default = True
        await session.flush()
    await session.refresh(region)
    audit.record(
        session, actor=actor, action="region.create", entity_type="region", entity_id=region.id, after=snapshot(region)
    )
    return region


async def update_region(
    session: AsyncSession,
    *,
    actor: Actor,
    region_id: int,
    name: str | None = None,
    time_zone: str | None = None,
    business_hours: list[dict[str, Any]] | None = None,
    description: object = _UNSET,
    holiday_country: object = _UNSET,
    holiday_subdivision: object = _UNSET,
    holiday_calendar: object = _UNSET,
    is_default: bool | None = None,
) -> Region:
    """Change a region (what is not given stays). Open cases keep their deadlines until
    `sla.recompute_open_clocks` (enqueued after the commit) moves them to the new calendar."""
    region = await session.get(Region, region_id, with_for_update=True)
    if region is None:
        raise not_found("region", "id")
    before = snapshot(region)
    if name is not None:
        region.name = await _check_name(session, name, exclude_id=region_id)
    if time_zone is not None:
        region.time_zone = checked_time_zone(time_zone)
    if business_hours is not None:
        region.business_hours = checked_business_hours(business_hours)
    if description is not _UNSET:
        region.description = description
    if holiday_country is not _UNSET or holiday_subdivision is not _UNSET:
        region.holiday_country, region.holiday_subdivision = checked_holiday_country(
            region.holiday_country if holiday_country is _UNSET else holiday_country,
            None if holiday_subdivision is _UNSET else holiday_subdivision,
        )
    if holiday_calendar is not _UNSET:
        region.holiday_calendar = checked_holiday_calendar(holiday_calendar)
    if is_default is not None:
        if is_default:
            await _make_only_default(session, region_id)
        region.is_default = is_default
    await session.flush()
    await session.refresh(region)
    audit.record(
        session,
        actor=actor,
        action="region.update",
        entity_type="region",
        entity_id=region_id,
        before=before,
        after=snapshot(region),
    )
    return region


async def delete_region(session: AsyncSession, *, actor: Actor, region_id: int) -> None:
    """Remove a region; its groups and case clocks keep counting in the default region."""
    region = await session.get(Region, region_id)
    if region is None:
        raise not_found("region", "id")
    before = snapshot(region)
    await session.delete(region)
    await session.flush()
    audit.record(session, actor=actor, action="region.delete", entity_type="region", entity_id=region_id, before=before)


async def list_regions(session: AsyncSession) -> list[Region]:
    return list(await session.scalars(select(Region).order_by(Region.name)))


async def region_by_name(session: AsyncSession, name: str) -> Region | None:
    return await session.scalar(select(Region).where(Region.name == name))


# ---- business calendars -----------------------------------------------------------------------


def calendar_of(region: Region | None) -> BusinessCalendar:
    """The business calendar of a region (all day, every day, in UTC without one); cached until it changes."""
    if region is None:
        return ALWAYS_OPEN
    return _calendar(
        region.id,
        region.updated_at,
        region.time_zone,
        tuple((h["weekday"], h["start"], h["end"]) for h in region.business_hours),
        region.holiday_country,
        region.holiday_subdivision,
        region.holiday_calendar,
    )


@lru_cache(maxsize=256)
def _calendar(
    region_id: int,
    version: datetime,
    time_zone: str,
    hours: tuple[tuple[int, str, str], ...],
    country: str | None,
    subdivision: str | None,
    ical: str | None,
) -> BusinessCalendar:
    public = holidays.country_holidays(country, subdiv=subdivision) if country else None
    extra = ical_dates(ical) if ical else frozenset()

    def is_holiday(day: date) -> bool:
        return day in extra or (public is not None and day in public)

    return BusinessCalendar(ZoneInfo(time_zone), parse_hours(hours), is_holiday)


def holidays_between(region: Region, start: date, end: date) -> list[tuple[date, str]]:
    """The region's days off from `start` to `end` inclusive, with their names (for UIs)."""
    names: dict[date, str] = {}
    if region.holiday_country:
        public = holidays.country_holidays(
            region.holiday_country, subdiv=region.holiday_subdivision, years=range(start.year, end.year + 1)
        )
        names.update({day: name for day, name in public.items() if start <= day <= end})
    if region.holiday_calendar:
        for day, name in ical_days(region.holiday_calendar).items():
            if start <= day <= end:
                names.setdefault(day, name)
    return sorted(names.items())

"""Calendars: regions with a time zone, business hours and holidays, in which case clocks count business time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Index, Text
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, pk, updated_at


class Region(Base):
    """Where a group works: its time zone, weekly business hours and public holidays."""

    __tablename__ = "regions"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    # An IANA zone name ("Europe/London"); zoneinfo applies its daylight-saving rules.
    time_zone: Mapped[str] = mapped_column(Text, nullable=False)
    # [{"weekday": 0, "start": "09:00", "end": "17:00"}, ...]; Monday is 0, "24:00" ends a day.
    business_hours: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, server_default=sql("'[]'"))
    # Public holidays of the `holidays` package for a country (ISO 3166 code) and subdivision.
    holiday_country: Mapped[str | None] = mapped_column(Text)
    holiday_subdivision: Mapped[str | None] = mapped_column(Text)
    # An iCalendar document whose events are further days off (all-day events, one per day or a range).
    holiday_calendar: Mapped[str | None] = mapped_column(Text)
    # The region of cases whose workflow names none (at most one region is the default).
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("false"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        CheckConstraint("jsonb_typeof(business_hours) = 'array'", name="business_hours_array"),
        Index("uq_regions_default", "is_default", unique=True, postgresql_where=sql("is_default")),
    )

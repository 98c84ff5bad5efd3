"""Scalars that replace strawberry's defaults of the same name."""

from __future__ import annotations

import datetime as dt

import dateutil.parser
from strawberry.schema.types.base_scalars import DateTimeDefinition, wrap_parser
from strawberry.types.scalar import ScalarDefinition

from app.limits import to_utc


def _utc_datetime(value: str) -> dt.datetime:
    return to_utc(dateutil.parser.isoparse(value))


# DateTime inputs arrive in UTC: a time that has no UTC equivalent is refused while the variables
# are read (a request error), rather than by the database driver.
DateTime = ScalarDefinition(
    name=DateTimeDefinition.name,
    description=DateTimeDefinition.description,
    specified_by_url=None,
    serialize=DateTimeDefinition.serialize,
    parse_value=wrap_parser(_utc_datetime, "DateTime", exceptions=(ValueError, OverflowError)),
    parse_literal=None,
    origin=dt.datetime,
)

SCALAR_OVERRIDES = {dt.datetime: DateTime}

"""GraphQL enums, generated from the value lists in app.models so the two cannot drift apart."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry

from app.errors import ErrorCode as AppErrorCode
from app.models import (
    CASE_STATUSES,
    CHANNELS,
    CUSTOMER_STATUSES,
    DIRECTIONS,
    FIELD_TYPES,
    IDENTIFIER_KINDS,
    PRIORITIES,
    ROLES,
    STATUS_CATEGORIES,
)

ErrorCode = strawberry.enum(AppErrorCode, name="ErrorCode", description="Why an input was refused.")


def values_enum(name: str, values: tuple[str, ...], description: str | None = None) -> Any:
    """A GraphQL enum whose names are the upper-cased values: ("fill_empty",) gives FILL_EMPTY = "fill_empty"."""
    return strawberry.enum(Enum(name, {value.upper(): value for value in values}), description=description)


Channel = values_enum("Channel", CHANNELS)
Direction = values_enum("Direction", DIRECTIONS)
CustomerStatus = values_enum("CustomerStatus", CUSTOMER_STATUSES)
CaseStatus = values_enum("CaseStatus", CASE_STATUSES)
StatusCategory = values_enum(
    "StatusCategory",
    STATUS_CATEGORIES,
    "The stage of work a status belongs to: NEW is RECEIVED, OPEN IN_PROGRESS, CONSULTATION UNDER_CONSULTATION, "
    "PENDING PENDING_CUSTOMER, RESOLVED and CLOSED are CLOSED.",
)
Priority = values_enum("Priority", PRIORITIES)
IdentifierKind = values_enum("IdentifierKind", IDENTIFIER_KINDS)
Role = values_enum("Role", ROLES)
FieldType = values_enum("FieldType", FIELD_TYPES, "What a form field holds, and how its value is checked.")

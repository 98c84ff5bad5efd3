"""UserError: invalid input, returned to the client as data with a code, never a 500."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID = "INVALID"
    REQUIRED = "REQUIRED"
    NOT_FOUND = "NOT_FOUND"
    DUPLICATE = "DUPLICATE"
    CUSTOMER_NOT_ON_CASE = "CUSTOMER_NOT_ON_CASE"
    FORBIDDEN = "FORBIDDEN"
    CONFLICT = "CONFLICT"
    INVALID_PATTERN = "INVALID_PATTERN"
    SELF_MERGE = "SELF_MERGE"
    MERGED = "MERGED"
    ERASED = "ERASED"
    CIRCULAR = "CIRCULAR"
    ALREADY_UNDONE = "ALREADY_UNDONE"
    PRIMARY_REQUIRED = "PRIMARY_REQUIRED"
    WRONG_STATUS = "WRONG_STATUS"
    CONNECTOR_HOST_REFUSED = "CONNECTOR_HOST_REFUSED"
    POSSIBLE_DUPLICATE = "POSSIBLE_DUPLICATE"
    UNKNOWN_TIME_ZONE = "UNKNOWN_TIME_ZONE"
    UNKNOWN_COUNTRY = "UNKNOWN_COUNTRY"
    OVERLAPPING_HOURS = "OVERLAPPING_HOURS"
    TAT_MINIMUM_ABOVE_MAXIMUM = "TAT_MINIMUM_ABOVE_MAXIMUM"
    IN_USE = "IN_USE"


class UserError(Exception):
    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def not_found(entity: str, field: str | None = None) -> UserError:
    return UserError(ErrorCode.NOT_FOUND, f"{entity} not found", field)

"""UserError: invalid input, returned to the client as data with a code, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
    NOT_IN_POOL = "NOT_IN_POOL"
    NO_POOL = "NO_POOL"
    AGENT_ABSENT = "AGENT_ABSENT"
    REPLACEMENT_ABSENT = "REPLACEMENT_ABSENT"
    OVERLAPPING_ABSENCE = "OVERLAPPING_ABSENCE"
    IN_THE_PAST = "IN_THE_PAST"
    ARCHIVED = "ARCHIVED"
    REMINDER_AFTER_DUE = "REMINDER_AFTER_DUE"
    IN_USE = "IN_USE"
    INACTIVE = "INACTIVE"
    WRONG_CATEGORY = "WRONG_CATEGORY"
    NOT_IN_DICTIONARY = "NOT_IN_DICTIONARY"
    UNKNOWN_TIME_ZONE = "UNKNOWN_TIME_ZONE"
    UNKNOWN_COUNTRY = "UNKNOWN_COUNTRY"
    OVERLAPPING_HOURS = "OVERLAPPING_HOURS"
    TAT_MINIMUM_ABOVE_MAXIMUM = "TAT_MINIMUM_ABOVE_MAXIMUM"
    NOT_SEARCHABLE = "NOT_SEARCHABLE"
    UNKNOWN_FILTER = "UNKNOWN_FILTER"
    UNKNOWN_COLUMN = "UNKNOWN_COLUMN"


class UserError(Exception):
    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    @property
    def extensions(self) -> dict[str, str | None]:
        """What a GraphQL error raised from it carries (a query refusing its arguments): its code and field."""
        return {"code": self.code.value, "field": self.field}


class UserErrors(UserError):
    """Several refusals of one input at once (a form with more than one bad field); nothing changed."""

    def __init__(self, errors: list[UserError]) -> None:
        super().__init__(errors[0].code, "; ".join(e.message for e in errors), errors[0].field)
        self.errors = errors


def each_error(error: UserError) -> list[UserError]:
    return error.errors if isinstance(error, UserErrors) else [error]


def not_found(entity: str, field: str | None = None) -> UserError:
    return UserError(ErrorCode.NOT_FOUND, f"{entity} not found", field)


@contextmanager
def errors_at(prefix: str) -> Iterator[None]:
    """Refusals raised inside name their place in a larger document: `field` becomes `prefix.field`."""
    try:
        yield
    except UserErrors as error:
        raise UserErrors([_prefixed(e, prefix) for e in error.errors]) from None
    except UserError as error:
        raise _prefixed(error, prefix) from None


def _prefixed(error: UserError, prefix: str) -> UserError:
    return UserError(error.code, f"{prefix}: {error.message}", f"{prefix}.{error.field}" if error.field else prefix)

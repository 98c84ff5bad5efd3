"""What one input may hold, in one place: text lengths, list sizes, and the values PostgreSQL can
store (ids within bigint, times that convert to UTC, JSON objects without NUL characters).

Services check their inputs against these, so an oversized or unstorable value is a UserError
naming the field, never a database error.
"""

from __future__ import annotations

import re
from collections.abc import Sized
from datetime import UTC, datetime
from typing import Any

from app.errors import ErrorCode, UserError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Characters per text field. Columns under a btree index stay well below its row size (about 2.7 kB).
NAME = 200  # a customer's name
IDENTIFIER = 254  # an email, phone, account id or external ref (RFC 5321's forward path)
ADDRESS = 254  # a contact's from and to addresses
SUBJECT = 500
SEVERITY = 50
REASON_CODE = 100
REASON = 1_000  # why a case was handed on, why an agent is away
DESCRIPTION = 20_000
SOURCE = 100  # an integrator's system name
EXTERNAL_ID = 200  # an integrator's idempotency key
MESSAGE_ID = 500  # under the btree row limit even in 4-byte characters
TEXT = 200_000  # a contact's plain-text body
HTML = 500_000  # a contact's HTML body
SEARCH = 200  # a search term or a lookup key (customer number, case reference)
PATTERN = 1000  # a fixed-format field's regular expression
HELP_TEXT = 2000  # a form field's help text

# Items per list in one input.
IDS_PER_CALL = 100  # duplicates to merge, contacts to move, field picks
CUSTOMERS_PER_CASE = 50
IDENTIFIERS_PER_CUSTOMER = 50
RECIPIENTS = 100
DICTIONARY_ENTRIES = 1000

# JSON custom fields, headers and payloads.
JSON_DEPTH = 32

_DIGITS = re.compile(r"[1-9][0-9]{0,18}")  # ASCII only: \d would admit Arabic-Indic digits
_UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")  # NUL, and surrogates not in a pair


def check_text(value: str | None, field: str, limit: int) -> None:
    """INVALID on `field` when `value` is longer than `limit` characters."""
    if value is not None and len(value) > limit:
        raise UserError(ErrorCode.INVALID, f"{field} is longer than {limit} characters", field)


def check_count(items: Sized, field: str, limit: int) -> None:
    """INVALID on `field` when the list holds more than `limit` items."""
    if len(items) > limit:
        raise UserError(ErrorCode.INVALID, f"{field} holds more than {limit} items", field)


def parse_db_id(raw: str) -> int | None:
    """A database id written as plain ASCII digits within bigint (no sign, spaces, underscores or
    leading zeros); None for anything else."""
    if not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= INT64_MAX else None


def is_int64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def to_utc(value: datetime) -> datetime:
    """The same instant in UTC, as PostgreSQL stores it; ValueError when that falls outside the calendar
    (`0001-01-01T00:00:00+14:00`)."""
    try:
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range once converted to UTC") from None


def unstorable_character(value: Any) -> str | None:
    """Where a NUL character or a lone surrogate hides in a string or in a JSON-like value (keys
    included), as a path such as `input.payload.to.0`; None when there is none. PostgreSQL's text
    cannot hold either."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE_CHARACTER.search(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and _UNSTORABLE_CHARACTER.search(key):
                    return child_path
                stack.append((child_path, child))
        elif isinstance(item, list | tuple):
            stack.extend((f"{path}.{index}" if path else str(index), child) for index, child in enumerate(item))
    return None


def check_json_object(value: Any, field: str) -> dict[str, Any]:
    """`value` as a JSON object PostgreSQL can store: an object, nested at most JSON_DEPTH deep,
    integers within bigint, no NUL characters; INVALID on `field` otherwise."""
    if not isinstance(value, dict):
        raise UserError(ErrorCode.INVALID, f"{field} must be a JSON object", field)
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > JSON_DEPTH:
                raise UserError(ErrorCode.INVALID, f"{field} is nested deeper than {JSON_DEPTH} levels", field)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
        elif isinstance(item, int) and not isinstance(item, bool) and not is_int64(item):
            raise UserError(ErrorCode.INVALID, f"{field} holds an integer outside the 64-bit range", field)
    if unstorable_character(value) is not None:
        raise UserError(ErrorCode.INVALID, f"{field} holds a NUL character or a lone surrogate", field)
    return value

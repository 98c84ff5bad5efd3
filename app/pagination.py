"""Keyset cursors: an opaque base64 of the sort key of the last row seen."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson

from app.errors import ErrorCode, UserError
from app.limits import is_int64, to_utc

MAX_PAGE = 100
MAX_CURSOR = 200  # characters; ours are a few dozen
T = TypeVar("T")


def encode_cursor(*values: Any) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, *types: type) -> list[Any]:
    """The sort key in `cursor`, one value of each of `types` (int or datetime); INVALID otherwise."""
    try:
        if len(cursor) > MAX_CURSOR:
            raise ValueError
        values = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError
        return [_typed(value, kind) for value, kind in zip(values, types, strict=True)]
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise UserError(ErrorCode.INVALID, "malformed cursor", "after") from None


def _typed(value: Any, kind: type) -> Any:
    """A value the database can compare with: a time that converts to UTC, an integer within bigint."""
    if kind is datetime and isinstance(value, str):
        return to_utc(datetime.fromisoformat(value))
    if kind is int and is_int64(value):
        return value
    raise ValueError


def page_size(first: int | None) -> int:
    if first is None:
        return 20
    if first < 1 or first > MAX_PAGE:
        raise UserError(ErrorCode.INVALID, f"first must be between 1 and {MAX_PAGE}", "first")
    return first


def by_id(row: Any) -> tuple[Any, ...]:
    return (row.id,)


@dataclass
class Page(Generic[T]):
    """One page of rows with their cursors; `count` gives the total when that is cheap."""

    rows: list[T]
    cursors: list[str]
    has_next: bool
    count: Callable[[], Awaitable[int]] | None = None

    @classmethod
    def from_overfetch(cls, rows: list[T], first: int, sort_key: Callable[[T], tuple[Any, ...]] = by_id) -> Page[T]:
        """Build from `first + 1` fetched rows: the extra row only says there is a next page."""
        kept = rows[:first]
        return cls(rows=kept, cursors=[encode_cursor(*sort_key(r)) for r in kept], has_next=len(rows) > first)

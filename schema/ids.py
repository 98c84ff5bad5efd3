"""Relay global ids: base64 of "<Type>:<database id>"."""

from __future__ import annotations

import base64
import binascii

from app.errors import ErrorCode, UserError
from app.limits import parse_db_id


def to_global_id(type_name: str, db_id: int) -> str:
    return base64.b64encode(f"{type_name}:{db_id}".encode()).decode()


def from_global_id(global_id: str) -> tuple[str, int] | None:
    """(type name, database id), or None when the id is not one of ours."""
    try:
        type_name, _, raw = base64.b64decode(global_id.encode(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    number = parse_db_id(raw)
    return None if number is None else (type_name, number)


def db_id(global_id: str, type_name: str, field: str) -> int:
    """The database id behind a global id of `type_name`, or a NOT_FOUND UserError on `field`."""
    decoded = from_global_id(global_id)
    if decoded is None or decoded[0] != type_name:
        raise UserError(ErrorCode.NOT_FOUND, f"{global_id!r} is not a {type_name} id", field)
    return decoded[1]


def optional_db_id(global_id: str | None, type_name: str, field: str) -> int | None:
    return None if global_id is None else db_id(global_id, type_name, field)


def decode_id(global_id: str | None, type_name: str) -> int | None:
    """The database id behind a global id of `type_name`; None for anything else (a lookup then finds nothing)."""
    decoded = from_global_id(global_id) if global_id else None
    return decoded[1] if decoded is not None and decoded[0] == type_name else None

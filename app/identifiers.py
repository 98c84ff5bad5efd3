"""Customer identifiers: their normalisation (emails lower-cased, phones in E.164), and who holds one."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import phonenumbers
from sqlalchemy import Select, select, text

from app.errors import ErrorCode, UserError
from app.limits import IDENTIFIER, check_text
from app.models import IDENTIFIER_KINDS, Customer, CustomerIdentifier

MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a forward path
MAX_PHONE_INPUT = 250  # phonenumbers' own limit on what it parses


# A batch normalises the same senders several times each (rules, sender checks, new profiles).
@lru_cache(maxsize=4096)
def _looks_like_email(email: str) -> bool:
    """Deliberately permissive, and linear in the input's length (a backtracking pattern was
    quadratic): one @, something before it, a dot inside the domain, no spaces or control
    characters. Full RFC 5322 is not the point."""
    local, _, domain = email.partition("@")
    return (
        len(email) <= MAX_EMAIL_LENGTH
        and bool(local)
        and "@" not in domain
        and "." in domain[1:-1]
        and not any(char.isspace() or not char.isprintable() for char in email)
    )


def normalize_email(value: str, field: str = "email") -> str:
    email = value.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not _looks_like_email(email):  # only short values are cached
        shown = value if len(value) <= 80 else value[:80] + "…"
        raise UserError(ErrorCode.INVALID, f"'{shown}' is not a valid email address", field)
    return email


def normalize_phone(value: str, region: str, field: str = "phone") -> str:
    # Longer input is no number (phonenumbers refuses it), and stays out of the cache.
    number = _e164(value, region) if len(value) <= MAX_PHONE_INPUT else None
    if number is None:
        raise UserError(ErrorCode.INVALID, f"'{value}' is not a valid phone number", field)
    return number


@lru_cache(maxsize=4096)
def _e164(value: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_identifier(kind: str, value: str, *, region: str, field: str = "value", kind_field: str = "kind") -> str:
    """The stored form of an identifier; INVALID on `kind_field` for an unknown kind, on `field` for a bad value."""
    check_text(value, field, IDENTIFIER)
    if kind not in IDENTIFIER_KINDS:
        raise UserError(ErrorCode.INVALID, f"unknown identifier kind '{kind}'", kind_field)
    if kind == "email":
        return normalize_email(value, field)
    if kind == "phone":
        return normalize_phone(value, region, field)
    cleaned = value.strip()
    if not cleaned:
        raise UserError(ErrorCode.REQUIRED, "an identifier value is required", field)
    return cleaned


def identifier_holders(condition: Any, *, statuses: tuple[str, ...] = ("active",), limit: int | None = None) -> Select:
    """The customers in `statuses` holding an identifier that meets `condition`, by id: the one
    definition of "the same identifier" for recognition's candidates, customerDuplicates and the
    duplicates customerCreate reports."""
    query = (
        select(CustomerIdentifier.customer_id)
        .join(Customer, Customer.id == CustomerIdentifier.customer_id)
        .where(condition, Customer.status.in_(statuses))
        .group_by(CustomerIdentifier.customer_id)
        .order_by(CustomerIdentifier.customer_id)
    )
    return query.limit(limit) if limit is not None else query


# Names at least this similar (pg_trgm similarity of the folded names, word order aside) are similar:
# the threshold of pg_trgm's `%` (pg_trgm.similarity_threshold), so a lookup by `%` agrees.
SIMILAR_NAME = 0.3
_NAME_SIMILARITY = text(
    "SELECT c.id, similarity(casegraph_fold(c.name), casegraph_fold(:name)) FROM customers c WHERE c.id = ANY(:ids)"
)


async def name_similarities(conn: Any, ids: list[int], name: str) -> dict[int, float]:
    """How similar each of these customers' names is to `name` (0..1; no name: 0): the one name
    comparison of likely duplicates and of the order of recognition's candidates."""
    rows = await conn.execute(_NAME_SIMILARITY, {"name": name, "ids": ids})
    return {customer_id: similarity or 0.0 for customer_id, similarity in rows}

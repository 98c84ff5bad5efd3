"""Read paths for the unified history: pages of contacts and cases for many owners at once.

One SQL statement serves every owner in a batch (a LATERAL join over the owner ids), so
a page of customers with their latest contacts costs the same number of queries as one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Select, and_, func, literal, select, true, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import Case, CaseCustomer, Contact
from app.pagination import Page, decode_cursor

contacts = Contact.__table__
cases = Case.__table__


def contact_sort_key(row: Any) -> tuple[Any, ...]:
    return (row.occurred_at, row.id)


def _owner_ids(ids: list[int]):
    return func.unnest(literal(ids, ARRAY(BigInteger))).table_valued("owner_id").render_derived(name="owners")


async def _lateral(conn: AsyncConnection, owner_ids: list[int], per_owner: Select, owner_column) -> dict[int, list]:
    """Run `per_owner` (which filters on `owner_column`) once for every owner id, in one statement."""
    owners = _owner_ids(owner_ids)
    inner = per_owner.where(owner_column == owners.c.owner_id).lateral("page")
    statement = select(owners.c.owner_id, inner).select_from(owners.join(inner, true()))
    grouped: dict[int, list] = {owner_id: [] for owner_id in owner_ids}
    for row in (await conn.execute(statement)).all():
        grouped[row.owner_id].append(row)
    return grouped


async def contact_pages(
    conn: AsyncConnection,
    *,
    owner: str,
    owner_ids: list[int],
    first: int,
    after: str | None,
    channel: str | None = None,
) -> dict[int, Page]:
    """The newest `first` contacts (after the cursor) of each customer or case in `owner_ids`."""
    owner_column = contacts.c.customer_id if owner == "customer" else contacts.c.case_id
    query = select(contacts).order_by(contacts.c.occurred_at.desc(), contacts.c.id.desc()).limit(first + 1)
    if channel:
        query = query.where(contacts.c.channel == channel)
    if after:
        occurred_at, last_id = decode_cursor(after, 2)
        query = query.where(
            tuple_(contacts.c.occurred_at, contacts.c.id) < tuple_(datetime.fromisoformat(occurred_at), last_id)
        )
    grouped = await _lateral(conn, owner_ids, query, owner_column)
    return {k: Page.from_overfetch(rows, first, contact_sort_key) for k, rows in grouped.items()}


async def customer_case_pages(
    conn: AsyncConnection, *, customer_ids: list[int], first: int, after: str | None
) -> dict[int, Page]:
    """The newest `first` cases (after the cursor) linked to each customer; merged cases left out."""
    query = (
        select(cases)
        .join(CaseCustomer.__table__, CaseCustomer.case_id == cases.c.id)
        .where(cases.c.merged_into_id.is_(None))
        .order_by(cases.c.id.desc())
        .limit(first + 1)
    )
    if after:
        (last_id,) = decode_cursor(after, 1)
        query = query.where(cases.c.id < last_id)
    grouped = await _lateral(conn, customer_ids, query, CaseCustomer.customer_id)
    return {k: Page.from_overfetch(rows, first) for k, rows in grouped.items()}


async def contact_counts(
    conn: AsyncConnection, *, owner: str, owner_ids: list[int], channel: str | None = None
) -> dict[int, int]:
    owner_column = contacts.c.customer_id if owner == "customer" else contacts.c.case_id
    query = select(owner_column, func.count()).where(owner_column.in_(owner_ids)).group_by(owner_column)
    if channel:
        query = query.where(and_(contacts.c.channel == channel))
    counts = dict((await conn.execute(query)).all())
    return {owner_id: counts.get(owner_id, 0) for owner_id in owner_ids}

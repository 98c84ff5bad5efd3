"""Read paths for the unified history: pages of contacts and cases for many owners at once.

One SQL statement serves every owner in a batch (a LATERAL join over the owner ids), so
a page of customers with their latest contacts costs the same number of queries as one.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, DateTime, Select, bindparam, func, select, true, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import OPEN_CASE_STATUSES, Case, CaseCustomer, Contact
from app.pagination import Page, decode_cursor

contacts = Contact.__table__
cases = Case.__table__


def contact_sort_key(row: Any) -> tuple[Any, ...]:
    return (row.occurred_at, row.id)


def _lateral(per_owner: Select, owner_column) -> Select:
    """`per_owner` (filtered on `owner_column`) run once for every id in the `:owner_ids` array."""
    owners = (
        func.unnest(bindparam("owner_ids", type_=ARRAY(BigInteger)))
        .table_valued("owner_id")
        .render_derived(name="owners")
    )
    inner = per_owner.where(owner_column == owners.c.owner_id).lateral("page")
    return select(owners.c.owner_id, inner).select_from(owners.join(inner, true()))


async def _grouped(conn: AsyncConnection, statement: Select, owner_ids: list[int], **params: Any) -> dict[int, list]:
    grouped: dict[int, list] = {owner_id: [] for owner_id in owner_ids}
    for row in (await conn.execute(statement, {"owner_ids": owner_ids, **params})).all():
        grouped[row.owner_id].append(row)
    return grouped


# Statements are built once per shape and reused with new parameters: building and
# compiling a LATERAL select costs more than running it.
@cache
def _contact_page_statement(owner: str, with_cursor: bool, with_channel: bool) -> Select:
    owner_column = contacts.c.customer_id if owner == "customer" else contacts.c.case_id
    query = select(contacts).order_by(contacts.c.occurred_at.desc(), contacts.c.id.desc()).limit(bindparam("limit"))
    if with_channel:
        query = query.where(contacts.c.channel == bindparam("channel"))
    if with_cursor:
        query = query.where(
            tuple_(contacts.c.occurred_at, contacts.c.id)
            < tuple_(bindparam("after_time", type_=DateTime(timezone=True)), bindparam("after_id", type_=BigInteger))
        )
    return _lateral(query, owner_column)


@cache
def _customer_case_page_statement(with_cursor: bool, open_only: bool = False) -> Select:
    query = (
        select(cases)
        .join(CaseCustomer.__table__, CaseCustomer.case_id == cases.c.id)
        .where(cases.c.merged_into_id.is_(None))
        .order_by(cases.c.id.desc())
        .limit(bindparam("limit"))
    )
    if open_only:
        query = query.where(cases.c.status.in_(OPEN_CASE_STATUSES), cases.c.archived_at.is_(None))
    if with_cursor:
        query = query.where(cases.c.id < bindparam("after_id", type_=BigInteger))
    return _lateral(query, CaseCustomer.customer_id)


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
    params: dict[str, Any] = {"limit": first + 1}
    if channel:
        params["channel"] = channel
    if after:
        params["after_time"], params["after_id"] = decode_cursor(after, datetime, int)
    statement = _contact_page_statement(owner, bool(after), bool(channel))
    grouped = await _grouped(conn, statement, owner_ids, **params)
    return {k: Page.from_overfetch(rows, first, contact_sort_key) for k, rows in grouped.items()}


async def customer_case_pages(
    conn: AsyncConnection, *, customer_ids: list[int], first: int, after: str | None, open_only: bool = False
) -> dict[int, Page]:
    """The newest `first` cases (after the cursor) linked to each customer; merged cases left out,
    and with `open_only` the finished and archived ones too."""
    params: dict[str, Any] = {"limit": first + 1}
    if after:
        (params["after_id"],) = decode_cursor(after, int)
    grouped = await _grouped(conn, _customer_case_page_statement(bool(after), open_only), customer_ids, **params)
    return {k: Page.from_overfetch(rows, first) for k, rows in grouped.items()}


async def contact_counts(
    conn: AsyncConnection, *, owner: str, owner_ids: list[int], channel: str | None = None
) -> dict[int, int]:
    owner_column = contacts.c.customer_id if owner == "customer" else contacts.c.case_id
    query = select(owner_column, func.count()).where(owner_column.in_(owner_ids)).group_by(owner_column)
    if channel:
        query = query.where(contacts.c.channel == channel)
    counts = dict((await conn.execute(query)).all())
    return {owner_id: counts.get(owner_id, 0) for owner_id in owner_ids}

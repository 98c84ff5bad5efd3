"""Row locks in one global order: the case tree (when parents change), then customers by ascending
id, then cases by ascending id.

Every function that changes more than one record locks through these, so concurrent changes and
ingest serialise instead of deadlocking or leaving a contact on a tombstone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Row, Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import ErrorCode, UserError, not_found
from app.models import Case, CaseCustomer, Customer

customers = Customer.__table__
cases = Case.__table__
links = CaseCustomer.__table__


# The advisory lock that serialises changes to case parents (any 64-bit key of our own).
CASE_TREE_LOCK = 0x63617365_74726565  # "casetree"


async def lock_case_tree(session: AsyncSession) -> None:
    """Serialise changes to case parents until the transaction ends, so that a check for cycles sees
    every parent committed before it: two concurrent changes could each pass the check alone and
    close a cycle together. Taken before any row lock."""
    await session.execute(select(func.pg_advisory_xact_lock(CASE_TREE_LOCK)))


async def lock_customers(
    session: AsyncSession, customer_ids: Iterable[int], field: str = "customerId", fields: dict[int, str] | None = None
) -> dict[int, Row[Any]]:
    """Lock customers FOR UPDATE by ascending id; returns their rows by id.

    A missing one is NOT_FOUND on `fields[id]` when given, else on `field`.
    """
    wanted = sorted(set(customer_ids))
    if not wanted:
        return {}
    rows = (
        await session.execute(
            select(customers).where(customers.c.id.in_(wanted)).order_by(customers.c.id).with_for_update()
        )
    ).all()
    found = {row.id: row for row in rows}
    for customer_id in wanted:
        if customer_id not in found:
            raise not_found("customer", (fields or {}).get(customer_id, field))
    return found


async def lock_cases(session: AsyncSession, case_ids: Iterable[int], field: str = "caseId") -> dict[int, Row[Any]]:
    """Lock cases FOR UPDATE by ascending id; returns their rows by id, NOT_FOUND if any is missing."""
    wanted = sorted(set(case_ids))
    if not wanted:
        return {}
    rows = (
        await session.execute(select(cases).where(cases.c.id.in_(wanted)).order_by(cases.c.id).with_for_update())
    ).all()
    found = {row.id: row for row in rows}
    if len(found) != len(wanted):
        raise not_found("case", field)
    return found


async def case_links(session: AsyncSession, case_ids: Iterable[int]) -> dict[int, dict[int, bool]]:
    """{case id: {customer id: is primary}}."""
    result: dict[int, dict[int, bool]] = {cid: {} for cid in case_ids}
    rows = await session.execute(
        select(links.c.case_id, links.c.customer_id, links.c.is_primary).where(links.c.case_id.in_(list(result)))
    )
    for case_id, customer_id, is_primary in rows:
        result[case_id][customer_id] = is_primary
    return result


def primary_of(case_links: dict[int, bool]) -> int | None:
    """The primary customer among one case's links ({customer id: is primary})."""
    return next((customer_id for customer_id, is_primary in case_links.items() if is_primary), None)


async def lock_case_graph(
    session: AsyncSession, case_ids: list[int], extra_customer_ids: Iterable[int] = (), field: str = "caseId"
) -> tuple[dict[int, Row[Any]], dict[int, Row[Any]], dict[int, dict[int, bool]]]:
    """Lock the cases' customers (plus `extra_customer_ids`) and then the cases, in the global order.

    The links are read before locking to know which customers to lock, so they are re-read
    afterwards; if a concurrent change linked another customer meanwhile, lock again.
    """
    extra = set(extra_customer_ids)
    for _ in range(5):
        seen = await case_links(session, case_ids)
        wanted = extra | {cid for per_case in seen.values() for cid in per_case}
        locked_customers = await lock_customers(session, wanted, "customerId")
        locked_cases = await lock_cases(session, case_ids, field)
        current = await case_links(session, case_ids)
        if {cid for per_case in current.values() for cid in per_case} <= set(locked_customers):
            return locked_customers, locked_cases, current
    raise UserError(ErrorCode.CONFLICT, "the case changed concurrently; try again", field)


def tombstones_of(customer_ids: Iterable[int]) -> Select[tuple[int]]:
    """The customers merged into these. Merges re-point older tombstones at the survivor, so one hop finds them all."""
    return select(customers.c.id).where(customers.c.merged_into_id.in_(list(customer_ids)))


async def lock_with_tombstones(session: AsyncSession, customer_id: int) -> dict[int, Row[Any]]:
    """Lock a customer and the tombstones merged into it in one ascending-id call (the global order).

    The tombstones are read before locking; a merge committed in between adds one, so read again.
    """
    for _ in range(5):
        tombstones = set(await session.scalars(tombstones_of([customer_id])))
        rows = await lock_customers(session, [customer_id, *tombstones])
        if set(await session.scalars(tombstones_of([customer_id]))) <= set(rows):
            return rows
    raise UserError(ErrorCode.CONFLICT, "the customer changed concurrently; try again", "customerId")


# The constraint name the tombstone guard (migration 0003) gives its refusal of an erased customer.
ERASED_GUARD = "casegraph_customer_erased"


@asynccontextmanager
async def erased_customer_refused(field: str = "customerId") -> AsyncIterator[None]:
    """Turn the guard's refusal of a contact written for an erased customer into an ERASED UserError.

    The statement's transaction is aborted either way; the UserError rolls it back as any other.
    """
    try:
        yield
    except IntegrityError as error:
        cause = getattr(error.orig, "__cause__", None)
        if getattr(cause, "constraint_name", None) != ERASED_GUARD:
            raise
        raise UserError(ErrorCode.ERASED, "the customer was erased", field) from error

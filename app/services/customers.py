"""Customers and their identifiers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.auth import Actor
from app.errors import ErrorCode, UserError, not_found
from app.identifiers import normalize_identifier
from app.models import IDENTIFIER_KINDS, CaseCustomer, Customer, CustomerIdentifier
from app.pagination import Page, decode_cursor
from app.services import audit


@dataclass(frozen=True)
class IdentifierInput:
    kind: str
    value: str


def snapshot(customer: Customer) -> dict[str, Any]:
    return {"number": customer.number, "name": customer.name, "fields": customer.fields, "status": customer.status}


def normalize_identifiers(identifiers: list[IdentifierInput], *, region: str) -> list[tuple[str, str]]:
    """Validate and normalise, dropping exact repeats; raises INVALID on the offending field."""
    seen: list[tuple[str, str]] = []
    for index, item in enumerate(identifiers):
        if item.kind not in IDENTIFIER_KINDS:
            raise UserError(ErrorCode.INVALID, f"unknown identifier kind '{item.kind}'", f"identifiers.{index}.kind")
        pair = (item.kind, normalize_identifier(item.kind, item.value, region=region, field=f"{item.kind}s.{index}"))
        if pair not in seen:
            seen.append(pair)
    return seen


async def get_customer_for_update(session: AsyncSession, customer_id: int, field: str = "id") -> Customer:
    customer = await session.get(Customer, customer_id, with_for_update=True)
    if customer is None:
        raise not_found("customer", field)
    if customer.status in ("merged", "erased"):
        raise UserError(ErrorCode.INVALID, f"customer {customer.number} is {customer.status}", field)
    return customer


async def create_customer(
    session: AsyncSession,
    *,
    actor: Actor,
    name: str | None,
    identifiers: list[IdentifierInput],
    fields: dict[str, Any] | None,
    region: str,
) -> Customer:
    """Create a customer with its identifiers."""
    pairs = normalize_identifiers(identifiers, region=region)
    customer = (
        await session.execute(
            insert(Customer).values(name=(name or "").strip() or None, fields=fields or {}).returning(Customer)
        )
    ).scalar_one()
    if pairs:
        await session.execute(
            insert(CustomerIdentifier),
            [{"customer_id": customer.id, "kind": kind, "value": value} for kind, value in pairs],
        )
    audit.record(
        session,
        actor=actor,
        action="customer.create",
        entity_type="customer",
        entity_id=customer.id,
        after={**snapshot(customer), "identifiers": [f"{k}:{v}" for k, v in pairs]},
    )
    events.emit(session, "customerUpdated", customer.id)
    return customer


async def update_customer(
    session: AsyncSession,
    *,
    actor: Actor,
    customer_id: int,
    name: str | None = None,
    fields: dict[str, Any] | None = None,
    replace_fields: bool = False,
) -> Customer:
    """Rename a customer and/or merge (or replace) its custom fields."""
    customer = await get_customer_for_update(session, customer_id)
    before = snapshot(customer)
    if name is not None:
        if not name.strip():
            raise UserError(ErrorCode.REQUIRED, "name must not be empty", "name")
        customer.name = name.strip()
    if fields is not None:
        customer.fields = dict(fields) if replace_fields else {**customer.fields, **fields}
    await session.flush()
    await session.refresh(customer, ["updated_at"])
    audit.record(
        session, actor=actor, action="customer.update", entity_type="customer", entity_id=customer.id,
        before=before, after=snapshot(customer),
    )
    events.emit(session, "customerUpdated", customer.id)
    return customer


async def add_identifier(
    session: AsyncSession, *, actor: Actor, customer_id: int, kind: str, value: str, region: str
) -> CustomerIdentifier:
    """Add an identifier; the same one twice on one customer is DUPLICATE (others may share it)."""
    customer = await get_customer_for_update(session, customer_id, "customerId")
    if kind not in IDENTIFIER_KINDS:
        raise UserError(ErrorCode.INVALID, f"unknown identifier kind '{kind}'", "kind")
    normalized = normalize_identifier(kind, value, region=region, field="value")
    identifier = (
        await session.execute(
            insert(CustomerIdentifier)
            .values(customer_id=customer.id, kind=kind, value=normalized)
            .on_conflict_do_nothing()
            .returning(CustomerIdentifier)
        )
    ).scalar_one_or_none()
    if identifier is None:
        raise UserError(ErrorCode.DUPLICATE, f"{customer.number} already has {kind} {normalized}", "value")
    audit.record(
        session, actor=actor, action="customer.identifier.add", entity_type="customer", entity_id=customer.id,
        after={"kind": kind, "value": normalized},
    )
    events.emit(session, "customerUpdated", customer.id)
    return identifier


async def remove_identifier(session: AsyncSession, *, actor: Actor, identifier_id: int) -> Customer:
    identifier = await session.get(CustomerIdentifier, identifier_id)
    if identifier is None:
        raise not_found("identifier", "id")
    customer = await get_customer_for_update(session, identifier.customer_id)
    await session.execute(delete(CustomerIdentifier).where(CustomerIdentifier.id == identifier_id))
    audit.record(
        session, actor=actor, action="customer.identifier.remove", entity_type="customer", entity_id=customer.id,
        before={"kind": identifier.kind, "value": identifier.value},
    )
    events.emit(session, "customerUpdated", customer.id)
    return customer


async def list_customers(
    session: AsyncSession,
    *,
    first: int,
    after: str | None,
    search: str | None = None,
    identifier: IdentifierInput | None = None,
    status: str | None = None,
    region: str = "GB",
) -> Page[Customer]:
    """Customers newest first; by name substring, by one identifier, and/or by status."""
    query = select(Customer)
    if status:
        query = query.where(Customer.status == status)
    else:
        query = query.where(Customer.status == "active")
    if search:
        query = query.where(Customer.name.ilike(f"%{_escape_like(search)}%"))
    if identifier is not None:
        value = normalize_identifier(identifier.kind, identifier.value, region=region, field="filter.identifier")
        query = query.where(
            exists().where(
                CustomerIdentifier.customer_id == Customer.id,
                CustomerIdentifier.kind == identifier.kind,
                CustomerIdentifier.value == value,
            )
        )
    if after:
        (last_id,) = decode_cursor(after, int)
        query = query.where(Customer.id < last_id)
    rows = (await session.scalars(query.order_by(Customer.id.desc()).limit(first + 1))).all()
    return Page.from_overfetch(list(rows), first)


async def customer_id_by_number(session: AsyncSession, *, number: str) -> int | None:
    """The customer with this number; a merged customer's number resolves to the survivor."""
    return await session.scalar(_follow_merges("number = :number"), {"number": number.strip().upper()})


def _follow_merges(start: str):
    return text(f"""
WITH RECURSIVE chain(id, next_id, depth) AS (
    SELECT id, CASE WHEN status = 'merged' THEN merged_into_id END, 0 FROM customers WHERE {start}
    UNION ALL
    SELECT c.id, CASE WHEN c.status = 'merged' THEN c.merged_into_id END, chain.depth + 1
    FROM customers c JOIN chain ON c.id = chain.next_id WHERE chain.depth < 16
)
SELECT id FROM chain ORDER BY depth DESC LIMIT 1
""")


async def live_customer_id(session: AsyncSession, *, customer_id: int) -> int | None:
    """Follow merge tombstones to the customer a merged id now lives on (the id itself if not merged)."""
    return await session.scalar(_follow_merges("id = :id"), {"id": customer_id})


async def customer_is_on_case(session: AsyncSession, *, customer_id: int, case_id: int) -> bool:
    return bool(
        await session.scalar(
            select(exists().where(CaseCustomer.case_id == case_id, CaseCustomer.customer_id == customer_id))
        )
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

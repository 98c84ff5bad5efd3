"""Contacts: the interactions that make up a customer's and a case's history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import nh3
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.auth import Actor
from app.errors import ErrorCode, UserError, not_found
from app.models import CHANNELS, DIRECTIONS, Case, CaseCustomer, Contact, Customer
from app.services import audit
from app.services.maintenance.locking import erased_customer_refused


@dataclass
class ContactData:
    channel: str
    direction: str
    occurred_at: datetime | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    from_address: str | None = None
    to_addresses: list[str] = field(default_factory=list)
    headers: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    external_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


def sanitize_html(html: str | None) -> str | None:
    return nh3.clean(html) if html else None


def header(headers: dict[str, Any], name: str) -> str | None:
    """A header's value, matched case-insensitively as mail headers are."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return str(value).strip() if value is not None else None
    return None


def validate(data: ContactData) -> None:
    if data.channel not in CHANNELS:
        raise UserError(ErrorCode.INVALID, f"channel must be one of {', '.join(CHANNELS)}", "channel")
    if data.direction not in DIRECTIONS:
        raise UserError(ErrorCode.INVALID, f"direction must be one of {', '.join(DIRECTIONS)}", "direction")


async def resolve_links(
    session: AsyncSession, *, customer_id: int | None, case_id: int | None
) -> tuple[int | None, int | None]:
    """Check that the customer and case exist and belong together; a case alone brings its primary customer."""
    if customer_id is not None:
        status = await session.scalar(select(Customer.status).where(Customer.id == customer_id))
        if status is None:
            raise not_found("customer", "customerId")
        if status in ("merged", "erased"):
            raise UserError(ErrorCode.INVALID, f"customer is {status}", "customerId")
    if case_id is None:
        return customer_id, None
    # FOR SHARE: a concurrent caseMove/merge (FOR UPDATE) finishes first, so the links read below are current.
    case = await session.get(Case, case_id, with_for_update={"read": True})
    if case is None:
        raise not_found("case", "caseId")
    if case.merged_into_id is not None:
        raise UserError(ErrorCode.INVALID, "case was merged; use the case it was merged into", "caseId")
    links = dict(
        (await session.execute(select(CaseCustomer.customer_id, CaseCustomer.is_primary).where(CaseCustomer.case_id == case_id))).all()
    )
    if customer_id is None:
        customer_id = next((cid for cid, primary in links.items() if primary), None)
    elif customer_id not in links:
        raise UserError(
            ErrorCode.CUSTOMER_NOT_ON_CASE,
            "the customer is not linked to this case; link them to the case first",
            "caseId",
        )
    return customer_id, case_id


async def insert_contact(
    session: AsyncSession,
    *,
    data: ContactData,
    customer_id: int | None,
    case_id: int | None,
    agent_id: int | None = None,
    recognition: dict[str, Any] | None = None,
    needs_review: bool = False,
) -> tuple[Contact, bool]:
    """Insert a contact, idempotent on (source, external id); returns (contact, created)."""
    occurred_at = data.occurred_at or datetime.now(timezone.utc)
    values = dict(
        channel=data.channel,
        direction=data.direction,
        occurred_at=occurred_at,
        customer_id=customer_id,
        case_id=case_id,
        agent_id=agent_id,
        subject=data.subject,
        text=data.text,
        html=sanitize_html(data.html),
        from_address=data.from_address,
        to_addresses=data.to_addresses,
        headers=data.headers,
        message_id=header(data.headers, "Message-ID"),
        source=data.source,
        external_id=data.external_id,
        payload=data.payload,
        recognition=recognition,
        needs_review=needs_review,
    )
    statement = insert(Contact).values(**values).returning(Contact)
    if data.external_id is not None:
        statement = statement.on_conflict_do_nothing(
            index_elements=["source", "external_id"], index_where=Contact.external_id.is_not(None)
        )
    async with erased_customer_refused():  # erased while this contact was on its way
        contact = (await session.execute(statement)).scalar_one_or_none()
    if contact is None:
        existing = await session.scalar(
            select(Contact).where(Contact.source.is_not_distinct_from(data.source), Contact.external_id == data.external_id)
        )
        assert existing is not None  # the conflicting row is committed or ours
        return existing, False
    if customer_id is not None:
        await session.execute(
            update(Customer)
            .where(Customer.id == customer_id)
            .where((Customer.last_activity_at.is_(None)) | (Customer.last_activity_at < occurred_at))
            .values(last_activity_at=occurred_at)
        )
    publish_contact(session, contact)
    return contact, True


def publish_contact(session: AsyncSession, contact: Contact) -> None:
    if contact.customer_id is not None:
        events.emit(session, "customerUpdated", contact.customer_id)
        events.emit(session, "contactReceived", f"customer:{contact.customer_id}", contactId=contact.id)
    if contact.case_id is not None:
        events.emit(session, "caseUpdated", contact.case_id)
        events.emit(session, "contactReceived", f"case:{contact.case_id}", contactId=contact.id)
    events.emit(session, "contactReceived", "all", contactId=contact.id)


async def create_contact(
    session: AsyncSession,
    *,
    actor: Actor,
    data: ContactData,
    customer_id: int | None,
    case_id: int | None,
) -> Contact:
    """Log a contact on a customer and/or case; a repeated external id returns the first contact."""
    validate(data)
    customer_id, case_id = await resolve_links(session, customer_id=customer_id, case_id=case_id)
    contact, created = await insert_contact(
        session,
        data=data,
        customer_id=customer_id,
        case_id=case_id,
        agent_id=actor.user_id if actor.role in ("agent", "supervisor") else None,
    )
    if created:
        audit.record(
            session, actor=actor, action="contact.create", entity_type="contact", entity_id=contact.id,
            after={"channel": contact.channel, "customerId": customer_id, "caseId": case_id},
        )
    return contact

"""Contact maintenance: associate a contact with a customer and/or case, move contacts, split one into a new case."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.auth import Actor
from app.errors import ErrorCode, UserError, not_found
from app.models import CaseCustomer, Contact, Customer
from app.services import audit
from app.services import cases as case_service
from app.services.maintenance.locking import (
    check_live_case,
    check_live_customer,
    lock_case_graph,
    lock_customers,
)

contacts = Contact.__table__
# Integrators log contacts but do not decide which customers a case concerns.
ROLES_THAT_LINK = ("agent", "supervisor")


async def read_contact(session: AsyncSession, contact_id: int, *, lock: bool = False, field: str = "contactId") -> Any:
    query = select(contacts).where(contacts.c.id == contact_id)
    row = (await session.execute(query.with_for_update() if lock else query)).one_or_none()
    if row is None:
        raise not_found("contact", field)
    return row


async def _touch_activity(session: AsyncSession, customer_id: int, occurred_at: Any) -> None:
    await session.execute(
        update(Customer)
        .where(Customer.id == customer_id)
        .where((Customer.last_activity_at.is_(None)) | (Customer.last_activity_at < occurred_at))
        .values(last_activity_at=occurred_at)
    )


async def associate_contact(
    session: AsyncSession, *, actor: Actor, contact_id: int, customer_id: int | None = None, case_id: int | None = None
) -> Any:
    """Link a contact to a customer and/or one case; the customer joins the case if the actor may link them.

    Given only a customer (re-assigning a mis-recognised contact), the contact stays on its case if
    that customer is on it, and otherwise leaves the case rather than joining the customer to it.
    """
    if customer_id is None and case_id is None:
        raise UserError(ErrorCode.REQUIRED, "give a customer, a case, or both", "customerId")
    contact = await read_contact(session, contact_id)
    customer_only = case_id is None
    case_id = case_id if case_id is not None else contact.case_id
    wanted = [c for c in (customer_id, contact.customer_id) if c is not None]
    if case_id is not None:
        customers, locked_cases, links = await lock_case_graph(session, [case_id], wanted)
        check_live_case(locked_cases[case_id], "caseId")
    else:
        customers, links = await lock_customers(session, wanted), {}
    contact = await read_contact(session, contact_id, lock=True)
    if customer_id is None:
        customer_id = contact.customer_id
        if customer_id is None or customers[customer_id].status in ("merged", "erased"):
            customer_id = next((c for c, primary in links[case_id].items() if primary), None)
    if customer_id is not None:
        check_live_customer(customers.get(customer_id) or (await lock_customers(session, [customer_id]))[customer_id], "customerId")
    detached_from = None
    if customer_only and case_id is not None and customer_id not in links[case_id]:
        detached_from, case_id = case_id, None
    linked = False
    if case_id is not None and customer_id is not None and customer_id not in links[case_id]:
        if not actor.has_role(*ROLES_THAT_LINK):
            raise UserError(
                ErrorCode.CUSTOMER_NOT_ON_CASE,
                "the customer is not linked to this case and your role may not link them",
                "caseId",
            )
        await session.execute(insert(CaseCustomer.__table__).values(case_id=case_id, customer_id=customer_id, is_primary=False))
        audit.record(
            session, actor=actor, action="case.customer.link", entity_type="case", entity_id=case_id,
            after={"customerId": customer_id, "primary": False, "via": "contactAssociate"},
        )
        linked = True
    await session.execute(
        update(Contact).where(Contact.id == contact_id).values(customer_id=customer_id, case_id=case_id, needs_review=False)
    )
    if customer_id is not None:
        await _touch_activity(session, customer_id, contact.occurred_at)
    audit.record(
        session, actor=actor, action="contact.associate", entity_type="contact", entity_id=contact_id,
        before={"customerId": contact.customer_id, "caseId": contact.case_id},
        after={"customerId": customer_id, "caseId": case_id, "linkedCustomerToCase": linked, "detachedFromCaseId": detached_from},
    )
    events.emit_many(session, "customerUpdated", [c for c in (contact.customer_id, customer_id) if c is not None])
    events.emit_many(session, "caseUpdated", [c for c in (contact.case_id, case_id) if c is not None])
    return await read_contact(session, contact_id)


async def move_contacts(session: AsyncSession, *, actor: Actor, contact_ids: list[int], to_case_id: int) -> list[Any]:
    """Move contacts to another case; each contact's customer must be linked to it."""
    contact_ids = list(dict.fromkeys(contact_ids))
    if not contact_ids:
        raise UserError(ErrorCode.REQUIRED, "name at least one contact", "contactIds")
    before = {row.id: row for row in (await session.execute(select(contacts).where(contacts.c.id.in_(contact_ids)))).all()}
    for index, contact_id in enumerate(contact_ids):
        if contact_id not in before:
            raise not_found("contact", f"contactIds.{index}")
    customer_ids = {row.customer_id for row in before.values() if row.customer_id is not None}
    _, locked_cases, links = await lock_case_graph(session, [to_case_id], customer_ids, field="toCaseId")
    check_live_case(locked_cases[to_case_id], "toCaseId")
    rows = {
        row.id: row
        for row in (
            await session.execute(
                select(contacts).where(contacts.c.id.in_(contact_ids)).order_by(contacts.c.id).with_for_update()
            )
        ).all()
    }
    target_links = links[to_case_id]
    for index, contact_id in enumerate(contact_ids):
        customer_id = rows[contact_id].customer_id
        if customer_id is not None and customer_id not in target_links:
            raise UserError(
                ErrorCode.CUSTOMER_NOT_ON_CASE,
                "the contact's customer is not linked to the target case; link them to the case first",
                f"contactIds.{index}",
            )
    primary = next((c for c, is_primary in target_links.items() if is_primary), None)
    await session.execute(
        update(Contact)
        .where(Contact.id.in_(contact_ids))
        .values(case_id=to_case_id, customer_id=func.coalesce(Contact.customer_id, primary))
    )
    for contact_id in contact_ids:
        audit.record(
            session, actor=actor, action="contact.move", entity_type="contact", entity_id=contact_id,
            before={"caseId": rows[contact_id].case_id}, after={"caseId": to_case_id},
        )
    events.emit_many(session, "caseUpdated", [to_case_id, *(r.case_id for r in rows.values() if r.case_id is not None)])
    events.emit_many(session, "customerUpdated", [c for c in [*customer_ids, primary] if c is not None])
    return [row for row in (await session.execute(select(contacts).where(contacts.c.id.in_(contact_ids)).order_by(contacts.c.id))).all()]


async def create_case_from_contact(
    session: AsyncSession,
    *,
    actor: Actor,
    contact_id: int,
    subject: str,
    customer_id: int | None = None,
    description: str | None = None,
    priority: str = "normal",
) -> Any:
    """Split a contact into a new case of its customer (or of the customer given)."""
    contact = await read_contact(session, contact_id)
    customer_id = customer_id if customer_id is not None else contact.customer_id
    if customer_id is None:
        raise UserError(ErrorCode.REQUIRED, "the contact has no customer; name the customer for the new case", "customerId")
    customers = await lock_customers(session, {customer_id, *([contact.customer_id] if contact.customer_id else [])})
    check_live_customer(customers[customer_id], "customerId")
    contact = await read_contact(session, contact_id, lock=True)
    case = await case_service.create_case(
        session, actor=actor, subject=subject, customer_ids=[customer_id], description=description, priority=priority
    )
    await session.execute(update(Contact).where(Contact.id == contact_id).values(case_id=case.id, customer_id=customer_id))
    await _touch_activity(session, customer_id, contact.occurred_at)
    audit.record(
        session, actor=actor, action="contact.split", entity_type="contact", entity_id=contact_id,
        before={"customerId": contact.customer_id, "caseId": contact.case_id},
        after={"customerId": customer_id, "caseId": case.id},
    )
    if contact.case_id is not None:
        events.emit(session, "caseUpdated", contact.case_id)
    if contact.customer_id is not None:
        events.emit(session, "customerUpdated", contact.customer_id)
    return case

"""Case maintenance: close, reopen, move between customers, link and unlink customers, merge, archive."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.auth import Actor
from app.errors import ErrorCode, UserError
from app.models import Case, CaseCustomer, Contact
from app.services import audit
from app.services.maintenance.locking import (
    cases,
    check_live_case,
    check_live_customer,
    lock_case_graph,
)


async def read_case(session: AsyncSession, case_id: int) -> Any:
    return (await session.execute(select(cases).where(cases.c.id == case_id))).one()


async def close_case(session: AsyncSession, *, actor: Actor, case_id: int, reason_code: str) -> Any:
    """Close a case with a reason code."""
    if not reason_code or not reason_code.strip():
        raise UserError(ErrorCode.REQUIRED, "a reason code is required to close a case", "reasonCode")
    _, locked, _ = await lock_case_graph(session, [case_id])
    case = locked[case_id]
    check_live_case(case, "caseId")
    if case.status == "closed":
        raise UserError(ErrorCode.WRONG_STATUS, f"case {case.reference} is already closed", "caseId")
    await session.execute(
        update(Case).where(Case.id == case_id).values(status="closed", reason_code=reason_code.strip(), closed_at=func.now())
    )
    audit.record(
        session, actor=actor, action="case.close", entity_type="case", entity_id=case_id,
        before={"status": case.status, "reasonCode": case.reason_code},
        after={"status": "closed", "reasonCode": reason_code.strip()},
    )
    events.emit(session, "caseUpdated", case_id)
    return await read_case(session, case_id)


async def reopen_case(session: AsyncSession, *, actor: Actor, case_id: int, reason_code: str | None = None) -> Any:
    """Reopen a resolved or closed case."""
    _, locked, _ = await lock_case_graph(session, [case_id])
    case = locked[case_id]
    check_live_case(case, "caseId")
    if case.status not in ("resolved", "closed"):
        raise UserError(ErrorCode.WRONG_STATUS, f"case {case.reference} is {case.status}, not resolved or closed", "caseId")
    reason = reason_code.strip() if reason_code and reason_code.strip() else None
    await session.execute(
        update(Case).where(Case.id == case_id).values(status="open", reason_code=reason, closed_at=None)
    )
    audit.record(
        session, actor=actor, action="case.reopen", entity_type="case", entity_id=case_id,
        before={"status": case.status, "reasonCode": case.reason_code}, after={"status": "open", "reasonCode": reason},
    )
    events.emit(session, "caseUpdated", case_id)
    return await read_case(session, case_id)


async def move_case(
    session: AsyncSession, *, actor: Actor, case_id: int, from_customer_id: int, to_customer_id: int
) -> Any:
    """Move a case from one customer to another: the link (and its primary role) and that customer's contacts follow."""
    if from_customer_id == to_customer_id:
        raise UserError(ErrorCode.INVALID, "the case is already on that customer", "toCustomerId")
    customers, locked, links = await lock_case_graph(session, [case_id], [from_customer_id, to_customer_id])
    check_live_case(locked[case_id], "caseId")
    check_live_customer(customers[to_customer_id], "toCustomerId")
    case_links = links[case_id]
    if from_customer_id not in case_links:
        raise UserError(ErrorCode.CUSTOMER_NOT_ON_CASE, "the case is not linked to that customer", "fromCustomerId")
    was_primary = case_links[from_customer_id]
    link = CaseCustomer.__table__
    if to_customer_id in case_links:
        await session.execute(delete(link).where(link.c.case_id == case_id, link.c.customer_id == from_customer_id))
        if was_primary:
            await session.execute(
                update(link).where(link.c.case_id == case_id, link.c.customer_id == to_customer_id).values(is_primary=True)
            )
    else:
        await session.execute(
            update(link).where(link.c.case_id == case_id, link.c.customer_id == from_customer_id).values(customer_id=to_customer_id)
        )
    moved = (
        await session.execute(
            update(Contact)
            .where(Contact.case_id == case_id, Contact.customer_id == from_customer_id)
            .values(customer_id=to_customer_id)
        )
    ).rowcount
    await session.execute(update(Case).where(Case.id == case_id).values(updated_at=func.now()))
    audit.record(
        session, actor=actor, action="case.move", entity_type="case", entity_id=case_id,
        before={"customerId": from_customer_id, "primary": was_primary},
        after={"customerId": to_customer_id, "contactsMoved": moved},
    )
    events.emit(session, "caseUpdated", case_id)
    events.emit_many(session, "customerUpdated", [from_customer_id, to_customer_id])
    return await read_case(session, case_id)


async def link_customer(
    session: AsyncSession, *, actor: Actor, case_id: int, customer_id: int, primary: bool = False
) -> Any:
    """Link another customer to a case, optionally making them the primary customer."""
    customers, locked, links = await lock_case_graph(session, [case_id], [customer_id])
    check_live_case(locked[case_id], "caseId")
    check_live_customer(customers[customer_id], "customerId")
    case_links = links[case_id]
    if customer_id in case_links and (case_links[customer_id] or not primary):
        raise UserError(ErrorCode.DUPLICATE, "the customer is already linked to this case", "customerId")
    link = CaseCustomer.__table__
    if primary:
        await session.execute(update(link).where(link.c.case_id == case_id, link.c.is_primary).values(is_primary=False))
    if customer_id in case_links:
        await session.execute(
            update(link).where(link.c.case_id == case_id, link.c.customer_id == customer_id).values(is_primary=True)
        )
    else:
        await session.execute(insert(link).values(case_id=case_id, customer_id=customer_id, is_primary=primary))
    await session.execute(update(Case).where(Case.id == case_id).values(updated_at=func.now()))
    audit.record(
        session, actor=actor, action="case.customer.link", entity_type="case", entity_id=case_id,
        after={"customerId": customer_id, "primary": primary},
    )
    events.emit(session, "caseUpdated", case_id)
    events.emit_many(session, "customerUpdated", [customer_id] + ([c for c, p in case_links.items() if p] if primary else []))
    return await read_case(session, case_id)


async def unlink_customer(session: AsyncSession, *, actor: Actor, case_id: int, customer_id: int) -> Any:
    """Unlink a customer from a case; the primary customer cannot be unlinked (a case always keeps one)."""
    _, locked, links = await lock_case_graph(session, [case_id], [customer_id])
    check_live_case(locked[case_id], "caseId")
    case_links = links[case_id]
    if customer_id not in case_links:
        raise UserError(ErrorCode.CUSTOMER_NOT_ON_CASE, "the customer is not linked to this case", "customerId")
    if case_links[customer_id]:
        raise UserError(
            ErrorCode.PRIMARY_REQUIRED, "a case keeps its primary customer; make another customer primary first", "customerId"
        )
    link = CaseCustomer.__table__
    await session.execute(delete(link).where(link.c.case_id == case_id, link.c.customer_id == customer_id))
    await session.execute(update(Case).where(Case.id == case_id).values(updated_at=func.now()))
    audit.record(
        session, actor=actor, action="case.customer.unlink", entity_type="case", entity_id=case_id,
        before={"customerId": customer_id},
    )
    events.emit(session, "caseUpdated", case_id)
    events.emit(session, "customerUpdated", customer_id)
    return await read_case(session, case_id)


_IS_ANCESTOR = text("""
WITH RECURSIVE ancestors(id, parent_id, depth) AS (
    SELECT id, parent_id, 0 FROM cases WHERE id = :start
    UNION ALL
    SELECT c.id, c.parent_id, a.depth + 1 FROM cases c JOIN ancestors a ON c.id = a.parent_id WHERE a.depth < 1000
)
SELECT EXISTS (SELECT 1 FROM ancestors WHERE id = :candidate)
""")


async def merge_cases(session: AsyncSession, *, actor: Actor, source_case_id: int, target_case_id: int) -> Any:
    """Merge one case into another: contacts, customers and child cases move; the source becomes a tombstone."""
    if source_case_id == target_case_id:
        raise UserError(ErrorCode.SELF_MERGE, "a case cannot be merged into itself", "targetCaseId")
    _, locked, links = await lock_case_graph(session, [source_case_id, target_case_id], field="sourceCaseId")
    source, target = locked[source_case_id], locked[target_case_id]
    check_live_case(source, "sourceCaseId")
    check_live_case(target, "targetCaseId")
    if await session.scalar(_IS_ANCESTOR, {"start": target_case_id, "candidate": source_case_id}):
        raise UserError(
            ErrorCode.CIRCULAR, f"{target.reference} is a descendant of {source.reference}; merge the other way", "targetCaseId"
        )
    moved = (
        await session.execute(update(Contact).where(Contact.case_id == source_case_id).values(case_id=target_case_id))
    ).rowcount
    new_customers = [cid for cid in links[source_case_id] if cid not in links[target_case_id]]
    if new_customers:
        await session.execute(
            insert(CaseCustomer.__table__),
            [{"case_id": target_case_id, "customer_id": cid, "is_primary": False} for cid in new_customers],
        )
    children = list(
        await session.scalars(
            update(Case).where(Case.parent_id == source_case_id).values(parent_id=target_case_id).returning(Case.id)
        )
    )
    tombstones = list(
        await session.scalars(
            update(Case).where(Case.merged_into_id == source_case_id).values(merged_into_id=target_case_id).returning(Case.id)
        )
    )
    await session.execute(
        update(Case)
        .where(Case.id == source_case_id)
        .values(merged_into_id=target_case_id, status="closed", reason_code="merged", closed_at=func.coalesce(Case.closed_at, func.now()))
    )
    await session.execute(update(Case).where(Case.id == target_case_id).values(updated_at=func.now()))
    audit.record(
        session, actor=actor, action="case.merge", entity_type="case", entity_id=source_case_id,
        before={"status": source.status, "reasonCode": source.reason_code},
        after={"mergedInto": target_case_id, "contactsMoved": moved},
    )
    audit.record(
        session, actor=actor, action="case.merge.receive", entity_type="case", entity_id=target_case_id,
        after={"mergedFrom": source_case_id, "contactsMoved": moved, "customersLinked": new_customers, "childrenMoved": children},
    )
    events.emit_many(session, "caseUpdated", [source_case_id, target_case_id, *children, *tombstones])
    events.emit_many(session, "customerUpdated", sorted(set(links[source_case_id]) | set(links[target_case_id])))
    return await read_case(session, target_case_id)


async def archive_case(session: AsyncSession, *, actor: Actor, case_id: int) -> Any:
    """Take a case out of default listings; it stays readable by id."""
    _, locked, links = await lock_case_graph(session, [case_id])
    case = locked[case_id]
    check_live_case(case, "caseId")
    if case.archived_at is not None:
        raise UserError(ErrorCode.WRONG_STATUS, f"case {case.reference} is already archived", "caseId")
    await session.execute(update(Case).where(Case.id == case_id).values(archived_at=func.now()))
    audit.record(session, actor=actor, action="case.archive", entity_type="case", entity_id=case_id)
    events.emit(session, "caseUpdated", case_id)
    events.emit_many(session, "customerUpdated", links[case_id])
    return await read_case(session, case_id)


async def restore_case(session: AsyncSession, *, actor: Actor, case_id: int) -> Any:
    """Bring an archived case back into the working set."""
    _, locked, links = await lock_case_graph(session, [case_id])
    case = locked[case_id]
    check_live_case(case, "caseId")
    if case.archived_at is None:
        raise UserError(ErrorCode.WRONG_STATUS, f"case {case.reference} is not archived", "caseId")
    await session.execute(update(Case).where(Case.id == case_id).values(archived_at=None))
    audit.record(session, actor=actor, action="case.restore", entity_type="case", entity_id=case_id)
    events.emit(session, "caseUpdated", case_id)
    events.emit_many(session, "customerUpdated", links[case_id])
    return await read_case(session, case_id)

"""Cases and the customers they concern."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.auth import Actor
from app.errors import ErrorCode, UserError, not_found
from app.models import CASE_STATUSES, Case, CaseCustomer, Customer, User
from app.pagination import Page, decode_cursor
from app.services import audit

PRIORITIES = ("low", "normal", "high", "urgent")


def snapshot(case: Case) -> dict[str, Any]:
    return {
        "reference": case.reference,
        "subject": case.subject,
        "status": case.status,
        "priority": case.priority,
        "severity": case.severity,
        "fields": case.fields,
        "assigneeId": case.assignee_id,
        "parentId": case.parent_id,
    }


async def _active_customers(session: AsyncSession, customer_ids: list[int], field: str) -> None:
    found = set(
        await session.scalars(
            select(Customer.id).where(Customer.id.in_(customer_ids), Customer.status.in_(("active", "archived")))
        )
    )
    for index, customer_id in enumerate(customer_ids):
        if customer_id not in found:
            raise not_found("customer", f"{field}.{index}")


async def get_case_for_update(session: AsyncSession, case_id: int, field: str = "id") -> Case:
    case = await session.get(Case, case_id, with_for_update=True)
    if case is None:
        raise not_found("case", field)
    if case.merged_into_id is not None:
        raise UserError(ErrorCode.INVALID, f"case {case.reference} was merged", field)
    return case


async def create_case(
    session: AsyncSession,
    *,
    actor: Actor,
    subject: str,
    customer_ids: list[int],
    description: str | None = None,
    priority: str = "normal",
    severity: str | None = None,
    fields: dict[str, Any] | None = None,
    parent_id: int | None = None,
) -> Case:
    """Open a case for one or more customers; the first customer is the primary one."""
    if not subject.strip():
        raise UserError(ErrorCode.REQUIRED, "subject is required", "subject")
    if priority not in PRIORITIES:
        raise UserError(ErrorCode.INVALID, f"priority must be one of {', '.join(PRIORITIES)}", "priority")
    if not customer_ids:
        raise UserError(ErrorCode.REQUIRED, "a case concerns at least one customer", "customerIds")
    customer_ids = list(dict.fromkeys(customer_ids))
    await _active_customers(session, customer_ids, "customerIds")
    if parent_id is not None and await session.get(Case, parent_id) is None:
        raise not_found("case", "parentId")
    case = (
        await session.execute(
            insert(Case)
            .values(
                subject=subject.strip(),
                description=description,
                priority=priority,
                severity=severity,
                fields=fields or {},
                parent_id=parent_id,
            )
            .returning(Case)
        )
    ).scalar_one()
    await session.execute(
        insert(CaseCustomer),
        [{"case_id": case.id, "customer_id": cid, "is_primary": i == 0} for i, cid in enumerate(customer_ids)],
    )
    audit.record(
        session, actor=actor, action="case.create", entity_type="case", entity_id=case.id,
        after={**snapshot(case), "customerIds": customer_ids},
    )
    events.emit(session, "caseUpdated", case.id)
    for customer_id in customer_ids:
        events.emit(session, "customerUpdated", customer_id)
    return case


async def update_case(
    session: AsyncSession,
    *,
    actor: Actor,
    case_id: int,
    subject: str | None = None,
    description: str | None = None,
    status: str | None = None,
    priority: str | None = None,
    severity: str | None = None,
    fields: dict[str, Any] | None = None,
    assignee_id: int | None = None,
    parent_id: int | None = None,
) -> Case:
    """Change a case's attributes; only the arguments given change."""
    case = await get_case_for_update(session, case_id)
    before = snapshot(case)
    if subject is not None:
        if not subject.strip():
            raise UserError(ErrorCode.REQUIRED, "subject must not be empty", "subject")
        case.subject = subject.strip()
    if description is not None:
        case.description = description
    if status is not None:
        if status not in CASE_STATUSES:
            raise UserError(ErrorCode.INVALID, f"status must be one of {', '.join(CASE_STATUSES)}", "status")
        case.status = status
    if priority is not None:
        if priority not in PRIORITIES:
            raise UserError(ErrorCode.INVALID, f"priority must be one of {', '.join(PRIORITIES)}", "priority")
        case.priority = priority
    if severity is not None:
        case.severity = severity
    if fields is not None:
        case.fields = {**case.fields, **fields}
    if assignee_id is not None:
        if await session.get(User, assignee_id) is None:
            raise not_found("user", "assigneeId")
        case.assignee_id = assignee_id
    if parent_id is not None:
        await _check_parent(session, case, parent_id)
        case.parent_id = parent_id
    await session.flush()
    await session.refresh(case, ["updated_at"])
    audit.record(
        session, actor=actor, action="case.update", entity_type="case", entity_id=case.id,
        before=before, after=snapshot(case),
    )
    events.emit(session, "caseUpdated", case.id)
    return case


async def _check_parent(session: AsyncSession, case: Case, parent_id: int) -> None:
    """A parent must exist and must not be the case itself or one of its descendants."""
    ancestor_id: int | None = parent_id
    while ancestor_id is not None:
        if ancestor_id == case.id:
            raise UserError(ErrorCode.INVALID, "a case cannot be its own ancestor", "parentId")
        ancestor = await session.get(Case, ancestor_id)
        if ancestor is None:
            raise not_found("case", "parentId")
        ancestor_id = ancestor.parent_id


async def list_cases(
    session: AsyncSession,
    *,
    first: int,
    after: str | None,
    status: str | None = None,
    customer_id: int | None = None,
    assignee_id: int | None = None,
) -> Page[Case]:
    """Cases newest first, filtered by status, customer and/or assignee; merged and archived ones left out."""
    query = select(Case).where(Case.merged_into_id.is_(None), Case.archived_at.is_(None))
    if status:
        query = query.where(Case.status == status)
    if customer_id is not None:
        query = query.where(
            exists().where(CaseCustomer.case_id == Case.id, CaseCustomer.customer_id == customer_id)
        )
    if assignee_id is not None:
        query = query.where(Case.assignee_id == assignee_id)
    if after:
        (last_id,) = decode_cursor(after, int)
        query = query.where(Case.id < last_id)
    rows = (await session.scalars(query.order_by(Case.id.desc()).limit(first + 1))).all()
    return Page.from_overfetch(list(rows), first)


_FOLLOW_CASE_MERGES = text("""
WITH RECURSIVE chain(id, next_id, depth) AS (
    SELECT id, merged_into_id, 0 FROM cases WHERE reference = :reference
    UNION ALL
    SELECT c.id, c.merged_into_id, chain.depth + 1 FROM cases c JOIN chain ON c.id = chain.next_id WHERE chain.depth < 16
)
SELECT id FROM chain ORDER BY depth DESC LIMIT 1
""")


async def case_id_by_reference(session: AsyncSession, *, reference: str) -> int | None:
    """The case with this reference; a merged case's reference resolves to the case it was merged into."""
    return await session.scalar(_FOLLOW_CASE_MERGES, {"reference": reference.strip().upper()})

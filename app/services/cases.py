"""Cases: the customers they concern, their status transitions (each owned by one function),
moves between customers, and merges."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ARRAY, BigInteger, Row, bindparam, delete, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app import events, limits
from app.auth import Actor
from app.errors import ErrorCode, UserError, not_found
from app.limits import check_json_object, check_text
from app.models import (
    CASE_STATUSES,
    FINISHED_CASE_STATUSES,
    OPEN_CASE_STATUSES,
    PRIORITIES,
    Case,
    CaseCustomer,
    Contact,
    Customer,
    Pool,
    User,
)
from app.pagination import Page, decode_cursor
from app.services import audit, forms, queues, reasons, sla, templates, workflows
from app.services.customers import require_live_customer
from app.services.held import HeldRows
from app.services.locking import cases, lock_case_graph, lock_case_tree, primary_of


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
        "reasonCode": case.reason_code,
        "workflowId": case.workflow_id,
    }


def require_live_case(case: Case | Row[Any] | None, field: str) -> None:
    """A case that exists in its own right: NOT_FOUND or MERGED otherwise (archived is live)."""
    if case is None:
        raise not_found("case", field)
    if case.merged_into_id is not None:
        raise UserError(ErrorCode.MERGED, f"case {case.reference} was merged into another case", field)


async def _require_live_customers(session: AsyncSession, customer_ids: list[int], field: str) -> None:
    """Each customer is live, and stays so until the transaction ends: FOR KEY SHARE waits for an
    erasure or merge in progress (FOR UPDATE) and then reads its outcome, and lets a customer's
    last activity move meanwhile (batched ingests touch many customers at once)."""
    rows = {
        r.id: r
        for r in await session.execute(
            select(Customer.id, Customer.number, Customer.status)
            .where(Customer.id.in_(customer_ids))
            .order_by(Customer.id)
            .with_for_update(read=True, key_share=True)
        )
    }
    for index, customer_id in enumerate(customer_ids):
        require_live_customer(rows.get(customer_id), f"{field}.{index}")


async def get_case_for_update(session: AsyncSession, case_id: int, field: str = "id") -> Case:
    case = await session.get(Case, case_id, with_for_update=True)
    require_live_case(case, field)
    return case


# The case and its customer links in one statement (the hot path of ingest opens a case per contact).
_OPEN_CASE = select(Case).from_statement(
    text("""
        WITH opened AS (
            INSERT INTO cases (subject, description, priority, severity, fields, parent_id, pool_id, template_id,
                               workflow_id)
            VALUES (:subject, :description, :priority, :severity, :fields, :parent_id, :pool_id, :template_id,
                    :workflow_id)
            RETURNING *
        ), linked AS (
            INSERT INTO case_customers (case_id, customer_id, is_primary)
            SELECT opened.id, given.customer_id, given.position = 1
            FROM opened, unnest(:customer_ids) WITH ORDINALITY AS given(customer_id, position)
        )
        SELECT * FROM opened
    """).bindparams(bindparam("fields", type_=JSONB), bindparam("customer_ids", type_=ARRAY(BigInteger)))
)


async def create_case(
    session: AsyncSession,
    *,
    actor: Actor,
    subject: str | None,
    customer_ids: list[int],
    description: str | None = None,
    priority: str | None = None,
    severity: str | None = None,
    fields: dict[str, Any] | None = None,
    parent_id: int | None = None,
    pool_id: int | None = None,
    template_id: int | None = None,
    region: str | None = None,
    workflow_id: int | None = None,
    customers_locked: bool = False,
) -> Case:
    """Open a case for one or more customers; the first customer is the primary one
    (`customers_locked`: this transaction created them or holds them live and locked already). A template
    fills in what the input leaves out, and its form checks the fields. A case of a workflow needs
    the creator right on it. A case created in a pool (given, the template's, or else the
    workflow's default pool) waits there for an agent. A workflow's case template applies unless
    the case names another."""
    row = await _checked_case(
        session,
        actor=actor,
        subject=subject,
        customer_ids=customer_ids,
        description=description,
        priority=priority,
        severity=severity,
        fields=fields,
        parent_id=parent_id,
        pool_id=pool_id,
        template_id=template_id,
        region=region,
        workflow_id=workflow_id,
        customers_locked=customers_locked,
    )
    case = (await session.execute(_OPEN_CASE, row)).scalar_one()
    await _announce_opened(session, actor=actor, case=case, customer_ids=row["customer_ids"])
    return case


async def _checked_case(
    session: AsyncSession,
    *,
    actor: Actor,
    subject: str | None,
    customer_ids: list[int],
    description: str | None,
    priority: str | None,
    severity: str | None,
    fields: dict[str, Any] | None,
    parent_id: int | None,
    pool_id: int | None,
    template_id: int | None,
    region: str | None,
    workflow_id: int | None,
    customers_locked: bool,
) -> dict[str, Any]:
    """The row of a case to open, checked as create_case says."""
    workflow = await workflows.require_right(
        session, actor=actor, workflow_id=workflow_id, right="creator", field="workflowId"
    )
    if template_id is None and workflow is not None:
        template_id = workflow.case_template_id
    opened = await templates.case_defaults(
        session, template_id=template_id, subject=subject, priority=priority, pool_id=pool_id, fields=fields
    )
    subject, priority = opened.subject, opened.priority
    if subject is None or not subject.strip():
        raise UserError(ErrorCode.REQUIRED, "subject is required", "subject")
    _check_texts(subject=subject, description=description, severity=severity)
    limits.check_count(customer_ids, "customerIds", limits.CUSTOMERS_PER_CASE)
    if priority not in PRIORITIES:
        raise UserError(ErrorCode.INVALID, f"priority must be one of {', '.join(PRIORITIES)}", "priority")
    if not customer_ids:
        raise UserError(ErrorCode.REQUIRED, "a case concerns at least one customer", "customerIds")
    if template_id is not None:
        fields = await forms.checked_fields(
            session, template_id=template_id, values=opened.fields, stored=None, region=region
        )
    elif fields is not None:
        check_json_object(fields, "fields")
    customer_ids = list(dict.fromkeys(customer_ids))
    if not customers_locked:
        await _require_live_customers(session, customer_ids, "customerIds")
    if parent_id is not None and await session.get(Case, parent_id) is None:
        raise not_found("case", "parentId")
    pool_id = opened.pool_id if opened.pool_id is not None or workflow is None else workflow.default_pool_id
    if pool_id is not None and await session.get(Pool, pool_id) is None:
        raise not_found("pool", "poolId")
    return {
        "subject": subject.strip(),
        "description": description,
        "priority": priority,
        "severity": severity,
        "fields": fields or {},
        "parent_id": parent_id,
        "pool_id": pool_id,
        "template_id": template_id,
        "workflow_id": workflow_id,
        "customer_ids": customer_ids,
    }


async def _announce_opened(session: AsyncSession, *, actor: Actor, case: Case, customer_ids: list[int]) -> None:
    """What follows a case's opening: its audit entry, its queue and clock, its events."""
    audit.record(
        session,
        actor=actor,
        action="case.create",
        entity_type="case",
        entity_id=case.id,
        after={**snapshot(case), "customerIds": customer_ids},
    )
    if case.pool_id is not None:
        queues.announce(session, case_id=case.id, pools={case.pool_id: queues.QueueChange.ENTERED}, agents={})
    await sla.start_clock(session, case=case)
    events.emit(session, "caseUpdated", case.id)
    for customer_id in customer_ids:
        events.emit(session, "customerUpdated", customer_id)


# Cases with their ids given, and their customer links, in one statement; references follow the order given.
_OPEN_CASES = select(Case).from_statement(
    text("""
        WITH given AS (
            SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS g(
                id bigint, subject text, description text, priority text, severity text, fields jsonb,
                parent_id bigint, pool_id bigint, template_id bigint, workflow_id bigint, customer_ids bigint[],
                position bigint)
        ), opened AS (
            INSERT INTO cases (id, subject, description, priority, severity, fields, parent_id, pool_id,
                               template_id, workflow_id)
            SELECT id, subject, description, priority, severity, fields, parent_id, pool_id, template_id,
                   workflow_id
            FROM given ORDER BY position
            RETURNING *
        ), linked AS (
            INSERT INTO case_customers (case_id, customer_id, is_primary)
            SELECT given.id, linked.customer_id, linked.position = 1
            FROM given, unnest(given.customer_ids) WITH ORDINALITY AS linked(customer_id, position)
        )
        SELECT * FROM opened
    """).bindparams(bindparam("rows", type_=JSONB))
)


class CaseOpenings(HeldRows):
    """The cases a batch of ingests opens, written together in one statement (see HeldRows); each
    written case goes to `on_written` (its reference is given then)."""

    def __init__(self, session: AsyncSession, *, ids_at_once: int, on_written: Callable[[Case], None]) -> None:
        super().__init__(session, sequence="cases_id_seq", statement=_OPEN_CASES, ids_at_once=ids_at_once)
        self.on_written = on_written

    async def open(
        self,
        *,
        actor: Actor,
        subject: str | None,
        customer_ids: list[int],
        fields: dict[str, Any] | None,
        pool_id: int | None,
        customers_locked: bool,
    ) -> int:
        """Check a case as create_case does and give it its id; it is written with the others."""
        row = await _checked_case(
            self.session,
            actor=actor,
            subject=subject,
            customer_ids=customer_ids,
            description=None,
            priority=None,
            severity=None,
            fields=fields,
            parent_id=None,
            pool_id=pool_id,
            template_id=None,
            region=None,
            workflow_id=None,
            customers_locked=customers_locked,
        )
        return await self.hold(actor, row)

    async def announce(self, actor: Actor, row: dict[str, Any], written: Case) -> None:
        await _announce_opened(self.session, actor=actor, case=written, customer_ids=row["customer_ids"])
        self.on_written(written)


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
    reason_code: str | None = None,
    region: str | None = None,
    workflow_id: int | None = None,
) -> Case:
    """Change a case's attributes; only the arguments given change. A status change clears the
    previous status's reason code, or sets the one given (of the new status's category). Moving it
    to a workflow needs the creator right there; resolving it, the resolver right on its workflow."""
    if parent_id is not None:
        await lock_case_tree(session)
    _check_texts(subject=subject, description=description, severity=severity)
    case = await get_case_for_update(session, case_id)
    before = snapshot(case)
    queue_before = queues.QueueState.of(case)
    status_before, priority_before, workflow_before = case.status, case.priority, case.workflow_id
    if subject is not None:
        if not subject.strip():
            raise UserError(ErrorCode.REQUIRED, "subject must not be empty", "subject")
        case.subject = subject.strip()
    if description is not None:
        case.description = description
    if workflow_id is not None and workflow_id != case.workflow_id:
        await workflows.require_right(
            session, actor=actor, workflow_id=workflow_id, right="creator", field="workflowId"
        )
        case.workflow_id = workflow_id
    if status is not None and status != case.status:
        _check_status_change(case, status)
        if status == "resolved":
            await workflows.require_right(
                session, actor=actor, workflow_id=case.workflow_id, right="resolver", field="status"
            )
        case.status = status
        case.reason_code = await reasons.check_reason(session, reason_code, status=status) if reason_code else None
    elif reason_code is not None:
        raise UserError(ErrorCode.INVALID, "a reason code goes with a change of status", "reasonCode")
    if priority is not None:
        if priority not in PRIORITIES:
            raise UserError(ErrorCode.INVALID, f"priority must be one of {', '.join(PRIORITIES)}", "priority")
        case.priority = priority
    if severity is not None:
        case.severity = severity
    if fields is not None:
        if case.template_id is not None:
            fields = await forms.checked_fields(
                session, template_id=case.template_id, values=fields, stored=case.fields, region=region
            )
        case.fields = {**case.fields, **check_json_object(fields, "fields")}
    if assignee_id is not None:
        if await session.get(User, assignee_id) is None:
            raise not_found("user", "assigneeId")
        case.assignee_id = assignee_id
    if parent_id is not None:
        await _check_parent(session, case, parent_id)
        case.parent_id = parent_id
    await session.flush()
    if case.status != status_before:
        await sla.status_changed(session, case_id=case.id, status=case.status)
    if case.priority != priority_before or case.workflow_id != workflow_before:
        await sla.recompute(session, case=case)
    await session.refresh(case, ["updated_at", "waiting_since"])
    queues.announce_move(session, case_id=case.id, before=queue_before, after=queues.QueueState.of(case))
    audit.record(
        session,
        actor=actor,
        action="case.update",
        entity_type="case",
        entity_id=case.id,
        before=before,
        after=snapshot(case),
    )
    events.emit(session, "caseUpdated", case.id)
    return case


def _check_texts(*, subject: str | None, description: str | None, severity: str | None) -> None:
    check_text(subject, "subject", limits.SUBJECT)
    check_text(description, "description", limits.DESCRIPTION)
    check_text(severity, "severity", limits.SEVERITY)


def _check_status_change(case: Case, status: str) -> None:
    """caseUpdate moves a case between working statuses; closing and reopening have their own mutations."""
    if status not in CASE_STATUSES:
        raise UserError(ErrorCode.INVALID, f"status must be one of {', '.join(CASE_STATUSES)}", "status")
    if status == "closed":
        raise UserError(ErrorCode.WRONG_STATUS, "close a case with caseClose (it takes a reason code)", "status")
    if case.status == "closed" or (case.status in FINISHED_CASE_STATUSES and status in OPEN_CASE_STATUSES):
        raise UserError(
            ErrorCode.WRONG_STATUS, f"case {case.reference} is {case.status}: reopen it with caseReopen", "status"
        )


async def _check_parent(session: AsyncSession, case: Case, parent_id: int) -> None:
    """A parent must exist and must not be the case itself or one of its descendants."""
    if await session.get(Case, parent_id) is None:
        raise not_found("case", "parentId")
    if await _is_ancestor(session, case.id, of=parent_id):
        raise UserError(ErrorCode.CIRCULAR, "a case cannot be its own ancestor", "parentId")


_IS_ANCESTOR = text("""
WITH RECURSIVE ancestors(id, parent_id, depth) AS (
    SELECT id, parent_id, 0 FROM cases WHERE id = :start
    UNION ALL
    SELECT c.id, c.parent_id, a.depth + 1 FROM cases c JOIN ancestors a ON c.id = a.parent_id WHERE a.depth < 1000
)
SELECT EXISTS (SELECT 1 FROM ancestors WHERE id = :candidate)
""")


async def _is_ancestor(session: AsyncSession, case_id: int, *, of: int) -> bool:
    """Whether `case_id` is the case `of` or one of its ancestors (the case tree has no cycles)."""
    return bool(await session.scalar(_IS_ANCESTOR, {"start": of, "candidate": case_id}))


async def list_cases(
    session: AsyncSession,
    *,
    first: int,
    after: str | None,
    status: str | None = None,
    statuses: Sequence[str] | None = None,
    customer_id: int | None = None,
    assignee_id: int | None = None,
    assignee_ids: Sequence[int] | None = None,
    pool_id: int | None = None,
    waiting: bool | None = None,
) -> Page[Case]:
    """Cases newest first, filtered by status(es), customer, assignee(s), pool and whether they wait
    for an agent; merged and archived ones left out."""
    query = select(Case).where(Case.merged_into_id.is_(None), Case.archived_at.is_(None))
    if status:
        query = query.where(Case.status == status)
    if statuses is not None:
        query = query.where(Case.status.in_(statuses))
    if customer_id is not None:
        query = query.where(exists().where(CaseCustomer.case_id == Case.id, CaseCustomer.customer_id == customer_id))
    if assignee_id is not None:
        query = query.where(Case.assignee_id == assignee_id)
    if assignee_ids is not None:
        query = query.where(Case.assignee_id.in_(assignee_ids))
    if pool_id is not None:
        query = query.where(Case.pool_id == pool_id)
    if waiting is not None:
        query = query.where(Case.waiting_since.is_not(None) if waiting else Case.waiting_since.is_(None))
    if after:
        (last_id,) = decode_cursor(after, int)
        query = query.where(Case.id < last_id)
    rows = (await session.scalars(query.order_by(Case.id.desc()).limit(first + 1))).all()
    return Page.from_overfetch(list(rows), first)


async def case_id_by_reference(session: AsyncSession, *, reference: str) -> int | None:
    """The case with this reference; a merged case's reference resolves to the case it was merged into."""
    # The database function (migrations 0003, 0004) is the one implementation of tombstone
    # following; a read takes no lock.
    return await session.scalar(
        select(func.casegraph_live_case(Case.id, False)).where(Case.reference == reference.strip().upper())
    )


# ---- close, reopen, move, link, merge -------------------------------------------------------------


async def read_case(session: AsyncSession, case_id: int) -> Row[Any]:
    return (await session.execute(select(cases).where(cases.c.id == case_id))).one()


async def _announced(session: AsyncSession, case_id: int, *, before: Row[Any]) -> Row[Any]:
    """The case as it is now, its change announced to its subscribers, its pools and its agents."""
    after = await read_case(session, case_id)
    queues.announce_move(
        session, case_id=case_id, before=queues.QueueState.of(before), after=queues.QueueState.of(after)
    )
    events.emit(session, "caseUpdated", case_id)
    return after


def _closing(reason_code: str) -> dict[str, Any]:
    """What closing sets: the status, the reason, and the time (kept if the case was closed before)."""
    return {"status": "closed", "reason_code": reason_code, "closed_at": func.coalesce(Case.closed_at, func.now())}


async def close_case(session: AsyncSession, *, actor: Actor, case_id: int, reason_code: str) -> Row[Any]:
    """Close a case with a reason code."""
    if not reason_code or not reason_code.strip():
        raise UserError(ErrorCode.REQUIRED, "a reason code is required to close a case", "reasonCode")
    check_text(reason_code, "reasonCode", limits.REASON_CODE)
    _, locked, _ = await lock_case_graph(session, [case_id])
    case = locked[case_id]
    require_live_case(case, "caseId")
    if case.status == "closed":
        raise UserError(ErrorCode.WRONG_STATUS, f"case {case.reference} is already closed", "caseId")
    workflow_id = await session.scalar(select(Case.workflow_id).where(Case.id == case_id))
    await workflows.require_right(session, actor=actor, workflow_id=workflow_id, right="resolver", field="caseId")
    reason_code = await reasons.check_reason(session, reason_code, status="closed")
    await session.execute(update(Case).where(Case.id == case_id).values(**_closing(reason_code)))
    await sla.status_changed(session, case_id=case_id, status="closed")
    audit.record(
        session,
        actor=actor,
        action="case.close",
        entity_type="case",
        entity_id=case_id,
        before={"status": case.status, "reasonCode": case.reason_code},
        after={"status": "closed", "reasonCode": reason_code},
    )
    return await _announced(session, case_id, before=case)


async def reopen_case(session: AsyncSession, *, actor: Actor, case_id: int, reason_code: str | None = None) -> Row[Any]:
    """Reopen a resolved or closed case."""
    check_text(reason_code, "reasonCode", limits.REASON_CODE)
    _, locked, _ = await lock_case_graph(session, [case_id])
    case = locked[case_id]
    require_live_case(case, "caseId")
    if case.status not in FINISHED_CASE_STATUSES:
        raise UserError(
            ErrorCode.WRONG_STATUS, f"case {case.reference} is {case.status}, not resolved or closed", "caseId"
        )
    reason = None
    if reason_code and reason_code.strip():
        reason = await reasons.check_reason(session, reason_code, status="open")
    await session.execute(
        update(Case).where(Case.id == case_id).values(status="open", reason_code=reason, closed_at=None)
    )
    await sla.status_changed(session, case_id=case_id, status="open")
    audit.record(
        session,
        actor=actor,
        action="case.reopen",
        entity_type="case",
        entity_id=case_id,
        before={"status": case.status, "reasonCode": case.reason_code},
        after={"status": "open", "reasonCode": reason},
    )
    return await _announced(session, case_id, before=case)


async def move_case(
    session: AsyncSession, *, actor: Actor, case_id: int, from_customer_id: int, to_customer_id: int
) -> Row[Any]:
    """Move a case from one customer to another: the link (and its primary role) and that customer's contacts follow."""
    if from_customer_id == to_customer_id:
        raise UserError(ErrorCode.INVALID, "the case is already on that customer", "toCustomerId")
    customers, locked, links = await lock_case_graph(session, [case_id], [from_customer_id, to_customer_id])
    require_live_case(locked[case_id], "caseId")
    require_live_customer(customers[to_customer_id], "toCustomerId")
    case_links = links[case_id]
    if from_customer_id not in case_links:
        raise UserError(ErrorCode.CUSTOMER_NOT_ON_CASE, "the case is not linked to that customer", "fromCustomerId")
    was_primary = case_links[from_customer_id]
    link = CaseCustomer.__table__
    if to_customer_id in case_links:
        await session.execute(delete(link).where(link.c.case_id == case_id, link.c.customer_id == from_customer_id))
        if was_primary:
            await session.execute(
                update(link)
                .where(link.c.case_id == case_id, link.c.customer_id == to_customer_id)
                .values(is_primary=True)
            )
    else:
        await session.execute(
            update(link)
            .where(link.c.case_id == case_id, link.c.customer_id == from_customer_id)
            .values(customer_id=to_customer_id)
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
        session,
        actor=actor,
        action="case.move",
        entity_type="case",
        entity_id=case_id,
        before={"customerId": from_customer_id, "primary": was_primary},
        after={"customerId": to_customer_id, "contactsMoved": moved},
    )
    events.emit(session, "caseUpdated", case_id)
    events.emit_many(session, "customerUpdated", [from_customer_id, to_customer_id])
    return await read_case(session, case_id)


async def link_customer(
    session: AsyncSession, *, actor: Actor, case_id: int, customer_id: int, primary: bool = False
) -> Row[Any]:
    """Link another customer to a case, optionally making them the primary customer."""
    customers, locked, links = await lock_case_graph(session, [case_id], [customer_id])
    require_live_case(locked[case_id], "caseId")
    require_live_customer(customers[customer_id], "customerId")
    case_links = links[case_id]
    if customer_id in case_links and (case_links[customer_id] or not primary):
        raise UserError(ErrorCode.DUPLICATE, "the customer is already linked to this case", "customerId")
    if customer_id not in case_links and len(case_links) >= limits.CUSTOMERS_PER_CASE:
        raise UserError(
            ErrorCode.INVALID, f"a case concerns at most {limits.CUSTOMERS_PER_CASE} customers", "customerId"
        )
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
        session,
        actor=actor,
        action="case.customer.link",
        entity_type="case",
        entity_id=case_id,
        after={"customerId": customer_id, "primary": primary},
    )
    events.emit(session, "caseUpdated", case_id)
    previous_primary = primary_of(case_links) if primary else None
    events.emit_many(session, "customerUpdated", [c for c in (customer_id, previous_primary) if c is not None])
    return await read_case(session, case_id)


async def unlink_customer(session: AsyncSession, *, actor: Actor, case_id: int, customer_id: int) -> Row[Any]:
    """Unlink a customer from a case; the primary customer cannot be unlinked (a case always keeps one)."""
    _, locked, links = await lock_case_graph(session, [case_id], [customer_id])
    require_live_case(locked[case_id], "caseId")
    case_links = links[case_id]
    if customer_id not in case_links:
        raise UserError(ErrorCode.CUSTOMER_NOT_ON_CASE, "the customer is not linked to this case", "customerId")
    if case_links[customer_id]:
        raise UserError(
            ErrorCode.PRIMARY_REQUIRED,
            "a case keeps its primary customer; make another customer primary first",
            "customerId",
        )
    link = CaseCustomer.__table__
    await session.execute(delete(link).where(link.c.case_id == case_id, link.c.customer_id == customer_id))
    await session.execute(update(Case).where(Case.id == case_id).values(updated_at=func.now()))
    audit.record(
        session,
        actor=actor,
        action="case.customer.unlink",
        entity_type="case",
        entity_id=case_id,
        before={"customerId": customer_id},
    )
    events.emit(session, "caseUpdated", case_id)
    events.emit(session, "customerUpdated", customer_id)
    return await read_case(session, case_id)


async def merge_cases(session: AsyncSession, *, actor: Actor, source_case_id: int, target_case_id: int) -> Row[Any]:
    """Merge one case into another: contacts, customers and child cases move; the source becomes a tombstone."""
    if source_case_id == target_case_id:
        raise UserError(ErrorCode.SELF_MERGE, "a case cannot be merged into itself", "targetCaseId")
    await lock_case_tree(session)  # the source's children move under the target
    _, locked, links = await lock_case_graph(session, [source_case_id, target_case_id], field="sourceCaseId")
    source, target = locked[source_case_id], locked[target_case_id]
    require_live_case(source, "sourceCaseId")
    require_live_case(target, "targetCaseId")
    if await _is_ancestor(session, source_case_id, of=target_case_id):
        raise UserError(
            ErrorCode.CIRCULAR,
            f"{target.reference} is a descendant of {source.reference}; merge the other way",
            "targetCaseId",
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
            update(Case)
            .where(Case.merged_into_id == source_case_id)
            .values(merged_into_id=target_case_id)
            .returning(Case.id)
        )
    )
    await session.execute(
        update(Case).where(Case.id == source_case_id).values(merged_into_id=target_case_id, **_closing(reasons.MERGED))
    )
    await sla.status_changed(session, case_id=source_case_id, status="closed")
    await session.execute(update(Case).where(Case.id == target_case_id).values(updated_at=func.now()))
    audit.record(
        session,
        actor=actor,
        action="case.merge",
        entity_type="case",
        entity_id=source_case_id,
        before={"status": source.status, "reasonCode": source.reason_code},
        after={"mergedInto": target_case_id, "contactsMoved": moved},
    )
    audit.record(
        session,
        actor=actor,
        action="case.merge.receive",
        entity_type="case",
        entity_id=target_case_id,
        after={
            "mergedFrom": source_case_id,
            "contactsMoved": moved,
            "customersLinked": new_customers,
            "childrenMoved": children,
        },
    )
    queues.announce_move(
        session,
        case_id=source_case_id,
        before=queues.QueueState.of(source),
        after=await queues.queue_state(session, source_case_id),
    )
    events.emit_many(session, "caseUpdated", [source_case_id, target_case_id, *children, *tombstones])
    events.emit_many(session, "customerUpdated", sorted(set(links[source_case_id]) | set(links[target_case_id])))
    return await read_case(session, target_case_id)

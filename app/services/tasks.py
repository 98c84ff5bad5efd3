"""Tasks and follow-ups (seed 001): creating, changing, completing, reopening, cancelling and deleting
them; listing; and delivering their reminders once, from the worker.

Who may change a task: its assignee, its creator, and supervisors (every task). Every change is
audited and announced to the assignee's work channel (`queues.WORK_TOPIC`), and to the case's or
customer's subscribers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, DateTime, Select, and_, bindparam, delete, func, or_, select, true, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app import events, limits
from app.auth import SYSTEM, Actor
from app.errors import ErrorCode, UserError, not_found
from app.models import TASK_KINDS, TASK_STATUSES, Case, Customer, Task, User
from app.pagination import Page, decode_cursor, encode_cursor
from app.services import audit, messages
from app.services import mail as mail_service
from app.services.cases import require_live_case
from app.services.customers import require_live_customer
from app.services.locking import case_links
from app.services.queues import WORK_TOPIC

if TYPE_CHECKING:
    from app.runtime import Runtime

_UNSET: Any = object()

# Reminders go to `taskReminder:<assignee id>`; every change of a user's tasks to their work
# channel (`queues.WORK_TOPIC`), beside their cases.
REMINDER_TOPIC = "taskReminder"
REMINDERS_PER_BATCH = 100

tasks = Task.__table__


def snapshot(task: Task) -> dict[str, Any]:
    return {
        "kind": task.kind,
        "status": task.status,
        "subject": task.subject,
        "notes": task.notes,
        "customerId": task.customer_id,
        "caseId": task.case_id,
        "assigneeId": task.assignee_id,
        "dueAt": _iso(task.due_at),
        "remindAt": _iso(task.remind_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _now() -> datetime:
    return datetime.now(UTC)


def may_change(actor: Actor, task: Task) -> bool:
    """Supervisors change every task; an agent the tasks assigned to them or that they created."""
    return actor.has_role("supervisor") or (
        actor.user_id is not None and actor.user_id in (task.assignee_id, task.created_by_id)
    )


# ---- checks ---------------------------------------------------------------------------------------


def _checked_kind(kind: str) -> str:
    if kind not in TASK_KINDS:
        raise UserError(ErrorCode.INVALID, f"kind must be one of {', '.join(TASK_KINDS)}", "kind")
    return kind


def _checked_subject(subject: str | None) -> str:
    if subject is None or not subject.strip():
        raise UserError(ErrorCode.REQUIRED, "a task needs a subject", "subject")
    limits.check_text(subject, "subject", limits.SUBJECT)
    return subject.strip()


def _checked_notes(notes: str | None) -> str | None:
    limits.check_text(notes, "notes", limits.DESCRIPTION)
    return notes if notes and notes.strip() else None


def _checked_times(due_at: datetime | None, remind_at: datetime | None, *, new_reminder: bool) -> None:
    """A reminder being set lies ahead, and no reminder comes after the time the task is due."""
    if remind_at is None:
        return
    if new_reminder and remind_at <= _now():
        raise UserError(ErrorCode.IN_THE_PAST, "a reminder must lie in the future", "remindAt")
    if due_at is not None and remind_at > due_at:
        raise UserError(ErrorCode.REMINDER_AFTER_DUE, "the reminder comes after the task is due", "remindAt")


async def _require_assignee(session: AsyncSession, user_id: int, field: str = "assigneeId") -> None:
    """Tasks go to active users who work cases (not to integration accounts)."""
    user = await session.get(User, user_id)
    if user is None:
        raise not_found("user", field)
    if not user.active:
        raise UserError(ErrorCode.INVALID, f"user {user.name} is deactivated", field)
    if user.role == "integrator":
        raise UserError(ErrorCode.INVALID, f"{user.name} is an integration account, not a person", field)


async def _require_open_customer(session: AsyncSession, customer_id: int) -> None:
    # FOR SHARE: a merge or erasure in progress finishes first, and its outcome is what is read.
    customer = (
        await session.execute(
            select(Customer.number, Customer.status).where(Customer.id == customer_id).with_for_update(read=True)
        )
    ).one_or_none()
    require_live_customer(customer, "customerId")
    if customer.status == "archived":
        raise UserError(ErrorCode.ARCHIVED, f"customer {customer.number} is archived: restore it first", "customerId")


async def _require_open_case(session: AsyncSession, case_id: int) -> None:
    case = (
        await session.execute(
            select(Case.reference, Case.merged_into_id, Case.archived_at)
            .where(Case.id == case_id)
            .with_for_update(read=True)
        )
    ).one_or_none()
    require_live_case(case, "caseId")
    if case.archived_at is not None:
        raise UserError(ErrorCode.ARCHIVED, f"case {case.reference} is archived: restore it first", "caseId")


async def _check_subjects(session: AsyncSession, customer_id: int | None, case_id: int | None) -> None:
    """A task is about a live, unarchived customer or case (or both, the customer then on the case)."""
    if customer_id is None and case_id is None:
        raise UserError(ErrorCode.REQUIRED, "a task is on a customer or a case", "customerId")
    if customer_id is not None:
        await _require_open_customer(session, customer_id)
    if case_id is not None:
        await _require_open_case(session, case_id)
        if customer_id is not None and customer_id not in (await case_links(session, [case_id]))[case_id]:
            raise UserError(ErrorCode.CUSTOMER_NOT_ON_CASE, "the customer is not linked to this case", "customerId")


# ---- announcing ------------------------------------------------------------------------------------


def _announce(session: AsyncSession, task: Task, change: str, *, previous_assignee: int | None = None) -> None:
    """The work-channel events of a change (the old assignee hears of a reassignment too), and a
    refresh for the subscribers of the task's case and customer."""
    body = {"kind": "task", "taskId": task.id, "caseId": task.case_id, "customerId": task.customer_id}
    if previous_assignee is not None and previous_assignee != task.assignee_id:
        events.emit(session, WORK_TOPIC, previous_assignee, change="unassigned", **body)
        events.emit(session, WORK_TOPIC, task.assignee_id, change="assigned", **body)
    else:
        events.emit(session, WORK_TOPIC, task.assignee_id, change=change, **body)
    if task.case_id is not None:
        events.emit(session, "caseUpdated", task.case_id)
    if task.customer_id is not None:
        events.emit(session, "customerUpdated", task.customer_id)


def _audit(session: AsyncSession, actor: Actor, action: str, task: Task, before: dict[str, Any] | None) -> None:
    audit.record(
        session,
        actor=actor,
        action=f"task.{action}",
        entity_type="task",
        entity_id=task.id,
        before=before,
        after=snapshot(task),
    )


# ---- changes ---------------------------------------------------------------------------------------


async def create_task(
    session: AsyncSession,
    *,
    actor: Actor,
    kind: str,
    subject: str,
    customer_id: int | None = None,
    case_id: int | None = None,
    notes: str | None = None,
    due_at: datetime | None = None,
    remind_at: datetime | None = None,
    assignee_id: int | None = None,
) -> Task:
    """Plan a task on a customer and/or a case, for its assignee (the caller unless named)."""
    task = Task(
        kind=_checked_kind(kind),
        subject=_checked_subject(subject),
        notes=_checked_notes(notes),
        customer_id=customer_id,
        case_id=case_id,
        due_at=due_at,
        remind_at=remind_at,
        assignee_id=assignee_id if assignee_id is not None else actor.user_id,
        created_by_id=actor.user_id,
    )
    _checked_times(due_at, remind_at, new_reminder=True)
    if task.assignee_id is None:
        raise UserError(ErrorCode.REQUIRED, "name the user the task is for", "assigneeId")
    await _require_assignee(session, task.assignee_id)
    await _check_subjects(session, customer_id, case_id)
    session.add(task)
    await session.flush()
    await session.refresh(task)
    _audit(session, actor, "create", task, None)
    _announce(session, task, "created")
    return task


async def _task_for_change(session: AsyncSession, actor: Actor, task_id: int, field: str = "id") -> Task:
    task = await session.get(Task, task_id, with_for_update=True)
    if task is None:
        raise not_found("task", field)
    if not may_change(actor, task):
        raise UserError(ErrorCode.FORBIDDEN, "only its assignee, its creator or a supervisor changes a task", field)
    return task


async def update_task(
    session: AsyncSession,
    *,
    actor: Actor,
    task_id: int,
    kind: str | None = None,
    subject: str | None = None,
    notes: Any = _UNSET,
    customer_id: Any = _UNSET,
    case_id: Any = _UNSET,
    due_at: Any = _UNSET,
    remind_at: Any = _UNSET,
    assignee_id: int | None = None,
) -> Task:
    """Change what is given (None clears notes, times, customer or case); a new reminder time re-arms the reminder."""
    task = await _task_for_change(session, actor, task_id)
    if task.status == "cancelled":
        raise UserError(ErrorCode.WRONG_STATUS, "the task is cancelled", "id")
    before = snapshot(task)
    previous_assignee = task.assignee_id
    if kind is not None:
        task.kind = _checked_kind(kind)
    if subject is not None:
        task.subject = _checked_subject(subject)
    if notes is not _UNSET:
        task.notes = _checked_notes(notes)
    new_customer = task.customer_id if customer_id is _UNSET else customer_id
    new_case = task.case_id if case_id is _UNSET else case_id
    if (new_customer, new_case) != (task.customer_id, task.case_id):
        await _check_subjects(session, new_customer, new_case)
        task.customer_id, task.case_id = new_customer, new_case
    new_due = task.due_at if due_at is _UNSET else due_at
    new_remind = task.remind_at if remind_at is _UNSET else remind_at
    rearmed = new_remind != task.remind_at
    _checked_times(new_due, new_remind, new_reminder=rearmed)
    task.due_at, task.remind_at = new_due, new_remind
    if rearmed:
        task.reminded_at = None
    if assignee_id is not None and assignee_id != task.assignee_id:
        await _require_assignee(session, assignee_id)
        task.assignee_id = assignee_id
    if snapshot(task) == before and not rearmed:
        return task  # nothing changed: nothing to record or announce
    await session.flush()
    await session.refresh(task)
    _audit(session, actor, "update", task, before)
    _announce(session, task, "updated", previous_assignee=previous_assignee)
    return task


async def complete_task(session: AsyncSession, *, actor: Actor, task_id: int) -> Task:
    """Mark an open task done (by the caller, now); its pending reminder will not go out."""
    task = await _task_for_change(session, actor, task_id)
    if task.status != "open":
        raise UserError(ErrorCode.WRONG_STATUS, f"the task is {task.status} already", "id")
    before = snapshot(task)
    task.status, task.completed_at, task.completed_by_id = "completed", func.now(), actor.user_id
    await session.flush()
    await session.refresh(task)
    _audit(session, actor, "complete", task, before)
    _announce(session, task, "completed")
    return task


async def reopen_task(session: AsyncSession, *, actor: Actor, task_id: int) -> Task:
    """Open a completed or cancelled task again; a reminder still ahead (or never sent) goes out as planned."""
    task = await _task_for_change(session, actor, task_id)
    if task.status == "open":
        raise UserError(ErrorCode.WRONG_STATUS, "the task is open already", "id")
    await _check_subjects(session, task.customer_id, task.case_id)
    before = snapshot(task)
    task.status, task.completed_at, task.completed_by_id, task.cancelled_at = "open", None, None, None
    await session.flush()
    await session.refresh(task)
    _audit(session, actor, "reopen", task, before)
    _announce(session, task, "reopened")
    return task


async def cancel_task(session: AsyncSession, *, actor: Actor, task_id: int) -> Task:
    """Call an open task off: it stays in the history, its reminder does not go out."""
    task = await _task_for_change(session, actor, task_id)
    if task.status != "open":
        raise UserError(ErrorCode.WRONG_STATUS, f"the task is {task.status}, not open", "id")
    before = snapshot(task)
    task.status, task.cancelled_at = "cancelled", func.now()
    await session.flush()
    await session.refresh(task)
    _audit(session, actor, "cancel", task, before)
    _announce(session, task, "cancelled")
    return task


async def delete_task(session: AsyncSession, *, actor: Actor, task_id: int) -> None:
    """Remove a task recorded by mistake; the audit trail keeps what it was."""
    task = await _task_for_change(session, actor, task_id)
    before = snapshot(task)
    await session.execute(delete(Task).where(Task.id == task_id))
    audit.record(session, actor=actor, action="task.delete", entity_type="task", entity_id=task_id, before=before)
    _announce(session, task, "deleted")


# ---- reading ---------------------------------------------------------------------------------------


@dataclass
class TaskFilter:
    status: str | None = None
    kind: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    overdue: bool | None = None  # open and past due (true), or not (false)
    customer_id: int | None = None
    case_id: int | None = None

    def where(self) -> list[Any]:
        found = []
        if self.status is not None:
            found.append(Task.status == self.status)
        if self.kind is not None:
            found.append(Task.kind == self.kind)
        if self.due_before is not None:
            found.append(Task.due_at < self.due_before)
        if self.due_after is not None:
            found.append(Task.due_at >= self.due_after)
        if self.customer_id is not None:
            found.append(Task.customer_id == self.customer_id)
        if self.case_id is not None:
            found.append(Task.case_id == self.case_id)
        if self.overdue is not None:
            overdue = and_(Task.status == "open", Task.due_at.is_not(None), Task.due_at < func.now())
            found.append(overdue if self.overdue else ~overdue)
        return found


def task_sort_key(row: Any) -> tuple[Any, ...]:
    """Soonest due first, tasks without a due time last: (no due time?, due time, id)."""
    return (int(row.due_at is None), row.due_at or datetime(1970, 1, 1, tzinfo=UTC), row.id)


def _after_cursor(after: str) -> Any:
    undated, due_at, task_id = decode_cursor(after, int, datetime, int)
    if undated:
        return and_(Task.due_at.is_(None), Task.id > task_id)
    return or_(Task.due_at.is_(None), tuple_(Task.due_at, Task.id) > tuple_(due_at, task_id))


_ORDER = (Task.due_at.asc().nulls_last(), Task.id.asc())


async def list_tasks(
    session: AsyncSession,
    *,
    first: int,
    after: str | None = None,
    assignee_id: int | None = None,
    filter: TaskFilter | None = None,
) -> Page[Task]:
    """Tasks soonest due first (undated last), of one assignee or everyone's, filtered."""
    query = select(Task).where(*_conditions(assignee_id, filter))
    if after:
        query = query.where(_after_cursor(after))
    rows = (await session.scalars(query.order_by(*_ORDER).limit(first + 1))).all()
    return Page.from_overfetch(list(rows), first, task_sort_key)


def _conditions(assignee_id: int | None, filter: TaskFilter | None) -> list[Any]:
    conditions = (filter or TaskFilter()).where()
    if assignee_id is not None:
        conditions.append(Task.assignee_id == assignee_id)
    return conditions


async def count_tasks(
    session: AsyncSession, *, assignee_id: int | None = None, filter: TaskFilter | None = None
) -> int:
    """How many tasks `list_tasks` pages through."""
    return await session.scalar(select(func.count()).select_from(Task).where(*_conditions(assignee_id, filter)))


@cache
def _owner_page_statement(owner: str, cursor: str | None, with_status: bool) -> Select:
    """One page of tasks for every customer (or case) id in the `:owner_ids` array (a LATERAL join)."""
    owners = (
        func.unnest(bindparam("owner_ids", type_=ARRAY(BigInteger)))
        .table_valued("owner_id")
        .render_derived(name="owners")
    )
    # A customer's or case's tasks include those of the ones merged into it.
    owner_table = Customer.__table__ if owner == "customer" else Case.__table__
    owner_column = tasks.c.customer_id if owner == "customer" else tasks.c.case_id
    merged = (
        select(owner_table.c.id)
        .where(or_(owner_table.c.id == owners.c.owner_id, owner_table.c.merged_into_id == owners.c.owner_id))
        .correlate_except(owner_table)
    )
    belongs = owner_column.in_(merged)
    per_owner = (
        select(tasks)
        .where(belongs)
        .order_by(tasks.c.due_at.asc().nulls_last(), tasks.c.id.asc())
        .limit(bindparam("limit"))
    )
    if with_status:
        per_owner = per_owner.where(tasks.c.status == bindparam("status"))
    after_id = bindparam("after_id", type_=BigInteger)
    if cursor == "undated":
        per_owner = per_owner.where(tasks.c.due_at.is_(None), tasks.c.id > after_id)
    elif cursor == "dated":
        after_due = bindparam("after_due", type_=DateTime(timezone=True))
        per_owner = per_owner.where(
            or_(tasks.c.due_at.is_(None), tuple_(tasks.c.due_at, tasks.c.id) > tuple_(after_due, after_id))
        )
    page = per_owner.lateral("page")
    return select(owners.c.owner_id, page).select_from(owners.join(page, true()))


async def owner_task_pages(
    conn: AsyncConnection, *, owner: str, owner_ids: list[int], first: int, after: str | None, status: str | None
) -> dict[int, Page]:
    """The first `first` tasks (after the cursor) of each customer or case, in one statement."""
    params: dict[str, Any] = {"owner_ids": owner_ids, "limit": first + 1}
    cursor = None
    if after:
        undated, params["after_due"], params["after_id"] = decode_cursor(after, int, datetime, int)
        cursor = "undated" if undated else "dated"
        if undated:
            del params["after_due"]
    if status is not None:
        params["status"] = status
    grouped: dict[int, list] = {owner_id: [] for owner_id in owner_ids}
    for row in (await conn.execute(_owner_page_statement(owner, cursor, status is not None), params)).all():
        grouped[row.owner_id].append(row)
    return {k: Page.from_overfetch(rows, first, task_sort_key) for k, rows in grouped.items()}


def checked_status(status: str | None) -> str | None:
    if status is not None and status not in TASK_STATUSES:
        raise UserError(ErrorCode.INVALID, f"status must be one of {', '.join(TASK_STATUSES)}", "status")
    return status


def cursor_of(task: Task) -> str:
    return encode_cursor(*task_sort_key(task))


# ---- reminders ---------------------------------------------------------------------------------------


@dataclass
class Reminders:
    sent: list[int] = field(default_factory=list)  # task ids
    mails: list[int] = field(default_factory=list)  # outbound ids, to enqueue once committed


async def send_due_reminders(runtime: Runtime, *, batch: int = REMINDERS_PER_BATCH) -> Reminders:
    """Deliver every reminder that is due. Each batch is claimed (FOR UPDATE SKIP LOCKED, so two
    workers never take the same one), marked, announced and mailed in one transaction: a reminder
    goes out once, and one that came due while no worker ran goes out at the next run."""
    result = Reminders()
    while True:
        async with runtime.transaction() as session:
            due = list(
                await session.scalars(
                    select(Task)
                    .where(Task.remind_at <= func.now(), Task.reminded_at.is_(None), Task.status == "open")
                    .order_by(Task.remind_at, Task.id)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            )
            if not due:
                return result
            reminded_at = await session.scalar(
                update(Task)
                .where(Task.id.in_([task.id for task in due]))
                .values(reminded_at=func.now())
                .returning(Task.reminded_at)
                .execution_options(synchronize_session=False)
            )
            for task in due:
                _remind(session, task, reminded_at)
                mail = await _queue_reminder_mail(session, task)
                if mail is not None:
                    result.mails.append(mail)
                result.sent.append(task.id)


def _remind(session: AsyncSession, task: Task, reminded_at: datetime) -> None:
    events.emit(session, REMINDER_TOPIC, task.assignee_id, taskId=task.id, remindedAt=reminded_at.isoformat())
    audit.record(
        session,
        actor=SYSTEM,
        action="task.remind",
        entity_type="task",
        entity_id=task.id,
        after={"assigneeId": task.assignee_id, "remindAt": _iso(task.remind_at)},
    )


async def _queue_reminder_mail(session: AsyncSession, task: Task) -> int | None:
    """A reminder mail to the assignee, when they have an address and a mailbox has a relay."""
    address = await session.scalar(select(User.email).where(User.id == task.assignee_id, User.active))
    if not address:
        return None
    mailbox = await mail_service.notification_mailbox(session, case_id=task.case_id)
    if mailbox is None:
        return None
    subject, text = await messages.message(session, "task_reminder", await _reminder_variables(session, task))
    return await mail_service.queue_notification(
        session, mailbox=mailbox, to=address, subject=subject, text=text, kind="task_reminder"
    )


async def _reminder_variables(session: AsyncSession, task: Task) -> dict[str, Any]:
    """What a reminder's template can say (app/mail/templates.py lists them)."""
    variables: dict[str, Any] = {"subject": task.subject, "kind": task.kind, "notes": task.notes}
    if task.due_at is not None:
        variables["due"] = f"{task.due_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    if task.customer_id is not None:
        customer = (
            await session.execute(select(Customer.number, Customer.name).where(Customer.id == task.customer_id))
        ).one()
        variables["customer"] = f"{customer.number}" + (f" {customer.name}" if customer.name else "")
    if task.case_id is not None:
        case = (await session.execute(select(Case.reference, Case.subject).where(Case.id == task.case_id))).one()
        variables["case"] = f"{case.reference} {case.subject}"
    return variables

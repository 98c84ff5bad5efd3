"""Tasks and follow-ups, their inputs and payloads, and the reminder a subscriber receives."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from app.models import TASK_KINDS, TASK_STATUSES
from schema.auth import User
from schema.enums import values_enum
from schema.errors import UserError
from schema.node import Node, load_case, load_customer, load_user
from schema.pagination import Connection

if TYPE_CHECKING:
    from schema.cases import Case
    from schema.customers import Customer

TaskKind = values_enum("TaskKind", TASK_KINDS, "What the task is: a call, an email, a meeting, a chat, or other.")
TaskStatus = values_enum(
    "TaskStatus", TASK_STATUSES, "OPEN to do; COMPLETED done (can be reopened); CANCELLED called off."
)


@strawberry.type(description="A call, email, meeting or chat to make, on a customer or a case, for its assignee.")
class Task(Node):
    db_id: strawberry.Private[int]
    customer_id: strawberry.Private[int | None]
    case_id: strawberry.Private[int | None]
    assignee_id: strawberry.Private[int]
    created_by_id: strawberry.Private[int | None]
    completed_by_id: strawberry.Private[int | None]
    kind: TaskKind
    status: TaskStatus
    subject: str
    notes: str | None
    due_at: datetime | None
    remind_at: datetime | None = strawberry.field(description="When the assignee is reminded.")
    reminded_at: datetime | None = strawberry.field(
        description="When the reminder went out; null while it is pending. A new remindAt clears it."
    )
    completed_at: datetime | None
    cancelled_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Task:
        return super().from_row(row, kind=TaskKind(row.kind), status=TaskStatus(row.status))

    @strawberry.field(description="Open and past its due time.")
    def overdue(self) -> bool:
        return self.status == TaskStatus.OPEN and self.due_at is not None and self.due_at < datetime.now(UTC)

    @strawberry.field
    async def customer(self, info: strawberry.Info) -> Annotated[Customer, strawberry.lazy("schema.customers")] | None:
        return await load_customer(info, self.customer_id)

    @strawberry.field
    async def case(self, info: strawberry.Info) -> Annotated[Case, strawberry.lazy("schema.cases")] | None:
        return await load_case(info, self.case_id)

    @strawberry.field
    async def assignee(self, info: strawberry.Info) -> User | None:
        return await load_user(info, self.assignee_id)

    @strawberry.field
    async def created_by(self, info: strawberry.Info) -> User | None:
        return await load_user(info, self.created_by_id)

    @strawberry.field
    async def completed_by(self, info: strawberry.Info) -> User | None:
        return await load_user(info, self.completed_by_id)


async def tasks_connection(
    info: strawberry.Info, owner: str, owner_id: int, first: int | None, after: str | None, status: Any
) -> Connection[Task]:
    """A customer's or case's tasks, through the request's loader (one statement for a page of owners)."""
    page = await info.context.loaders.tasks_page(owner, owner_id, first, after, status.value if status else None)
    return Connection.from_page(page, Task.from_row)


@strawberry.type(description="A task's reminder, delivered to its assignee at the reminder time.")
class TaskReminder:
    task_db_id: strawberry.Private[int]
    reminded_at: datetime

    @strawberry.field
    async def task(self, info: strawberry.Info) -> Task | None:
        return await info.context.loaders.task.load(self.task_db_id)


@strawberry.input
class TaskFilter:
    status: TaskStatus | None = None
    kind: TaskKind | None = None
    due_before: datetime | None = strawberry.field(default=None, description="Due before this time.")
    due_after: datetime | None = strawberry.field(default=None, description="Due at or after this time.")
    overdue: bool | None = strawberry.field(default=None, description="Open and past due (true), or not (false).")
    customer_id: strawberry.ID | None = None
    case_id: strawberry.ID | None = None


@strawberry.input
class TaskCreateInput:
    kind: TaskKind
    subject: str
    customer_id: strawberry.ID | None = strawberry.field(
        default=None, description="The customer; on a case task, one linked to the case."
    )
    case_id: strawberry.ID | None = None
    notes: str | None = None
    due_at: datetime | None = None
    remind_at: datetime | None = strawberry.field(default=None, description="In the future, and not after dueAt.")
    assignee_id: strawberry.ID | None = strawberry.field(default=None, description="The caller when not given.")


@strawberry.input
class TaskUpdateInput:
    id: strawberry.ID
    kind: TaskKind | None = None
    subject: str | None = None
    notes: str | None = strawberry.field(default=strawberry.UNSET, description="null clears them.")
    customer_id: strawberry.ID | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    case_id: strawberry.ID | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    due_at: datetime | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    remind_at: datetime | None = strawberry.field(
        default=strawberry.UNSET, description="null clears it; a new time re-arms the reminder."
    )
    assignee_id: strawberry.ID | None = None


@strawberry.input
class TaskCompleteInput:
    id: strawberry.ID


@strawberry.input
class TaskReopenInput:
    id: strawberry.ID


@strawberry.input
class TaskCancelInput:
    id: strawberry.ID


@strawberry.input
class TaskDeleteInput:
    id: strawberry.ID


@strawberry.type
class TaskPayload:
    task: Task | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class TaskDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)

"""Tasks: the caller's tasks, everyone's (supervisors), changes, and the caller's reminders as they fall due."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import strawberry

from app import events
from app.pagination import page_size
from app.services import tasks as service
from resolvers.mutation_helpers import mutate
from resolvers.subscriptions import After, _events
from schema.ids import db_id, decode_id, optional_db_id
from schema.pagination import Connection
from schema.permissions import allow
from schema.tasks import (
    Task,
    TaskCancelInput,
    TaskCompleteInput,
    TaskCreateInput,
    TaskDeleteInput,
    TaskDeletePayload,
    TaskFilter,
    TaskPayload,
    TaskReminder,
    TaskReopenInput,
    TaskUpdateInput,
)


def _filter_id(global_id: str | None, type_name: str) -> int | None:
    """An id of the wrong type matches nothing (-1) rather than failing the whole query."""
    if global_id is None:
        return None
    found = decode_id(global_id, type_name)
    return -1 if found is None else found


def _service_filter(given: TaskFilter | None) -> service.TaskFilter:
    f = given or TaskFilter()
    return service.TaskFilter(
        status=f.status.value if f.status else None,
        kind=f.kind.value if f.kind else None,
        due_before=f.due_before,
        due_after=f.due_after,
        overdue=f.overdue,
        customer_id=_filter_id(f.customer_id, "Customer"),
        case_id=_filter_id(f.case_id, "Case"),
    )


async def _page(
    info: strawberry.Info, first: int | None, after: str | None, assignee_id: int | None, filter: TaskFilter | None
) -> Connection[Task]:
    runtime, where = info.context.runtime, _service_filter(filter)
    async with runtime.reading() as session:
        page = await service.list_tasks(
            session, first=page_size(first), after=after, assignee_id=assignee_id, filter=where
        )

    async def count() -> int:
        async with runtime.reading() as session:
            return await service.count_tasks(session, assignee_id=assignee_id, filter=where)

    page.count = count
    return Connection.from_page(page, Task.from_row)


def _payload(task: Any) -> dict[str, Any]:
    return {"task": Task.from_row(task)}


@strawberry.type
class TaskQuery:
    @strawberry.field(permission_classes=[allow("Query.task")])
    async def task(self, info: strawberry.Info, id: strawberry.ID) -> Task | None:
        task_id = decode_id(id, "Task")
        return None if task_id is None else await info.context.loaders.task.load(task_id)

    @strawberry.field(
        permission_classes=[allow("Query.myTasks")],
        description="The caller's tasks, soonest due first (undated last).",
    )
    async def my_tasks(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        filter: TaskFilter | None = None,
    ) -> Connection[Task]:
        return await _page(info, first, after, info.context.actor.user_id or -1, filter)

    @strawberry.field(
        permission_classes=[allow("Query.tasks")],
        description="Everyone's tasks, or one assignee's, soonest due first (undated last).",
    )
    async def tasks(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        assignee_id: strawberry.ID | None = None,
        filter: TaskFilter | None = None,
    ) -> Connection[Task]:
        return await _page(info, first, after, _filter_id(assignee_id, "User"), filter)


@strawberry.type
class TaskMutation:
    @strawberry.mutation(
        permission_classes=[allow("Mutation.taskCreate")],
        description="Plan a task on a customer and/or a case, for the caller or a colleague.",
    )
    async def task_create(self, info: strawberry.Info, input: TaskCreateInput) -> TaskPayload:
        return await mutate(
            info,
            TaskPayload,
            lambda session: service.create_task(
                session,
                actor=info.context.actor,
                kind=input.kind.value,
                subject=input.subject,
                customer_id=optional_db_id(input.customer_id, "Customer", "customerId"),
                case_id=optional_db_id(input.case_id, "Case", "caseId"),
                notes=input.notes,
                due_at=input.due_at,
                remind_at=input.remind_at,
                assignee_id=optional_db_id(input.assignee_id, "User", "assigneeId"),
            ),
            _payload,
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.taskUpdate")],
        description="Change a task (an agent: one assigned to them or that they created).",
    )
    async def task_update(self, info: strawberry.Info, input: TaskUpdateInput) -> TaskPayload:
        def work(session: Any) -> Any:
            changes: dict[str, Any] = {}
            for name in ("notes", "due_at", "remind_at"):
                if getattr(input, name) is not strawberry.UNSET:
                    changes[name] = getattr(input, name)
            if input.customer_id is not strawberry.UNSET:
                changes["customer_id"] = optional_db_id(input.customer_id, "Customer", "customerId")
            if input.case_id is not strawberry.UNSET:
                changes["case_id"] = optional_db_id(input.case_id, "Case", "caseId")
            return service.update_task(
                session,
                actor=info.context.actor,
                task_id=db_id(input.id, "Task", "id"),
                kind=input.kind.value if input.kind else None,
                subject=input.subject,
                assignee_id=optional_db_id(input.assignee_id, "User", "assigneeId"),
                **changes,
            )

        return await mutate(info, TaskPayload, work, _payload)

    @strawberry.mutation(permission_classes=[allow("Mutation.taskComplete")], description="Mark an open task done.")
    async def task_complete(self, info: strawberry.Info, input: TaskCompleteInput) -> TaskPayload:
        return await mutate(
            info,
            TaskPayload,
            lambda session: service.complete_task(
                session, actor=info.context.actor, task_id=db_id(input.id, "Task", "id")
            ),
            _payload,
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.taskReopen")], description="Open a completed or cancelled task again."
    )
    async def task_reopen(self, info: strawberry.Info, input: TaskReopenInput) -> TaskPayload:
        return await mutate(
            info,
            TaskPayload,
            lambda session: service.reopen_task(
                session, actor=info.context.actor, task_id=db_id(input.id, "Task", "id")
            ),
            _payload,
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.taskCancel")],
        description="Call an open task off: it stays in the history and its reminder does not go out.",
    )
    async def task_cancel(self, info: strawberry.Info, input: TaskCancelInput) -> TaskPayload:
        return await mutate(
            info,
            TaskPayload,
            lambda session: service.cancel_task(
                session, actor=info.context.actor, task_id=db_id(input.id, "Task", "id")
            ),
            _payload,
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.taskDelete")],
        description="Remove a task recorded by mistake; the audit trail keeps what it was.",
    )
    async def task_delete(self, info: strawberry.Info, input: TaskDeleteInput) -> TaskDeletePayload:
        return await mutate(
            info,
            TaskDeletePayload,
            lambda session: service.delete_task(
                session, actor=info.context.actor, task_id=db_id(input.id, "Task", "id")
            ),
            lambda _: {"deleted_id": input.id},
        )


@strawberry.type
class TaskSubscription:
    @strawberry.subscription(
        permission_classes=[allow("Subscription.taskReminder")],
        description="The reminders of the caller's tasks, each as its reminder time comes.",
    )
    async def task_reminder(self, info: strawberry.Info, after: After = None) -> AsyncGenerator[TaskReminder, None]:
        channel = events.channel(service.REMINDER_TOPIC, info.context.actor.user_id or 0)
        # The event relay may publish an event twice; a reminder is shown once.
        recent: deque[tuple[int, str]] = deque(maxlen=64)
        async for event in _events(info, [channel], after):
            key = (event.body["taskId"], event.body["remindedAt"])
            if key in recent:
                continue
            recent.append(key)
            yield TaskReminder(task_db_id=key[0], reminded_at=datetime.fromisoformat(key[1]))

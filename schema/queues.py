"""Queues: pools and their members, absences, and the live updates of queues and of an agent's work."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from app.models import REPLY_STATUSES
from app.services import queues as service
from schema.enums import values_enum
from schema.errors import UserError
from schema.ids import to_global_id
from schema.mail import AutoResponse, AutoResponseInput
from schema.node import Node, load_case, load_later

if TYPE_CHECKING:
    from schema.auth import User
    from schema.cases import Case
    from schema.tasks import Task

ReplyStatus = values_enum(
    "ReplyStatus", REPLY_STATUSES, "What an agent's reply does to a case: PENDING (waits on the customer) or KEEP."
)
QueueChange = strawberry.enum(
    Enum("QueueChange", {c.name: c.value for c in service.QueueChange}),
    description="ENTERED the pool, CLAIMED by an agent, RELEASED back by its agent, or LEFT (transferred, closed, merged).",
)
WorkChange = strawberry.enum(
    Enum("WorkChange", {c.name: c.value for c in service.WorkChange}),
    description="A case or task ASSIGNED to the agent or UNASSIGNED from them; a case whose STATUS_CHANGED; "
    "a task of theirs CREATED, UPDATED, COMPLETED, REOPENED, CANCELLED or DELETED.",
)
WorkKind = strawberry.enum(Enum("WorkKind", {"CASE": "case", "TASK": "task"}), description="What changed.")


@strawberry.type(description="How much work a pool holds.")
class PoolCounts:
    waiting: int = strawberry.field(description="Cases waiting for an agent.")
    in_progress: int = strawberry.field(description="Open cases of the pool that agents hold.")
    oldest_waiting_since: datetime | None

    @strawberry.field(description="Seconds the oldest waiting case has waited.")
    def oldest_waiting_seconds(self) -> int | None:
        if self.oldest_waiting_since is None:
            return None
        return max(0, int((datetime.now(UTC) - self.oldest_waiting_since).total_seconds()))

    @classmethod
    def of(cls, counts: service.PoolCounts) -> PoolCounts:
        return cls(
            waiting=counts.waiting, in_progress=counts.in_progress, oldest_waiting_since=counts.oldest_waiting_since
        )


@strawberry.type(description="A themed queue that mailboxes feed and agents serve.")
class Pool(Node):
    db_id: strawberry.Private[int]
    name: str
    description: str | None
    priority: int = strawberry.field(description="Higher is served first.")
    auto_response: AutoResponse | None = strawberry.field(
        description="The receipt its mailboxes send, unless one has its own."
    )
    reply_status: ReplyStatus = strawberry.field(description="What an agent's reply does to a case's status.")
    reopen_within_days: int = strawberry.field(
        description="A customer's contact on a case closed at most this many days ago reopens it."
    )
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Pool:
        return super().from_row(row, auto_response=AutoResponse.of(row), reply_status=ReplyStatus(row.reply_status))

    @strawberry.field(description="The agents who serve the pool.")
    async def members(self, info: strawberry.Info) -> list[PoolMember]:
        async with info.context.runtime.reading() as session:
            found = await service.members_of(session, [self.db_id])
        return [PoolMember.from_row(m) for m in found[self.db_id]]

    @strawberry.field(description="Waiting and held cases, and the oldest waiting time.")
    async def counts(self, info: strawberry.Info) -> PoolCounts:
        async with info.context.runtime.reading() as session:
            return PoolCounts.of(await service.pool_counts(session, self.db_id))


@strawberry.type(description="An agent serving a pool; `caseNext` serves an agent's higher-priority pools first.")
class PoolMember:
    user_id: strawberry.Private[int]
    pool_id: strawberry.Private[int]
    priority: int

    @strawberry.field
    def user(self, info: strawberry.Info) -> Annotated[User, strawberry.lazy("schema.auth")] | None:
        return load_later(info.context.loaders.user, self.user_id)

    @strawberry.field
    def pool(self, info: strawberry.Info) -> Pool | None:
        return load_later(info.context.loaders.pool, self.pool_id)

    @classmethod
    def from_row(cls, row: Any) -> PoolMember:
        return cls(user_id=row.user_id, pool_id=row.pool_id, priority=row.priority)


@strawberry.type(description="A period an agent is away, and who covers their cases meanwhile.")
class Absence(Node):
    db_id: strawberry.Private[int]
    user_id: strawberry.Private[int]
    replacement_id: strawberry.Private[int | None]
    starts_at: datetime
    ends_at: datetime
    reason: str | None
    created_at: datetime

    @strawberry.field
    def user(self, info: strawberry.Info) -> Annotated[User, strawberry.lazy("schema.auth")] | None:
        return load_later(info.context.loaders.user, self.user_id)

    @strawberry.field(description="Who gets the agent's returning cases meanwhile; none sends them back to the pool.")
    def replacement(self, info: strawberry.Info) -> Annotated[User, strawberry.lazy("schema.auth")] | None:
        return load_later(info.context.loaders.user, self.replacement_id)


@strawberry.type(description="What changed in a pool, and the pool's counts after it.")
class QueueUpdate:
    pool_id: strawberry.Private[int]
    case_db_id: strawberry.Private[int]
    change: QueueChange
    counts: PoolCounts
    # One update serves every subscriber of its pool in the process (resolvers/subscriptions.py).
    shared_results: strawberry.Private[dict] = dataclasses.field(default_factory=dict)

    @strawberry.field
    def pool(self, info: strawberry.Info) -> Pool | None:
        return load_later(info.context.loaders.pool, self.pool_id)

    @strawberry.field(description="The id of the case that entered, was claimed, released or left.")
    def case_id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Case", self.case_db_id))

    @strawberry.field
    async def case(self, info: strawberry.Info) -> Annotated[Case, strawberry.lazy("schema.cases")] | None:
        return await load_case(info, self.case_db_id)


@strawberry.type(description="A change to the caller's work: a case or a task of theirs.")
class MyWorkUpdate:
    kind: WorkKind
    change: WorkChange
    case_db_id: strawberry.Private[int | None]
    task_db_id: strawberry.Private[int | None]

    @strawberry.field
    def case_id(self) -> strawberry.ID | None:
        return None if self.case_db_id is None else strawberry.ID(to_global_id("Case", self.case_db_id))

    @strawberry.field(description="The case that changed, or the task's case.")
    async def case(self, info: strawberry.Info) -> Annotated[Case, strawberry.lazy("schema.cases")] | None:
        return await load_case(info, self.case_db_id)

    @strawberry.field
    def task_id(self) -> strawberry.ID | None:
        return None if self.task_db_id is None else strawberry.ID(to_global_id("Task", self.task_db_id))

    @strawberry.field(description="The task that changed (none once deleted).")
    async def task(self, info: strawberry.Info) -> Annotated[Task, strawberry.lazy("schema.tasks")] | None:
        return None if self.task_db_id is None else await info.context.loaders.task.load(self.task_db_id)


@strawberry.input
class PoolCreateInput:
    name: str
    description: str | None = None
    priority: int = 0
    auto_response: AutoResponseInput | None = None
    reply_status: ReplyStatus | None = None
    reopen_within_days: int | None = None


@strawberry.input
class PoolUpdateInput:
    id: strawberry.ID
    name: str | None = None
    description: str | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    priority: int | None = None
    auto_response: AutoResponseInput | None = strawberry.field(default=strawberry.UNSET, description="null removes it.")
    reply_status: ReplyStatus | None = None
    reopen_within_days: int | None = None


@strawberry.input
class PoolDeleteInput:
    id: strawberry.ID


@strawberry.type
class PoolPayload:
    pool: Pool | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class PoolDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class PoolMemberSetInput:
    pool_id: strawberry.ID
    user_id: strawberry.ID
    priority: int = strawberry.field(default=0, description="Higher is served first by this agent.")


@strawberry.input
class PoolMemberRemoveInput:
    pool_id: strawberry.ID
    user_id: strawberry.ID


@strawberry.type
class PoolMemberPayload:
    member: PoolMember | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class PoolMemberRemovePayload:
    removed: bool = False
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class CaseNextInput:
    pool_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Only these of the caller's pools (default: all of them)."
    )


@strawberry.input
class CaseReleaseInput:
    case_id: strawberry.ID
    reason: str | None = None


@strawberry.input
class CaseTransferInput:
    case_id: strawberry.ID
    pool_id: strawberry.ID | None = strawberry.field(default=None, description="It waits there for an agent.")
    assignee_id: strawberry.ID | None = strawberry.field(default=None, description="This agent takes it on.")
    reason: str | None = None


@strawberry.input
class CasesReassignInput:
    from_user_id: strawberry.ID
    to_user_id: strawberry.ID | None = strawberry.field(
        default=None, description="Without one, each case goes back to its pool."
    )
    reason: str | None = None


@strawberry.input
class AbsenceRecordInput:
    user_id: strawberry.ID | None = strawberry.field(default=None, description="Default: the caller.")
    starts_at: datetime
    ends_at: datetime
    replacement_id: strawberry.ID | None = None
    reason: str | None = None


@strawberry.input
class AbsenceEndInput:
    id: strawberry.ID


@strawberry.type
class AbsencePayload:
    absence: Absence | None = strawberry.field(default=None, description="None when a future absence was withdrawn.")
    errors: list[UserError] = strawberry.field(default_factory=list)

"""Queues: pools (administered by admins) and their members; taking, handing on and listing work;
absences; the live updates of a pool and of an agent's work."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from graphql import GraphQLError

from app import events
from app.models import OPEN_CASE_STATUSES
from app.pagination import page_size
from app.services import cases as case_service
from app.services import queues as service
from resolvers.mutation_helpers import mutate
from resolvers.subscriptions import After, _events
from schema.cases import Case, CasePayload
from schema.enums import CaseStatus
from schema.errors import UserError
from schema.ids import db_id, decode_id, optional_db_id
from schema.mail import auto_response_settings
from schema.pagination import Connection
from schema.permissions import allow
from schema.queues import (
    Absence,
    AbsenceEndInput,
    AbsencePayload,
    AbsenceRecordInput,
    CaseNextInput,
    CaseReleaseInput,
    CasesReassignInput,
    CaseTransferInput,
    MyWorkUpdate,
    Pool,
    PoolCounts,
    PoolCreateInput,
    PoolDeleteInput,
    PoolDeletePayload,
    PoolMember,
    PoolMemberPayload,
    PoolMemberRemoveInput,
    PoolMemberRemovePayload,
    PoolMemberSetInput,
    PoolPayload,
    PoolUpdateInput,
    QueueChange,
    QueueUpdate,
    WorkChange,
    WorkKind,
)


@strawberry.type
class CasesReassignPayload:
    cases: list[Case] = strawberry.field(default_factory=list, description="The cases handed on.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class PoolQuery:
    @strawberry.field(permission_classes=[allow("Query.pools")], description="Every pool, highest priority first.")
    async def pools(self, info: strawberry.Info) -> list[Pool]:
        async with info.context.runtime.reading() as session:
            return [Pool.from_row(p) for p in await service.list_pools(session)]


@strawberry.type
class PoolMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.poolCreate")])
    async def pool_create(self, info: strawberry.Info, input: PoolCreateInput) -> PoolPayload:
        return await mutate(
            info,
            PoolPayload,
            lambda session: service.create_pool(
                session,
                actor=info.context.actor,
                name=input.name,
                description=input.description,
                priority=input.priority,
                auto_response=auto_response_settings(input.auto_response),
                reply_status=input.reply_status.value if input.reply_status else None,
                reopen_within_days=input.reopen_within_days,
            ),
            lambda pool: {"pool": Pool.from_row(pool)},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.poolUpdate")])
    async def pool_update(self, info: strawberry.Info, input: PoolUpdateInput) -> PoolPayload:
        changes = {} if input.description is strawberry.UNSET else {"description": input.description}
        if input.auto_response is not strawberry.UNSET:
            changes["auto_response"] = auto_response_settings(input.auto_response)
        return await mutate(
            info,
            PoolPayload,
            lambda session: service.update_pool(
                session,
                actor=info.context.actor,
                pool_id=db_id(input.id, "Pool", "id"),
                name=input.name,
                priority=input.priority,
                reply_status=input.reply_status.value if input.reply_status else None,
                reopen_within_days=input.reopen_within_days,
                **changes,
            ),
            lambda pool: {"pool": Pool.from_row(pool)},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.poolDelete")],
        description="Remove a pool; its mailboxes stay, without a pool.",
    )
    async def pool_delete(self, info: strawberry.Info, input: PoolDeleteInput) -> PoolDeletePayload:
        return await mutate(
            info,
            PoolDeletePayload,
            lambda session: service.delete_pool(
                session, actor=info.context.actor, pool_id=db_id(input.id, "Pool", "id")
            ),
            lambda _: {"deleted_id": input.id},
        )


def _statuses(status: CaseStatus | None) -> tuple[str, ...]:
    return (status.value,) if status else OPEN_CASE_STATUSES


@strawberry.type
class WorkQuery:
    @strawberry.field(
        permission_classes=[allow("Query.myPools")],
        description="The pools the caller serves, in the order caseNext serves them.",
    )
    async def my_pools(self, info: strawberry.Info) -> list[PoolMember]:
        async with info.context.runtime.reading() as session:
            return [PoolMember.from_row(m) for m in await service.memberships(session, info.context.actor.user_id)]

    @strawberry.field(
        permission_classes=[allow("Query.myCases")],
        description="The caller's cases, newest first: the open ones unless a status is given.",
    )
    async def my_cases(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        status: CaseStatus | None = None,
    ) -> Connection[Case]:
        async with info.context.runtime.reading() as session:
            page = await case_service.list_cases(
                session,
                first=page_size(first),
                after=after,
                statuses=_statuses(status),
                assignee_id=info.context.actor.user_id or -1,
            )
        return Connection.from_page(page, Case.from_row)

    @strawberry.field(
        permission_classes=[allow("Query.coveredCases")],
        description="The open cases of the agents the caller replaces now, newest first.",
    )
    async def covered_cases(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[Case]:
        async with info.context.runtime.reading() as session:
            covered = await service.list_absences(session, replacement_id=info.context.actor.user_id, current=True)
            page = await case_service.list_cases(
                session,
                first=page_size(first),
                after=after,
                statuses=OPEN_CASE_STATUSES,
                assignee_ids=[absence.user_id for absence in covered],
            )
        return Connection.from_page(page, Case.from_row)

    @strawberry.field(
        permission_classes=[allow("Query.poolCases")],
        description="A pool's cases, newest first: the open ones unless a status is given; `waiting` "
        "only those waiting for an agent (true) or held by one (false).",
    )
    async def pool_cases(
        self,
        info: strawberry.Info,
        pool_id: strawberry.ID,
        first: int | None = None,
        after: str | None = None,
        status: CaseStatus | None = None,
        waiting: bool | None = None,
    ) -> Connection[Case]:
        pool = decode_id(pool_id, "Pool")
        async with info.context.runtime.reading() as session:
            if pool is None or not await service.may_see_pool(session, info.context.actor, pool):
                raise GraphQLError("no such pool among yours", extensions={"code": "NOT_FOUND"})
            page = await case_service.list_cases(
                session, first=page_size(first), after=after, statuses=_statuses(status), pool_id=pool, waiting=waiting
            )
        return Connection.from_page(page, Case.from_row)

    @strawberry.field(
        permission_classes=[allow("Query.absences")],
        description="Absences not yet over, soonest first: of one agent, or all of them.",
    )
    async def absences(
        self, info: strawberry.Info, user_id: strawberry.ID | None = None, current: bool = False
    ) -> list[Absence]:
        user = None if user_id is None else (decode_id(user_id, "User") or -1)
        async with info.context.runtime.reading() as session:
            return [Absence.from_row(a) for a in await service.list_absences(session, user_id=user, current=current)]


def _case_payload(row: Any) -> dict[str, Any]:
    return {"case": Case.from_row(row)}


@strawberry.type
class WorkMutation:
    @strawberry.mutation(
        permission_classes=[allow("Mutation.poolMemberSet")],
        description="Put an agent in a pool, or change the priority the pool has for them.",
    )
    async def pool_member_set(self, info: strawberry.Info, input: PoolMemberSetInput) -> PoolMemberPayload:
        return await mutate(
            info,
            PoolMemberPayload,
            lambda session: service.set_member(
                session,
                actor=info.context.actor,
                pool_id=db_id(input.pool_id, "Pool", "poolId"),
                user_id=db_id(input.user_id, "User", "userId"),
                priority=input.priority,
            ),
            lambda member: {"member": PoolMember.from_row(member)},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.poolMemberRemove")])
    async def pool_member_remove(self, info: strawberry.Info, input: PoolMemberRemoveInput) -> PoolMemberRemovePayload:
        return await mutate(
            info,
            PoolMemberRemovePayload,
            lambda session: service.remove_member(
                session,
                actor=info.context.actor,
                pool_id=db_id(input.pool_id, "Pool", "poolId"),
                user_id=db_id(input.user_id, "User", "userId"),
            ),
            lambda _: {"removed": True},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.caseNext")],
        description="Take the next case: the oldest waiting one of the caller's highest-priority pool "
        "that has one (the agent's priority for the pool, then the pool's). It is assigned to the "
        "caller and in progress. Null when nothing waits.",
    )
    async def case_next(self, info: strawberry.Info, input: CaseNextInput | None = None) -> CasePayload:
        pool_ids = None
        if input is not None and input.pool_ids is not None:
            pool_ids = [db_id(p, "Pool", f"poolIds.{i}") for i, p in enumerate(input.pool_ids)]

        return await mutate(
            info,
            CasePayload,
            lambda session: service.claim_next(session, actor=info.context.actor, pool_ids=pool_ids),
            lambda row: {"case": Case.from_row(row) if row else None},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.caseRelease")],
        description="Give a case back to its pool, where it waits again.",
    )
    async def case_release(self, info: strawberry.Info, input: CaseReleaseInput) -> CasePayload:
        return await mutate(
            info,
            CasePayload,
            lambda session: service.release_case(
                session, actor=info.context.actor, case_id=db_id(input.case_id, "Case", "caseId"), why=input.reason
            ),
            _case_payload,
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.caseTransfer")],
        description="Hand a case to another pool (where it waits) and/or to an agent.",
    )
    async def case_transfer(self, info: strawberry.Info, input: CaseTransferInput) -> CasePayload:
        return await mutate(
            info,
            CasePayload,
            lambda session: service.transfer_case(
                session,
                actor=info.context.actor,
                case_id=db_id(input.case_id, "Case", "caseId"),
                pool_id=optional_db_id(input.pool_id, "Pool", "poolId"),
                assignee_id=optional_db_id(input.assignee_id, "User", "assigneeId"),
                why=input.reason,
            ),
            _case_payload,
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.casesReassign")],
        description="Hand every open case of one agent to another, or back to their pools.",
    )
    async def cases_reassign(self, info: strawberry.Info, input: CasesReassignInput) -> CasesReassignPayload:
        async def reassign(session):
            moved = await service.reassign_cases(
                session,
                actor=info.context.actor,
                from_user_id=db_id(input.from_user_id, "User", "fromUserId"),
                to_user_id=optional_db_id(input.to_user_id, "User", "toUserId"),
                why=input.reason,
            )
            return [await case_service.read_case(session, case_id) for case_id in moved]

        return await mutate(
            info, CasesReassignPayload, reassign, lambda rows: {"cases": [Case.from_row(r) for r in rows]}
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.absenceRecord")],
        description="Record a period an agent is away and who covers their cases (a supervisor for another agent).",
    )
    async def absence_record(self, info: strawberry.Info, input: AbsenceRecordInput) -> AbsencePayload:
        user = info.context.actor.user_id if input.user_id is None else db_id(input.user_id, "User", "userId")
        return await mutate(
            info,
            AbsencePayload,
            lambda session: service.record_absence(
                session,
                actor=info.context.actor,
                user_id=user,
                starts_at=input.starts_at,
                ends_at=input.ends_at,
                replacement_id=optional_db_id(input.replacement_id, "User", "replacementId"),
                reason=input.reason,
            ),
            lambda absence: {"absence": Absence.from_row(absence)},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.absenceEnd")],
        description="End an absence now; one that has not started is withdrawn.",
    )
    async def absence_end(self, info: strawberry.Info, input: AbsenceEndInput) -> AbsencePayload:
        return await mutate(
            info,
            AbsencePayload,
            lambda session: service.end_absence(
                session, actor=info.context.actor, absence_id=db_id(input.id, "Absence", "id")
            ),
            lambda absence: {"absence": Absence.from_row(absence) if absence else None},
        )


# Every subscriber of a pool in this process gets one update per event, counted by one query; as a
# shared event (resolvers/subscriptions.py) it is executed once per document, variables and role.
_update_of_event: OrderedDict[str, asyncio.Future[QueueUpdate]] = OrderedDict()


async def _update_after(info: strawberry.Info, event: events.Event, pool_id: int) -> QueueUpdate:
    found = _update_of_event.get(event.id)
    if found is None:

        async def build() -> QueueUpdate:
            async with info.context.runtime.reading() as session:
                counts = await service.pool_counts(session, pool_id)
            return QueueUpdate(
                pool_id=pool_id,
                case_db_id=event.body["caseId"],
                change=QueueChange(event.body["change"]),
                counts=PoolCounts.of(counts),
            )

        found = _update_of_event[event.id] = asyncio.ensure_future(build())
        while len(_update_of_event) > 512:
            _update_of_event.popitem(last=False)
    return await asyncio.shield(found)


@strawberry.type
class WorkSubscription:
    @strawberry.subscription(
        permission_classes=[allow("Subscription.queueUpdated")],
        description="Each change to a pool the caller may see (an agent: a pool they serve), with its counts.",
    )
    async def queue_updated(
        self, info: strawberry.Info, pool_id: strawberry.ID, after: After = None
    ) -> AsyncGenerator[QueueUpdate, None]:
        pool = decode_id(pool_id, "Pool")
        async with info.context.runtime.reading() as session:
            if pool is None or not await service.may_see_pool(session, info.context.actor, pool):
                raise GraphQLError("no such pool among yours", extensions={"code": "NOT_FOUND"})
        async for event in _events(info, [events.channel("queueUpdated", pool)], after):
            yield await _update_after(info, event, pool)

    @strawberry.subscription(
        permission_classes=[allow("Subscription.myWorkUpdated")],
        description="Each change to the caller's work: a case assigned to or taken from them or whose status "
        "changed, a task of theirs created, changed or assigned.",
    )
    async def my_work_updated(self, info: strawberry.Info, after: After = None) -> AsyncGenerator[MyWorkUpdate, None]:
        channel = events.channel(service.WORK_TOPIC, info.context.actor.user_id or 0)
        async for event in _events(info, [channel], after):
            yield MyWorkUpdate(
                kind=WorkKind(event.body["kind"]),
                change=WorkChange(event.body["change"]),
                case_db_id=event.body.get("caseId"),
                task_db_id=event.body.get("taskId"),
            )

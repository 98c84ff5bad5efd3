"""Reason codes: the list agents pick from, kept by supervisors."""

from __future__ import annotations

import strawberry

from app.services import reasons as service
from resolvers.mutation_helpers import mutate
from schema.enums import StatusCategory
from schema.ids import db_id
from schema.permissions import allow
from schema.reasons import (
    ReasonCode,
    ReasonCodeCreateInput,
    ReasonCodeDeleteInput,
    ReasonCodeDeletePayload,
    ReasonCodePayload,
    ReasonCodeUpdateInput,
)


@strawberry.type
class ReasonCodeQuery:
    @strawberry.field(
        permission_classes=[allow("Query.reasonCodes")],
        description="Reason codes in the order agents see them; active ones unless includeInactive.",
    )
    async def reason_codes(
        self, info: strawberry.Info, category: StatusCategory | None = None, include_inactive: bool = False
    ) -> list[ReasonCode]:
        async with info.context.runtime.reading() as session:
            rows = await service.list_reason_codes(
                session, category=category.value if category else None, include_inactive=include_inactive
            )
        return [ReasonCode.from_row(r) for r in rows]


@strawberry.type
class ReasonCodeMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.reasonCodeCreate")])
    async def reason_code_create(self, info: strawberry.Info, input: ReasonCodeCreateInput) -> ReasonCodePayload:
        return await mutate(
            info,
            ReasonCodePayload,
            lambda session: service.create_reason_code(
                session,
                actor=info.context.actor,
                code=input.code,
                description=input.description,
                category=input.category.value,
                active=input.active,
                position=input.position,
            ),
            lambda row: {"reason_code": ReasonCode.from_row(row)},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.reasonCodeUpdate")],
        description="Change a reason code; cases keep its code and read its new description.",
    )
    async def reason_code_update(self, info: strawberry.Info, input: ReasonCodeUpdateInput) -> ReasonCodePayload:
        return await mutate(
            info,
            ReasonCodePayload,
            lambda session: service.update_reason_code(
                session,
                actor=info.context.actor,
                reason_code_id=db_id(input.id, "ReasonCode", "id"),
                description=input.description,
                category=input.category.value if input.category else None,
                active=input.active,
                position=input.position,
            ),
            lambda row: {"reason_code": ReasonCode.from_row(row)},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.reasonCodeDelete")],
        description="Delete a reason code no case holds (IN_USE otherwise: deactivate it).",
    )
    async def reason_code_delete(self, info: strawberry.Info, input: ReasonCodeDeleteInput) -> ReasonCodeDeletePayload:
        return await mutate(
            info,
            ReasonCodeDeletePayload,
            lambda session: service.delete_reason_code(
                session, actor=info.context.actor, reason_code_id=db_id(input.id, "ReasonCode", "id")
            ),
            lambda _: {"deleted_id": input.id},
        )

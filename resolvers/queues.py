"""Queues: pools (administered by admins)."""

from __future__ import annotations

import strawberry

from app.services import queues as service
from resolvers.mutation_helpers import mutate
from schema.ids import db_id
from schema.mail import auto_response_settings
from schema.permissions import allow
from schema.queues import Pool, PoolCreateInput, PoolDeleteInput, PoolDeletePayload, PoolPayload, PoolUpdateInput


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

"""Users and API tokens, administered through the API."""

from __future__ import annotations

import strawberry

from app.pagination import page_size
from app.services import auth as service
from resolvers.mutation_helpers import mutate
from schema.auth import (
    ApiToken,
    TokenCreateInput,
    TokenCreatePayload,
    TokenFilter,
    TokenPayload,
    TokenRevokeInput,
    User,
    UserCreateInput,
    UserDeactivateInput,
    UserFilter,
    UserPayload,
    UserUpdateInput,
)
from schema.ids import db_id, optional_db_id
from schema.pagination import Connection
from schema.permissions import allow


@strawberry.type
class AuthQuery:
    @strawberry.field(permission_classes=[allow("Query.users")], description="Users in the order they were created.")
    async def users(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        filter: UserFilter | None = None,
    ) -> Connection[User]:
        f = filter or UserFilter()
        async with info.context.runtime.reading() as session:
            page = await service.list_users(session, first=page_size(first), after=after, active=f.active)
        return Connection.from_page(page, User.from_row)

    @strawberry.field(
        permission_classes=[allow("Query.tokens")], description="API tokens, newest first, without secrets."
    )
    async def tokens(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        filter: TokenFilter | None = None,
    ) -> Connection[ApiToken]:
        f = filter or TokenFilter()
        user_id = optional_db_id(f.user_id, "User", "filter.userId")
        async with info.context.runtime.reading() as session:
            page = await service.list_tokens(
                session, first=page_size(first), after=after, user_id=user_id, revoked=f.revoked
            )
        return Connection.from_page(page, ApiToken.from_row)


@strawberry.type
class AuthMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.userCreate")])
    async def user_create(self, info: strawberry.Info, input: UserCreateInput) -> UserPayload:
        return await mutate(
            info,
            UserPayload,
            lambda session: service.create_user(
                session, actor=info.context.actor, name=input.name, role=input.role.value, email=input.email
            ),
            lambda row: {"user": User.from_row(row)},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.userUpdate")],
        description="Change a user's name, email or role; a role change closes the user's open WebSockets.",
    )
    async def user_update(self, info: strawberry.Info, input: UserUpdateInput) -> UserPayload:
        return await mutate(
            info,
            UserPayload,
            lambda session: service.update_user(
                session,
                actor=info.context.actor,
                user_id=db_id(input.id, "User", "id"),
                name=input.name,
                email=input.email,
                role=input.role.value if input.role else None,
            ),
            lambda row: {"user": User.from_row(row)},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.userDeactivate")],
        description="Deactivate a user: its tokens stop working on every API process and its WebSockets close.",
    )
    async def user_deactivate(self, info: strawberry.Info, input: UserDeactivateInput) -> UserPayload:
        return await mutate(
            info,
            UserPayload,
            lambda session: service.deactivate_user(
                session, actor=info.context.actor, user_id=db_id(input.id, "User", "id")
            ),
            lambda row: {"user": User.from_row(row)},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.tokenCreate")],
        description="Create a token for a user; the payload's secret is shown this once only.",
    )
    async def token_create(self, info: strawberry.Info, input: TokenCreateInput) -> TokenCreatePayload:
        return await mutate(
            info,
            TokenCreatePayload,
            lambda session: service.issue_token(
                session, actor=info.context.actor, user_id=db_id(input.user_id, "User", "userId"), name=input.name
            ),
            lambda created: {"token": ApiToken.from_row(created[0]), "secret": created[1]},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.tokenRevoke")],
        description="Revoke a token: it stops working on every API process within a second and its WebSockets close.",
    )
    async def token_revoke(self, info: strawberry.Info, input: TokenRevokeInput) -> TokenPayload:
        return await mutate(
            info,
            TokenPayload,
            lambda session: service.revoke_token(
                session, actor=info.context.actor, token_id=db_id(input.id, "ApiToken", "id")
            ),
            lambda row: {"token": ApiToken.from_row(row)},
        )

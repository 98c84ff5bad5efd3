"""Users and API tokens as the graph shows them, their inputs and payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from schema.enums import Role
from schema.errors import UserError
from schema.node import Node, load_user


@strawberry.type
class User(Node):
    db_id: strawberry.Private[int]
    name: str
    email: str | None = strawberry.field(description="Lower-cased; the THREAD rule recognises the user replying by it.")
    role: Role
    active: bool
    signature: str | None = strawberry.field(
        description="Appended to the user's email replies (plain text); see userSignatureSet."
    )
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> User:
        return super().from_row(row, role=Role(row.role))


@strawberry.type(description="An API token; its secret is shown once, when it is created, and never stored.")
class ApiToken(Node):
    db_id: strawberry.Private[int]
    user_id: strawberry.Private[int]
    name: str
    created_at: datetime
    last_used_at: datetime | None = strawberry.field(description="Updated at most once a minute.")
    revoked_at: datetime | None

    @strawberry.field
    async def user(self, info: strawberry.Info) -> User:
        return await load_user(info, self.user_id)


@strawberry.input
class UserFilter:
    active: bool | None = strawberry.field(default=None, description="Only active (true) or deactivated (false) users.")


@strawberry.input
class UserCreateInput:
    name: str
    role: Role
    email: str | None = None


@strawberry.input
class UserUpdateInput:
    id: strawberry.ID
    name: str | None = None
    email: str | None = strawberry.field(default=None, description="An empty string removes the email.")
    role: Role | None = None


@strawberry.input
class UserDeactivateInput:
    id: strawberry.ID


@strawberry.type
class UserPayload:
    user: User | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class TokenFilter:
    user_id: strawberry.ID | None = None
    revoked: bool | None = None


@strawberry.input
class TokenCreateInput:
    user_id: strawberry.ID
    name: str | None = strawberry.field(default=None, description="What the token is for; the user's name if unset.")


@strawberry.input
class TokenRevokeInput:
    id: strawberry.ID


@strawberry.type
class TokenCreatePayload:
    token: ApiToken | None = None
    secret: str | None = strawberry.field(default=None, description="The token itself: shown this once only.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class TokenPayload:
    token: ApiToken | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class UserSignatureSetInput:
    user_id: strawberry.ID | None = strawberry.field(
        default=None, description="Whose signature; your own by default. Agents may only set their own."
    )
    signature: str | None = strawberry.field(description="Plain text; null or blank removes it.")

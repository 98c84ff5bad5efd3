"""Queues: pools."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from schema.errors import UserError
from schema.mail import AutoResponse, AutoResponseInput
from schema.node import Node


@strawberry.type(description="A themed queue that mailboxes feed and agents serve.")
class Pool(Node):
    db_id: strawberry.Private[int]
    name: str
    description: str | None
    priority: int = strawberry.field(description="Higher is served first.")
    auto_response: AutoResponse | None = strawberry.field(
        description="The receipt its mailboxes send, unless one has its own."
    )
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Pool:
        return super().from_row(row, auto_response=AutoResponse.of(row))


@strawberry.input
class PoolCreateInput:
    name: str
    description: str | None = None
    priority: int = 0
    auto_response: AutoResponseInput | None = None


@strawberry.input
class PoolUpdateInput:
    id: strawberry.ID
    name: str | None = None
    description: str | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    priority: int | None = None
    auto_response: AutoResponseInput | None = strawberry.field(default=strawberry.UNSET, description="null removes it.")


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

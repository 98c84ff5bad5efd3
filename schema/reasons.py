"""Reason codes and the inputs and payloads of keeping them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from schema.enums import StatusCategory
from schema.errors import UserError
from schema.node import Node


@strawberry.type(description="Why a case is in its status: a code of one status category, picked by agents.")
class ReasonCode(Node):
    db_id: strawberry.Private[int]
    code: str = strawberry.field(description="The key cases store; it never changes.")
    description: str = strawberry.field(description="What agents and reports read; renaming it renames it everywhere.")
    category: StatusCategory = strawberry.field(description="The status category it explains.")
    active: bool = strawberry.field(description="Whether agents can still pick it.")
    position: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> ReasonCode:
        return super().from_row(row, category=StatusCategory(row.category))


@strawberry.input
class ReasonCodeCreateInput:
    code: str
    description: str
    category: StatusCategory
    active: bool = True
    position: int | None = strawberry.field(default=None, description="Last when left out.")


@strawberry.input
class ReasonCodeUpdateInput:
    id: strawberry.ID
    description: str | None = None
    category: StatusCategory | None = strawberry.field(default=None, description="Only while no case holds the code.")
    active: bool | None = None
    position: int | None = None


@strawberry.input
class ReasonCodeDeleteInput:
    id: strawberry.ID


@strawberry.type
class ReasonCodePayload:
    reason_code: ReasonCode | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ReasonCodeDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)

"""Customers: inputs, payloads, merges and likely duplicates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from app.models import FIELD_STRATEGIES
from schema.enums import CustomerStatus, IdentifierKind, values_enum
from schema.errors import UserError
from schema.types import Customer, CustomerIdentifier, Node, load_customer, load_customers

FieldStrategy = values_enum("FieldStrategy", FIELD_STRATEGIES)


@strawberry.input
class IdentifierInput:
    kind: IdentifierKind
    value: str


@strawberry.input
class CustomerCreateInput:
    name: str | None = None
    emails: list[str] = strawberry.field(default_factory=list)
    phones: list[str] = strawberry.field(default_factory=list)
    account_ids: list[str] = strawberry.field(default_factory=list)
    fields: JSON | None = None


@strawberry.input
class CustomerUpdateInput:
    id: strawberry.ID
    name: str | None = None
    fields: JSON | None = strawberry.field(default=None, description="Merged into the existing custom fields.")


@strawberry.input
class CustomerIdentifierAddInput:
    customer_id: strawberry.ID
    kind: IdentifierKind
    value: str


@strawberry.input
class CustomerIdentifierRemoveInput:
    id: strawberry.ID


@strawberry.input
class CustomerFilter:
    search: str | None = strawberry.field(default=None, description="Part of the name, case-insensitive.")
    identifier: IdentifierInput | None = None
    status: CustomerStatus | None = None


@strawberry.input
class FieldPickInput:
    field: str = strawberry.field(description='"name" or "fields.<key>".')
    customer_id: strawberry.ID = strawberry.field(description="The survivor or a duplicate to take the value from.")


@strawberry.input
class CustomerMergeInput:
    survivor_id: strawberry.ID
    duplicate_ids: list[strawberry.ID]
    field_strategy: FieldStrategy = FieldStrategy.SURVIVOR_WINS
    field_picks: list[FieldPickInput] = strawberry.field(default_factory=list)


@strawberry.input
class CustomerMergeUndoInput:
    merge_id: strawberry.ID


@strawberry.type(description="One customer merge, from its journal; undoable once.")
class CustomerMerge(Node):
    db_id: strawberry.Private[int]
    survivor_id: strawberry.Private[int]
    duplicate_ids: strawberry.Private[list[int]]
    field_strategy: str
    moved: JSON = strawberry.field(description="How many rows of each kind moved or were deduplicated.")
    actor_name: str
    created_at: datetime
    undone_at: datetime | None
    undone_by: str | None

    @classmethod
    def from_row(cls, row: Any) -> CustomerMerge:
        return super().from_row(
            row, duplicate_ids=list(row.duplicate_ids), field_strategy=row.field_strategy.upper(), moved=row.counts
        )

    @strawberry.field
    async def survivor(self, info: strawberry.Info) -> Customer | None:
        return await load_customer(info, self.survivor_id)

    @strawberry.field
    async def duplicates(self, info: strawberry.Info) -> list[Customer]:
        return await load_customers(info, self.duplicate_ids)


@strawberry.type
class DuplicateCandidate:
    customer_id: strawberry.Private[int]
    score: float = strawberry.field(description="0..1: shared identifiers weigh most, then name similarity.")
    reasons: list[str]

    @strawberry.field
    async def customer(self, info: strawberry.Info) -> Customer | None:
        return await load_customer(info, self.customer_id)


@strawberry.type
class CustomerPayload:
    customer: Customer | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CustomerIdentifierPayload:
    identifier: CustomerIdentifier | None = None
    customer: Customer | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CustomerMergePayload:
    merge: CustomerMerge | None = None
    survivor: Customer | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)

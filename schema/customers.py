"""Customers and their identifiers, their inputs and payloads, merges and likely duplicates."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from app.models import FIELD_STRATEGIES
from schema.enums import Channel, CustomerStatus, IdentifierKind, values_enum
from schema.errors import UserError
from schema.node import Node, load_customer, load_customers
from schema.pagination import Connection
from schema.permissions import allow
from schema.tasks import Task, TaskStatus, tasks_connection

if TYPE_CHECKING:
    from schema.cases import Case
    from schema.contacts import Contact

FieldStrategy = values_enum("FieldStrategy", FIELD_STRATEGIES)


@strawberry.type
class CustomerIdentifier(Node):
    db_id: strawberry.Private[int]
    kind: IdentifierKind
    value: str

    @classmethod
    def from_row(cls, row: Any) -> CustomerIdentifier:
        return super().from_row(row, kind=IdentifierKind(row.kind))


@strawberry.type
class Customer(Node):
    db_id: strawberry.Private[int]
    merged_into_id: strawberry.Private[int | None]
    number: str
    name: str | None
    status: CustomerStatus
    fields: JSON
    last_activity_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Customer:
        return super().from_row(row, status=CustomerStatus(row.status))

    @strawberry.field
    async def identifiers(self, info: strawberry.Info) -> list[CustomerIdentifier]:
        rows = await info.context.loaders.identifiers_by_customer.load(self.db_id)
        return [CustomerIdentifier.from_row(r) for r in rows]

    @strawberry.field(
        permission_classes=[allow("Customer.cases")], description="The cases concerning this customer, newest first."
    )
    async def cases(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Case, strawberry.lazy("schema.cases")]]:
        from schema.cases import Case  # cases refer to customers: imported when first used

        page = await info.context.loaders.customer_cases_page(self.db_id, first, after)
        return Connection.from_page(page, Case.from_row)

    @strawberry.field(
        permission_classes=[allow("Customer.openCases")],
        description="The cases of this customer not yet resolved or closed (nor archived), newest first.",
    )
    async def open_cases(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Case, strawberry.lazy("schema.cases")]]:
        from schema.cases import Case

        page = await info.context.loaders.customer_cases_page(self.db_id, first, after, open_only=True)
        return Connection.from_page(page, Case.from_row)

    @strawberry.field(
        permission_classes=[allow("Customer.latestContact")],
        description="The customer's most recent contact on any channel.",
    )
    async def latest_contact(
        self, info: strawberry.Info
    ) -> Annotated[Contact, strawberry.lazy("schema.contacts")] | None:
        from schema.contacts import Contact

        row = await info.context.loaders.latest_contact(self.db_id)
        return Contact.from_row(row) if row else None

    @strawberry.field(
        permission_classes=[allow("Customer.contacts")],
        description="The unified contact history: every contact of this customer across all cases, newest first.",
    )
    async def contacts(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        channel: Channel | None = None,
    ) -> Connection[Annotated[Contact, strawberry.lazy("schema.contacts")]]:
        from schema.contacts import Contact  # contacts refer to customers: imported when first used

        page = await info.context.loaders.customer_contacts_page(
            self.db_id, first, after, channel.value if channel else None
        )
        return Connection.from_page(page, Contact.from_row)

    @strawberry.field(
        permission_classes=[allow("Customer.tasks")],
        description="The tasks on this customer, soonest due first (undated last).",
    )
    async def tasks(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        status: TaskStatus | None = None,
    ) -> Connection[Task]:
        return await tasks_connection(info, "customer", self.db_id, first, after, status)

    @strawberry.field(description="For a merged customer: the customer it now lives on.")
    async def merged_into(self, info: strawberry.Info) -> Customer | None:
        return await load_customer(info, self.merged_into_id)


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
    if_no_duplicates: bool = strawberry.field(
        default=False,
        description="Create nothing when a customer with the same email, phone or account id exists "
        "(a POSSIBLE_DUPLICATE error naming them).",
    )


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
    possible_duplicates: list[DuplicateCandidate] = strawberry.field(
        default_factory=list,
        description="customerCreate: existing customers with the same email, phone or account id, best first.",
    )
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

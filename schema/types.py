"""The object types of the graph. Nested fields load through the request's DataLoaders."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from functools import cache
from typing import Any

import strawberry
from strawberry.scalars import JSON

from schema.enums import CaseStatus, Channel, CustomerStatus, Direction, IdentifierKind, Priority, Role
from schema.ids import to_global_id
from schema.pagination import Connection


@strawberry.interface(description="An object with a global id.")
class Node:
    id: strawberry.ID

    @classmethod
    def from_row(cls, row: Any, **values: Any) -> Any:
        """The object of a database row: its global id, and each field from the column of the same name
        unless given in `values` (enums, renamed fields)."""
        columns = {name: getattr(row, name) for name in _column_fields(cls) if name not in values}
        return cls(id=to_global_id(cls.__name__, row.id), db_id=row.id, **columns, **values)


@cache
def _column_fields(cls: type) -> tuple[str, ...]:
    # Fields with a resolver are not constructor arguments.
    return tuple(f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("id", "db_id"))


@strawberry.type
class User(Node):
    db_id: strawberry.Private[int]
    name: str
    role: Role

    @classmethod
    def from_row(cls, row: Any) -> User:
        return super().from_row(row, role=Role(row.role))


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

    @strawberry.field(description="The cases concerning this customer, newest first.")
    async def cases(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[Case]:
        page = await info.context.loaders.customer_cases_page(self.db_id, first, after)
        return Connection.from_page(page, Case.from_row)

    @strawberry.field(
        description="The unified contact history: every contact of this customer across all cases, newest first."
    )
    async def contacts(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        channel: Channel | None = None,
    ) -> Connection[Contact]:
        page = await info.context.loaders.customer_contacts_page(
            self.db_id, first, after, channel.value if channel else None
        )
        return Connection.from_page(page, Contact.from_row)

    @strawberry.field(description="For a merged customer: the customer it now lives on.")
    async def merged_into(self, info: strawberry.Info) -> Customer | None:
        return await load_customer(info, self.merged_into_id)


@strawberry.type
class Case(Node):
    db_id: strawberry.Private[int]
    parent_id: strawberry.Private[int | None]
    assignee_id: strawberry.Private[int | None]
    merged_into_id: strawberry.Private[int | None]
    reference: str
    subject: str
    description: str | None
    status: CaseStatus
    reason_code: str | None
    priority: Priority
    severity: str | None
    fields: JSON
    archived_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Case:
        return super().from_row(row, status=CaseStatus(row.status), priority=Priority(row.priority))

    @strawberry.field(description="Every customer this case concerns, the primary one first.")
    async def customers(self, info: strawberry.Info) -> list[Customer]:
        links = await info.context.loaders.case_links.load(self.db_id)
        return await load_customers(info, [link.customer_id for link in links])

    @strawberry.field
    async def primary_customer(self, info: strawberry.Info) -> Customer | None:
        links = await info.context.loaders.case_links.load(self.db_id)
        primary = next((link.customer_id for link in links if link.is_primary), None)
        return await load_customer(info, primary)

    @strawberry.field(description="The contacts on this case, newest first.")
    async def contacts(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[Contact]:
        page = await info.context.loaders.case_contacts_page(self.db_id, first, after)
        return Connection.from_page(page, Contact.from_row)

    @strawberry.field
    async def parent(self, info: strawberry.Info) -> Case | None:
        return await load_case(info, self.parent_id)

    @strawberry.field
    async def assignee(self, info: strawberry.Info) -> User | None:
        return await load_user(info, self.assignee_id)

    @strawberry.field(description="For a merged case: the case it was merged into.")
    async def merged_into(self, info: strawberry.Info) -> Case | None:
        return await load_case(info, self.merged_into_id)


@strawberry.type
class Contact(Node):
    db_id: strawberry.Private[int]
    customer_id: strawberry.Private[int | None]
    case_id: strawberry.Private[int | None]
    agent_id: strawberry.Private[int | None]
    candidate_ids: strawberry.Private[list[int]]
    channel: Channel
    direction: Direction
    occurred_at: datetime
    subject: str | None
    text: str | None
    html: str | None = strawberry.field(description="Sanitised HTML body.")
    from_: str | None = strawberry.field(name="from")
    to: list[str]
    headers: JSON
    source: str | None
    external_id: str | None
    payload: JSON
    needs_review: bool
    recognition: JSON | None = strawberry.field(description="How the contact was recognised: each rule tried and why.")
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Contact:
        return super().from_row(
            row,
            candidate_ids=list(getattr(row, "candidate_customer_ids", None) or []),
            channel=Channel(row.channel),
            direction=Direction(row.direction),
            from_=row.from_address,
            to=row.to_addresses,
        )

    @strawberry.field
    def customer(self, info: strawberry.Info) -> Customer | None:
        return _load(info.context.loaders.customer, self.customer_id)

    @strawberry.field
    def case(self, info: strawberry.Info) -> Case | None:
        return _load(info.context.loaders.case, self.case_id)

    @strawberry.field
    def agent(self, info: strawberry.Info) -> User | None:
        return _load(info.context.loaders.user, self.agent_id)

    @strawberry.field(
        description="When several customers share the sender's identifier: the profiles an agent chooses from."
    )
    async def candidates(self, info: strawberry.Info) -> list[Customer]:
        return await load_customers(info, self.candidate_ids)


# The by-id loaders return these types directly (one conversion per row, not per reference).
# Sync field resolvers hand graphql-core the loader's future: no coroutine per list item.


def _load(loader: Any, db_id: int | None) -> Any:
    return None if db_id is None else loader.load(db_id)


async def load_customer(info: strawberry.Info, customer_id: int | None) -> Customer | None:
    return None if customer_id is None else await info.context.loaders.customer.load(customer_id)


async def load_customers(info: strawberry.Info, customer_ids: list[int]) -> list[Customer]:
    return [c for c in await info.context.loaders.customer.load_many(customer_ids) if c is not None]


async def load_case(info: strawberry.Info, case_id: int | None) -> Case | None:
    return None if case_id is None else await info.context.loaders.case.load(case_id)


async def load_contact(info: strawberry.Info, contact_id: int | None) -> Contact | None:
    return None if contact_id is None else await info.context.loaders.contact.load(contact_id)


async def load_user(info: strawberry.Info, user_id: int | None) -> User | None:
    return None if user_id is None else await info.context.loaders.user.load(user_id)


# Shared resolvers for payloads that carry a recognised customer, case and candidate customers by id.


async def customer_of(root: Any, info: strawberry.Info) -> Customer | None:
    return await load_customer(info, root.customer_id)


async def case_of(root: Any, info: strawberry.Info) -> Case | None:
    return await load_case(info, root.case_id)


async def candidates_of(root: Any, info: strawberry.Info) -> list[Customer]:
    return await load_customers(info, root.candidate_ids)

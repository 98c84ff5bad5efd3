from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from schema.enums import CaseStatus, Channel, CustomerStatus, Direction, IdentifierKind, Priority


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
class CaseCreateInput:
    subject: str
    customer_ids: list[strawberry.ID] = strawberry.field(description="The first customer is the primary one.")
    description: str | None = None
    priority: Priority = Priority.NORMAL
    severity: str | None = None
    fields: JSON | None = None
    parent_id: strawberry.ID | None = None


@strawberry.input
class CaseUpdateInput:
    id: strawberry.ID
    subject: str | None = None
    description: str | None = None
    status: CaseStatus | None = None
    priority: Priority | None = None
    severity: str | None = None
    fields: JSON | None = None
    assignee_id: strawberry.ID | None = None
    parent_id: strawberry.ID | None = None


@strawberry.input
class CaseFilter:
    status: CaseStatus | None = None
    customer_id: strawberry.ID | None = None
    assignee_id: strawberry.ID | None = None


@strawberry.input
class ContactCreateInput:
    channel: Channel
    direction: Direction
    occurred_at: datetime | None = None
    customer_id: strawberry.ID | None = None
    case_id: strawberry.ID | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    from_: str | None = strawberry.field(default=None, name="from")
    to: list[str] = strawberry.field(default_factory=list)
    headers: JSON | None = None
    external_id: str | None = strawberry.field(default=None, description="Idempotency key: a repeat returns the first contact.")
    payload: JSON | None = None

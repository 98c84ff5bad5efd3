"""Contacts: inputs and payloads of logging, ingesting, associating, moving and splitting contacts."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from schema.enums import Channel, Direction, Priority
from schema.errors import UserError
from schema.types import Case, Contact, Customer, candidates_of, case_of, customer_of


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


@strawberry.input
class ContactIngestInput:
    source: str = strawberry.field(description="The integrator's system, e.g. 'telephony'.")
    external_id: str = strawberry.field(description="Idempotency key within the source: a repeat returns the first contact.")
    channel: Channel
    direction: Direction = Direction.INBOUND
    occurred_at: datetime | None = None
    from_: str | None = strawberry.field(default=None, name="from")
    to: list[str] = strawberry.field(default_factory=list)
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    headers: JSON | None = None
    payload: JSON | None = None


@strawberry.input(
    description="A customer and/or a case for a contact. Given only a customer who is not on the contact's case, "
    "the contact leaves that case."
)
class ContactAssociateInput:
    contact_id: strawberry.ID
    customer_id: strawberry.ID | None = None
    case_id: strawberry.ID | None = None


@strawberry.input
class ContactMoveInput:
    contact_ids: list[strawberry.ID]
    to_case_id: strawberry.ID


@strawberry.input
class CaseCreateFromContactInput:
    contact_id: strawberry.ID
    subject: str
    customer_id: strawberry.ID | None = strawberry.field(default=None, description="Defaults to the contact's customer.")
    description: str | None = None
    priority: Priority = Priority.NORMAL


@strawberry.type
class ContactPayload:
    contact: Contact | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ContactsPayload:
    contacts: list[Contact] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CaseFromContactPayload:
    case: Case | None = None
    contact: Contact | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ContactIngestPayload:
    contact: Contact | None = None
    duplicate: bool = strawberry.field(default=False, description="The (source, externalId) was already ingested: this is the first contact, nothing was created.")
    customer_created: bool = False
    case_created: bool = False
    errors: list[UserError] = strawberry.field(default_factory=list)
    customer_id: strawberry.Private[int | None] = None
    case_id: strawberry.Private[int | None] = None
    candidate_ids: strawberry.Private[list[int]] = strawberry.field(default_factory=list)

    customer: Customer | None = strawberry.field(resolver=customer_of)
    case: Case | None = strawberry.field(resolver=case_of)
    candidates: list[Customer] = strawberry.field(
        resolver=candidates_of, description="Customers sharing the sender's identifier, when there was no single match."
    )

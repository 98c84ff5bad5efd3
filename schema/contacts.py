"""Contacts, and the inputs and payloads of logging, ingesting, associating, moving and splitting them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from schema.auth import User
from schema.cases import Case
from schema.customers import Customer
from schema.enums import Channel, Direction, Priority
from schema.errors import UserError
from schema.node import Node, load_case, load_customer, load_customers, load_later

if TYPE_CHECKING:
    from schema.mail import Delivery


@strawberry.type(
    description="A file that came with a contact; its content is stored once however many contacts carry it."
)
class Attachment(Node):
    db_id: strawberry.Private[int]
    filename: str | None
    content_type: str
    size: int = strawberry.field(description="In bytes.")
    inline: bool = strawberry.field(description="Shown in the body (an inline image) rather than attached.")
    content_id: str | None = strawberry.field(description="The Content-ID an HTML body refers to it by (cid:).")

    @strawberry.field(description="Where to download it, with the same bearer token as the API.")
    def url(self) -> str:
        return f"/attachments/{self.id}"

    @classmethod
    def from_row(cls, row: Any) -> Attachment:
        return super().from_row(row)


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
        return load_later(info.context.loaders.customer, self.customer_id)

    @strawberry.field
    def case(self, info: strawberry.Info) -> Case | None:
        return load_later(info.context.loaders.case, self.case_id)

    @strawberry.field
    def agent(self, info: strawberry.Info) -> User | None:
        return load_later(info.context.loaders.user, self.agent_id)

    @strawberry.field(description="An outgoing email's delivery; null for anything else.")
    def delivery(self, info: strawberry.Info) -> Annotated[Delivery, strawberry.lazy("schema.mail")] | None:
        return info.context.loaders.delivery_by_contact.load(self.db_id)

    @strawberry.field(description="Files that came with the contact (email attachments and inline images).")
    def attachments(self, info: strawberry.Info) -> list[Attachment]:
        return info.context.loaders.attachments_by_contact.load(self.db_id)

    @strawberry.field(
        description="When several customers share the sender's identifier: the profiles an agent chooses from."
    )
    async def candidates(self, info: strawberry.Info) -> list[Customer]:
        return await load_customers(info, self.candidate_ids)


# Resolvers shared by the payloads that carry a recognised customer, case and candidate customers by id.


async def customer_of(root: Any, info: strawberry.Info) -> Customer | None:
    return await load_customer(info, root.customer_id)


async def case_of(root: Any, info: strawberry.Info) -> Case | None:
    return await load_case(info, root.case_id)


async def candidates_of(root: Any, info: strawberry.Info) -> list[Customer]:
    return await load_customers(info, root.candidate_ids)


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
    external_id: str | None = strawberry.field(
        default=None, description="Idempotency key of the caller: the same caller's repeat returns its first contact."
    )
    payload: JSON | None = None


@strawberry.input
class ContactIngestInput:
    source: str = strawberry.field(description="The integrator's system, e.g. 'telephony'.")
    external_id: str = strawberry.field(
        description="Idempotency key within the source: a repeat returns the first contact."
    )
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
    customer_id: strawberry.ID | None = strawberry.field(
        default=None, description="Defaults to the contact's customer."
    )
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
    duplicate: bool = strawberry.field(
        default=False,
        description="The (source, externalId) was already ingested: this is the first contact, nothing was created.",
    )
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


@strawberry.input(description="Up to 500 contacts ingested in one call, in order.")
class ContactIngestBatchInput:
    contacts: list[ContactIngestInput]


@strawberry.type(
    description="One result per contact, in the order sent: each as contactIngest would answer it "
    "(its own errors when its input is refused; the others are ingested all the same)."
)
class ContactIngestBatchPayload:
    results: list[ContactIngestPayload] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)

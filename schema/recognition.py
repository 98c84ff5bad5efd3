"""Recognition: rules, promotion rules, no-match policies, ingest and preview."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from app.recognition.config import masked
from schema.enums import Channel, Direction
from schema.errors import UserError
from schema.ids import to_global_id
from schema.types import Case, Contact, Customer, Node, load_case, load_customer, load_customers


@strawberry.enum(description="Whether a rule recognises the contact's case or its customer.")
class RecognitionTarget(Enum):
    CASE = "case"
    CUSTOMER = "customer"


@strawberry.enum
class RecognitionRuleKind(Enum):
    REFERENCE_IN_TEXT = "reference_in_text"
    THREAD = "thread"
    EXTERNAL_REFERENCE = "external_reference"
    OPEN_CASE_OF_CUSTOMER = "open_case_of_customer"
    IDENTIFIER = "identifier"
    FIELD_MATCH = "field_match"
    LOOKUP = "lookup"


@strawberry.enum
class PromotionPolicy(Enum):
    FILL_EMPTY = "fill_empty"
    OVERWRITE = "overwrite"
    ADD_IDENTIFIER = "add_identifier"


@strawberry.type(description="One way of recognising a contact's case or customer; rules are tried in position order.")
class RecognitionRule(Node):
    db_id: strawberry.Private[int]
    name: str
    target: RecognitionTarget
    kind: RecognitionRuleKind
    config: JSON = strawberry.field(description="Kind-specific settings; a connector's shared secret is shown masked.")
    position: int
    channels: list[Channel] = strawberry.field(description="The channels it applies to; empty means all.")
    enabled: bool

    @classmethod
    def from_row(cls, row: Any) -> "RecognitionRule":
        return cls(
            id=to_global_id("RecognitionRule", row.id), db_id=row.id, name=row.name,
            target=RecognitionTarget(row.target), kind=RecognitionRuleKind(row.kind), config=masked(row.config),
            position=row.position, channels=[Channel(c) for c in row.channels], enabled=row.enabled,
        )


@strawberry.type(description="Copies contact data (a field or payload path) to the customer or the case.")
class PromotionRule(Node):
    db_id: strawberry.Private[int]
    name: str
    source: str = strawberry.field(description="from, to, subject, text, payload.<path>, headers.<name> or lookup.<path>.")
    target: RecognitionTarget
    field: str = strawberry.field(description="'fields.<key>', the customer's 'name' or the case's 'subject'; for ADD_IDENTIFIER an identifier kind.")
    policy: PromotionPolicy
    position: int
    channels: list[Channel]
    enabled: bool

    @classmethod
    def from_row(cls, row: Any) -> "PromotionRule":
        return cls(
            id=to_global_id("PromotionRule", row.id), db_id=row.id, name=row.name, source=row.source,
            target=RecognitionTarget(row.target), field=row.field, policy=PromotionPolicy(row.policy),
            position=row.position, channels=[Channel(c) for c in row.channels], enabled=row.enabled,
        )


@strawberry.type(description="What a channel does with a contact no rule recognised.")
class NoMatchPolicy:
    channel: Channel
    create_customer: bool
    create_case: bool = strawberry.field(description="Also applies when the customer was recognised but no case.")
    flag_for_review: bool

    @classmethod
    def from_row(cls, row: Any) -> "NoMatchPolicy":
        return cls(
            channel=Channel(row.channel), create_customer=row.create_customer, create_case=row.create_case,
            flag_for_review=row.flag_for_review,
        )


@strawberry.input
class RecognitionRuleCreateInput:
    name: str
    kind: RecognitionRuleKind
    config: JSON | None = strawberry.field(default=None, description="Kind-specific settings; defaults filled in.")
    channels: list[Channel] = strawberry.field(default_factory=list)
    enabled: bool = True
    position: int | None = strawberry.field(default=None, description="1-based; the end by default.")


@strawberry.input
class RecognitionRuleUpdateInput:
    id: strawberry.ID
    name: str | None = None
    config: JSON | None = None
    channels: list[Channel] | None = None
    enabled: bool | None = None


@strawberry.input
class RuleDeleteInput:
    id: strawberry.ID


@strawberry.input
class RulesReorderInput:
    ids: list[strawberry.ID] = strawberry.field(description="Every rule, exactly once, in the new order.")


@strawberry.input
class PromotionRuleCreateInput:
    name: str
    source: str
    target: RecognitionTarget
    field: str
    policy: PromotionPolicy
    channels: list[Channel] = strawberry.field(default_factory=list)
    enabled: bool = True
    position: int | None = None


@strawberry.input
class PromotionRuleUpdateInput:
    id: strawberry.ID
    name: str | None = None
    source: str | None = None
    target: RecognitionTarget | None = None
    field: str | None = None
    policy: PromotionPolicy | None = None
    channels: list[Channel] | None = None
    enabled: bool | None = None


@strawberry.input
class NoMatchPolicySetInput:
    channel: Channel
    create_customer: bool
    create_case: bool
    flag_for_review: bool


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


@strawberry.type
class RecognitionRulePayload:
    rule: RecognitionRule | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RecognitionRulesPayload:
    rules: list[RecognitionRule] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RuleDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class PromotionRulePayload:
    rule: PromotionRule | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class PromotionRulesPayload:
    rules: list[PromotionRule] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class NoMatchPolicyPayload:
    policy: NoMatchPolicy | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def _customers(info: strawberry.Info, ids: list[int]) -> list[Customer]:
    return await load_customers(info, ids)


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

    @strawberry.field
    async def customer(self, info: strawberry.Info) -> Customer | None:
        return await load_customer(info, self.customer_id)

    @strawberry.field
    async def case(self, info: strawberry.Info) -> Case | None:
        return await load_case(info, self.case_id)

    @strawberry.field(description="Customers sharing the sender's identifier, when there was no single match.")
    async def candidates(self, info: strawberry.Info) -> list[Customer]:
        return await _customers(info, self.candidate_ids)


@strawberry.type(description="What ingesting this contact would do now; nothing was written.")
class RecognitionPreview:
    needs_review: bool
    would_create_customer: bool
    would_create_case: bool
    trace: JSON
    customer_id: strawberry.Private[int | None] = None
    case_id: strawberry.Private[int | None] = None
    candidate_ids: strawberry.Private[list[int]] = strawberry.field(default_factory=list)

    @strawberry.field
    async def customer(self, info: strawberry.Info) -> Customer | None:
        return await load_customer(info, self.customer_id)

    @strawberry.field
    async def case(self, info: strawberry.Info) -> Case | None:
        return await load_case(info, self.case_id)

    @strawberry.field
    async def candidates(self, info: strawberry.Info) -> list[Customer]:
        return await _customers(info, self.candidate_ids)


@strawberry.type
class RecognitionPreviewPayload:
    preview: RecognitionPreview | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)

"""Types, inputs and payloads of customer and case maintenance."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from schema.enums import Priority
from schema.errors import UserError
from schema.ids import to_global_id
from schema.types import Case, Contact, Customer, Node, User, load_customer, load_customers, load_user


@strawberry.enum
class FieldStrategy(Enum):
    SURVIVOR_WINS = "survivor_wins"
    FILL_EMPTY = "fill_empty"


@strawberry.enum
class ArchiveEntity(Enum):
    CUSTOMER = "customer"
    CASE = "case"


@strawberry.enum
class ExpiryAction(Enum):
    DELETE = "delete"
    ANONYMISE = "anonymise"


# ---- inputs ----------------------------------------------------------------------------------


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


@strawberry.input
class CaseCloseInput:
    case_id: strawberry.ID
    reason_code: str


@strawberry.input
class CaseReopenInput:
    case_id: strawberry.ID
    reason_code: str | None = None


@strawberry.input
class CaseMoveInput:
    case_id: strawberry.ID
    from_customer_id: strawberry.ID
    to_customer_id: strawberry.ID


@strawberry.input
class CaseCustomerLinkInput:
    case_id: strawberry.ID
    customer_id: strawberry.ID
    primary: bool = strawberry.field(default=False, description="Make this customer the case's primary customer.")


@strawberry.input
class CaseCustomerUnlinkInput:
    case_id: strawberry.ID
    customer_id: strawberry.ID


@strawberry.input
class CaseMergeInput:
    source_case_id: strawberry.ID
    target_case_id: strawberry.ID


@strawberry.input
class CaseArchiveInput:
    case_id: strawberry.ID


@strawberry.input
class CustomerArchiveInput:
    customer_id: strawberry.ID


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


@strawberry.input
class CustomerEraseInput:
    customer_id: strawberry.ID
    reason: str


@strawberry.input
class ArchiveRuleCreateInput:
    name: str
    entity: ArchiveEntity
    inactivity_days: int
    exempt_when: JSON | None = strawberry.field(
        default=None, description='Records whose custom fields contain this object are kept, e.g. {"vip": true}.'
    )
    retention_days: int | None = strawberry.field(default=None, description="Days after archiving until expiry; null keeps forever.")
    expiry_action: ExpiryAction = ExpiryAction.ANONYMISE


@strawberry.input
class ArchiveRuleDeleteInput:
    id: strawberry.ID


# ---- types -----------------------------------------------------------------------------------


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
    def from_row(cls, row: Any) -> "CustomerMerge":
        return cls(
            id=to_global_id("CustomerMerge", row.id),
            db_id=row.id,
            survivor_id=row.survivor_id,
            duplicate_ids=list(row.duplicate_ids),
            field_strategy=row.field_strategy.upper(),
            moved=row.counts,
            actor_name=row.actor_name,
            created_at=row.created_at,
            undone_at=row.undone_at,
            undone_by=row.undone_by,
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
class ArchiveRule(Node):
    db_id: strawberry.Private[int]
    name: str
    entity: ArchiveEntity
    inactivity_days: int
    exempt_when: JSON | None
    retention_days: int | None
    expiry_action: ExpiryAction
    enabled: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> "ArchiveRule":
        return cls(
            id=to_global_id("ArchiveRule", row.id),
            db_id=row.id,
            name=row.name,
            entity=ArchiveEntity(row.entity),
            inactivity_days=row.inactivity_days,
            exempt_when=row.exempt_when,
            retention_days=row.retention_days,
            expiry_action=ExpiryAction(row.expiry_action),
            enabled=row.enabled,
            created_at=row.created_at,
        )


@strawberry.type(description="What an archive rule would do if it ran now.")
class ArchiveRulePreview:
    rule: ArchiveRule
    archive_count: int
    expire_count: int
    archive_sample_ids: list[strawberry.ID] = strawberry.field(description="The first records it would archive.")
    expire_sample_ids: list[strawberry.ID] = strawberry.field(description="The first archived records it would expire.")


# Audit entity types and the global-id type names they correspond to.
AUDIT_ENTITY_TYPES = {"Customer": "customer", "Case": "case", "Contact": "contact", "ArchiveRule": "archive_rule"}


@strawberry.type
class AuditEvent(Node):
    db_id: strawberry.Private[int]
    actor_user_id: strawberry.Private[int | None]
    occurred_at: datetime
    actor_name: str
    action: str
    entity_type: str
    entity_id: strawberry.ID
    before: JSON | None
    after: JSON | None

    @classmethod
    def from_row(cls, row: Any) -> "AuditEvent":
        type_name = next((k for k, v in AUDIT_ENTITY_TYPES.items() if v == row.entity_type), row.entity_type)
        return cls(
            id=to_global_id("AuditEvent", row.id),
            db_id=row.id,
            actor_user_id=row.actor_user_id,
            occurred_at=row.occurred_at,
            actor_name=row.actor_name,
            action=row.action,
            entity_type=row.entity_type,
            entity_id=to_global_id(type_name, row.entity_id),
            before=row.before,
            after=row.after,
        )

    @strawberry.field
    async def actor(self, info: strawberry.Info) -> User | None:
        return await load_user(info, self.actor_user_id)


# ---- payloads --------------------------------------------------------------------------------


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
class CaseMergePayload:
    case: Case | None = strawberry.field(default=None, description="The target case, now holding the source's contacts.")
    source: Case | None = strawberry.field(default=None, description="The source case, now a tombstone.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CustomerMergePayload:
    merge: CustomerMerge | None = None
    survivor: Customer | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ArchiveRulePayload:
    rule: ArchiveRule | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ArchiveRuleDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)

"""Archive, retention and GDPR: archive rules, their preview, and the inputs of archiving and erasing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from app.models import ARCHIVE_ENTITIES, EXPIRY_ACTIONS
from schema.enums import values_enum
from schema.errors import UserError
from schema.node import Node

ArchiveEntity = values_enum("ArchiveEntity", ARCHIVE_ENTITIES)
ExpiryAction = values_enum("ExpiryAction", EXPIRY_ACTIONS)


@strawberry.input
class CaseArchiveInput:
    case_id: strawberry.ID


@strawberry.input
class CustomerArchiveInput:
    customer_id: strawberry.ID


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
    retention_days: int | None = strawberry.field(
        default=None, description="Days after archiving until expiry; null keeps forever."
    )
    expiry_action: ExpiryAction = ExpiryAction.ANONYMISE


@strawberry.input
class ArchiveRuleDeleteInput:
    id: strawberry.ID


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
    def from_row(cls, row: Any) -> ArchiveRule:
        return super().from_row(row, entity=ArchiveEntity(row.entity), expiry_action=ExpiryAction(row.expiry_action))


@strawberry.type(description="What an archive rule would do if it ran now.")
class ArchiveRulePreview:
    rule: ArchiveRule
    archive_count: int
    expire_count: int
    archive_sample_ids: list[strawberry.ID] = strawberry.field(description="The first records it would archive.")
    expire_sample_ids: list[strawberry.ID] = strawberry.field(description="The first archived records it would expire.")


@strawberry.type
class ArchiveRulePayload:
    rule: ArchiveRule | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ArchiveRuleDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)

"""The audit trail as the API shows it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from schema.auth import User
from schema.ids import to_global_id
from schema.node import Node, load_user

# Audit entity types and the global-id type names they correspond to.
AUDIT_ENTITY_TYPES = {
    "Customer": "customer",
    "Case": "case",
    "Contact": "contact",
    "ArchiveRule": "archive_rule",
    "User": "user",
    "ApiToken": "api_token",
    "ReasonCode": "reason_code",
    "Dictionary": "dictionary",
    "FormField": "form_field",
    "CaseTemplate": "case_template",
}
_TYPE_NAMES = {entity: type_name for type_name, entity in AUDIT_ENTITY_TYPES.items()}


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
    def from_row(cls, row: Any) -> AuditEvent:
        return super().from_row(
            row, entity_id=to_global_id(_TYPE_NAMES.get(row.entity_type, row.entity_type), row.entity_id)
        )

    @strawberry.field
    async def actor(self, info: strawberry.Info) -> User | None:
        return await load_user(info, self.actor_user_id)

"""The audit trail of any object."""

from __future__ import annotations

import strawberry

from app.pagination import page_size
from app.services import audit as service
from schema.audit import AUDIT_ENTITY_TYPES, AuditEvent
from schema.ids import from_global_id
from schema.pagination import Connection, PageInfo
from schema.permissions import allow


@strawberry.type
class AuditQuery:
    @strawberry.field(
        permission_classes=[allow("Query.auditEvents")], description="An object's audit trail, newest first."
    )
    async def audit_events(
        self, info: strawberry.Info, entity_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[AuditEvent]:
        decoded = from_global_id(entity_id)
        if decoded is None or decoded[0] not in AUDIT_ENTITY_TYPES:
            return Connection(edges=[], page_info=PageInfo(has_next_page=False, end_cursor=None))
        async with info.context.runtime.reading() as session:
            page = await service.list_events(
                session,
                entity_type=AUDIT_ENTITY_TYPES[decoded[0]],
                entity_id=decoded[1],
                first=page_size(first),
                after=after,
            )
        return Connection.from_page(page, AuditEvent.from_row)

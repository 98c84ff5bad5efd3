from __future__ import annotations

import strawberry

from app.pagination import page_size
from app.services import cases as service
from resolvers.mutation_helpers import mutate
from schema.ids import db_id, from_global_id, optional_db_id
from schema.inputs import CaseCreateInput, CaseFilter, CaseUpdateInput
from schema.pagination import Connection
from schema.payloads import CasePayload
from schema.types import Case, load_case


@strawberry.type
class CaseQuery:
    @strawberry.field
    async def case(self, info: strawberry.Info, id: strawberry.ID) -> Case | None:
        decoded = from_global_id(id)
        if decoded is None or decoded[0] != "Case":
            return None
        return await load_case(info, decoded[1])

    @strawberry.field
    async def case_by_reference(self, info: strawberry.Info, reference: str) -> Case | None:
        async with info.context.runtime.reading() as session:
            case_id = await service.case_id_by_reference(session, reference=reference)
        return await load_case(info, case_id)

    @strawberry.field(description="Cases newest first; merged and archived cases are left out.")
    async def cases(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        filter: CaseFilter | None = None,
    ) -> Connection[Case]:
        f = filter or CaseFilter()
        # An id of the wrong type matches nothing rather than failing the whole query.
        customer_id = _filter_id(f.customer_id, "Customer")
        assignee_id = _filter_id(f.assignee_id, "User")
        async with info.context.runtime.reading() as session:
            page = await service.list_cases(
                session,
                first=page_size(first),
                after=after,
                status=f.status.value if f.status else None,
                customer_id=customer_id,
                assignee_id=assignee_id,
            )
        return Connection.from_page(page, Case.from_row)


def _filter_id(global_id: str | None, type_name: str) -> int | None:
    if global_id is None:
        return None
    decoded = from_global_id(global_id)
    return decoded[1] if decoded and decoded[0] == type_name else -1


@strawberry.type
class CaseMutation:
    @strawberry.mutation
    async def case_create(self, info: strawberry.Info, input: CaseCreateInput) -> CasePayload:
        case, errors = await mutate(
            info,
            lambda session: service.create_case(
                session,
                actor=info.context.actor,
                subject=input.subject,
                customer_ids=[db_id(cid, "Customer", f"customerIds.{i}") for i, cid in enumerate(input.customer_ids)],
                description=input.description,
                priority=input.priority.value,
                severity=input.severity,
                fields=input.fields,
                parent_id=optional_db_id(input.parent_id, "Case", "parentId"),
            ),
        )
        return CasePayload(case=Case.from_row(case) if case else None, errors=errors)

    @strawberry.mutation
    async def case_update(self, info: strawberry.Info, input: CaseUpdateInput) -> CasePayload:
        case, errors = await mutate(
            info,
            lambda session: service.update_case(
                session,
                actor=info.context.actor,
                case_id=db_id(input.id, "Case", "id"),
                subject=input.subject,
                description=input.description,
                status=input.status.value if input.status else None,
                priority=input.priority.value if input.priority else None,
                severity=input.severity,
                fields=input.fields,
                assignee_id=optional_db_id(input.assignee_id, "User", "assigneeId"),
                parent_id=optional_db_id(input.parent_id, "Case", "parentId"),
            ),
        )
        return CasePayload(case=Case.from_row(case) if case else None, errors=errors)

"""Cases: lookups, listing, creating and updating; closing, reopening, moving, linking and merging."""

from __future__ import annotations

import strawberry

from app.pagination import page_size
from app.services import cases as service
from resolvers.mutation_helpers import mutate
from schema.cases import (
    Case,
    CaseCloseInput,
    CaseCreateInput,
    CaseCustomerLinkInput,
    CaseCustomerUnlinkInput,
    CaseFilter,
    CaseMergeInput,
    CaseMergePayload,
    CaseMoveInput,
    CasePayload,
    CaseReopenInput,
    CaseUpdateInput,
)
from schema.ids import db_id, decode_id, optional_db_id
from schema.node import load_case
from schema.pagination import Connection
from schema.permissions import allow


def case_payload(row) -> dict:
    return {"case": Case.from_row(row)}


@strawberry.type
class CaseQuery:
    @strawberry.field(permission_classes=[allow("Query.case")])
    async def case(self, info: strawberry.Info, id: strawberry.ID) -> Case | None:
        return await load_case(info, decode_id(id, "Case"))

    @strawberry.field(permission_classes=[allow("Query.caseByReference")])
    async def case_by_reference(self, info: strawberry.Info, reference: str) -> Case | None:
        async with info.context.runtime.reading() as session:
            case_id = await service.case_id_by_reference(session, reference=reference)
        return await load_case(info, case_id)

    @strawberry.field(
        permission_classes=[allow("Query.cases")],
        description="Cases newest first; merged and archived cases are left out.",
    )
    async def cases(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        filter: CaseFilter | None = None,
    ) -> Connection[Case]:
        f = filter or CaseFilter()
        async with info.context.runtime.reading() as session:
            page = await service.list_cases(
                session,
                first=page_size(first),
                after=after,
                status=f.status.value if f.status else None,
                customer_id=_filter_id(f.customer_id, "Customer"),
                assignee_id=_filter_id(f.assignee_id, "User"),
            )
        return Connection.from_page(page, Case.from_row)


def _filter_id(global_id: str | None, type_name: str) -> int | None:
    """An id of the wrong type matches nothing (-1) rather than failing the whole query."""
    if global_id is None:
        return None
    found = decode_id(global_id, type_name)
    return -1 if found is None else found


@strawberry.type
class CaseMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.caseCreate")])
    async def case_create(self, info: strawberry.Info, input: CaseCreateInput) -> CasePayload:
        return await mutate(
            info,
            CasePayload,
            lambda session: service.create_case(
                session,
                actor=info.context.actor,
                subject=input.subject,
                customer_ids=[db_id(cid, "Customer", f"customerIds.{i}") for i, cid in enumerate(input.customer_ids)],
                description=input.description,
                priority=input.priority.value if input.priority else None,
                severity=input.severity,
                fields=input.fields,
                parent_id=optional_db_id(input.parent_id, "Case", "parentId"),
                pool_id=optional_db_id(input.pool_id, "Pool", "poolId"),
                template_id=optional_db_id(input.template_id, "CaseTemplate", "templateId"),
                region=info.context.phone_region,
            ),
            case_payload,
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.caseUpdate")])
    async def case_update(self, info: strawberry.Info, input: CaseUpdateInput) -> CasePayload:
        return await mutate(
            info,
            CasePayload,
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
                reason_code=input.reason_code,
                region=info.context.phone_region,
            ),
            case_payload,
        )


@strawberry.type
class CaseLifecycleMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.caseClose")])
    async def case_close(self, info: strawberry.Info, input: CaseCloseInput) -> CasePayload:
        return await mutate(
            info,
            CasePayload,
            lambda session: service.close_case(
                session,
                actor=info.context.actor,
                case_id=db_id(input.case_id, "Case", "caseId"),
                reason_code=input.reason_code,
            ),
            case_payload,
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.caseReopen")])
    async def case_reopen(self, info: strawberry.Info, input: CaseReopenInput) -> CasePayload:
        return await mutate(
            info,
            CasePayload,
            lambda session: service.reopen_case(
                session,
                actor=info.context.actor,
                case_id=db_id(input.case_id, "Case", "caseId"),
                reason_code=input.reason_code,
            ),
            case_payload,
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.caseMove")],
        description="Move a case from one customer to another; that customer's contacts on it follow.",
    )
    async def case_move(self, info: strawberry.Info, input: CaseMoveInput) -> CasePayload:
        return await mutate(
            info,
            CasePayload,
            lambda session: service.move_case(
                session,
                actor=info.context.actor,
                case_id=db_id(input.case_id, "Case", "caseId"),
                from_customer_id=db_id(input.from_customer_id, "Customer", "fromCustomerId"),
                to_customer_id=db_id(input.to_customer_id, "Customer", "toCustomerId"),
            ),
            case_payload,
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.caseCustomerLink")])
    async def case_customer_link(self, info: strawberry.Info, input: CaseCustomerLinkInput) -> CasePayload:
        return await mutate(
            info,
            CasePayload,
            lambda session: service.link_customer(
                session,
                actor=info.context.actor,
                case_id=db_id(input.case_id, "Case", "caseId"),
                customer_id=db_id(input.customer_id, "Customer", "customerId"),
                primary=input.primary,
            ),
            case_payload,
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.caseCustomerUnlink")],
        description="Unlink a customer from a case; the primary customer stays.",
    )
    async def case_customer_unlink(self, info: strawberry.Info, input: CaseCustomerUnlinkInput) -> CasePayload:
        return await mutate(
            info,
            CasePayload,
            lambda session: service.unlink_customer(
                session,
                actor=info.context.actor,
                case_id=db_id(input.case_id, "Case", "caseId"),
                customer_id=db_id(input.customer_id, "Customer", "customerId"),
            ),
            case_payload,
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.caseMerge")],
        description="Merge a case into another; the source's reference resolves to the target.",
    )
    async def case_merge(self, info: strawberry.Info, input: CaseMergeInput) -> CaseMergePayload:
        async def shape(target) -> dict:
            # The merge succeeded, so the source id was valid.
            source = await load_case(info, db_id(input.source_case_id, "Case", "sourceCaseId"))
            return {"case": Case.from_row(target), "source": source}

        return await mutate(
            info,
            CaseMergePayload,
            lambda session: service.merge_cases(
                session,
                actor=info.context.actor,
                source_case_id=db_id(input.source_case_id, "Case", "sourceCaseId"),
                target_case_id=db_id(input.target_case_id, "Case", "targetCaseId"),
            ),
            shape,
        )

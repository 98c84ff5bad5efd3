"""Archive, retention and GDPR: archiving by hand, archive rules and their preview, erasure and export."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from app.services import archive as service
from resolvers.cases import case_payload
from resolvers.mutation_helpers import mutate
from schema.archive import (
    ArchiveRule,
    ArchiveRuleCreateInput,
    ArchiveRuleDeleteInput,
    ArchiveRuleDeletePayload,
    ArchiveRulePayload,
    ArchiveRulePreview,
    CaseArchiveInput,
    CustomerArchiveInput,
    CustomerEraseInput,
)
from schema.cases import CasePayload
from schema.customers import Customer, CustomerPayload
from schema.ids import db_id, decode_id, to_global_id
from schema.permissions import allow


def _customer_payload(row) -> dict:
    return {"customer": Customer.from_row(row)}


@strawberry.type
class ArchiveQuery:
    @strawberry.field(
        permission_classes=[allow("Query.customerExport")],
        description="Everything stored about a customer as one JSON document (subject access request).",
    )
    async def customer_export(self, info: strawberry.Info, customer_id: strawberry.ID) -> JSON | None:
        customer_db_id = decode_id(customer_id, "Customer")
        if customer_db_id is None:
            return None
        async with info.context.runtime.reading() as session:
            return await service.export_customer(session, customer_id=customer_db_id)

    @strawberry.field(permission_classes=[allow("Query.archiveRules")])
    async def archive_rules(self, info: strawberry.Info) -> list[ArchiveRule]:
        async with info.context.runtime.reading() as session:
            return [ArchiveRule.from_row(r) for r in await service.list_archive_rules(session)]

    @strawberry.field(
        permission_classes=[allow("Query.archiveRulePreview")],
        description="What an archive rule would touch if it ran now.",
    )
    async def archive_rule_preview(self, info: strawberry.Info, id: strawberry.ID) -> ArchiveRulePreview:
        async with info.context.runtime.reading() as session:
            preview = await service.preview_archive_rule(session, rule_id=db_id(id, "ArchiveRule", "id"))
        type_name = "Customer" if preview.rule.entity == "customer" else "Case"
        return ArchiveRulePreview(
            rule=ArchiveRule.from_row(preview.rule),
            archive_count=preview.archive_count,
            expire_count=preview.expire_count,
            archive_sample_ids=[to_global_id(type_name, i) for i in preview.archive_sample],
            expire_sample_ids=[to_global_id(type_name, i) for i in preview.expire_sample],
        )


@strawberry.type
class CaseArchiveMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.caseArchive")])
    async def case_archive(self, info: strawberry.Info, input: CaseArchiveInput) -> CasePayload:
        return await mutate(
            info,
            CasePayload,
            lambda session: service.archive_case(
                session, actor=info.context.actor, case_id=db_id(input.case_id, "Case", "caseId")
            ),
            case_payload,
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.caseRestore")])
    async def case_restore(self, info: strawberry.Info, input: CaseArchiveInput) -> CasePayload:
        return await mutate(
            info,
            CasePayload,
            lambda session: service.restore_case(
                session, actor=info.context.actor, case_id=db_id(input.case_id, "Case", "caseId")
            ),
            case_payload,
        )


@strawberry.type
class ArchiveMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.customerArchive")])
    async def customer_archive(self, info: strawberry.Info, input: CustomerArchiveInput) -> CustomerPayload:
        return await mutate(
            info,
            CustomerPayload,
            lambda session: service.archive_customer(
                session, actor=info.context.actor, customer_id=db_id(input.customer_id, "Customer", "customerId")
            ),
            _customer_payload,
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.customerRestore")])
    async def customer_restore(self, info: strawberry.Info, input: CustomerArchiveInput) -> CustomerPayload:
        return await mutate(
            info,
            CustomerPayload,
            lambda session: service.restore_customer(
                session, actor=info.context.actor, customer_id=db_id(input.customer_id, "Customer", "customerId")
            ),
            _customer_payload,
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.customerErase")],
        description="Erase a customer's personal data (GDPR); irreversible. Case statistics stay.",
    )
    async def customer_erase(self, info: strawberry.Info, input: CustomerEraseInput) -> CustomerPayload:
        return await mutate(
            info,
            CustomerPayload,
            lambda session: service.erase_customer(
                session,
                actor=info.context.actor,
                customer_id=db_id(input.customer_id, "Customer", "customerId"),
                reason=input.reason,
            ),
            _customer_payload,
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.archiveRuleCreate")])
    async def archive_rule_create(self, info: strawberry.Info, input: ArchiveRuleCreateInput) -> ArchiveRulePayload:
        return await mutate(
            info,
            ArchiveRulePayload,
            lambda session: service.create_archive_rule(
                session,
                actor=info.context.actor,
                name=input.name,
                entity=input.entity.value,
                inactivity_days=input.inactivity_days,
                exempt_when=input.exempt_when,
                retention_days=input.retention_days,
                expiry_action=input.expiry_action.value,
            ),
            lambda rule: {"rule": ArchiveRule.from_row(rule)},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.archiveRuleDelete")])
    async def archive_rule_delete(
        self, info: strawberry.Info, input: ArchiveRuleDeleteInput
    ) -> ArchiveRuleDeletePayload:
        return await mutate(
            info,
            ArchiveRuleDeletePayload,
            lambda session: service.delete_archive_rule(
                session, actor=info.context.actor, rule_id=db_id(input.id, "ArchiveRule", "id")
            ),
            lambda _: {"deleted_id": input.id},
        )

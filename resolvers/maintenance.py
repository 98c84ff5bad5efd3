"""Maintenance: contacts, cases and customers fixed by hand; archiving; GDPR; the audit trail."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from app.pagination import page_size
from app.services import audit
from app.services import archive, cases, contacts
from app.services import archive as gdpr
from app.services import customers as merge
from app.services.customers import FieldPick
from resolvers.mutation_helpers import mutate
from resolvers.permissions import STAFF, SUPERVISOR
from schema.ids import db_id, from_global_id, optional_db_id, to_global_id
from schema.maintenance import (
    AUDIT_ENTITY_TYPES,
    ArchiveRule,
    ArchiveRuleCreateInput,
    ArchiveRuleDeleteInput,
    ArchiveRuleDeletePayload,
    ArchiveRulePayload,
    ArchiveRulePreview,
    AuditEvent,
    CaseArchiveInput,
    CaseCloseInput,
    CaseCreateFromContactInput,
    CaseCustomerLinkInput,
    CaseCustomerUnlinkInput,
    CaseFromContactPayload,
    CaseMergeInput,
    CaseMergePayload,
    CaseMoveInput,
    CaseReopenInput,
    ContactAssociateInput,
    ContactMoveInput,
    ContactsPayload,
    CustomerArchiveInput,
    CustomerEraseInput,
    CustomerMerge,
    CustomerMergeInput,
    CustomerMergePayload,
    CustomerMergeUndoInput,
    DuplicateCandidate,
)
from schema.pagination import Connection, PageInfo
from schema.payloads import CasePayload, ContactPayload, CustomerPayload
from schema.types import Case, Contact, Customer, load_case, load_contact, load_customer


def _customer(row) -> Customer | None:
    return Customer.from_row(row) if row is not None else None


def _case(row) -> Case | None:
    return Case.from_row(row) if row is not None else None


@strawberry.type
class MaintenanceQuery:
    @strawberry.field(permission_classes=[STAFF], description="Likely duplicates of a customer: shared identifiers and similar names, best first.")
    async def customer_duplicates(
        self, info: strawberry.Info, customer_id: strawberry.ID, first: int | None = None
    ) -> list[DuplicateCandidate] | None:
        decoded = from_global_id(customer_id)
        if decoded is None or decoded[0] != "Customer":
            return None
        async with info.context.runtime.reading() as session:
            found = await merge.find_duplicates(session, customer_id=decoded[1], limit=page_size(first))
        if found is None:
            return None
        return [DuplicateCandidate(customer_id=c.customer_id, score=c.score, reasons=c.reasons) for c in found]

    @strawberry.field(permission_classes=[STAFF])
    async def customer_merge(self, info: strawberry.Info, id: strawberry.ID) -> CustomerMerge | None:
        decoded = from_global_id(id)
        if decoded is None or decoded[0] != "CustomerMerge":
            return None
        async with info.context.runtime.reading() as session:
            row = await merge.get_merge(session, merge_id=decoded[1])
        return CustomerMerge.from_row(row) if row else None

    @strawberry.field(
        permission_classes=[SUPERVISOR],
        description="Everything stored about a customer as one JSON document (subject access request).",
    )
    async def customer_export(self, info: strawberry.Info, customer_id: strawberry.ID) -> JSON | None:
        decoded = from_global_id(customer_id)
        if decoded is None or decoded[0] != "Customer":
            return None
        async with info.context.runtime.reading() as session:
            return await gdpr.export_customer(session, customer_id=decoded[1])

    @strawberry.field(permission_classes=[SUPERVISOR])
    async def archive_rules(self, info: strawberry.Info) -> list[ArchiveRule]:
        async with info.context.runtime.reading() as session:
            return [ArchiveRule.from_row(r) for r in await archive.list_rules(session)]

    @strawberry.field(permission_classes=[SUPERVISOR], description="What an archive rule would touch if it ran now.")
    async def archive_rule_preview(self, info: strawberry.Info, id: strawberry.ID) -> ArchiveRulePreview:
        async with info.context.runtime.reading() as session:
            preview = await archive.preview_rule(session, rule_id=db_id(id, "ArchiveRule", "id"))
        type_name = "Customer" if preview.rule.entity == "customer" else "Case"
        return ArchiveRulePreview(
            rule=ArchiveRule.from_row(preview.rule),
            archive_count=preview.archive_count,
            expire_count=preview.expire_count,
            archive_sample_ids=[to_global_id(type_name, i) for i in preview.archive_sample],
            expire_sample_ids=[to_global_id(type_name, i) for i in preview.expire_sample],
        )

    @strawberry.field(permission_classes=[STAFF], description="An object's audit trail, newest first.")
    async def audit_events(
        self, info: strawberry.Info, entity_id: strawberry.ID, first: int | None = None, after: str | None = None
    ) -> Connection[AuditEvent]:
        decoded = from_global_id(entity_id)
        if decoded is None or decoded[0] not in AUDIT_ENTITY_TYPES:
            return Connection(edges=[], page_info=PageInfo(has_next_page=False, end_cursor=None))
        async with info.context.runtime.reading() as session:
            page = await audit.list_events(
                session, entity_type=AUDIT_ENTITY_TYPES[decoded[0]], entity_id=decoded[1], first=page_size(first), after=after
            )
        return Connection.from_page(page, AuditEvent.from_row)




@strawberry.type
class MaintenanceMutation:
    @strawberry.mutation(permission_classes=[STAFF], description="Link a contact to a customer and/or one case.")
    async def contact_associate(self, info: strawberry.Info, input: ContactAssociateInput) -> ContactPayload:
        row, errors = await mutate(
            info,
            lambda session: contacts.associate_contact(
                session,
                actor=info.context.actor,
                contact_id=db_id(input.contact_id, "Contact", "contactId"),
                customer_id=optional_db_id(input.customer_id, "Customer", "customerId"),
                case_id=optional_db_id(input.case_id, "Case", "caseId"),
            ),
        )
        return ContactPayload(contact=Contact.from_row(row) if row else None, errors=errors)

    @strawberry.mutation(permission_classes=[STAFF], description="Move contacts to another case of their customer.")
    async def contact_move(self, info: strawberry.Info, input: ContactMoveInput) -> ContactsPayload:
        rows, errors = await mutate(
            info,
            lambda session: contacts.move_contacts(
                session,
                actor=info.context.actor,
                contact_ids=[db_id(c, "Contact", f"contactIds.{i}") for i, c in enumerate(input.contact_ids)],
                to_case_id=db_id(input.to_case_id, "Case", "toCaseId"),
            ),
        )
        return ContactsPayload(contacts=[Contact.from_row(r) for r in rows or []], errors=errors)

    @strawberry.mutation(permission_classes=[STAFF], description="Split a contact off into a new case.")
    async def case_create_from_contact(
        self, info: strawberry.Info, input: CaseCreateFromContactInput
    ) -> CaseFromContactPayload:
        case, errors = await mutate(
            info,
            lambda session: contacts.create_case_from_contact(
                session,
                actor=info.context.actor,
                contact_id=db_id(input.contact_id, "Contact", "contactId"),
                subject=input.subject,
                customer_id=optional_db_id(input.customer_id, "Customer", "customerId"),
                description=input.description,
                priority=input.priority.value,
            ),
        )
        if case is None:
            return CaseFromContactPayload(errors=errors)
        # The split succeeded, so the contact id was valid.
        contact = await load_contact(info, db_id(input.contact_id, "Contact", "contactId"))
        return CaseFromContactPayload(case=Case.from_row(case), contact=contact)

    @strawberry.mutation(permission_classes=[STAFF])
    async def case_close(self, info: strawberry.Info, input: CaseCloseInput) -> CasePayload:
        row, errors = await mutate(
            info,
            lambda session: cases.close_case(
                session, actor=info.context.actor, case_id=db_id(input.case_id, "Case", "caseId"), reason_code=input.reason_code
            ),
        )
        return CasePayload(case=_case(row), errors=errors)

    @strawberry.mutation(permission_classes=[STAFF])
    async def case_reopen(self, info: strawberry.Info, input: CaseReopenInput) -> CasePayload:
        row, errors = await mutate(
            info,
            lambda session: cases.reopen_case(
                session, actor=info.context.actor, case_id=db_id(input.case_id, "Case", "caseId"), reason_code=input.reason_code
            ),
        )
        return CasePayload(case=_case(row), errors=errors)

    @strawberry.mutation(permission_classes=[STAFF], description="Move a case from one customer to another; that customer's contacts on it follow.")
    async def case_move(self, info: strawberry.Info, input: CaseMoveInput) -> CasePayload:
        row, errors = await mutate(
            info,
            lambda session: cases.move_case(
                session,
                actor=info.context.actor,
                case_id=db_id(input.case_id, "Case", "caseId"),
                from_customer_id=db_id(input.from_customer_id, "Customer", "fromCustomerId"),
                to_customer_id=db_id(input.to_customer_id, "Customer", "toCustomerId"),
            ),
        )
        return CasePayload(case=_case(row), errors=errors)

    @strawberry.mutation(permission_classes=[STAFF])
    async def case_customer_link(self, info: strawberry.Info, input: CaseCustomerLinkInput) -> CasePayload:
        row, errors = await mutate(
            info,
            lambda session: cases.link_customer(
                session,
                actor=info.context.actor,
                case_id=db_id(input.case_id, "Case", "caseId"),
                customer_id=db_id(input.customer_id, "Customer", "customerId"),
                primary=input.primary,
            ),
        )
        return CasePayload(case=_case(row), errors=errors)

    @strawberry.mutation(permission_classes=[STAFF], description="Unlink a customer from a case; the primary customer stays.")
    async def case_customer_unlink(self, info: strawberry.Info, input: CaseCustomerUnlinkInput) -> CasePayload:
        row, errors = await mutate(
            info,
            lambda session: cases.unlink_customer(
                session,
                actor=info.context.actor,
                case_id=db_id(input.case_id, "Case", "caseId"),
                customer_id=db_id(input.customer_id, "Customer", "customerId"),
            ),
        )
        return CasePayload(case=_case(row), errors=errors)

    @strawberry.mutation(permission_classes=[STAFF], description="Merge a case into another; the source's reference resolves to the target.")
    async def case_merge(self, info: strawberry.Info, input: CaseMergeInput) -> CaseMergePayload:
        row, errors = await mutate(
            info,
            lambda session: cases.merge_cases(
                session,
                actor=info.context.actor,
                source_case_id=db_id(input.source_case_id, "Case", "sourceCaseId"),
                target_case_id=db_id(input.target_case_id, "Case", "targetCaseId"),
            ),
        )
        if row is None:
            return CaseMergePayload(errors=errors)
        source = await load_case(info, db_id(input.source_case_id, "Case", "sourceCaseId"))
        return CaseMergePayload(case=_case(row), source=source)

    @strawberry.mutation(permission_classes=[STAFF])
    async def case_archive(self, info: strawberry.Info, input: CaseArchiveInput) -> CasePayload:
        row, errors = await mutate(
            info,
            lambda session: archive.archive_case(session, actor=info.context.actor, case_id=db_id(input.case_id, "Case", "caseId")),
        )
        return CasePayload(case=_case(row), errors=errors)

    @strawberry.mutation(permission_classes=[STAFF])
    async def case_restore(self, info: strawberry.Info, input: CaseArchiveInput) -> CasePayload:
        row, errors = await mutate(
            info,
            lambda session: archive.restore_case(session, actor=info.context.actor, case_id=db_id(input.case_id, "Case", "caseId")),
        )
        return CasePayload(case=_case(row), errors=errors)

    @strawberry.mutation(permission_classes=[STAFF], description="Merge duplicates into a survivor; undo with customerMergeUndo.")
    async def customer_merge(self, info: strawberry.Info, input: CustomerMergeInput) -> CustomerMergePayload:
        row, errors = await mutate(
            info,
            lambda session: merge.merge_customers(
                session,
                actor=info.context.actor,
                survivor_id=db_id(input.survivor_id, "Customer", "survivorId"),
                duplicate_ids=[db_id(d, "Customer", f"duplicateIds.{i}") for i, d in enumerate(input.duplicate_ids)],
                field_strategy=input.field_strategy.value,
                field_picks=[
                    FieldPick(field=p.field, customer_id=db_id(p.customer_id, "Customer", f"fieldPicks.{i}.customerId"))
                    for i, p in enumerate(input.field_picks)
                ],
            ),
        )
        if row is None:
            return CustomerMergePayload(errors=errors)
        return CustomerMergePayload(merge=CustomerMerge.from_row(row), survivor=await load_customer(info, row.survivor_id))

    @strawberry.mutation(permission_classes=[STAFF], description="Undo a customer merge from its journal, unless something changed since.")
    async def customer_merge_undo(self, info: strawberry.Info, input: CustomerMergeUndoInput) -> CustomerMergePayload:
        row, errors = await mutate(
            info,
            lambda session: merge.undo_merge(
                session, actor=info.context.actor, merge_id=db_id(input.merge_id, "CustomerMerge", "mergeId")
            ),
        )
        if row is None:
            return CustomerMergePayload(errors=errors)
        return CustomerMergePayload(merge=CustomerMerge.from_row(row), survivor=await load_customer(info, row.survivor_id))

    @strawberry.mutation(permission_classes=[STAFF])
    async def customer_archive(self, info: strawberry.Info, input: CustomerArchiveInput) -> CustomerPayload:
        row, errors = await mutate(
            info,
            lambda session: archive.archive_customer(
                session, actor=info.context.actor, customer_id=db_id(input.customer_id, "Customer", "customerId")
            ),
        )
        return CustomerPayload(customer=_customer(row), errors=errors)

    @strawberry.mutation(permission_classes=[STAFF])
    async def customer_restore(self, info: strawberry.Info, input: CustomerArchiveInput) -> CustomerPayload:
        row, errors = await mutate(
            info,
            lambda session: archive.restore_customer(
                session, actor=info.context.actor, customer_id=db_id(input.customer_id, "Customer", "customerId")
            ),
        )
        return CustomerPayload(customer=_customer(row), errors=errors)

    @strawberry.mutation(
        permission_classes=[SUPERVISOR],
        description="Erase a customer's personal data (GDPR); irreversible. Case statistics stay.",
    )
    async def customer_erase(self, info: strawberry.Info, input: CustomerEraseInput) -> CustomerPayload:
        row, errors = await mutate(
            info,
            lambda session: gdpr.erase_customer(
                session,
                actor=info.context.actor,
                customer_id=db_id(input.customer_id, "Customer", "customerId"),
                reason=input.reason,
            ),
        )
        return CustomerPayload(customer=_customer(row), errors=errors)

    @strawberry.mutation(permission_classes=[SUPERVISOR])
    async def archive_rule_create(self, info: strawberry.Info, input: ArchiveRuleCreateInput) -> ArchiveRulePayload:
        row, errors = await mutate(
            info,
            lambda session: archive.create_rule(
                session,
                actor=info.context.actor,
                name=input.name,
                entity=input.entity.value,
                inactivity_days=input.inactivity_days,
                exempt_when=input.exempt_when,
                retention_days=input.retention_days,
                expiry_action=input.expiry_action.value,
            ),
        )
        return ArchiveRulePayload(rule=ArchiveRule.from_row(row) if row else None, errors=errors)

    @strawberry.mutation(permission_classes=[SUPERVISOR])
    async def archive_rule_delete(self, info: strawberry.Info, input: ArchiveRuleDeleteInput) -> ArchiveRuleDeletePayload:
        _, errors = await mutate(
            info,
            lambda session: archive.delete_rule(session, actor=info.context.actor, rule_id=db_id(input.id, "ArchiveRule", "id")),
        )
        return ArchiveRuleDeletePayload(deleted_id=None if errors else input.id, errors=errors)

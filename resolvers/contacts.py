"""Contacts: lookup, logging, integrator ingest, and fixing by hand (associate, move, split)."""

from __future__ import annotations

import strawberry

from app.contact_data import ContactData
from app.errors import UserError as AppUserError
from app.services import contacts as service
from resolvers.mutation_helpers import mutate
from schema.cases import Case
from schema.contacts import (
    CaseCreateFromContactInput,
    CaseFromContactPayload,
    Contact,
    ContactAssociateInput,
    ContactCreateInput,
    ContactIngestBatchInput,
    ContactIngestBatchPayload,
    ContactIngestInput,
    ContactIngestPayload,
    ContactMoveInput,
    ContactPayload,
    ContactsPayload,
)
from schema.errors import UserError
from schema.ids import db_id, decode_id, optional_db_id
from schema.node import load_contact
from schema.permissions import allow


def contact_data(input: ContactCreateInput | ContactIngestInput, *, source: str | None) -> ContactData:
    return ContactData(
        channel=input.channel.value,
        direction=input.direction.value,
        occurred_at=input.occurred_at,
        subject=input.subject,
        text=input.text,
        html=input.html,
        from_address=input.from_,
        to_addresses=list(input.to),
        headers=input.headers or {},
        source=source,
        external_id=input.external_id,
        payload=input.payload or {},
    )


def ingest_payload(result: service.IngestResult) -> dict:
    return {
        "contact": Contact.from_row(result.contact),
        "duplicate": result.duplicate,
        "customer_created": result.customer_created,
        "case_created": result.case_created,
        "customer_id": result.customer_id,
        "case_id": result.case_id,
        "candidate_ids": result.candidates,
    }


def contact_payload(row) -> dict:
    return {"contact": Contact.from_row(row)}


@strawberry.type
class ContactQuery:
    @strawberry.field(permission_classes=[allow("Query.contact")])
    async def contact(self, info: strawberry.Info, id: strawberry.ID) -> Contact | None:
        return await load_contact(info, decode_id(id, "Contact"))


@strawberry.type
class ContactMutation:
    @strawberry.mutation(
        permission_classes=[allow("Mutation.contactCreate")],
        description="Log a contact on a customer and/or case. A repeated externalId returns the first contact.",
    )
    async def contact_create(self, info: strawberry.Info, input: ContactCreateInput) -> ContactPayload:
        data = contact_data(input, source=None)
        return await mutate(
            info,
            ContactPayload,
            lambda session: service.create_contact(
                session,
                actor=info.context.actor,
                data=data,
                customer_id=optional_db_id(input.customer_id, "Customer", "customerId"),
                case_id=optional_db_id(input.case_id, "Case", "caseId"),
            ),
            contact_payload,
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.contactIngest")],
        description="Store a contact from an integrator, recognised and promoted in one transaction. "
        "Idempotent on (source, externalId): a repeat returns the first contact and creates nothing.",
    )
    async def contact_ingest(self, info: strawberry.Info, input: ContactIngestInput) -> ContactIngestPayload:
        return await mutate(
            info,
            ContactIngestPayload,
            lambda session: service.ingest_contact(
                session,
                actor=info.context.actor,
                data=contact_data(input, source=input.source),
                region=info.context.phone_region,
            ),
            ingest_payload,
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.contactIngestBatch")],
        description="Ingest up to 500 contacts in one transaction, recognised set-based: each gets the "
        "outcome contactIngest would give it, sent one by one in this order. One result per contact, "
        "with its own errors; a contact that fails is retried alone, not the batch.",
    )
    async def contact_ingest_batch(
        self, info: strawberry.Info, input: ContactIngestBatchInput
    ) -> ContactIngestBatchPayload:
        try:
            results = await service.ingest_contacts(
                info.context.runtime,
                actor=info.context.actor,
                items=[contact_data(item, source=item.source) for item in input.contacts],
                region=info.context.phone_region,
            )
        except AppUserError as error:
            return ContactIngestBatchPayload(errors=[UserError.from_error(error)])
        return ContactIngestBatchPayload(
            results=[
                ContactIngestPayload(errors=[UserError.from_error(r)])
                if isinstance(r, AppUserError)
                else ContactIngestPayload(**ingest_payload(r))
                for r in results
            ]
        )


@strawberry.type
class ContactFixMutation:
    @strawberry.mutation(
        permission_classes=[allow("Mutation.contactAssociate")],
        description="Link a contact to a customer and/or one case.",
    )
    async def contact_associate(self, info: strawberry.Info, input: ContactAssociateInput) -> ContactPayload:
        return await mutate(
            info,
            ContactPayload,
            lambda session: service.associate_contact(
                session,
                actor=info.context.actor,
                contact_id=db_id(input.contact_id, "Contact", "contactId"),
                customer_id=optional_db_id(input.customer_id, "Customer", "customerId"),
                case_id=optional_db_id(input.case_id, "Case", "caseId"),
            ),
            contact_payload,
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.contactMove")],
        description="Move contacts to another case of their customer.",
    )
    async def contact_move(self, info: strawberry.Info, input: ContactMoveInput) -> ContactsPayload:
        return await mutate(
            info,
            ContactsPayload,
            lambda session: service.move_contacts(
                session,
                actor=info.context.actor,
                contact_ids=[db_id(c, "Contact", f"contactIds.{i}") for i, c in enumerate(input.contact_ids)],
                to_case_id=db_id(input.to_case_id, "Case", "toCaseId"),
            ),
            lambda rows: {"contacts": [Contact.from_row(r) for r in rows]},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.caseCreateFromContact")], description="Split a contact off into a new case."
    )
    async def case_create_from_contact(
        self, info: strawberry.Info, input: CaseCreateFromContactInput
    ) -> CaseFromContactPayload:
        async def shape(case) -> dict:
            # The split succeeded, so the contact id was valid.
            contact = await load_contact(info, db_id(input.contact_id, "Contact", "contactId"))
            return {"case": Case.from_row(case), "contact": contact}

        return await mutate(
            info,
            CaseFromContactPayload,
            lambda session: service.create_case_from_contact(
                session,
                actor=info.context.actor,
                contact_id=db_id(input.contact_id, "Contact", "contactId"),
                subject=input.subject,
                customer_id=optional_db_id(input.customer_id, "Customer", "customerId"),
                description=input.description,
                priority=input.priority.value,
            ),
            shape,
        )

from __future__ import annotations

import strawberry

from app.services import contacts as service
from app.contact_data import ContactData
from resolvers.mutation_helpers import mutate
from schema.ids import from_global_id, optional_db_id
from schema.inputs import ContactCreateInput
from schema.payloads import ContactPayload
from schema.types import Contact, load_contact


@strawberry.type
class ContactQuery:
    @strawberry.field
    async def contact(self, info: strawberry.Info, id: strawberry.ID) -> Contact | None:
        decoded = from_global_id(id)
        if decoded is None or decoded[0] != "Contact":
            return None
        return await load_contact(info, decoded[1])


@strawberry.type
class ContactMutation:
    @strawberry.mutation(description="Log a contact on a customer and/or case. A repeated externalId returns the first contact.")
    async def contact_create(self, info: strawberry.Info, input: ContactCreateInput) -> ContactPayload:
        data = ContactData(
            channel=input.channel.value,
            direction=input.direction.value,
            occurred_at=input.occurred_at,
            subject=input.subject,
            text=input.text,
            html=input.html,
            from_address=input.from_,
            to_addresses=input.to,
            headers=input.headers or {},
            source="api" if input.external_id else None,
            external_id=input.external_id,
            payload=input.payload or {},
        )
        contact, errors = await mutate(
            info,
            lambda session: service.create_contact(
                session,
                actor=info.context.actor,
                data=data,
                customer_id=optional_db_id(input.customer_id, "Customer", "customerId"),
                case_id=optional_db_id(input.case_id, "Case", "caseId"),
            ),
        )
        return ContactPayload(contact=Contact.from_row(contact) if contact else None, errors=errors)

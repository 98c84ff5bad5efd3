from __future__ import annotations

import strawberry

from app.pagination import page_size
from app.services import customers as service
from app.services.customers import IdentifierInput as ServiceIdentifier
from resolvers.mutation_helpers import mutate
from schema.ids import db_id, from_global_id
from schema.inputs import (
    CustomerCreateInput,
    CustomerFilter,
    CustomerIdentifierAddInput,
    CustomerIdentifierRemoveInput,
    CustomerUpdateInput,
)
from schema.enums import CustomerStatus
from schema.pagination import Connection
from schema.payloads import CustomerIdentifierPayload, CustomerPayload
from schema.types import Customer, CustomerIdentifier, load_customer


def _region(info: strawberry.Info) -> str:
    return info.context.runtime.settings.default_phone_region


@strawberry.type
class CustomerQuery:
    @strawberry.field
    async def customer(self, info: strawberry.Info, id: strawberry.ID) -> Customer | None:
        decoded = from_global_id(id)
        if decoded is None or decoded[0] != "Customer":
            return None
        customer = await load_customer(info, decoded[1])
        if customer is None or customer.merged_into_id is None or customer.status != CustomerStatus.MERGED:
            return customer
        # A merged customer's id resolves to the survivor (node(id) still shows the tombstone).
        async with info.context.runtime.reading() as session:
            customer_id = await service.live_customer_id(session, customer_id=decoded[1])
        return await load_customer(info, customer_id)

    @strawberry.field
    async def customer_by_number(self, info: strawberry.Info, number: str) -> Customer | None:
        async with info.context.runtime.reading() as session:
            customer_id = await service.customer_id_by_number(session, number=number)
        return await load_customer(info, customer_id)

    @strawberry.field(description="Customers newest first. Without a status filter, only active customers.")
    async def customers(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        filter: CustomerFilter | None = None,
    ) -> Connection[Customer]:
        f = filter or CustomerFilter()
        async with info.context.runtime.reading() as session:
            page = await service.list_customers(
                session,
                first=page_size(first),
                after=after,
                search=f.search,
                identifier=ServiceIdentifier(f.identifier.kind.value, f.identifier.value) if f.identifier else None,
                status=f.status.value if f.status else None,
                region=_region(info),
            )
        return Connection.from_page(page, Customer.from_row)


@strawberry.type
class CustomerMutation:
    @strawberry.mutation
    async def customer_create(self, info: strawberry.Info, input: CustomerCreateInput) -> CustomerPayload:
        identifiers = (
            [ServiceIdentifier("email", v) for v in input.emails]
            + [ServiceIdentifier("phone", v) for v in input.phones]
            + [ServiceIdentifier("account_id", v) for v in input.account_ids]
        )
        customer, errors = await mutate(
            info,
            lambda session: service.create_customer(
                session,
                actor=info.context.actor,
                name=input.name,
                identifiers=identifiers,
                fields=input.fields,
                region=_region(info),
            ),
        )
        return CustomerPayload(customer=Customer.from_row(customer) if customer else None, errors=errors)

    @strawberry.mutation
    async def customer_update(self, info: strawberry.Info, input: CustomerUpdateInput) -> CustomerPayload:
        customer, errors = await mutate(
            info,
            lambda session: service.update_customer(
                session,
                actor=info.context.actor,
                customer_id=db_id(input.id, "Customer", "id"),
                name=input.name,
                fields=input.fields,
            ),
        )
        return CustomerPayload(customer=Customer.from_row(customer) if customer else None, errors=errors)

    @strawberry.mutation
    async def customer_identifier_add(
        self, info: strawberry.Info, input: CustomerIdentifierAddInput
    ) -> CustomerIdentifierPayload:
        identifier, errors = await mutate(
            info,
            lambda session: service.add_identifier(
                session,
                actor=info.context.actor,
                customer_id=db_id(input.customer_id, "Customer", "customerId"),
                kind=input.kind.value,
                value=input.value,
                region=_region(info),
            ),
        )
        if identifier is None:
            return CustomerIdentifierPayload(errors=errors)
        return CustomerIdentifierPayload(
            identifier=CustomerIdentifier.from_row(identifier),
            customer=await load_customer(info, identifier.customer_id),
        )

    @strawberry.mutation
    async def customer_identifier_remove(
        self, info: strawberry.Info, input: CustomerIdentifierRemoveInput
    ) -> CustomerIdentifierPayload:
        customer, errors = await mutate(
            info,
            lambda session: service.remove_identifier(
                session, actor=info.context.actor, identifier_id=db_id(input.id, "CustomerIdentifier", "id")
            ),
        )
        return CustomerIdentifierPayload(customer=Customer.from_row(customer) if customer else None, errors=errors)

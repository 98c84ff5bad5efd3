"""Customers: lookups, listing, creating and updating, identifiers, merges and likely duplicates."""

from __future__ import annotations

import strawberry

from app.pagination import page_size
from app.services import customers as service
from app.services.customers import FieldPick
from app.services.customers import IdentifierInput as ServiceIdentifier
from resolvers.mutation_helpers import mutate
from schema.customers import (
    Customer,
    CustomerCreateInput,
    CustomerFilter,
    CustomerIdentifier,
    CustomerIdentifierAddInput,
    CustomerIdentifierPayload,
    CustomerIdentifierRemoveInput,
    CustomerMerge,
    CustomerMergeInput,
    CustomerMergePayload,
    CustomerMergeUndoInput,
    CustomerPayload,
    CustomerUpdateInput,
    DuplicateCandidate,
)
from schema.enums import CustomerStatus
from schema.ids import db_id, decode_id
from schema.node import load_customer
from schema.pagination import Connection
from schema.permissions import allow


def _candidate(found) -> DuplicateCandidate:
    return DuplicateCandidate(customer_id=found.customer_id, score=found.score, reasons=found.reasons)


@strawberry.type
class CustomerQuery:
    @strawberry.field(permission_classes=[allow("Query.customer")])
    async def customer(self, info: strawberry.Info, id: strawberry.ID) -> Customer | None:
        customer = await load_customer(info, decode_id(id, "Customer"))
        if customer is None or customer.merged_into_id is None or customer.status != CustomerStatus.MERGED:
            return customer
        # A merged customer's id resolves to the survivor (node(id) still shows the tombstone).
        async with info.context.runtime.reading() as session:
            customer_id = await service.live_customer_id(session, customer_id=customer.db_id)
        return await load_customer(info, customer_id)

    @strawberry.field(permission_classes=[allow("Query.customerByNumber")])
    async def customer_by_number(self, info: strawberry.Info, number: str) -> Customer | None:
        async with info.context.runtime.reading() as session:
            customer_id = await service.customer_id_by_number(session, number=number)
        return await load_customer(info, customer_id)

    @strawberry.field(
        permission_classes=[allow("Query.customers")],
        description="Customers newest first. Without a status filter, only active customers.",
    )
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
                region=info.context.phone_region,
            )
        return Connection.from_page(page, Customer.from_row)


@strawberry.type
class CustomerMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.customerCreate")])
    async def customer_create(self, info: strawberry.Info, input: CustomerCreateInput) -> CustomerPayload:
        identifiers = (
            [ServiceIdentifier("email", v) for v in input.emails]
            + [ServiceIdentifier("phone", v) for v in input.phones]
            + [ServiceIdentifier("account_id", v) for v in input.account_ids]
        )
        return await mutate(
            info,
            CustomerPayload,
            lambda session: service.create_customer_avoiding_duplicates(
                session,
                actor=info.context.actor,
                name=input.name,
                identifiers=identifiers,
                fields=input.fields,
                region=info.context.phone_region,
                if_no_duplicates=input.if_no_duplicates,
            ),
            lambda created: {
                "customer": Customer.from_row(created.customer),
                "possible_duplicates": [_candidate(c) for c in created.possible_duplicates],
            },
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.customerUpdate")])
    async def customer_update(self, info: strawberry.Info, input: CustomerUpdateInput) -> CustomerPayload:
        return await mutate(
            info,
            CustomerPayload,
            lambda session: service.update_customer(
                session,
                actor=info.context.actor,
                customer_id=db_id(input.id, "Customer", "id"),
                name=input.name,
                fields=input.fields,
                region=info.context.phone_region,
            ),
            lambda row: {"customer": Customer.from_row(row)},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.customerIdentifierAdd")])
    async def customer_identifier_add(
        self, info: strawberry.Info, input: CustomerIdentifierAddInput
    ) -> CustomerIdentifierPayload:
        async def shape(identifier) -> dict:
            return {
                "identifier": CustomerIdentifier.from_row(identifier),
                "customer": await load_customer(info, identifier.customer_id),
            }

        return await mutate(
            info,
            CustomerIdentifierPayload,
            lambda session: service.add_identifier(
                session,
                actor=info.context.actor,
                customer_id=db_id(input.customer_id, "Customer", "customerId"),
                kind=input.kind.value,
                value=input.value,
                region=info.context.phone_region,
            ),
            shape,
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.customerIdentifierRemove")])
    async def customer_identifier_remove(
        self, info: strawberry.Info, input: CustomerIdentifierRemoveInput
    ) -> CustomerIdentifierPayload:
        return await mutate(
            info,
            CustomerIdentifierPayload,
            lambda session: service.remove_identifier(
                session, actor=info.context.actor, identifier_id=db_id(input.id, "CustomerIdentifier", "id")
            ),
            lambda row: {"customer": Customer.from_row(row)},
        )


# Merges come second in the schema: Query and Mutation list their fields in the order of
# resolvers.root.QUERIES / MUTATIONS.


@strawberry.type
class CustomerMergeQuery:
    @strawberry.field(
        permission_classes=[allow("Query.customerDuplicates")],
        description="Likely duplicates of a customer: shared identifiers and similar names, best first.",
    )
    async def customer_duplicates(
        self, info: strawberry.Info, customer_id: strawberry.ID, first: int | None = None
    ) -> list[DuplicateCandidate] | None:
        customer_db_id = decode_id(customer_id, "Customer")
        if customer_db_id is None:
            return None
        async with info.context.runtime.reading() as session:
            found = await service.find_duplicates(session, customer_id=customer_db_id, limit=page_size(first))
        if found is None:
            return None
        return [_candidate(c) for c in found]

    @strawberry.field(permission_classes=[allow("Query.customerMerge")])
    async def customer_merge(self, info: strawberry.Info, id: strawberry.ID) -> CustomerMerge | None:
        merge_id = decode_id(id, "CustomerMerge")
        if merge_id is None:
            return None
        async with info.context.runtime.reading() as session:
            row = await service.get_merge(session, merge_id=merge_id)
        return CustomerMerge.from_row(row) if row else None


async def _merge_payload(info: strawberry.Info, merge) -> dict:
    return {"merge": CustomerMerge.from_row(merge), "survivor": await load_customer(info, merge.survivor_id)}


@strawberry.type
class CustomerMergeMutation:
    @strawberry.mutation(
        permission_classes=[allow("Mutation.customerMerge")],
        description="Merge duplicates into a survivor; undo with customerMergeUndo.",
    )
    async def customer_merge(self, info: strawberry.Info, input: CustomerMergeInput) -> CustomerMergePayload:
        return await mutate(
            info,
            CustomerMergePayload,
            lambda session: service.merge_customers(
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
            lambda merge: _merge_payload(info, merge),
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.customerMergeUndo")],
        description="Undo a customer merge from its journal, unless something changed since.",
    )
    async def customer_merge_undo(self, info: strawberry.Info, input: CustomerMergeUndoInput) -> CustomerMergePayload:
        return await mutate(
            info,
            CustomerMergePayload,
            lambda session: service.undo_merge(
                session, actor=info.context.actor, merge_id=db_id(input.merge_id, "CustomerMerge", "mergeId")
            ),
            lambda merge: _merge_payload(info, merge),
        )

"""Live updates: each event arrives through Redis pub/sub and is reloaded from the database."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator

import strawberry

from app import events
from schema.ids import decode_id
from schema.types import Case, Contact, Customer, load_case, load_contact, load_customer


@strawberry.type
class Subscription:
    @strawberry.subscription(description="The customer each time it or its history changes.")
    async def customer_updated(self, info: strawberry.Info, id: strawberry.ID) -> AsyncGenerator[Customer, None]:
        customer_id = decode_id(id, "Customer")
        if customer_id is None:
            return
        async for _ in events.listen(info.context.runtime.redis, events.channel("customerUpdated", customer_id)):
            info.context.fresh_loaders()
            customer = await load_customer(info, customer_id)
            if customer is not None:
                yield customer

    @strawberry.subscription(description="The case each time it or its contacts change.")
    async def case_updated(self, info: strawberry.Info, id: strawberry.ID) -> AsyncGenerator[Case, None]:
        case_id = decode_id(id, "Case")
        if case_id is None:
            return
        async for _ in events.listen(info.context.runtime.redis, events.channel("caseUpdated", case_id)):
            info.context.fresh_loaders()
            case = await load_case(info, case_id)
            if case is not None:
                yield case

    @strawberry.subscription(description="Each new contact of a customer and/or a case (all contacts when neither is given).")
    async def contact_received(
        self,
        info: strawberry.Info,
        customer_id: strawberry.ID | None = None,
        case_id: strawberry.ID | None = None,
    ) -> AsyncGenerator[Contact, None]:
        wanted = {"customer": (customer_id, "Customer"), "case": (case_id, "Case")}
        channels = []
        for prefix, (global_id, type_name) in wanted.items():
            if global_id is None:
                continue
            db_id = decode_id(global_id, type_name)
            if db_id is None:
                return  # not an id of that type: nothing will ever arrive
            channels.append(events.channel("contactReceived", f"{prefix}:{db_id}"))
        if not channels:
            channels.append(events.channel("contactReceived", "all"))
        # A contact on both a watched customer and a watched case arrives twice, moments apart.
        recent: deque[int] = deque(maxlen=64)
        async for event in events.listen(info.context.runtime.redis, *channels):
            contact_id = event.get("contactId")
            if contact_id in recent:
                continue
            recent.append(contact_id)
            info.context.fresh_loaders()
            contact = await load_contact(info, contact_id)
            if contact is not None:
                yield contact

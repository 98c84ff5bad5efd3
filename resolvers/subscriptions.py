"""Live updates: each event arrives through Redis pub/sub and is reloaded from the database."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

import strawberry

from app import events
from schema.ids import decode_id
from schema.cases import Case
from schema.contacts import Contact
from schema.customers import Customer
from schema.node import load_case, load_contact, load_customer


async def _each_update(info: strawberry.Info, event: str, db_id: int | None, load: Any) -> AsyncGenerator[Any, None]:
    """The object, reloaded each time `event` arrives for it; nothing for an id of another type."""
    if db_id is None:
        return
    async for _ in events.listen(info.context.runtime.redis, events.channel(event, db_id)):
        info.context.fresh_loaders()
        found = await load(info, db_id)
        if found is not None:
            yield found


@strawberry.type
class Subscription:
    @strawberry.subscription(description="The customer each time it or its history changes.")
    def customer_updated(self, info: strawberry.Info, id: strawberry.ID) -> AsyncGenerator[Customer, None]:
        return _each_update(info, "customerUpdated", decode_id(id, "Customer"), load_customer)

    @strawberry.subscription(description="The case each time it or its contacts change.")
    def case_updated(self, info: strawberry.Info, id: strawberry.ID) -> AsyncGenerator[Case, None]:
        return _each_update(info, "caseUpdated", decode_id(id, "Case"), load_case)

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

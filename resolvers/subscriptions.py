"""Live updates: each event arrives from the process's event hub and is reloaded from the database.

Every `next` message carries the event's id in `extensions.eventId`; a client that reconnects
passes the last one it saw as `after` and first receives what it missed.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from contextvars import ContextVar
from typing import Annotated, Any

import orjson
import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from app import events
from schema.cases import Case
from schema.contacts import Contact
from schema.customers import Customer
from schema.ids import decode_id
from schema.node import load_case, load_contact, load_customer
from schema.permissions import AllContacts, allow

# Each subscription operation runs in a task of its own, so a context variable set by the source
# stream is what the extension reads when that operation's next result is sent.
_current_event_id: ContextVar[str | None] = ContextVar("current_event_id", default=None)

After = Annotated[
    str | None,
    strawberry.argument(
        description="The id of the last event received (`extensions.eventId`): events since then are sent first."
    ),
]


class SharedEventExecution(StrawberryGraphQLCoreExecutionContext):
    """Executes a subscription event once for all its subscribers in this process that sent the same
    document and variables with the same role, when the event's payload is one object for all of
    them (it has `shared_results`: a pool's update goes to every agent watching the pool). What a
    field answers depends on the document, the variables and the role's permissions, never on
    who else asks, so the result is the same for each of them."""

    def execute_operation(self, serially: bool | None = None) -> Any:
        shared = getattr(self.root_value, "shared_results", None)
        if shared is None:
            return super().execute_operation(serially)
        actor = self.context_value.actor
        key = (
            id(self.operation),
            orjson.dumps(self.variable_values.coerced, option=orjson.OPT_SORT_KEYS, default=str),
            actor.role if actor else None,
        )
        found = shared.get(key)
        if found is None:
            found = shared[key] = asyncio.ensure_future(_result_of(super().execute_operation(serially)))
        return asyncio.shield(found)


async def _result_of(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


class EventIds(SchemaExtension):
    """Puts the id of the event behind each subscription result in the result's extensions."""

    def get_results(self) -> dict[str, Any]:
        event_id = _current_event_id.get()
        return {"eventId": event_id} if event_id else {}


async def _events(info: strawberry.Info, channels: list[str], after: str | None) -> AsyncIterator[events.Event]:
    """The hub's events, each noted as the current one; stream problems as readable errors."""
    if after is not None and events.parse_event_id(after) is None:
        raise GraphQLError("`after` must be an event id as sent in extensions.eventId", extensions={"code": "INVALID"})
    try:
        async for event in info.context.runtime.event_hub.listen(channels, after=after):
            _current_event_id.set(event.id)
            info.context.fresh_loaders()
            yield event
    except events.EventsExpired as expired:
        raise GraphQLError(
            f"Cannot resume: {expired}. Reload, then subscribe without `after`.", extensions={"code": "EVENTS_EXPIRED"}
        ) from None
    except events.FellBehind:
        raise GraphQLError(
            "The subscription fell too far behind; subscribe again with `after` set to the last eventId.",
            extensions={"code": "FELL_BEHIND"},
        ) from None


async def _each_update(
    info: strawberry.Info, topic: str, db_id: int | None, load: Any, after: str | None
) -> AsyncGenerator[Any, None]:
    """The object, reloaded each time an event about it arrives; nothing for an id of another type."""
    if db_id is None:
        return
    async for _ in _events(info, [events.channel(topic, db_id)], after):
        found = await load(info, db_id)
        if found is not None:
            yield found


@strawberry.type
class Subscription:
    @strawberry.subscription(
        permission_classes=[allow("Subscription.customerUpdated")],
        description="The customer each time it or its history changes.",
    )
    def customer_updated(
        self, info: strawberry.Info, id: strawberry.ID, after: After = None
    ) -> AsyncGenerator[Customer, None]:
        return _each_update(info, "customerUpdated", decode_id(id, "Customer"), load_customer, after)

    @strawberry.subscription(
        permission_classes=[allow("Subscription.caseUpdated")],
        description="The case each time it or its contacts change.",
    )
    def case_updated(self, info: strawberry.Info, id: strawberry.ID, after: After = None) -> AsyncGenerator[Case, None]:
        return _each_update(info, "caseUpdated", decode_id(id, "Case"), load_case, after)

    @strawberry.subscription(
        permission_classes=[allow("Subscription.contactReceived"), AllContacts],
        description="Each new contact of a customer and/or a case (all contacts when neither is given).",
    )
    async def contact_received(
        self,
        info: strawberry.Info,
        customer_id: strawberry.ID | None = None,
        case_id: strawberry.ID | None = None,
        after: After = None,
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
        async for event in _events(info, channels, after):
            contact_id = event.body.get("contactId")
            if contact_id in recent:
                continue
            recent.append(contact_id)
            contact = await load_contact(info, contact_id)
            if contact is not None:
                yield contact

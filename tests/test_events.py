"""Change events are never lost: stored with their change, published after it, relayed when
publishing failed, and replayed to a subscriber that resumes from the last id it saw."""

import asyncio
import dataclasses
import json
from datetime import timedelta

import websockets
from alembic import command
from redis.asyncio import Redis
from sqlalchemy import func, select, text

from app import events
from app.auth import SYSTEM
from app.migrate import alembic_config
from app.models import EventOutbox
from app.services import customers
from tests.conftest import wait_for_subscriber

RENAME = "mutation($id: ID!, $name: String!) { customerUpdate(input: {id: $id, name: $name}) { errors { code } } }"
WATCH = "subscription($id: ID!, $after: String) { customerUpdated(id: $id, after: $after) { name } }"


async def create_customer(gql, name: str) -> str:
    data = await gql("mutation($n: String) { customerCreate(input: {name: $n}) { customer { id } } }", {"n": name})
    return data["customerCreate"]["customer"]["id"]


async def outbox_size(runtime) -> int:
    async with runtime.reading() as session:
        return await session.scalar(select(func.count()).select_from(EventOutbox))


async def stream_ids(runtime) -> list[str]:
    return [entry_id.decode() for entry_id, _ in await runtime.redis.xrange(events.STREAM)]


async def subscribe(live_server: str, token: str, variables: dict):
    ws = await websockets.connect(f"ws://{live_server}/graphql", subprotocols=["graphql-transport-ws"])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": WATCH, "variables": variables}}))
    return ws


async def next_message(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def test_a_committed_change_is_published_and_leaves_the_outbox(gql, runtime):
    await create_customer(gql, "Ada")

    published = await runtime.redis.xrange(events.STREAM)
    assert [json.loads(fields[b"body"])["topic"] for _, fields in published] == ["customerUpdated"]
    assert await outbox_size(runtime) == 1  # cleared a moment later, with the others of that moment
    await asyncio.sleep(0.2)
    assert await outbox_size(runtime) == 0


async def test_events_survive_an_unreachable_redis_and_the_relay_delivers_them(gql, runtime, live_server, admin_token):
    customer_id = await create_customer(gql, "Ada")
    ws = await subscribe(live_server, admin_token, {"id": customer_id})
    await wait_for_subscriber(runtime, "customerUpdated", 1)
    await runtime.published.flush()  # the creation's event leaves the outbox now, not a moment later
    # A second process of the API whose Redis is unreachable: its commits cannot be published.
    cut_off = Redis.from_url("unix:///nonexistent/redis.sock")
    isolated = dataclasses.replace(runtime, redis=cut_off)
    try:
        async with isolated.transaction() as session:
            await customers.update_customer(session, actor=SYSTEM, customer_id=1, name="Ada Lovelace")
        stranded = await outbox_size(runtime)
        relayed_too_early = await events.relay(
            runtime.sessionmaker, runtime.redis, retain=1000, older_than=timedelta(minutes=1)
        )
        relayed = await events.relay(runtime.sessionmaker, runtime.redis, retain=1000, older_than=timedelta(0))
        message = await next_message(ws)
    finally:
        await ws.close()
        await cut_off.aclose()

    assert stranded == 1 and relayed_too_early == 0 and relayed == 1
    assert message["payload"]["data"] == {"customerUpdated": {"name": "Ada Lovelace"}}
    assert await outbox_size(runtime) == 0


async def test_a_subscriber_resumes_from_the_last_event_it_saw(gql, runtime, live_server, admin_token):
    customer_id = await create_customer(gql, "Ada")
    ws = await subscribe(live_server, admin_token, {"id": customer_id})
    await wait_for_subscriber(runtime, "customerUpdated", 1)
    await gql(RENAME, {"id": customer_id, "name": "Ada 1"})
    first = await next_message(ws)
    await ws.close()

    await gql(RENAME, {"id": customer_id, "name": "Ada 2"})  # while disconnected
    await gql('mutation { customerCreate(input: {name: "Someone else"}) { errors { code } } }')
    await gql(RENAME, {"id": customer_id, "name": "Ada 3"})
    resumed = await subscribe(
        live_server, admin_token, {"id": customer_id, "after": first["payload"]["extensions"]["eventId"]}
    )
    try:
        missed = [await next_message(resumed), await next_message(resumed)]
    finally:
        await resumed.close()

    ids = [m["payload"]["extensions"]["eventId"] for m in [first, *missed]]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-")))) and len(set(ids)) == 3
    # Each event reloads the customer, so both missed events show its present name.
    assert [m["payload"]["data"]["customerUpdated"]["name"] for m in missed] == ["Ada 3", "Ada 3"]


async def test_resuming_from_an_event_no_longer_retained_says_so(gql, runtime, live_server, admin_token):
    customer_id = await create_customer(gql, "Ada")
    first_id = (await stream_ids(runtime))[0]
    for name in ("B", "C", "D"):
        await gql(RENAME, {"id": customer_id, "name": name})
    await runtime.redis.xtrim(events.STREAM, maxlen=1, approximate=False)

    ws = await subscribe(live_server, admin_token, {"id": customer_id, "after": first_id})
    try:
        message = await next_message(ws)
    finally:
        await ws.close()

    assert message["type"] == "next"
    assert message["payload"]["errors"][0]["extensions"]["code"] == "EVENTS_EXPIRED"


async def test_one_stream_reader_serves_every_subscriber_of_a_process(gql, runtime, live_server, admin_token):
    customer_id = await create_customer(gql, "Ada")
    first = await subscribe(live_server, admin_token, {"id": customer_id})
    await wait_for_subscriber(runtime, "customerUpdated", 1)
    connections_with_one = len(await runtime.redis.client_list())
    sockets = [first, *[await subscribe(live_server, admin_token, {"id": customer_id}) for _ in range(4)]]
    try:
        await asyncio.sleep(0.2)
        connections_with_five = len(await runtime.redis.client_list())
        await gql(RENAME, {"id": customer_id, "name": "Ada L."})
        received = [await next_message(ws) for ws in sockets]
    finally:
        for ws in sockets:
            await ws.close()

    # Four more subscribers open no Redis connection of their own (a pub/sub client each did).
    assert connections_with_five <= connections_with_one
    assert {m["payload"]["data"]["customerUpdated"]["name"] for m in received} == {"Ada L."}


def test_event_ids_parse_strictly_within_redis_stream_ids():
    assert events.parse_event_id("1732380000000-7") == (1732380000000, 7)
    assert events.parse_event_id("1732380000000") == (1732380000000, 0)
    for bad in [
        "",
        "-",
        "1-",
        "-1",
        "1-2-3",
        "18446744073709551616-0",
        "1-18446744073709551616",
        "١٢-٣",
        "1_000-0",
        "9" * 21,
    ]:
        assert events.parse_event_id(bad) is None, bad


async def test_resuming_from_something_that_is_not_an_event_id_says_so(gql, live_server, admin_token):
    customer_id = await create_customer(gql, "Ada")
    ws = await subscribe(live_server, admin_token, {"id": customer_id, "after": "18446744073709551616-0"})
    try:
        message = await next_message(ws)
    finally:
        await ws.close()

    assert message["payload"]["errors"][0]["extensions"]["code"] == "INVALID"


async def test_a_transaction_keeps_its_events_in_one_outbox_row_across_the_migration(runtime, servers):
    """Unpublished events survive the change of the outbox's layout both ways."""
    isolated = dataclasses.replace(runtime, redis=Redis.from_url("unix:///nonexistent/redis.sock"))
    try:
        async with isolated.transaction() as session:
            created = await customers.create_customer(
                session, actor=SYSTEM, name="Ada", identifiers=[], fields=None, region="GB"
            )
            events.emit(session, "caseUpdated", 7)
    finally:
        await isolated.redis.aclose()
    expected = [("customerUpdated", created.id), ("caseUpdated", 7)]
    async with runtime.reading() as session:
        [stored] = await session.scalars(select(EventOutbox.events))
    assert [(e["topic"], e["key"]) for e in stored] == expected

    config = alembic_config(servers["DATABASE_URL"])
    await asyncio.to_thread(command.downgrade, config, "0024")
    try:
        async with runtime.reading() as session:
            old_rows = (await session.execute(text("SELECT channel, body FROM event_outbox ORDER BY id"))).all()
    finally:
        await asyncio.to_thread(command.upgrade, config, "head")
    assert [row.channel for row in old_rows] == [events.channel(t, k) for t, k in expected]

    relayed = await events.relay(runtime.sessionmaker, runtime.redis, retain=1000, older_than=timedelta(0))
    published = [
        (fields[b"channel"].decode(), json.loads(fields[b"body"]))
        for _, fields in await runtime.redis.xrange(events.STREAM)
    ]
    assert relayed == 2 and await outbox_size(runtime) == 0
    assert [(channel, body["topic"], body["key"]) for channel, body in published] == [
        (events.channel(t, k), t, k) for t, k in expected
    ]

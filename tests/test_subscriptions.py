"""Subscriptions over a real WebSocket (graphql-transport-ws), fed by Redis pub/sub."""

import asyncio
import json

import pytest
import websockets

from app import events
from tests.conftest import wait_for_subscriber

CUSTOMER_UPDATED = "subscription($id: ID!) { customerUpdated(id: $id) { id name contacts(first: 5) { totalCount } } }"
CONTACT_RECEIVED = "subscription($c: ID, $after: String) { contactReceived(customerId: $c, after: $after) { subject customer { name } } }"


async def open_subscription(host: str, token: str, query: str, variables: dict):
    ws = await websockets.connect(f"ws://{host}/graphql", subprotocols=["graphql-transport-ws"])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    ack = await ws.recv()
    assert isinstance(ack, str), "graphql-transport-ws messages travel in text frames"
    assert json.loads(ack)["type"] == "connection_ack"
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}))
    return ws


async def next_payload(ws) -> dict:
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert message["type"] == "next", message
    return message["payload"]["data"]


async def create_customer(gql, name="Ann") -> dict:
    data = await gql("mutation($n: String) { customerCreate(input: {name: $n}) { customer { id } } }", {"n": name})
    return data["customerCreate"]["customer"]


async def test_customer_updated_is_delivered_after_commit(gql, runtime, live_server, admin_token):
    customer = await create_customer(gql)
    ws = await open_subscription(live_server, admin_token, CUSTOMER_UPDATED, {"id": customer["id"]})
    try:
        await wait_for_subscriber(runtime, "customerUpdated", 1)
        await gql(
            'mutation($id: ID!) { customerUpdate(input: {id: $id, name: "Ann Renamed"}) { errors { code } } }',
            {"id": customer["id"]},
        )
        first = await next_payload(ws)
        await gql(
            "mutation($id: ID!) { contactCreate(input: {channel: PHONE, direction: INBOUND, customerId: $id}) { errors { code } } }",
            {"id": customer["id"]},
        )
        second = await next_payload(ws)
    finally:
        await ws.close()

    assert first["customerUpdated"]["name"] == "Ann Renamed"
    assert second["customerUpdated"]["contacts"]["totalCount"] == 1  # reloaded, not served from a stale cache


async def test_refused_mutation_publishes_nothing(gql, runtime, live_server, admin_token):
    customer = await create_customer(gql)
    ws = await open_subscription(live_server, admin_token, CUSTOMER_UPDATED, {"id": customer["id"]})
    try:
        await wait_for_subscriber(runtime, "customerUpdated", 1)
        refused = await gql(
            'mutation($id: ID!) { customerUpdate(input: {id: $id, name: "  "}) { errors { code } } }',
            {"id": customer["id"]},
        )
        assert refused["customerUpdate"]["errors"] == [{"code": "REQUIRED"}]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.recv(), timeout=0.5)
    finally:
        await ws.close()


async def test_websocket_without_a_valid_token_is_rejected(live_server):
    ws = await websockets.connect(f"ws://{live_server}/graphql", subprotocols=["graphql-transport-ws"])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"token": "cg_wrong"}}))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd.code == 4403
    assert closed.value.rcvd.reason == "A valid token is required in connection_params"


async def test_a_second_api_process_delivers_what_the_first_committed(gql, runtime, admin_token, second_api_process):
    customer = await create_customer(gql, "Bea")
    # Subscribing from the event that created the customer: nothing after it can be missed,
    # however long the other process takes to start listening.
    after = (await runtime.redis.xrevrange(events.STREAM, count=1))[0][0].decode()
    ws = await open_subscription(
        second_api_process, admin_token, CONTACT_RECEIVED, {"c": customer["id"], "after": after}
    )
    try:
        await gql(
            'mutation($id: ID!) { contactCreate(input: {channel: SMS, direction: INBOUND, customerId: $id, subject: "hello"}) { errors { code } } }',
            {"id": customer["id"]},
        )
        data = await next_payload(ws)
    finally:
        await ws.close()

    assert data["contactReceived"] == {"subject": "hello", "customer": {"name": "Bea"}}

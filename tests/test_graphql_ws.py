"""The WebSocket endpoint's limits: each refusal closes with a code and a reason that say why."""

import asyncio
import dataclasses
import json

import pytest
import websockets

from app.asgi import create_app
from tests.conftest import serve_app

SUBSCRIBE = "subscription { contactReceived { id } }"


@pytest.fixture
async def ws_server(settings, runtime):
    """A server with tight WebSocket limits, on a real socket."""
    tight = dataclasses.replace(
        settings, ws_max_connections_per_token=2, ws_max_subscriptions=2, ws_init_timeout_seconds=0.3
    )
    server, task, port = await serve_app(create_app(tight, runtime=runtime))
    yield f"ws://127.0.0.1:{port}/graphql"
    server.should_exit = True
    await task


async def connect(url: str, token: str | None = None):
    ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"])
    if token is not None:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    return ws


async def closed_with(ws) -> tuple[int, str]:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_a_token_may_hold_only_so_many_connections_and_frees_them_on_close(ws_server, admin_token):
    first, second = await connect(ws_server, admin_token), await connect(ws_server, admin_token)
    for ws in (first, second):
        assert json.loads(await ws.recv())["type"] == "connection_ack"

    third = await connect(ws_server, admin_token)
    refused = await closed_with(third)
    await first.close()
    await asyncio.sleep(0.1)
    fourth = await connect(ws_server, admin_token)
    admitted = json.loads(await fourth.recv())["type"]
    await second.close()
    await fourth.close()

    assert refused == (4429, "Too many open connections for this token")
    assert admitted == "connection_ack"


async def test_connection_init_must_come_promptly(ws_server):
    ws = await connect(ws_server)
    assert await closed_with(ws) == (4408, "Connection initialisation timeout")


async def test_a_connection_may_hold_only_so_many_subscriptions(ws_server, admin_token):
    ws = await connect(ws_server, admin_token)
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    for operation_id in ("1", "2", "3"):
        await ws.send(json.dumps({"id": operation_id, "type": "subscribe", "payload": {"query": SUBSCRIBE}}))

    refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
    await ws.close()

    # The third is refused on its own; the connection and its two subscriptions stay.
    assert refused == {"id": "3", "type": "error", "payload": [{"message": "Subscription limit reached"}]}


async def test_a_frame_larger_than_the_body_limit_closes_the_connection(second_api_process, admin_token):
    # `casegraph api` sets uvicorn's frame limit to CASEGRAPH_MAX_BODY_BYTES (1 MiB by default).
    ws = await connect(f"ws://{second_api_process}/graphql", admin_token)
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    padding = " " * (2 * 1024 * 1024)
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE + padding}}))

    code, _ = await closed_with(ws)
    assert code == 1009  # message too big


async def test_a_costly_subscription_is_refused_on_its_own(live_server, admin_token):
    costly = (
        "subscription($id: ID!) { customerUpdated(id: $id) { cases(first: 100) { edges { node {"
        " contacts(first: 100) { edges { node { id subject text } } } } } } } }"
    )
    ws = await connect(f"ws://{live_server}/graphql", admin_token)
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": costly, "variables": {"id": "x"}}}))
    refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
    await ws.close()

    assert refused["id"] == "1" and refused["type"] == "error"
    assert refused["payload"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


async def test_a_subscription_with_a_nul_character_is_refused(live_server, admin_token):
    ws = await connect(f"ws://{live_server}/graphql", admin_token)
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    query = "subscription($id: ID!) { customerUpdated(id: $id) { name } }"
    await ws.send(
        json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"id": "a\u0000"}}})
    )
    refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
    await ws.close()

    assert refused["type"] == "error" and refused["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"

"""Python's `gql` client, as integrators use it, against a real server: HTTP and graphql-transport-ws."""

import asyncio

import pytest
import websockets
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportConnectionFailed, TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from tests.conftest import wait_for_subscriber

CREATE = GraphQLRequest(
    "mutation($name: String!) { customerCreate(input: {name: $name}) { customer { id number name } errors { code } } }"
)
READ = GraphQLRequest("query($id: ID!) { customer(id: $id) { name contacts(first: 5) { totalCount } } }")
LOG_CALL = GraphQLRequest(
    'mutation($id: ID!) { contactCreate(input: {channel: PHONE, direction: INBOUND, customerId: $id, subject: "call"}) { errors { code } } }'
)
WATCH = GraphQLRequest("subscription($id: ID!) { customerUpdated(id: $id) { name contacts(first: 5) { totalCount } } }")


def with_variables(request: GraphQLRequest, variables: dict) -> GraphQLRequest:
    return GraphQLRequest(request.document, variable_values=variables)


def http_client(live_server: str, token: str) -> Client:
    transport = HTTPXAsyncTransport(url=f"http://{live_server}/graphql", headers={"Authorization": f"Bearer {token}"})
    return Client(transport=transport, fetch_schema_from_transport=True)


def ws_client(live_server: str, token: str) -> Client:
    return Client(transport=WebsocketsTransport(url=f"ws://{live_server}/graphql", init_payload={"token": token}))


async def test_gql_over_http_fetches_the_schema_and_runs_a_mutation_and_a_query(live_server, admin_token):
    async with http_client(live_server, admin_token) as session:
        created = await session.execute(with_variables(CREATE, {"name": "Grace Hopper"}))
        customer = created["customerCreate"]["customer"]
        read = await session.execute(with_variables(READ, {"id": customer["id"]}))
        schema = session.client.schema

    assert created["customerCreate"]["errors"] == []
    assert read["customer"] == {"name": "Grace Hopper", "contacts": {"totalCount": 0}}
    # Introspection gave the client the real schema, so it validates documents locally.
    assert schema is not None and "customerMerge" in schema.mutation_type.fields


async def test_gql_validates_against_the_fetched_schema_before_sending(live_server, admin_token):
    async with http_client(live_server, admin_token) as session:
        with pytest.raises(Exception, match="Cannot query field 'nope'"):
            await session.execute(GraphQLRequest("{ nope }"))


async def test_gql_over_http_without_a_token_reads_the_401_as_a_graphql_error(live_server):
    transport = HTTPXAsyncTransport(url=f"http://{live_server}/graphql")
    with pytest.raises(TransportQueryError) as refused:
        async with Client(transport=transport) as session:
            await session.execute(GraphQLRequest("{ me { name } }"))
    assert refused.value.errors == [
        {"message": "A valid bearer token is required", "extensions": {"code": "UNAUTHENTICATED"}}
    ]


async def test_gql_subscription_over_websocket_receives_committed_changes(live_server, admin_token, runtime):
    async with http_client(live_server, admin_token) as http:
        customer = (await http.execute(with_variables(CREATE, {"name": "Ada"})))["customerCreate"]["customer"]
        async with ws_client(live_server, admin_token) as ws:
            events = ws.subscribe(with_variables(WATCH, {"id": customer["id"]}))
            first_event = asyncio.ensure_future(anext(events))
            await wait_for_subscriber(runtime, "customerUpdated", 1)
            await http.execute(with_variables(LOG_CALL, {"id": customer["id"]}))
            event = await asyncio.wait_for(first_event, timeout=10)
            await events.aclose()

    assert event == {"customerUpdated": {"name": "Ada", "contacts": {"totalCount": 1}}}


async def test_gql_runs_queries_and_mutations_over_the_websocket_too(live_server, admin_token):
    async with ws_client(live_server, admin_token) as ws:
        created = await ws.execute(with_variables(CREATE, {"name": "Mary"}))
        me = await ws.execute(GraphQLRequest("{ me { role } }"))

    assert created["customerCreate"]["customer"]["name"] == "Mary"
    assert me == {"me": {"role": "ADMIN"}}


async def test_gql_websocket_with_a_bad_token_is_told_why(live_server):
    with pytest.raises(TransportConnectionFailed) as refused:
        async with ws_client(live_server, "cg_wrong") as ws:
            await ws.execute(GraphQLRequest("{ me { name } }"))
    closed = refused.value.__cause__
    assert isinstance(closed, websockets.ConnectionClosed)
    assert (closed.rcvd.code, closed.rcvd.reason) == (4403, "A valid token is required in connection_params")


async def test_gql_sees_field_errors_as_graphql_errors(live_server, agent_token):
    erase = GraphQLRequest(
        'mutation { customerErase(input: {customerId: "Q3VzdG9tZXI6MQ==", reason: "x"}) { errors { code } } }'
    )
    async with http_client(live_server, agent_token) as session:
        with pytest.raises(TransportQueryError) as refused:
            await session.execute(erase)
    assert refused.value.errors[0]["extensions"]["code"] == "FORBIDDEN"

"""The permission matrix: every root operation declares its permission from the one matrix, the
README's table is that matrix, and every role is admitted or refused by every operation as it says."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
import websockets
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
)
from graphql.pyutils import Undefined
from sqlalchemy import text
from strawberry.permission import PermissionExtension

from resolvers.schema import build_schema
from schema.permissions import MATRIX
from tests.conftest import _token, wait_for_subscriber
from tests.support import gid, make_case, make_customer

ROLES = ("agent", "supervisor", "admin", "integrator")
ROOT_TYPES = ("Query", "Mutation", "Subscription")
README = Path(__file__).resolve().parent.parent / "README.md"
SCHEMA = build_schema()


def allowed(role: str, operation: str) -> bool:
    return role == "admin" or role in MATRIX[operation]


def declared_operations(field) -> list[str]:
    extensions = [e for e in field.extensions if isinstance(e, PermissionExtension)]
    return [getattr(p, "operation", None) for e in extensions for p in e.permissions]


def root_fields() -> list[tuple[str, object]]:
    return [(name, f) for name in ROOT_TYPES for f in SCHEMA.get_type_by_name(name).fields]


def test_every_root_field_mutation_and_subscription_declares_its_permission_from_the_matrix():
    undeclared = []
    for type_name, field in root_fields():
        operation = f"{type_name}.{SCHEMA.config.name_converter.get_graphql_name(field)}"
        if declared_operations(field)[:1] != [operation]:
            undeclared.append(operation)

    assert undeclared == []


def test_the_matrix_names_only_fields_that_exist_and_they_declare_it():
    roots = {f"{t}.{SCHEMA.config.name_converter.get_graphql_name(f)}" for t, f in root_fields()}
    nested = {op for op in MATRIX if op.split(".")[0] not in ROOT_TYPES}
    nested_declared = set()
    for op in nested:
        type_name, field_name = op.split(".")
        for field in SCHEMA.get_type_by_name(type_name).fields:
            if SCHEMA.config.name_converter.get_graphql_name(field) == field_name:
                nested_declared.update(declared_operations(field))

    assert {op.split("(")[0] for op in MATRIX} - nested == roots
    assert nested_declared == nested


def test_the_readme_table_is_the_matrix():
    section = README.read_text(encoding="utf-8").split("## Permissions", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        operation = cells[0].strip("`").replace("` ", "").replace("`", "")
        table[operation] = tuple(role for role, cell in zip(ROLES, cells[1:5], strict=True) if cell == "✓")

    expected = {op: tuple(r for r in ROLES if allowed(r, op)) for op in MATRIX}
    assert table == expected


# Arguments with placeholder values of the right types: enough to get past validation, so that
# the permission check (which runs before the resolver) is what answers.
def _literal(gql_type) -> str:
    if isinstance(gql_type, GraphQLNonNull):
        return _literal(gql_type.of_type)
    if isinstance(gql_type, GraphQLList):
        return "[]"
    if isinstance(gql_type, GraphQLEnumType):
        return next(iter(gql_type.values))
    if isinstance(gql_type, GraphQLInputObjectType):
        required = [
            f"{name}: {_literal(f.type)}"
            for name, f in gql_type.fields.items()
            if isinstance(f.type, GraphQLNonNull) and f.default_value is Undefined
        ]
        return "{" + ", ".join(required) + "}"
    assert isinstance(gql_type, GraphQLScalarType)
    return {"Int": "1", "Float": "1.0", "Boolean": "false", "JSON": "{}", "DateTime": '"2026-01-01T00:00:00Z"'}.get(
        gql_type.name, '"x"'
    )


def document(type_name: str, field_name: str) -> str:
    field = getattr(SCHEMA._schema, f"{type_name.lower()}_type").fields[field_name]
    args = [f"{name}: {_literal(a.type)}" for name, a in field.args.items() if isinstance(a.type, GraphQLNonNull)]
    call = f"{field_name}({', '.join(args)})" if args else field_name
    keyword = {"Query": "query", "Mutation": "mutation", "Subscription": "subscription"}[type_name]
    return f"{keyword} {{ {call} {{ __typename }} }}" if _has_fields(field.type) else f"{keyword} {{ {call} }}"


def _has_fields(gql_type) -> bool:
    while isinstance(gql_type, GraphQLNonNull | GraphQLList):
        gql_type = gql_type.of_type
    return hasattr(gql_type, "fields")


def _forbidden(body: dict) -> bool:
    return any(e.get("extensions", {}).get("code") == "FORBIDDEN" for e in body.get("errors") or [])


@pytest.fixture
async def tokens(runtime) -> dict[str, str]:
    return {role: await _token(runtime, f"{role}-1", role) for role in ROLES}


async def test_every_query_and_mutation_admits_and_refuses_each_role_as_the_matrix_says(gql, tokens):
    wrong = []
    for operation in MATRIX:
        type_name, field_name = operation.split(".")
        if type_name not in ("Query", "Mutation"):
            continue
        for role in ROLES:
            body = (await gql.post(document(type_name, field_name), token=tokens[role])).json()
            if _forbidden(body) == allowed(role, operation):
                wrong.append((operation, role, body.get("errors")))

    assert wrong == []


async def _first_message(live_server: str, token: str, query: str) -> dict | None:
    """The first message answering a subscription; None when it is still open after a moment."""
    async with websockets.connect(f"ws://{live_server}/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": query}}))
        try:
            return json.loads(await asyncio.wait_for(ws.recv(), 0.5))
        except TimeoutError:
            return None


def _refused(message: dict | None) -> bool:
    if message is None:
        return False
    errors = message["payload"] if message["type"] == "error" else (message.get("payload") or {}).get("errors")
    return any(e.get("extensions", {}).get("code") == "FORBIDDEN" for e in errors or [])


async def test_subscriptions_admit_and_refuse_each_role_as_the_queries_they_mirror(live_server, runtime, tokens):
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    # Every user serves the pool, so the role alone decides.
    async with runtime.transaction() as session:
        pool = (await session.execute(text("INSERT INTO pools (name) VALUES ('Billing') RETURNING id"))).scalar()
        await session.execute(
            text("INSERT INTO pool_members (pool_id, user_id) SELECT :pool, id FROM users"), {"pool": pool}
        )
    subscriptions = {
        "Subscription.customerUpdated": f'subscription {{ customerUpdated(id: "{customer}") {{ id }} }}',
        "Subscription.caseUpdated": f'subscription {{ caseUpdated(id: "{gid("Case", 1)}") {{ id }} }}',
        "Subscription.contactReceived": f'subscription {{ contactReceived(customerId: "{customer}") {{ id }} }}',
        "Subscription.contactReceived(all)": "subscription { contactReceived { id } }",
        "Subscription.queueUpdated": f'subscription {{ queueUpdated(poolId: "{gid("Pool", pool)}") {{ change }} }}',
        "Subscription.myWorkUpdated": "subscription { myWorkUpdated { change } }",
        "Subscription.taskReminder": "subscription { taskReminder { remindedAt } }",
    }
    assert set(subscriptions) == {op for op in MATRIX if op.startswith("Subscription.")}
    wrong = []
    for operation, query in subscriptions.items():
        for role in ROLES:
            message = await _first_message(live_server, tokens[role], query)
            if _refused(message) == allowed(role, operation) or (allowed(role, operation) and message is not None):
                wrong.append((operation, role, message))

    assert wrong == []


async def test_an_open_unfiltered_contact_stream_is_a_supervisors(live_server, runtime, tokens):
    async with websockets.connect(f"ws://{live_server}/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": tokens["supervisor"]}}))
        await ws.recv()
        await ws.send(
            json.dumps(
                {"type": "subscribe", "id": "1", "payload": {"query": "subscription { contactReceived { id } }"}}
            )
        )
        await wait_for_subscriber(runtime, "contactReceived", "all")


NODE = "query($id: ID!) { node(id: $id) { id } }"


async def test_node_reads_an_object_only_for_roles_that_may_read_its_type(gql, runtime, tokens):
    customer = gid("Customer", await make_customer(runtime, "Ada"))

    as_integrator = (await gql.post(NODE, {"id": customer}, token=tokens["integrator"])).json()
    as_agent = await gql(NODE, {"id": customer}, token=tokens["agent"])

    assert as_integrator["data"] == {"node": None} and _forbidden(as_integrator)
    assert re.search("requires role agent or supervisor", as_integrator["errors"][0]["message"])
    assert as_agent == {"node": {"id": customer}}


HISTORY = {
    "Customer.cases": "query($n: String!) { customerByNumber(number: $n) { name cases { edges { cursor } } } }",
    "Customer.contacts": "query($n: String!) { customerByNumber(number: $n) { name contacts { edges { cursor } } } }",
    "Case.contacts": "query($r: String!) { caseByReference(reference: $r) { subject contacts { edges { cursor } } } }",
    "Customer.openCases": "query($n: String!) { customerByNumber(number: $n) { name openCases { edges { cursor } } } }",
    "Customer.latestContact": "query($n: String!) { customerByNumber(number: $n) { name latestContact { id } } }",
    "Customer.tasks": "query($n: String!) { customerByNumber(number: $n) { name tasks { edges { cursor } } } }",
    "Case.tasks": "query($r: String!) { caseByReference(reference: $r) { subject tasks { edges { cursor } } } }",
}


async def test_histories_are_read_by_the_roles_the_matrix_says_not_by_integrators_that_looked_a_record_up(
    gql, runtime, tokens
):
    customer = await make_customer(runtime, "Ada")
    await make_case(runtime, [customer])
    keys = {"n": "C-000001", "r": "CASE-000001"}
    assert set(HISTORY) == {op for op in MATRIX if op.split(".")[0] not in ROOT_TYPES}
    lookup = "query($n: String!) { customerByNumber(number: $n) { name identifiers { kind } } }"

    wrong = []
    for operation, query in HISTORY.items():
        for role in ROLES:
            body = (await gql.post(query, keys, token=tokens[role])).json()
            if _forbidden(body) == allowed(role, operation):
                wrong.append((operation, role, body))
    looked_up = await gql(lookup, keys, token=tokens["integrator"])

    assert wrong == []
    assert looked_up == {"customerByNumber": {"name": "Ada", "identifiers": []}}

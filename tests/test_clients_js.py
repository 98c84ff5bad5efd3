"""The JavaScript clients agent desktops are built on, against a real server: the official
graphql-ws client, Apollo Client with automatic persisted queries, and graphql-http's
GraphQL-over-HTTP conformance audits. Their npm packages are pinned in tests/clients/."""

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_for_subscriber

CLIENTS = Path(__file__).parent / "clients"


@pytest.fixture(scope="session")
def node() -> str:
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed: the JavaScript client tests need them")
    installed = CLIENTS / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < (CLIENTS / "package-lock.json").stat().st_mtime:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENTS, check=True, stdout=sys.stderr)
    return node


async def run_node(node: str, script: str, *args: str, timeout: float = 60) -> str:
    process = await asyncio.create_subprocess_exec(
        node, str(CLIENTS / script), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def create_customer(gql, name: str) -> dict:
    data = await gql("mutation($n: String) { customerCreate(input: {name: $n}) { customer { id } } }", {"n": name})
    return data["customerCreate"]["customer"]


async def test_graphql_http_audits_all_pass_musts_shoulds_and_mays(node, live_server, admin_token):
    results = json.loads(await run_node(node, "audit.mjs", f"http://{live_server}/graphql", admin_token))

    failed = {r["id"]: f"{r['name']}: {r['reason']}" for r in results if r["status"] != "ok"}
    assert len([r for r in results if r["name"].startswith("MUST")]) >= 10
    assert failed == {}


async def test_graphql_ws_client_receives_a_subscription_event(node, gql, runtime, live_server, admin_token):
    customer = await create_customer(gql, "Ada")
    process = await asyncio.create_subprocess_exec(
        node,
        str(CLIENTS / "subscribe.mjs"),
        f"ws://{live_server}/graphql",
        admin_token,
        "subscription($id: ID!) { customerUpdated(id: $id) { name } }",
        json.dumps({"id": customer["id"]}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        connected = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        await wait_for_subscriber(runtime, "customerUpdated", 1)
        await gql(
            'mutation($id: ID!) { customerUpdate(input: {id: $id, name: "Ada L."}) { errors { code } } }',
            {"id": customer["id"]},
        )
        event = json.loads(await asyncio.wait_for(process.stdout.readline(), 10))
    finally:
        process.kill()
        await process.wait()

    assert connected == {"connected": True}
    assert event["next"]["data"] == {"customerUpdated": {"name": "Ada L."}}
    assert re.fullmatch(r"\d+-\d+", event["next"]["extensions"]["eventId"])  # to resume from, with `after`


async def test_graphql_ws_client_hears_why_a_bad_token_is_refused(node, live_server):
    output = await run_node(
        node, "subscribe.mjs", f"ws://{live_server}/graphql", "cg_wrong", "subscription { contactReceived { id } }"
    )
    messages = [json.loads(line) for line in output.splitlines()]

    assert {"closed": {"code": 4403, "reason": "A valid token is required in connection_params"}} in messages


async def test_apollo_client_registers_and_reuses_a_persisted_query(node, live_server, admin_token):
    result = json.loads(await run_node(node, "apollo.mjs", f"http://{live_server}/graphql", admin_token, "Grace"))

    customer = result["created"]["customerCreate"]["customer"]
    assert result["first"]["customer"] == result["second"]["customer"] == customer
    # Each document goes as a hash first; the unknown hash is refused with PersistedQueryNotFound
    # (400: Apollo asks for graphql-response+json), Apollo sends the document with its hash by POST,
    # which registers it, and from then on the hash alone is enough, by GET for queries.
    assert [(r["method"], r["sentQuery"], r["sentHash"], r["status"]) for r in result["requests"]] == [
        ("POST", False, True, 400),
        ("POST", True, True, 200),
        ("GET", False, True, 400),
        ("POST", True, True, 200),
        ("GET", False, True, 200),
    ]

"""Users and tokens administered through the API and the CLI; revocation on every API process."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets
from sqlalchemy import text

from app import auth
from tests.conftest import _token
from tests.support import gid, make_customer, rows, scalar
from tests.test_runtime import run_cli

USER_CREATE = """mutation($input: UserCreateInput!) {
  userCreate(input: $input) { user { id name email role active } errors { field code message } }
}"""
USER_UPDATE = """mutation($input: UserUpdateInput!) {
  userUpdate(input: $input) { user { id name email role } errors { field code message } }
}"""
USER_DEACTIVATE = """mutation($id: ID!) {
  userDeactivate(input: {id: $id}) { user { active } errors { field code message } }
}"""
TOKEN_CREATE = """mutation($userId: ID!, $name: String) {
  tokenCreate(input: {userId: $userId, name: $name}) { secret token { id name user { name } } errors { field code } }
}"""
TOKEN_REVOKE = """mutation($id: ID!) { tokenRevoke(input: {id: $id}) { token { revokedAt } errors { code } } }"""
TOKENS = """{ tokens { edges { node { id name createdAt lastUsedAt revokedAt user { name role } } } } }"""
AUDIT = "query($id: ID!) { auditEvents(entityId: $id) { edges { node { action before after actorName } } } }"
ME = "{ me { name role } }"


async def create_user(gql, **values) -> dict:
    return (await gql(USER_CREATE, {"input": values}))["userCreate"]


async def test_admins_create_and_change_users_with_a_normalised_unique_email(gql):
    created = await create_user(gql, name="Ann", email="  Ann.Agent@Example.COM ", role="AGENT")
    taken = await create_user(gql, name="Bob", email="ann.agent@example.com", role="AGENT")
    invalid = await create_user(gql, name="Cy", email="not an email", role="AGENT")
    same_name = await create_user(gql, name="Ann", role="SUPERVISOR")
    user_id = created["user"]["id"]
    promoted = (await gql(USER_UPDATE, {"input": {"id": user_id, "role": "SUPERVISOR", "email": "ANN@example.com"}}))[
        "userUpdate"
    ]
    trail = (await gql(AUDIT, {"id": user_id}))["auditEvents"]["edges"]

    assert created["errors"] == [] and created["user"]["email"] == "ann.agent@example.com"
    assert created["user"]["role"] == "AGENT" and created["user"]["active"] is True
    assert taken["errors"] == [{"field": "email", "code": "DUPLICATE", "message": taken["errors"][0]["message"]}]
    assert invalid["errors"][0]["field"] == "email" and invalid["errors"][0]["code"] == "INVALID"
    assert same_name["errors"][0]["code"] == "DUPLICATE"
    assert promoted["user"] == {"id": user_id, "name": "Ann", "email": "ann@example.com", "role": "SUPERVISOR"}
    assert [e["node"]["action"] for e in trail] == ["user.update", "user.create"]
    assert trail[0]["node"]["before"]["role"] == "agent" and trail[0]["node"]["after"]["role"] == "supervisor"
    assert trail[0]["node"]["actorName"] == "admin"


async def test_the_thread_rule_knows_an_agent_by_the_email_an_admin_gave(gql, runtime):
    await create_user(gql, name="Ann", email="Ann@Example.com", role="AGENT")

    stored = await scalar(runtime, "SELECT email FROM users WHERE name = 'Ann'")

    assert stored == "ann@example.com"


async def test_the_last_active_admin_keeps_the_role(gql):
    me = await gql("{ users { edges { node { id name } } } }")
    admin_id = next(e["node"]["id"] for e in me["users"]["edges"] if e["node"]["name"] == "admin")

    demoted = (await gql(USER_UPDATE, {"input": {"id": admin_id, "role": "AGENT"}}))["userUpdate"]
    deactivated = (await gql(USER_DEACTIVATE, {"id": admin_id}))["userDeactivate"]

    assert demoted["errors"][0]["code"] == "CONFLICT"
    assert deactivated["errors"][0]["code"] == "CONFLICT"
    assert (await gql(ME))["me"] == {"name": "admin", "role": "ADMIN"}


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(gql, runtime):
    root = (await create_user(gql, name="root", role="ADMIN"))["user"]
    root_token = await _token(runtime, "root", "admin")
    users = (await gql("{ users { edges { node { id name } } } }"))["users"]["edges"]
    admin_id = next(e["node"]["id"] for e in users if e["node"]["name"] == "admin")

    results = await asyncio.gather(
        gql(USER_UPDATE, {"input": {"id": root["id"], "role": "AGENT"}}),
        gql(USER_UPDATE, {"input": {"id": admin_id, "role": "AGENT"}}, token=root_token),
    )

    assert sorted(bool(r["userUpdate"]["errors"]) for r in results) == [False, True]
    assert await scalar(runtime, "SELECT count(*) FROM users WHERE role = 'admin' AND active") == 1


async def test_a_token_secret_is_shown_once_and_tokens_list_without_it(gql, runtime):
    ann = (await create_user(gql, name="Ann", role="AGENT"))["user"]

    created = (await gql(TOKEN_CREATE, {"userId": ann["id"], "name": "Ann's desk"}))["tokenCreate"]
    me = await gql(ME, token=created["secret"])
    listed = [e["node"] for e in (await gql(TOKENS))["tokens"]["edges"]]
    token_fields = await gql('{ __type(name: "ApiToken") { fields { name } } }')
    stored = await rows(runtime, "SELECT token_hash FROM api_tokens WHERE name = 'Ann''s desk'")

    assert created["errors"] == [] and created["secret"].startswith("cg_")
    assert me["me"] == {"name": "Ann", "role": "AGENT"}
    assert listed[0]["id"] == created["token"]["id"] and listed[0]["name"] == "Ann's desk"
    assert listed[0]["user"] == {"name": "Ann", "role": "AGENT"} and listed[0]["revokedAt"] is None
    assert listed[0]["lastUsedAt"] is not None
    assert {f["name"] for f in token_fields["__type"]["fields"]} == {
        "id",
        "name",
        "user",
        "createdAt",
        "lastUsedAt",
        "revokedAt",
    }
    assert stored[0][0] != created["secret"] and len(stored[0][0]) == 64


async def test_no_token_for_a_deactivated_user(gql):
    ann = (await create_user(gql, name="Ann", role="AGENT"))["user"]
    await gql(USER_DEACTIVATE, {"id": ann["id"]})

    refused = (await gql(TOKEN_CREATE, {"userId": ann["id"]}))["tokenCreate"]

    assert refused["secret"] is None and refused["errors"] == [{"field": "userId", "code": "CONFLICT"}]


async def test_last_used_at_is_written_at_most_once_a_minute(runtime, count_queries):
    secret = await _token(runtime, "ann", "agent")
    updates = []

    for _ in range(5):
        auth._cache.clear()  # as if each request came after the cache expired, or to another process
        start = count_queries.count
        async with runtime.reading() as session:
            assert await auth.authenticate(session, secret) is not None
        updates.append(sum("UPDATE api_tokens" in s for s in count_queries.statements[start:]))
    first_use = await scalar(runtime, "SELECT last_used_at FROM api_tokens")
    async with runtime.engine.begin() as conn:
        await conn.execute(text("UPDATE api_tokens SET last_used_at = now() - interval '2 minutes'"))
    auth._cache.clear()
    async with runtime.reading() as session:
        await auth.authenticate(session, secret)
    later_use = await scalar(runtime, "SELECT last_used_at FROM api_tokens")

    assert updates == [1, 0, 0, 0, 0]
    assert first_use is not None and later_use > first_use


async def _until(check, seconds: float = 1.0):
    """Poll `check` until it returns a truthy value or the time is up; that value, and the seconds it took."""
    start = time.monotonic()
    while True:
        value = await check()
        elapsed = time.monotonic() - start
        if value or elapsed > seconds:
            return value, elapsed
        await asyncio.sleep(0.02)


async def _subscribed_socket(host: str, token: str, customer: str):
    ws = await websockets.connect(f"ws://{host}/graphql", subprotocols=["graphql-transport-ws"])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    query = f'subscription {{ customerUpdated(id: "{customer}") {{ id }} }}'
    await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": query}}))
    return ws


async def _closed(ws, seconds: float = 1.0) -> tuple[int, str] | None:
    """The close code and reason once the server closed the socket within `seconds`, else None."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), seconds)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code, closed.rcvd.reason
    except TimeoutError:
        return None


async def _me_status(host: str, token: str) -> int:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"http://{host}/graphql", json={"query": ME}, headers={"Authorization": f"Bearer {token}"}
        )
        return response.status_code


async def test_a_revoked_token_stops_within_a_second_on_another_api_process_and_its_websocket_closes(
    gql, runtime, second_api_process
):
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    secret = await _token(runtime, "ann", "agent")
    other_secret = await _token(runtime, "ann", "agent")
    assert await _me_status(second_api_process, secret) == 200  # now cached there
    ws = await _subscribed_socket(second_api_process, secret, customer)
    other_ws = await _subscribed_socket(second_api_process, other_secret, customer)
    first_token = await scalar(
        runtime, "SELECT min(t.id) FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE u.name = 'ann'"
    )
    token_id = gid("ApiToken", first_token)

    revoked = (await gql(TOKEN_REVOKE, {"id": token_id}))["tokenRevoke"]
    closed = await _closed(ws)
    refused, elapsed = await _until(lambda: _refused_on(second_api_process, secret))
    other_open = await _closed(other_ws, 0.3)
    await other_ws.close()

    assert revoked["errors"] == [] and revoked["token"]["revokedAt"] is not None
    assert closed == (4403, "The token was revoked")
    assert refused and elapsed < 1.0
    assert other_open is None  # the user's other token is untouched
    assert await _me_status(second_api_process, other_secret) == 200


async def test_deactivating_a_user_ends_its_tokens_and_websockets_on_every_process(gql, runtime, second_api_process):
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    secret = await _token(runtime, "ann", "agent")
    assert await _me_status(second_api_process, secret) == 200
    ws = await _subscribed_socket(second_api_process, secret, customer)
    users = (await gql("{ users { edges { node { id name } } } }"))["users"]["edges"]
    ann = next(e["node"]["id"] for e in users if e["node"]["name"] == "ann")

    deactivated = (await gql(USER_DEACTIVATE, {"id": ann}))["userDeactivate"]
    closed = await _closed(ws)
    refused, elapsed = await _until(lambda: _refused_on(second_api_process, secret))
    here = (await gql.post(ME, token=secret)).status_code

    assert deactivated == {"user": {"active": False}, "errors": []}
    assert closed == (4403, "The user was deactivated")
    assert refused and elapsed < 1.0
    assert here == 401


async def _refused_on(host: str, secret: str) -> bool:
    return await _me_status(host, secret) == 401


@pytest.fixture
def cli_env(servers) -> dict[str, str]:
    return dict(servers)


async def test_cli_token_create_never_changes_an_existing_users_role(gql, runtime, cli_env):
    await _token(runtime, "ann", "agent")

    refused = await asyncio.to_thread(run_cli, "token", "create", "--name", "ann", "--role", "admin", env=cli_env)
    another = await asyncio.to_thread(run_cli, "token", "create", "--name", "ann", "--role", "agent", env=cli_env)

    assert refused.returncode == 2 and refused.stdout == ""
    assert "has the role agent, not admin" in refused.stderr
    assert await scalar(runtime, "SELECT role FROM users WHERE name = 'ann'") == "agent"
    assert another.returncode == 0
    assert (await gql(ME, token=another.stdout.strip()))["me"] == {"name": "ann", "role": "AGENT"}


async def test_cli_lists_and_revokes_tokens(gql, runtime, cli_env):
    secret = await _token(runtime, "dialer", "integrator")
    token_id = await scalar(runtime, "SELECT id FROM api_tokens WHERE name = 'dialer'")
    assert (await gql(ME, token=secret))["me"]["name"] == "dialer"  # now cached in this process

    listed = await asyncio.to_thread(run_cli, "token", "list", env=cli_env)
    revoked = await asyncio.to_thread(run_cli, "token", "revoke", str(token_id), env=cli_env)
    refused, _ = await _until(lambda: _refused_in_process(gql, secret))
    after = await asyncio.to_thread(run_cli, "token", "list", env=cli_env)
    with_revoked = await asyncio.to_thread(run_cli, "token", "list", "--all", env=cli_env)
    unknown = await asyncio.to_thread(run_cli, "token", "revoke", "999999", env=cli_env)

    assert listed.returncode == 0 and "dialer" in listed.stdout and "integrator" in listed.stdout
    assert secret not in listed.stdout
    assert revoked.returncode == 0, revoked.stderr
    assert refused
    assert "dialer" not in after.stdout and "dialer" in with_revoked.stdout
    assert unknown.returncode == 2 and "token not found" in unknown.stderr
    audit = await rows(
        runtime, "SELECT action, actor_name FROM audit_events WHERE entity_type = 'api_token' ORDER BY id"
    )
    assert audit[-1] == ("token.revoke", "system")


async def _refused_in_process(gql, secret: str) -> bool:
    return (await gql.post(ME, token=secret)).status_code == 401


async def test_only_admins_administer_users_and_tokens(gql, runtime):
    supervisor = await _token(runtime, "sue", "supervisor")

    body = (await gql.post(USER_CREATE, {"input": {"name": "Eve", "role": "ADMIN"}}, token=supervisor)).json()

    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await scalar(runtime, "SELECT count(*) FROM users WHERE name = 'Eve'") == 0


async def test_a_role_change_applies_within_a_second_and_closes_the_users_websockets(gql, runtime, live_server):
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    secret = await _token(runtime, "sue", "supervisor")
    assert (await gql(ME, token=secret))["me"]["role"] == "SUPERVISOR"  # now cached
    ws = await _subscribed_socket(live_server, secret, customer)
    users = (await gql("{ users { edges { node { id name } } } }"))["users"]["edges"]
    sue = next(e["node"]["id"] for e in users if e["node"]["name"] == "sue")

    await gql(USER_UPDATE, {"input": {"id": sue, "role": "AGENT"}})
    closed = await _closed(ws)

    async def demoted() -> bool:
        return (await gql(ME, token=secret))["me"]["role"] == "AGENT"

    applied, elapsed = await _until(demoted)

    assert closed == (4403, "The user's role changed: connect again")
    assert applied and elapsed < 1.0

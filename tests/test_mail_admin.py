"""Pools and mailboxes administered over GraphQL (admins only, refusals as typed errors, no secret
ever shown) and the same set as a YAML file through `casegraph mail export|import`."""

from __future__ import annotations

import asyncio

import yaml
from sqlalchemy import select

from app.models import Mailbox
from tests.test_runtime import run_cli

MAILBOX_FIELDS = """
id address displayName intake enabled pool { name }
imap { host port security user secretEnv folder mark moveTo idle pollSeconds }
relay { host port security user secretEnv fromAddress }
status { lastPolledAt lastUid lastError lastErrorAt }
"""
POOL_CREATE = """
mutation($input: PoolCreateInput!) { poolCreate(input: $input) { pool { id name description priority } errors { field code message } } }
"""
POOL_UPDATE = """
mutation($input: PoolUpdateInput!) { poolUpdate(input: $input) { pool { name description priority } errors { field code } } }
"""
POOLS = "{ pools { name priority } }"
CREATE = f"""
mutation($input: MailboxCreateInput!) {{ mailboxCreate(input: $input) {{ mailbox {{ {MAILBOX_FIELDS} }} errors {{ field code message }} }} }}
"""
UPDATE = f"""
mutation($input: MailboxUpdateInput!) {{ mailboxUpdate(input: $input) {{ mailbox {{ {MAILBOX_FIELDS} }} errors {{ field code message }} }} }}
"""
DELETE = "mutation($input: MailboxDeleteInput!) { mailboxDelete(input: $input) { deletedId errors { field code } } }"
MAILBOXES = f"{{ mailboxes {{ {MAILBOX_FIELDS} }} }}"

IMAP_BOX = {
    "address": "Support@Example.com",
    "displayName": "Support",
    "intake": "IMAP",
    "imap": {"host": "imap.example.com", "user": "support", "secretEnv": "CASEGRAPH_SECRET_SUPPORT_IMAP"},
    "relay": {
        "host": "smtp.example.com",
        "user": "support",
        "secretEnv": "CASEGRAPH_SECRET_SUPPORT_SMTP",
        "fromAddress": "support@example.com",
    },
}


async def test_an_admin_creates_pools_and_mailboxes_with_defaults_filled_in(gql):
    pool = (await gql(POOL_CREATE, {"input": {"name": "Billing", "description": "Invoices", "priority": 5}}))[
        "poolCreate"
    ]
    assert pool["errors"] == [] and pool["pool"]["name"] == "Billing"

    created = (await gql(CREATE, {"input": {**IMAP_BOX, "poolId": pool["pool"]["id"]}}))["mailboxCreate"]

    assert created["errors"] == []
    mailbox = created["mailbox"]
    assert mailbox["address"] == "support@example.com" and mailbox["pool"] == {"name": "Billing"}
    assert mailbox["imap"] == {
        "host": "imap.example.com",
        "port": 993,
        "security": "TLS",
        "user": "support",
        "secretEnv": "CASEGRAPH_SECRET_SUPPORT_IMAP",
        "folder": "INBOX",
        "mark": "FLAG",
        "moveTo": None,
        "idle": False,
        "pollSeconds": 60,
    }
    assert mailbox["relay"]["port"] == 587 and mailbox["relay"]["security"] == "STARTTLS"
    assert mailbox["status"] == {"lastPolledAt": None, "lastUid": 0, "lastError": None, "lastErrorAt": None}
    assert (await gql(MAILBOXES))["mailboxes"] == [mailbox]


async def test_no_field_of_the_schema_can_carry_a_secret(gql):
    # Passwords are only ever named (CASEGRAPH_SECRET_*), so the API has no field that holds one.
    type_fields = await gql(
        '{ a: __type(name: "ImapSettingsInput") { inputFields { name } } b: __type(name: "Mailbox") { fields { name } } }'
    )
    names = [f["name"].lower() for f in type_fields["a"]["inputFields"] + type_fields["b"]["fields"]]
    assert not [n for n in names if "password" in n or n == "secret"]

    refused = await gql(CREATE, {"input": {**IMAP_BOX, "imap": {**IMAP_BOX["imap"], "secretEnv": "hunter2"}}})
    assert refused["mailboxCreate"]["errors"][0]["code"] == "INVALID"
    assert refused["mailboxCreate"]["errors"][0]["field"] == "imap.secretEnv"


async def test_bad_mailbox_settings_are_typed_errors(gql):
    cases = [
        ({"address": "Support <support@example.com>"}, "address", "INVALID"),
        ({"address": "support@example.com\r\nBcc: x@evil.example"}, "address", "INVALID"),
        ({"imap": {"user": "support"}}, "imap.host", "REQUIRED"),
        ({"signature": "Regards, {{ agent_name"}, "signature", "INVALID"),
        ({"imap": {**IMAP_BOX["imap"], "mark": "MOVE"}}, "imap.moveTo", "REQUIRED"),
        ({"imap": {**IMAP_BOX["imap"], "pollSeconds": 1}}, "imap.pollSeconds", "INVALID"),
        ({"imap": {**IMAP_BOX["imap"], "port": 70000}}, "imap.port", "INVALID"),
        ({"relay": {"fromAddress": "not an address"}}, "relay.fromAddress", "INVALID"),
        ({"poolId": "UG9vbDo5OTk="}, "poolId", "NOT_FOUND"),
    ]
    for change, field, code in cases:
        payload = (await gql(CREATE, {"input": {**IMAP_BOX, **change}}))["mailboxCreate"]
        assert payload["mailbox"] is None, change
        assert (payload["errors"][0]["field"], payload["errors"][0]["code"]) == (field, code), change

    assert (await gql(CREATE, {"input": IMAP_BOX}))["mailboxCreate"]["errors"] == []
    twice = (await gql(CREATE, {"input": {**IMAP_BOX, "address": "SUPPORT@example.com"}}))["mailboxCreate"]
    assert twice["errors"][0]["code"] == "DUPLICATE"


async def test_updates_change_what_is_given_and_a_new_folder_restarts_polling(gql, runtime):
    mailbox = (await gql(CREATE, {"input": IMAP_BOX}))["mailboxCreate"]["mailbox"]
    async with runtime.transaction() as session:
        stored = await session.scalar(select(Mailbox))
        stored.imap_uid_validity, stored.imap_last_uid = 7, 42

    kept = (await gql(UPDATE, {"input": {"id": mailbox["id"], "displayName": "Help desk"}}))["mailboxUpdate"]
    assert kept["mailbox"]["displayName"] == "Help desk" and kept["mailbox"]["status"]["lastUid"] == 42
    assert kept["mailbox"]["imap"] == mailbox["imap"]

    moved = await gql(UPDATE, {"input": {"id": mailbox["id"], "imap": {**IMAP_BOX["imap"], "folder": "Support"}}})
    assert moved["mailboxUpdate"]["mailbox"]["imap"]["folder"] == "Support"
    assert moved["mailboxUpdate"]["mailbox"]["status"]["lastUid"] == 0

    assert (await gql(DELETE, {"input": {"id": mailbox["id"]}}))["mailboxDelete"]["deletedId"] == mailbox["id"]
    assert (await gql(MAILBOXES))["mailboxes"] == []


async def test_pools_are_updated_and_listed_by_priority(gql):
    low = (await gql(POOL_CREATE, {"input": {"name": "General"}}))["poolCreate"]["pool"]
    await gql(POOL_CREATE, {"input": {"name": "VIP", "priority": 9}})
    assert (await gql(POOL_CREATE, {"input": {"name": "VIP"}}))["poolCreate"]["errors"][0]["code"] == "DUPLICATE"

    updated = (await gql(POOL_UPDATE, {"input": {"id": low["id"], "priority": 3, "description": None}}))["poolUpdate"]
    assert updated["pool"] == {"name": "General", "description": None, "priority": 3}
    assert (await gql(POOLS))["pools"] == [{"name": "VIP", "priority": 9}, {"name": "General", "priority": 3}]


async def test_only_admins_administer_mail(gql, agent_token):
    pool_create = {"input": {"name": "Billing", "priority": 2}}
    for document, variables in ((MAILBOXES, None), (CREATE, {"input": IMAP_BOX}), (POOL_CREATE, pool_create)):
        response = await gql.post(document, variables, token=agent_token)
        assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # Agents read the pools: they are the queues they work from.
    assert (await gql(POOLS, token=agent_token))["pools"] == []


async def test_the_yaml_file_round_trips_and_an_import_is_all_or_nothing(gql, servers, tmp_path):
    pool = (await gql(POOL_CREATE, {"input": {"name": "Billing", "priority": 2}}))["poolCreate"]["pool"]
    await gql(CREATE, {"input": {**IMAP_BOX, "poolId": pool["id"]}})
    await gql(CREATE, {"input": {"address": "orders@example.com", "intake": "SMTP"}})
    before = (await gql(MAILBOXES))["mailboxes"]
    exported = tmp_path / "mail.yaml"

    result = await asyncio.to_thread(run_cli, "mail", "export", str(exported), env=servers)
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(exported.read_text())
    assert [m["address"] for m in document["mailboxes"]] == ["orders@example.com", "support@example.com"]
    assert document["mailboxes"][1]["pool"] == "Billing"
    assert "CASEGRAPH_SECRET_SUPPORT_IMAP" in exported.read_text()

    # An import that breaks in its last mailbox changes nothing.
    broken = tmp_path / "broken.yaml"
    document["mailboxes"].append({"address": "x@example.com", "intake": "imap", "imap": {"host": "h"}})
    broken.write_text(yaml.safe_dump(document))
    result = await asyncio.to_thread(run_cli, "mail", "import", str(broken), env=servers)
    assert result.returncode == 2 and "mailboxes.2" in result.stderr
    assert (await gql(MAILBOXES))["mailboxes"] == before

    # Importing the export again keeps every mailbox (ids included); one left out is removed.
    document["mailboxes"] = document["mailboxes"][1:2]
    exported.write_text(yaml.safe_dump(document))
    result = await asyncio.to_thread(run_cli, "mail", "import", str(exported), env=servers)
    assert result.returncode == 0, result.stderr
    assert (await gql(MAILBOXES))["mailboxes"] == [before[1]]

"""Routing rules: the case a contact opens goes to the pool of the first rule whose conditions hold,
for contacts ingested one by one, in batches, or taken in by mail; with the rule set's file."""

from __future__ import annotations

import yaml

from app.auth import SYSTEM
from app.errors import ErrorCode, UserError
from app.services.recognition import export_rules, import_rules
from schema.ids import decode_id, to_global_id
from tests.mail_support import add_mailbox, arq_pool, contacts, listener, message, run_jobs
from tests.test_mail_smtp import send
from tests.test_queues import pool

CREATE = """
mutation($input: RoutingRuleCreateInput!) {
  routingRuleCreate(input: $input) {
    rule { id name position channels conditions { source operator value } pool { name } }
    errors { field code message }
  }
}
"""
UPDATE = """
mutation($input: RoutingRuleUpdateInput!) {
  routingRuleUpdate(input: $input) { rule { name enabled pool { name } } errors { field code } }
}
"""
REORDER = (
    "mutation($ids: [ID!]!) { routingRulesReorder(input: {ids: $ids}) { rules { name position } errors { code } } }"
)
RULES = "{ routingRules { name position enabled pool { name } conditions { source operator value } } }"
INGEST = """
mutation($input: ContactIngestInput!) {
  contactIngest(input: $input) { contact { recognition } case { pool { name } status } errors { code } }
}
"""
BATCH = """
mutation($items: [ContactIngestInput!]!) {
  contactIngestBatch(input: {contacts: $items}) { results { case { pool { name } } errors { code } } }
}
"""
PREVIEW = "query($input: ContactIngestInput!) { recognitionPreview(input: $input) { preview { trace } } }"
CASE_POOL = "query($id: ID!) { node(id: $id) { ... on Case { pool { name } } } }"


def db_id_of(global_id: str) -> int:
    return decode_id(global_id, "Pool")


def contact(external_id: str, *, to: str = "support@casegraph.test", subject: str = "Hello", **extra) -> dict:
    return {
        "source": "mailgate",
        "externalId": external_id,
        "channel": "EMAIL",
        "from": f"{external_id}@example.org",
        "to": [to],
        "subject": subject,
        **extra,
    }


async def rule(gql, name: str, pool_id: str, conditions: list[dict], **extra) -> dict:
    answer = (await gql(CREATE, {"input": {"name": name, "poolId": pool_id, "conditions": conditions, **extra}}))[
        "routingRuleCreate"
    ]
    assert answer["errors"] == [], answer
    return answer["rule"]


async def test_the_first_rule_whose_conditions_all_hold_sends_the_new_case_to_its_pool(gql):
    billing, vip, general = await pool(gql, "Billing"), await pool(gql, "VIP"), await pool(gql, "General")
    await rule(
        gql,
        "Gold customers",
        vip,
        [{"source": "payload.tier", "operator": "EQUALS", "value": "gold"}],
    )
    await rule(
        gql,
        "Invoices",
        billing,
        [
            {"source": "to", "operator": "CONTAINS", "value": "BILLING@"},
            {"source": "subject", "operator": "MATCHES", "value": r"(?i)\binvoice\s+\d+"},
        ],
    )
    await rule(gql, "Chats", general, [], channels=["CHAT"])

    async def routed(data: dict) -> dict:
        answer = (await gql(INGEST, {"input": data}))["contactIngest"]
        assert answer["errors"] == []
        return answer

    invoice = await routed(contact("a", to="billing@casegraph.test", subject="Invoice 1234 is wrong"))
    assert invoice["case"]["pool"] == {"name": "Billing"}
    assert invoice["case"]["status"] == "NEW"
    assert invoice["contact"]["recognition"]["routed"] == {"rule": "Invoices", "poolId": db_id_of(billing)}
    # Every condition must hold: the address alone is not enough.
    assert (await routed(contact("b", to="billing@casegraph.test", subject="Hello")))["case"]["pool"] is None
    # The earlier rule wins when both hold.
    gold = await routed(contact("c", to="billing@casegraph.test", subject="invoice 9", payload={"tier": "Gold"}))
    assert gold["case"]["pool"] == {"name": "VIP"}
    # A rule without conditions takes every contact of its channels, and only those.
    chat = {**contact("d"), "channel": "CHAT", "from": "+442071838750", "to": []}
    await gql(
        "mutation { noMatchPolicySet(input: {channel: CHAT, createCustomer: true, createCase: true, flagForReview: false}) { errors { code } } }"
    )
    assert (await routed(chat))["case"]["pool"] == {"name": "General"}
    unrouted = await routed(contact("e"))
    assert unrouted["case"]["pool"] is None
    assert unrouted["contact"]["recognition"]["routed"] is None


async def test_the_preview_and_the_batch_route_as_one_ingest_does(gql):
    billing = await pool(gql, "Billing")
    await rule(gql, "Invoices", billing, [{"source": "subject", "operator": "CONTAINS", "value": "invoice"}])

    preview = (await gql(PREVIEW, {"input": contact("p", subject="My invoice")}))["recognitionPreview"]["preview"]
    assert preview["trace"]["routed"] == {"rule": "Invoices", "poolId": db_id_of(billing)}

    items = [contact("x", subject="My invoice"), contact("y", subject="Hello"), contact("z", subject="INVOICE!")]
    results = (await gql(BATCH, {"items": items}))["contactIngestBatch"]["results"]
    assert [r["case"]["pool"] for r in results] == [{"name": "Billing"}, None, {"name": "Billing"}]


async def test_rules_are_edited_reordered_and_disabled_and_bad_ones_refused_with_codes(gql):
    billing, vip = await pool(gql, "Billing"), await pool(gql, "VIP")
    first = await rule(gql, "Invoices", billing, [{"source": "subject", "operator": "CONTAINS", "value": "invoice"}])
    second = await rule(gql, "Everything", vip, [])
    assert (first["position"], second["position"]) == (1, 2)
    assert first["conditions"] == [{"source": "subject", "operator": "CONTAINS", "value": "invoice"}]

    async def refused(conditions: list[dict], pool_id: str = billing) -> tuple[str, str]:
        answer = (await gql(CREATE, {"input": {"name": "Bad", "poolId": pool_id, "conditions": conditions}}))[
            "routingRuleCreate"
        ]
        assert answer["rule"] is None
        [error] = answer["errors"]
        return error["code"], error["field"]

    assert await refused([{"source": "subject", "operator": "MATCHES", "value": "(unclosed"}]) == (
        "INVALID_PATTERN",
        "conditions.0.value",
    )
    assert await refused([{"source": "body", "operator": "EXISTS"}]) == ("INVALID", "conditions.0.source")
    assert await refused([{"source": "from", "operator": "EXISTS"}, {"source": "to", "operator": "EQUALS"}]) == (
        "REQUIRED",
        "conditions.1.value",
    )
    assert await refused([], pool_id=to_global_id("Pool", 999_999)) == ("NOT_FOUND", "poolId")
    assert (await gql(CREATE, {"input": {"name": "Invoices", "poolId": vip}}))["routingRuleCreate"]["errors"][0][
        "code"
    ] == "DUPLICATE"

    reordered = (await gql(REORDER, {"ids": [second["id"], first["id"]]}))["routingRulesReorder"]["rules"]
    assert [(r["name"], r["position"]) for r in reordered] == [("Everything", 1), ("Invoices", 2)]
    updated = (await gql(UPDATE, {"input": {"id": second["id"], "enabled": False, "poolId": billing}}))[
        "routingRuleUpdate"
    ]
    assert updated == {"rule": {"name": "Everything", "enabled": False, "pool": {"name": "Billing"}}, "errors": []}
    # Disabled, it routes nothing: the invoice rule now decides.
    answer = (await gql(INGEST, {"input": contact("q", subject="hello")}))["contactIngest"]
    assert answer["case"]["pool"] is None

    # A pool a rule sends cases to cannot be deleted.
    deleted = (await gql("mutation($id: ID!) { poolDelete(input: {id: $id}) { errors { code } } }", {"id": billing}))[
        "poolDelete"
    ]
    assert deleted["errors"] == [{"code": "IN_USE"}]


async def test_a_routing_rule_outranks_the_mailbox_pool(runtime, servers, gql):
    support, billing = await pool(gql, "Support"), await pool(gql, "Billing")
    await add_mailbox(runtime, "support@casegraph.test", pool_id=db_id_of(support))
    await rule(gql, "Invoices", billing, [{"source": "subject", "operator": "CONTAINS", "value": "invoice"}])
    async with arq_pool(servers) as arq, listener(runtime, arq) as port:
        await send(port, message(subject="Invoice 77 is wrong", message_id="<inv@example.org>"))
        await send(port, message(subject="Hello", message_id="<hello@example.org>", sender="bob@example.org"))
        await run_jobs()

    pools = {}
    for found in await contacts(runtime):
        answer = await gql(CASE_POOL, {"id": to_global_id("Case", found.case_id)})
        pools[found.subject] = answer["node"]["pool"]["name"]
    assert pools == {"Invoice 77 is wrong": "Billing", "Hello": "Support"}


async def test_routing_rules_travel_in_the_rules_file_naming_their_pools(runtime, gql):
    billing = await pool(gql, "Billing")
    await rule(gql, "Invoices", billing, [{"source": "headers.X-Topic", "operator": "EQUALS", "value": "billing"}])
    async with runtime.reading() as session:
        document = yaml.safe_load(await export_rules(session))
    assert document["routing_rules"] == [
        {
            "name": "Invoices",
            "pool": "Billing",
            "conditions": [{"source": "headers.X-Topic", "operator": "equals", "value": "billing"}],
            "channels": [],
            "enabled": True,
        }
    ]

    document["routing_rules"].append({"name": "Lost", "pool": "Nowhere", "conditions": []})
    try:
        async with runtime.transaction() as session:
            await import_rules(session, actor=SYSTEM, document=yaml.safe_dump(document))
    except UserError as error:
        assert (error.code, error.field) == (ErrorCode.NOT_FOUND, "routing_rules.1.pool")
    else:
        raise AssertionError("an unknown pool must be refused")
    assert [r["name"] for r in (await gql(RULES))["routingRules"]] == ["Invoices"]

    document["routing_rules"][1]["pool"] = "Billing"
    async with runtime.transaction() as session:
        counts = await import_rules(session, actor=SYSTEM, document=yaml.safe_dump(document))
    assert counts["routing_rules"] == 2
    assert [r["name"] for r in (await gql(RULES))["routingRules"]] == ["Invoices", "Lost"]

"""Rule administration over GraphQL (and its refusals as typed errors), and the YAML round trip."""

from __future__ import annotations

from sqlalchemy import func, select

from app.auth import SYSTEM
from app.errors import ErrorCode, UserError
from app.models import AuditEvent, RecognitionRule
from app.recognition.connector import HostPolicy, connectors
from app.services import recognition as rule_service
from app.services.recognition import export_rules, import_rules

RULES = "{ recognitionRules { id name target kind config position channels enabled } }"
CREATE = """
mutation($input: RecognitionRuleCreateInput!) {
  recognitionRuleCreate(input: $input) { rule { id name target kind config position channels enabled } errors { field code message } }
}
"""
UPDATE = """
mutation($input: RecognitionRuleUpdateInput!) {
  recognitionRuleUpdate(input: $input) { rule { id name config channels enabled } errors { field code message } }
}
"""
DELETE = (
    "mutation($input: RuleDeleteInput!) { recognitionRuleDelete(input: $input) { deletedId errors { field code } } }"
)
REORDER = """
mutation($input: RulesReorderInput!) {
  recognitionRulesReorder(input: $input) { rules { name position } errors { field code message } }
}
"""
PROMOTION_CREATE = """
mutation($input: PromotionRuleCreateInput!) {
  promotionRuleCreate(input: $input) { rule { id name source target field policy position } errors { field code message } }
}
"""
POLICY_SET = """
mutation($input: NoMatchPolicySetInput!) {
  noMatchPolicySet(input: $input) { policy { channel createCustomer createCase flagForReview } errors { field code } }
}
"""
POLICIES = "{ noMatchPolicies { channel createCustomer createCase flagForReview } }"


async def rule_count(runtime) -> int:
    async with runtime.reading() as session:
        return await session.scalar(select(func.count()).select_from(RecognitionRule))


async def test_a_fresh_install_ships_the_default_rules_and_policies(gql):
    rules = (await gql(RULES))["recognitionRules"]
    assert [(r["name"], r["target"], r["kind"], r["position"]) for r in rules] == [
        ("Case reference in subject or text", "CASE", "REFERENCE_IN_TEXT", 1),
        ("Email thread", "CASE", "THREAD", 2),
        ("Sender email", "CUSTOMER", "IDENTIFIER", 3),
        ("Sender phone", "CUSTOMER", "IDENTIFIER", 4),
    ]
    policies = {p["channel"]: p for p in (await gql(POLICIES))["noMatchPolicies"]}
    assert policies["EMAIL"] == {"channel": "EMAIL", "createCustomer": True, "createCase": True, "flagForReview": False}
    assert policies["WEB"]["createCustomer"] and policies["WEB"]["createCase"]
    for channel in ("PHONE", "CHAT", "SMS"):
        assert policies[channel] == {
            "channel": channel,
            "createCustomer": False,
            "createCase": False,
            "flagForReview": True,
        }


async def test_rule_create_fills_defaults_and_places_the_rule(gql):
    created = (
        await gql(
            CREATE,
            {
                "input": {
                    "name": "Order number",
                    "kind": "EXTERNAL_REFERENCE",
                    "position": 2,
                    "config": {"pattern": r"#(\d{6})", "case_field": "order"},
                    "channels": ["EMAIL", "WEB"],
                }
            },
        )
    )["recognitionRuleCreate"]
    assert created["errors"] == []
    rule = created["rule"]
    assert rule["target"] == "CASE" and rule["position"] == 2 and rule["channels"] == ["EMAIL", "WEB"]
    assert rule["config"] == {"case_field": "order", "pattern": r"#(\d{6})", "fields": ["subject", "text"]}
    names = [r["name"] for r in (await gql(RULES))["recognitionRules"]]
    assert names == [
        "Case reference in subject or text",
        "Order number",
        "Email thread",
        "Sender email",
        "Sender phone",
    ]


async def test_rule_create_refusals_are_typed_and_change_nothing(gql, runtime, monkeypatch):
    monkeypatch.setattr(connectors, "policy", HostPolicy.parse("crm"))
    cases = [
        (
            {"name": "Bad", "kind": "REFERENCE_IN_TEXT", "config": {"pattern": "(["}},
            ("config.pattern", "INVALID_PATTERN"),
        ),
        (
            {"name": "Bad", "kind": "EXTERNAL_REFERENCE", "config": {"pattern": "ORD-\\d+", "case_field": "o"}},
            ("config.pattern", "INVALID_PATTERN"),
        ),
        ({"name": "Bad", "kind": "IDENTIFIER", "config": {"kind": "fax"}}, ("config.kind", "INVALID")),
        (
            {"name": "Bad", "kind": "IDENTIFIER", "config": {"kind": "email", "source": "body"}},
            ("config.source", "INVALID"),
        ),
        ({"name": "Bad", "kind": "LOOKUP", "config": {"url": "ftp://crm"}}, ("config.url", "INVALID")),
        (
            {"name": "Bad", "kind": "LOOKUP", "config": {"url": "http://169.254.169.254/latest"}},
            ("config.url", "CONNECTOR_HOST_REFUSED"),
        ),
        (
            {"name": "Bad", "kind": "LOOKUP", "config": {"url": "https://crm", "timeout_seconds": 0}},
            ("config.timeout_seconds", "INVALID"),
        ),
        ({"name": "Bad", "kind": "FIELD_MATCH", "config": {"path": "payload.member"}}, ("config.field", "REQUIRED")),
        ({"name": "Bad", "kind": "THREAD", "config": "yes"}, ("config", "INVALID")),
        (
            {"name": "Bad", "kind": "THREAD", "config": {"require_known_sender": "no"}},
            ("config.require_known_sender", "INVALID"),
        ),
        ({"name": " ", "kind": "THREAD"}, ("name", "REQUIRED")),
        ({"name": "Sender email", "kind": "THREAD"}, ("name", "DUPLICATE")),
    ]
    before = await rule_count(runtime)
    for rule_input, (field, code) in cases:
        payload = (await gql(CREATE, {"input": rule_input}))["recognitionRuleCreate"]
        assert payload["rule"] is None
        assert [(e["field"], e["code"]) for e in payload["errors"]] == [(field, code)], rule_input
    assert await rule_count(runtime) == before


async def test_rule_update_delete_and_reorder(gql):
    rules = (await gql(RULES))["recognitionRules"]
    by_name = {r["name"]: r["id"] for r in rules}

    updated = (
        await gql(
            UPDATE,
            {
                "input": {
                    "id": by_name["Sender phone"],
                    "config": {"kind": "phone", "region": "us"},
                    "channels": ["PHONE", "SMS"],
                    "enabled": False,
                }
            },
        )
    )["recognitionRuleUpdate"]
    assert updated["errors"] == [] and updated["rule"]["config"] == {"kind": "phone", "source": "from", "region": "US"}
    assert updated["rule"]["channels"] == ["PHONE", "SMS"] and not updated["rule"]["enabled"]

    bad = (
        await gql(
            UPDATE, {"input": {"id": by_name["Case reference in subject or text"], "config": {"pattern": "(a)(b)"}}}
        )
    )["recognitionRuleUpdate"]
    assert bad["errors"][0]["code"] == "INVALID_PATTERN"

    missing_rule = (await gql(UPDATE, {"input": {"id": "UmVjb2duaXRpb25SdWxlOjk5OQ==", "name": "x"}}))[
        "recognitionRuleUpdate"
    ]
    assert missing_rule["errors"][0]["code"] == "NOT_FOUND"

    order = [by_name[n] for n in ("Sender email", "Sender phone", "Email thread", "Case reference in subject or text")]
    reordered = (await gql(REORDER, {"input": {"ids": order}}))["recognitionRulesReorder"]
    assert [r["name"] for r in reordered["rules"]] == [
        "Sender email",
        "Sender phone",
        "Email thread",
        "Case reference in subject or text",
    ]
    assert [r["position"] for r in reordered["rules"]] == [1, 2, 3, 4]

    incomplete = (await gql(REORDER, {"input": {"ids": order[:3]}}))["recognitionRulesReorder"]
    assert incomplete["errors"][0]["code"] == "INVALID" and incomplete["rules"] == []

    deleted = (await gql(DELETE, {"input": {"id": by_name["Email thread"]}}))["recognitionRuleDelete"]
    assert deleted == {"deletedId": by_name["Email thread"], "errors": []}
    again = (await gql(DELETE, {"input": {"id": by_name["Email thread"]}}))["recognitionRuleDelete"]
    assert again["errors"][0]["code"] == "NOT_FOUND"
    assert len((await gql(RULES))["recognitionRules"]) == 3


async def test_rule_changes_are_audited(gql, runtime):
    await gql(
        CREATE, {"input": {"name": "Member", "kind": "FIELD_MATCH", "config": {"path": "payload.m", "field": "member"}}}
    )
    async with runtime.reading() as session:
        actions = list(
            await session.scalars(select(AuditEvent.action).where(AuditEvent.entity_type == "recognition_rule"))
        )
    assert actions == ["recognition_rule.create"]


async def test_agents_cannot_edit_rules(gql, agent_token, runtime):
    before = await rule_count(runtime)
    body = (await gql.post(CREATE, {"input": {"name": "Sneaky", "kind": "THREAD"}}, token=agent_token)).json()
    assert body["data"] is None and "requires role supervisor" in body["errors"][0]["message"]
    assert await rule_count(runtime) == before


async def test_promotion_rules_and_policies(gql):
    created = (
        await gql(
            PROMOTION_CREATE,
            {
                "input": {
                    "name": "Account",
                    "source": "payload.form.accountNumber",
                    "target": "CUSTOMER",
                    "field": "account_id",
                    "policy": "ADD_IDENTIFIER",
                }
            },
        )
    )["promotionRuleCreate"]
    assert created["errors"] == [] and created["rule"]["position"] == 1

    refusals = [
        (
            {"name": "X", "source": "payload", "target": "CUSTOMER", "field": "fields.a", "policy": "FILL_EMPTY"},
            ("source", "INVALID"),
        ),
        (
            {"name": "X", "source": "subject", "target": "CASE", "field": "account_id", "policy": "ADD_IDENTIFIER"},
            ("field", "INVALID"),
        ),
        (
            {"name": "X", "source": "subject", "target": "CUSTOMER", "field": "colour", "policy": "OVERWRITE"},
            ("field", "INVALID"),
        ),
        (
            {"name": "Account", "source": "subject", "target": "CASE", "field": "subject", "policy": "OVERWRITE"},
            ("name", "DUPLICATE"),
        ),
    ]
    for rule_input, expected in refusals:
        payload = (await gql(PROMOTION_CREATE, {"input": rule_input}))["promotionRuleCreate"]
        assert [(e["field"], e["code"]) for e in payload["errors"]] == [expected]

    changed = (
        await gql(
            POLICY_SET,
            {"input": {"channel": "CHAT", "createCustomer": True, "createCase": False, "flagForReview": True}},
        )
    )["noMatchPolicySet"]
    assert changed["policy"] == {"channel": "CHAT", "createCustomer": True, "createCase": False, "flagForReview": True}
    policies = {p["channel"]: p for p in (await gql(POLICIES))["noMatchPolicies"]}
    assert policies["CHAT"]["createCustomer"]


async def test_yaml_export_then_import_round_trips_the_rule_set(runtime):
    async with runtime.transaction() as session:
        await rule_service.create_rule(
            session,
            actor=SYSTEM,
            name="Member",
            kind="field_match",
            config={"path": "payload.m", "field": "member"},
            channels=["chat"],
            position=1,
        )
        await rule_service.create_promotion_rule(
            session,
            actor=SYSTEM,
            name="Tier",
            source="payload.tier",
            target="customer",
            field="fields.tier",
            policy="overwrite",
        )
        await rule_service.set_policy(
            session, actor=SYSTEM, channel="sms", create_customer=True, create_case=False, flag_for_review=False
        )
        exported = await export_rules(session)

    async with runtime.transaction() as session:
        rules = await rule_service.list_rules(session)
        await rule_service.delete_rule(session, actor=SYSTEM, rule_id=rules[0].id)
        await rule_service.set_policy(
            session, actor=SYSTEM, channel="sms", create_customer=False, create_case=False, flag_for_review=True
        )
        assert await export_rules(session) != exported

    async with runtime.transaction() as session:
        counts = await import_rules(session, actor=SYSTEM, document=exported)
    assert counts == {"recognition_rules": 5, "promotion_rules": 1, "routing_rules": 0, "no_match_policies": 7}
    async with runtime.reading() as session:
        assert await export_rules(session) == exported
        assert [r.name for r in await rule_service.list_rules(session)][0] == "Member"
    assert "kind: field_match" in exported and "pattern: (?i)\\b(CASE-\\d{6,})\\b" in exported


async def test_an_invalid_yaml_import_changes_nothing(runtime):
    async with runtime.reading() as session:
        before = await export_rules(session)
    document = before.replace("kind: thread", "kind: telepathy")
    try:
        async with runtime.transaction() as session:
            await import_rules(session, actor=SYSTEM, document=document)
    except UserError as error:
        assert error.code == ErrorCode.INVALID and error.field == "recognition_rules.1.kind"
    else:
        raise AssertionError("the import was accepted")
    async with runtime.reading() as session:
        assert await export_rules(session) == before


async def test_casegraph_rules_export_and_import_commands(runtime, tmp_path):
    import asyncio
    import os
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).parent / "casegraph")
    path = tmp_path / "rules.yaml"

    async def run(*args: str) -> None:
        process = await asyncio.create_subprocess_exec(
            cli, "rules", *args, env=dict(os.environ), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()

    await run("export", str(path))
    document = path.read_text()
    assert "name: Sender phone" in document
    path.write_text(document.replace("name: Sender phone", "name: Caller number"))
    await run("import", str(path))

    async with runtime.reading() as session:
        names = [r.name for r in await rule_service.list_rules(session)]
    assert names[-1] == "Caller number" and "Sender phone" not in names

"""The LOOKUP connector against a real HTTP server (Starlette on uvicorn, started here): signed
requests, mapping of the answer, result cache, timeout, retries and the circuit breaker; the
host allow-list, addresses checked after resolution, secrets only from the environment, traces
that never echo the target, and no pooled connection held while the back office answers."""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import itertools
import socket
from pathlib import Path

import orjson
import pytest
import uvicorn
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import func, insert, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.auth import SYSTEM
from app.contact_data import ContactData
from app.models import AuditEvent, Contact, RecognitionRule
from app.recognition.connector import SIGNATURE_HEADER, TIMESTAMP_HEADER, HostPolicy, connectors, verify_signature
from app.recognition.outcome import preview_recognition
from app.runtime import create_runtime
from app.services import cases as case_service
from app.services import customers as customer_service
from app.services import recognition as rule_service
from app.services.contacts import ingest_contact
from app.settings import load_settings

SECRET = "s3cret"
SECRET_ENV = "CASEGRAPH_SECRET_CRM"
_ids = itertools.count(1)


class BackOffice:
    """A CRM double on a real socket: answers by the caller's number, or as the test tells it to."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.mode = "ok"
        self.delay = 0.0
        self.bad_signatures = 0
        self.hosts: list[str] = []

    async def lookup(self, request: Request) -> Response:
        body = await request.body()
        signature_ok = verify_signature(
            SECRET, request.headers.get(TIMESTAMP_HEADER, ""), body, request.headers.get(SIGNATURE_HEADER, "")
        )
        if not signature_ok:
            self.bad_signatures += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        summary = await request.json()
        self.calls.append(summary)
        self.hosts.append(request.headers["host"])
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "error":
            return JSONResponse({"error": "down", "detail": INTERNAL_DETAIL}, status_code=503)
        if self.mode == "garbage":
            return Response(f"<html>{INTERNAL_DETAIL}</html>", media_type="text/html")
        if summary.get("from") == "+447700900001":
            return JSONResponse(
                {
                    "name": "Ada Lovelace",
                    "identifiers": [{"kind": "account_id", "value": "ACC-9"}],
                    "externalReference": "CRM-1",
                    "fields": {"tier": "gold"},
                }
            )
        return Response(status_code=404)

    async def orders(self, request: Request) -> Response:
        summary = await request.json()
        self.calls.append(summary)
        return JSONResponse({"caseReference": "CASE-000001"} if summary["reference"] == "ORD-9" else {})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
async def back_office():
    office = BackOffice()
    app = Starlette(
        routes=[Route("/lookup", office.lookup, methods=["POST"]), Route("/orders", office.orders, methods=["POST"])]
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    office.url = f"http://127.0.0.1:{port}"
    yield office
    server.should_exit = True
    await task


# What an internal service might answer: it must never reach a trace.
INTERNAL_DETAIL = "AKIA-internal-credential root:x:0:0"


@pytest.fixture(autouse=True)
def fresh(back_office, monkeypatch):
    """The test server listens on 127.0.0.1: reachable only because the allow-list names it."""
    connectors.reset()
    monkeypatch.setattr(connectors, "policy", HostPolicy.parse("127.0.0.1"))
    monkeypatch.setenv(SECRET_ENV, SECRET)
    back_office.calls.clear()
    back_office.hosts.clear()
    back_office.mode, back_office.delay, back_office.bad_signatures = "ok", 0.0, 0
    yield


async def lookup_rule(runtime, url, **settings):
    config = {
        "url": url,
        "secret_env": SECRET_ENV,
        "timeout_seconds": 1.0,
        "retries": 0,
        "cache_seconds": 30,
        "failure_threshold": 3,
        "reset_seconds": 30,
        **settings,
    }
    async with runtime.transaction() as session:
        return await rule_service.create_rule(session, actor=SYSTEM, name="CRM lookup", kind="lookup", config=config)


async def ingest(runtime, caller="+447700900001", channel="phone", **fields):
    data = ContactData(
        channel=channel,
        direction="inbound",
        source="pbx",
        external_id=f"call-{next(_ids)}",
        from_address=caller,
        **fields,
    )
    async with runtime.transaction() as session:
        return await ingest_contact(session, actor=SYSTEM, data=data, region="GB")


def lookup_step(result):
    return next(s for s in result.contact.recognition["steps"] if s["kind"] == "lookup")


async def test_lookup_answer_recognises_the_customer_by_its_identifiers(runtime, back_office):
    async with runtime.transaction() as session:
        ada = await customer_service.create_customer(
            session,
            actor=SYSTEM,
            name="Ada",
            region="GB",
            fields=None,
            identifiers=[customer_service.IdentifierInput("account_id", "ACC-9")],
        )
    await lookup_rule(runtime, f"{back_office.url}/lookup")

    result = await ingest(runtime)

    assert result.customer_id == ada.id and result.contact.recognition["matchedRule"] == "CRM lookup"
    assert back_office.bad_signatures == 0 and len(back_office.calls) == 1
    assert back_office.calls[0]["from"] == "+447700900001" and back_office.calls[0]["channel"] == "phone"
    assert result.contact.recognition["lookup"]["externalReference"] == "CRM-1"


async def test_lookup_answer_fills_the_partial_profile_when_nobody_matches(runtime, back_office):
    await lookup_rule(runtime, f"{back_office.url}/lookup")

    result = await ingest(runtime)

    assert result.customer_id is None and result.contact.needs_review
    profile = result.contact.recognition["partialProfile"]
    assert profile["name"] == "Ada Lovelace" and profile["fields"] == {"tier": "gold"}
    assert {"kind": "external_ref", "value": "CRM-1"} in profile["identifiers"]
    assert {"kind": "phone", "value": "+447700900001"} in profile["identifiers"]


async def test_a_wrong_secret_is_refused_by_the_receiver(runtime, back_office, monkeypatch):
    monkeypatch.setenv("CASEGRAPH_SECRET_OTHER", "wrong")
    await lookup_rule(runtime, f"{back_office.url}/lookup", secret_env="CASEGRAPH_SECRET_OTHER")
    result = await ingest(runtime)
    assert back_office.bad_signatures == 1 and lookup_step(result)["outcome"] == "unavailable"


async def test_answers_are_cached_briefly(runtime, back_office):
    await lookup_rule(runtime, f"{back_office.url}/lookup")
    first = await ingest(runtime)
    second = await ingest(runtime)
    assert len(back_office.calls) == 1
    assert lookup_step(first)["cached"] is False and lookup_step(second)["cached"] is True


async def test_timeout_is_a_trace_entry_and_the_contact_is_still_stored(runtime, back_office):
    back_office.delay = 1.0
    await lookup_rule(runtime, f"{back_office.url}/lookup", timeout_seconds=0.2, retries=1)

    started = asyncio.get_running_loop().time()
    result = await ingest(runtime, channel="email", caller="nobody@example.com")
    elapsed = asyncio.get_running_loop().time() - started

    step = lookup_step(result)
    assert step["outcome"] == "unavailable" and "timed out" in step["reason"] and "2 attempt" in step["reason"]
    assert len(back_office.calls) == 2  # the retry
    assert elapsed < 1.5
    assert result.customer_created  # the email policy still applied
    async with runtime.reading() as session:
        assert await session.scalar(select(func.count()).select_from(Contact)) == 1


async def test_unreachable_connector_is_skipped(runtime):
    await lookup_rule(runtime, f"http://127.0.0.1:{_free_port()}/lookup")
    result = await ingest(runtime)
    assert lookup_step(result)["outcome"] == "unavailable" and result.contact.id is not None


async def test_circuit_breaker_opens_after_repeated_failures_and_closes_after_a_good_trial(runtime, back_office):
    back_office.mode = "error"
    await lookup_rule(runtime, f"{back_office.url}/lookup", failure_threshold=2, reset_seconds=0.3, cache_seconds=0)

    for _ in range(2):
        assert "HTTP 503" in lookup_step(await ingest(runtime))["reason"]
    assert len(back_office.calls) == 2

    fast_fail = await ingest(runtime)
    assert "circuit open" in lookup_step(fast_fail)["reason"]
    assert len(back_office.calls) == 2  # not called while open

    await asyncio.sleep(0.35)
    back_office.mode = "ok"
    trial = await ingest(runtime)
    assert lookup_step(trial)["outcome"] in ("no_match", "match") and len(back_office.calls) == 3
    assert not connectors.breaker_open(f"{back_office.url}/lookup")


async def test_external_reference_asks_the_back_office_when_no_case_has_it(runtime, back_office):
    async with runtime.transaction() as session:
        ada = await customer_service.create_customer(
            session, actor=SYSTEM, name="Ada", region="GB", fields=None, identifiers=[]
        )
        case = await case_service.create_case(session, actor=SYSTEM, subject="Order", customer_ids=[ada.id])
        await rule_service.create_rule(
            session,
            actor=SYSTEM,
            name="Order number",
            kind="external_reference",
            position=1,
            config={
                "path": "payload.order",
                "case_field": "orderNumber",
                "connector": {"url": f"{back_office.url}/orders"},
            },
        )

    result = await ingest(runtime, channel="chat", caller="visitor", payload={"order": "ORD-9"})

    assert result.case_id == case.id and back_office.calls == [
        {"reference": "ORD-9", "field": "orderNumber", "channel": "chat"}
    ]


RULE_CREATE = """
mutation($i: RecognitionRuleCreateInput!) {
  recognitionRuleCreate(input: $i) { rule { config } errors { field code message } }
}"""


async def create_lookup_rule(gql, config):
    variables = {"i": {"name": "CRM lookup", "kind": "LOOKUP", "config": config}}
    return (await gql(RULE_CREATE, variables))["recognitionRuleCreate"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://10.0.0.5/lookup",
        "http://[::1]:8080/lookup",
        "http://crm.elsewhere.example/lookup",  # not on the allow-list
    ],
)
async def test_a_rule_pointing_off_the_allow_list_is_refused_when_saved(gql, url):
    result = await create_lookup_rule(gql, {"url": url})
    assert result["rule"] is None
    assert [(e["field"], e["code"]) for e in result["errors"]] == [("config.url", "CONNECTOR_HOST_REFUSED")]


async def test_loopback_is_refused_unless_the_allow_list_names_it(gql, back_office, monkeypatch):
    monkeypatch.setattr(connectors, "policy", HostPolicy.parse("crm.example.com"))
    refused = await create_lookup_rule(gql, {"url": f"{back_office.url}/lookup"})
    assert refused["errors"][0]["code"] == "CONNECTOR_HOST_REFUSED"

    monkeypatch.setattr(connectors, "policy", HostPolicy.parse("crm.example.com, 127.0.0.0/8"))
    assert (await create_lookup_rule(gql, {"url": f"{back_office.url}/lookup"}))["errors"] == []


async def test_a_rule_saved_before_the_allow_list_changed_is_refused_at_call_time(runtime, back_office, monkeypatch):
    await lookup_rule(runtime, f"{back_office.url}/lookup")
    monkeypatch.setattr(connectors, "policy", HostPolicy.parse("crm.example.com"))

    result = await ingest(runtime)

    step = lookup_step(result)
    assert step["outcome"] == "error" and "allow-list" in step["reason"]
    assert back_office.calls == []


async def test_a_name_that_resolves_to_loopback_is_refused_after_resolution(runtime, back_office, monkeypatch):
    monkeypatch.setattr(connectors, "policy", HostPolicy.parse("localhost"))
    await lookup_rule(runtime, back_office.url.replace("127.0.0.1", "localhost") + "/lookup")

    result = await ingest(runtime)

    step = lookup_step(result)
    assert step["outcome"] == "unavailable" and step["failure"] == "refused_host"
    assert "private, loopback" in step["reason"] and back_office.calls == []


async def test_an_allowed_name_is_called_at_its_checked_address_under_its_own_name(runtime, back_office, monkeypatch):
    # The private address is allowed for this deployment; the name still goes in the Host header.
    monkeypatch.setattr(connectors, "policy", HostPolicy.parse("localhost", allow_private=True))
    url = back_office.url.replace("127.0.0.1", "localhost")
    await lookup_rule(runtime, f"{url}/lookup")

    result = await ingest(runtime)

    assert lookup_step(result)["outcome"] != "unavailable" and back_office.bad_signatures == 0
    assert back_office.hosts == [url.removeprefix("http://")]


async def test_the_policy_refuses_private_and_metadata_addresses_unless_listed():
    policy = HostPolicy.parse("crm.example.com, 10.1.0.0/16")
    for address in (
        "127.0.0.1",
        "169.254.169.254",
        "10.2.0.1",
        "192.168.1.1",
        "::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
    ):
        assert policy.address_refusal(ipaddress.ip_address(address)) is not None, address
    for address in ("10.1.2.3", "93.184.216.34"):
        assert policy.address_refusal(ipaddress.ip_address(address)) is None, address
    assert policy.host_refusal("crm.example.com") is None and policy.host_refusal("evil.example.com") is not None
    assert HostPolicy.parse("*.example.com").host_refusal("crm.example.com") is None
    assert HostPolicy.parse("*.example.com").host_refusal("example.com.evil.test") is not None


@pytest.mark.parametrize("mode", ["error", "garbage"])
async def test_the_trace_says_what_failed_without_echoing_the_target(runtime, back_office, mode):
    back_office.mode = mode
    await lookup_rule(runtime, f"{back_office.url}/lookup", cache_seconds=0)

    result = await ingest(runtime)

    step = lookup_step(result)
    assert step["failure"] == ("http_status" if mode == "error" else "invalid_answer")
    assert INTERNAL_DETAIL not in orjson.dumps(result.contact.recognition).decode()


async def test_no_pooled_connection_is_held_while_the_back_office_answers(runtime, back_office):
    back_office.delay = 0.5
    await lookup_rule(runtime, f"{back_office.url}/lookup", timeout_seconds=2.0)
    await runtime.published.close()  # the rule's published events leave the outbox now, not during the count

    ingesting = asyncio.create_task(ingest(runtime))
    while not back_office.calls:
        await asyncio.sleep(0.01)
    held_during_lookup = runtime.engine.pool.checkedout()
    result = await ingesting

    assert held_during_lookup == 0
    assert lookup_step(result)["outcome"] == "no_match" or result.customer_id is not None


async def test_the_preview_gives_its_connection_back_while_the_back_office_answers(runtime, back_office):
    back_office.delay = 0.5
    await lookup_rule(runtime, f"{back_office.url}/lookup", timeout_seconds=2.0)
    await runtime.published.close()  # the rule's published events leave the outbox now, not during the count
    data = ContactData(channel="phone", direction="inbound", source="pbx", from_address="+447700900001")

    async def preview():
        async with runtime.reading() as session:
            return await preview_recognition(session, data=data, region="GB")

    previewing = asyncio.create_task(preview())
    while not back_office.calls:
        await asyncio.sleep(0.01)
    held_during_lookup = runtime.engine.pool.checkedout()
    result = await previewing

    assert held_during_lookup == 0
    assert result.trace["lookup"]["externalReference"] == "CRM-1"


async def test_a_rule_never_holds_the_secret_only_the_name_of_a_prefixed_variable(runtime, back_office, gql):
    stored = await create_lookup_rule(gql, {"url": f"{back_office.url}/lookup", "secret": SECRET})
    assert stored["errors"][0]["field"] == "config.secret"
    unprefixed = await create_lookup_rule(gql, {"url": f"{back_office.url}/lookup", "secret_env": "DATABASE_URL"})
    assert unprefixed["errors"][0]["field"] == "config.secret_env"

    created = await create_lookup_rule(gql, {"url": f"{back_office.url}/lookup", "secret_env": SECRET_ENV})
    assert created["errors"] == [] and created["rule"]["config"]["secret_env"] == SECRET_ENV

    result = await ingest(runtime)
    assert back_office.bad_signatures == 0 and len(back_office.calls) == 1 and result.customer_id is None
    async with runtime.reading() as session:
        audit_rows = (await session.execute(select(AuditEvent.before, AuditEvent.after))).all()
        exported = await rule_service.export_rules(session)
    assert SECRET not in str(audit_rows) and SECRET not in exported and SECRET_ENV in exported


async def test_an_unset_secret_variable_is_a_trace_entry(runtime, back_office, monkeypatch):
    monkeypatch.delenv(SECRET_ENV)
    await lookup_rule(runtime, f"{back_office.url}/lookup")
    step = lookup_step(await ingest(runtime))
    assert step["failure"] == "secret_missing" and back_office.calls == []


async def test_the_migration_removes_secrets_stored_in_clear_by_earlier_versions(runtime):
    legacy = {"url": "https://crm.example.com/lookup", "secret": SECRET, "timeout_seconds": 1.0}
    async with runtime.transaction() as session:
        rule_id = (
            await session.execute(
                insert(RecognitionRule)
                .values(name="Legacy", target="customer", kind="lookup", config=legacy, position=9, channels=[])
                .returning(RecognitionRule.id)
            )
        ).scalar_one()
        session.add(
            AuditEvent(
                actor_name="admin",
                action="recognition_rule.create",
                entity_type="recognition_rule",
                entity_id=rule_id,
                after={"name": "Legacy", "config": legacy},
            )
        )
    path = Path(__file__).parent.parent / "migrations" / "versions" / "0006_connectors.py"
    spec = importlib.util.spec_from_file_location("migration_0006", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)

    def upgrade(sync_connection):
        with Operations.context(MigrationContext.configure(sync_connection)):
            migration.upgrade()

    async with runtime.engine.begin() as conn:
        await conn.run_sync(upgrade)

    async with runtime.reading() as session:
        config = await session.scalar(select(RecognitionRule.config).where(RecognitionRule.id == rule_id))
        audit_rows = (await session.execute(select(AuditEvent.after))).all()
    assert "secret" not in config and config["url"] == legacy["url"]
    assert SECRET not in str(audit_rows)


async def test_the_allow_list_comes_from_the_administrators_environment(monkeypatch):
    monkeypatch.setenv("CASEGRAPH_CONNECTOR_HOSTS", "crm.example.com, *.orders.example.com, 10.1.0.0/16")
    monkeypatch.setenv("CASEGRAPH_CONNECTOR_ALLOW_PRIVATE", "0")
    monkeypatch.setattr(connectors, "policy", HostPolicy())  # put back after the test

    process = create_runtime(load_settings(), pool_size=1)
    await process.close()

    policy = connectors.policy
    assert policy.host_refusal("crm.example.com") is None and policy.host_refusal("eu.orders.example.com") is None
    assert policy.host_refusal("10.1.4.4") is None and policy.host_refusal("10.2.0.1") is not None
    assert policy.host_refusal("127.0.0.1") is not None and not policy.allow_private

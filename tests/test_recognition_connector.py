"""The LOOKUP connector against a real HTTP server (Starlette on uvicorn, started here): signed
requests, mapping of the answer, result cache, timeout, retries and the circuit breaker."""

from __future__ import annotations

import asyncio
import itertools
import socket

import pytest
import uvicorn
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.auth import SYSTEM
from app.contact_data import ContactData
from app.models import Contact
from app.recognition.connector import SIGNATURE_HEADER, TIMESTAMP_HEADER, connectors, verify_signature
from app.services import cases as case_service
from app.services import customers as customer_service
from app.services import recognition as rule_service
from app.services.contacts import ingest_contact

SECRET = "s3cret"
_ids = itertools.count(1)


class BackOffice:
    """A CRM double on a real socket: answers by the caller's number, or as the test tells it to."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.mode = "ok"
        self.delay = 0.0
        self.bad_signatures = 0

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
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "error":
            return JSONResponse({"error": "down"}, status_code=503)
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


@pytest.fixture(autouse=True)
def fresh(back_office):
    connectors.reset()
    back_office.calls.clear()
    back_office.mode, back_office.delay, back_office.bad_signatures = "ok", 0.0, 0
    yield


async def lookup_rule(runtime, url, **settings):
    config = {
        "url": url,
        "secret": SECRET,
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


async def test_a_wrong_secret_is_refused_by_the_receiver(runtime, back_office):
    await lookup_rule(runtime, f"{back_office.url}/lookup", secret="wrong")
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


async def test_the_secret_is_masked_in_the_api_kept_on_edit_and_may_come_from_the_environment(
    runtime, back_office, gql, monkeypatch
):
    rule = await lookup_rule(runtime, f"{back_office.url}/lookup")
    from schema.ids import to_global_id

    listed = (await gql("{ recognitionRules { name config } }"))["recognitionRules"]
    shown = next(r["config"] for r in listed if r["name"] == "CRM lookup")
    assert shown["secret"] == "********" and SECRET not in str(listed)

    update = "mutation($i: RecognitionRuleUpdateInput!) { recognitionRuleUpdate(input: $i) { errors { code } } }"
    await gql(
        update, {"i": {"id": to_global_id("RecognitionRule", rule.id), "config": {**shown, "timeout_seconds": 0.5}}}
    )
    result = await ingest(runtime)
    assert back_office.bad_signatures == 0 and lookup_step(result)["outcome"] != "unavailable"

    monkeypatch.setenv("CRM_SECRET", SECRET)
    await gql(
        update,
        {
            "i": {
                "id": to_global_id("RecognitionRule", rule.id),
                "config": {**shown, "secret": None, "secret_env": "CRM_SECRET"},
            }
        },
    )
    connectors.reset()
    back_office.calls.clear()
    result = await ingest(runtime, caller="+447700900002")
    assert back_office.bad_signatures == 0 and len(back_office.calls) == 1

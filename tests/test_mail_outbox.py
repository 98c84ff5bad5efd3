"""Replies through the outbox: `caseReply` records an outbound email contact, the worker sends it
through the mailbox's relay (a real aiosmtpd server here), threaded, tagged, Bcc only in the
envelope, retried with backoff while the relay refuses for now, failed when it refuses for good."""

from __future__ import annotations

from email import message_from_bytes, policy

import aiosmtplib
import pytest
from sqlalchemy import select, text

from app.models import OutboundMessage
from app.services import mail as mail_service
from schema.ids import to_global_id
from tests.mail_support import add_mailbox, arq_pool, contacts, listener, message, relay_server, run_jobs

REPLY = """
mutation($input: CaseReplyInput!) {
  caseReply(input: $input) {
    contact { id direction subject from to headers case { reference } delivery { status attempts lastResponse sentAt } }
    errors { field code message }
  }
}
"""
DELIVERY = "query($id: ID!) { node(id: $id) { ... on Contact { delivery { status attempts lastResponse nextAttemptAt sentAt } } } }"


@pytest.fixture
async def relay():
    async with relay_server() as handler:
        yield handler


@pytest.fixture
async def inbound_case(runtime, servers, relay):
    """A case opened by a customer's mail to a mailbox whose relay is the test's."""
    relay_settings = {
        "host": "127.0.0.1",
        "port": relay.port,
        "security": "none",
        "from_address": "support@casegraph.test",
    }
    await add_mailbox(runtime, display_name="Support", relay=relay_settings)
    async with arq_pool(servers) as arq, listener(runtime, arq) as port:
        await aiosmtplib.send(
            message(message_id="<question@example.org>", References="<older@example.org>"),
            sender="ann@example.org",
            recipients=["support@casegraph.test"],
            hostname="127.0.0.1",
            port=port,
        )
        await run_jobs()
    [contact] = await contacts(runtime)
    return contact


async def test_a_reply_is_sent_threaded_and_tagged_and_its_answer_threads_back(
    runtime, servers, gql, relay, inbound_case
):
    case_id = to_global_id("Case", inbound_case.case_id)
    payload = (
        await gql(
            REPLY,
            {
                "input": {
                    "caseId": case_id,
                    "to": ["ann@example.org"],
                    "cc": ["boss@example.org"],
                    "bcc": ["audit@casegraph.test"],
                    "text": "It left today.",
                }
            },
        )
    )["caseReply"]
    assert payload["errors"] == []
    reply = payload["contact"]
    reference = reply["case"]["reference"]
    assert reply["direction"] == "OUTBOUND" and reply["subject"] == f"Re: My order [{reference}]"
    assert reply["delivery"]["status"] == "QUEUED"

    await run_jobs()

    [sent] = relay.received
    assert sorted(sent.rcpt_tos) == ["ann@example.org", "audit@casegraph.test", "boss@example.org"]
    mail = message_from_bytes(sent.original_content, policy=policy.default)
    assert mail["In-Reply-To"] == "<question@example.org>"
    assert mail["References"] == "<older@example.org> <question@example.org>"
    assert mail["Subject"] == f"Re: My order [{reference}]" and mail["From"] == "Support <support@casegraph.test>"
    assert mail["Message-ID"] == reply["headers"]["Message-ID"] and mail["Message-ID"].endswith("@casegraph.test>")
    assert "Bcc" not in mail and "audit@" not in sent.original_content.decode()
    assert mail.get_body(("plain",)).get_content().strip() == "It left today."
    delivery = (await gql(DELIVERY, {"id": reply["id"]}))["node"]["delivery"]
    assert delivery["status"] == "SENT" and delivery["attempts"] == 1 and delivery["sentAt"] is not None
    assert delivery["lastResponse"].startswith("250")

    # The customer answers our message: it threads back onto the case by In-Reply-To alone.
    async with arq_pool(servers) as arq, listener(runtime, arq) as port:
        answer = message(subject="Thanks", message_id="<thanks@example.org>", In_Reply_To=mail["Message-ID"])
        await aiosmtplib.send(
            answer, sender="ann@example.org", recipients=["support@casegraph.test"], hostname="127.0.0.1", port=port
        )
        await run_jobs()
    thanks = next(c for c in await contacts(runtime) if c.external_id == "<thanks@example.org>")
    assert thanks.case_id == inbound_case.case_id


async def test_a_relay_that_refuses_then_accepts_shows_the_retry(runtime, servers, gql, relay, inbound_case):
    relay.refusals = 1
    case_id = to_global_id("Case", inbound_case.case_id)
    reply = (await gql(REPLY, {"input": {"caseId": case_id, "to": ["ann@example.org"], "text": "Hello"}}))["caseReply"][
        "contact"
    ]
    async with runtime.reading() as session:
        outbound_id = await session.scalar(select(OutboundMessage.id))
    retries: list = []

    async def retry(outbound_id, *, delay, attempt):
        retries.append((outbound_id, delay, attempt))

    first = await mail_service.send_outbound(runtime, outbound_id=outbound_id, retry=retry)

    assert first.status == "queued" and first.response.startswith("451")
    assert retries == [(outbound_id, mail_service.RETRY_BASE_SECONDS, 1)]
    delivery = (await gql(DELIVERY, {"id": reply["id"]}))["node"]["delivery"]
    assert (delivery["status"], delivery["attempts"]) == ("QUEUED", 1) and delivery["nextAttemptAt"] is not None
    assert relay.received == []

    second = await mail_service.send_outbound(runtime, outbound_id=outbound_id, retry=retry)

    assert second.status == "sent" and len(relay.received) == 1
    delivery = (await gql(DELIVERY, {"id": reply["id"]}))["node"]["delivery"]
    assert (delivery["status"], delivery["attempts"]) == ("SENT", 2)
    # Sent is final: a duplicate job run sends nothing again.
    assert await mail_service.send_outbound(runtime, outbound_id=outbound_id, retry=retry) is None
    assert len(relay.received) == 1


async def test_a_permanent_refusal_fails_with_the_relay_answer(runtime, gql, relay, inbound_case):
    relay.refusals, relay.answer = 1, "550 5.7.1 Relaying denied"
    case_id = to_global_id("Case", inbound_case.case_id)
    reply = (await gql(REPLY, {"input": {"caseId": case_id, "to": ["ann@example.org"], "text": "Hello"}}))["caseReply"][
        "contact"
    ]

    await run_jobs()

    delivery = (await gql(DELIVERY, {"id": reply["id"]}))["node"]["delivery"]
    assert delivery["status"] == "FAILED" and delivery["lastResponse"] == "550 5.7.1 Relaying denied"


async def test_header_injection_and_bad_replies_are_typed_errors(runtime, gql, relay, inbound_case):
    case_id = to_global_id("Case", inbound_case.case_id)
    cases = [
        ({"subject": "Hi\r\nBcc: victim@example.org"}, "subject", "INVALID"),
        ({"to": ["ann@example.org\r\nBcc: victim@example.org"]}, "to.0", "INVALID"),
        ({"cc": ["Ann <ann@example.org>, x@y.z"]}, "cc.0", "INVALID"),
        ({"to": []}, "to", "REQUIRED"),
        ({"text": " "}, "text", "REQUIRED"),
        ({"mailboxId": to_global_id("Mailbox", 999)}, "mailboxId", "NOT_FOUND"),
        ({"caseId": to_global_id("Case", 999)}, "caseId", "NOT_FOUND"),
    ]
    for change, field, code in cases:
        payload = (await gql(REPLY, {"input": {"caseId": case_id, "to": ["ann@example.org"], "text": "Hi", **change}}))[
            "caseReply"
        ]
        assert payload["contact"] is None, change
        assert (payload["errors"][0]["field"], payload["errors"][0]["code"]) == (field, code), change
    async with runtime.reading() as session:
        assert (await session.execute(text("SELECT count(*) FROM outbound_messages"))).scalar() == 0

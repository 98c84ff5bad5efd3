"""Bounces (RFC 3464 delivery status notifications) and out-of-office replies are recorded on the
case of the message of ours they answer, open no case, get no auto-response, and a bounce marks
that message's delivery failed."""

from __future__ import annotations

import aiosmtplib
import pytest
from sqlalchemy import func, select

from app.auth import SYSTEM
from app.models import Case, Customer
from app.services import queues
from schema.ids import to_global_id
from tests.mail_support import add_mailbox, arq_pool, contacts, listener, message, relay_server, run_jobs

DELIVERY = "query($id: ID!) { node(id: $id) { ... on Contact { delivery { status lastResponse } } } }"


def dsn(original_id: str, action: str = "failed") -> bytes:
    return f"""From: Mail Delivery System <MAILER-DAEMON@mx.example.org>
To: support@casegraph.test
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-{action}@mx.example.org>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain; charset=us-ascii

Your message could not be delivered.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; ann@example.org
Action: {action}
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--B1
Content-Type: text/rfc822-headers

From: support@casegraph.test
To: ann@example.org
Subject: We received: My order
Message-ID: {original_id}

--B1--
""".replace("\n", "\r\n").encode()


@pytest.fixture
async def receipt(runtime, servers):
    """A customer's mail opened a case and got our receipt: (the port, the relay, the receipt's contact)."""
    async with relay_server() as relay:
        async with runtime.transaction() as session:
            pool = await queues.create_pool(
                session,
                actor=SYSTEM,
                name="Orders",
                auto_response={"subject": "We received: {{ subject }}", "text": "Thanks"},
            )
        relay_settings = {"host": "127.0.0.1", "port": relay.port, "security": "none"}
        await add_mailbox(runtime, pool_id=pool.id, relay=relay_settings)
        async with arq_pool(servers) as arq, listener(runtime, arq) as port:
            await deliver(port, message(message_id="<q@example.org>"), sender="ann@example.org")
            [ours] = [c for c in await contacts(runtime) if c.direction == "outbound"]
            yield port, relay, ours


async def deliver(port: int, raw: bytes, sender: str) -> None:
    await aiosmtplib.send(raw, sender=sender, recipients=["support@casegraph.test"], hostname="127.0.0.1", port=port)
    await run_jobs()


async def counts(runtime) -> tuple[int, int]:
    async with runtime.reading() as session:
        cases = await session.scalar(select(func.count()).select_from(Case))
        customers = await session.scalar(select(func.count()).select_from(Customer))
    return cases, customers


async def test_a_bounce_lands_on_the_case_and_fails_the_delivery(runtime, gql, receipt):
    port, relay, ours = receipt
    before = await counts(runtime)

    await deliver(port, dsn(ours.message_id), sender="MAILER-DAEMON@mx.example.org")

    bounce = next(c for c in await contacts(runtime) if c.external_id == "<dsn-failed@mx.example.org>")
    assert bounce.case_id == ours.case_id and bounce.customer_id == ours.customer_id
    assert bounce.payload["mail"]["kind"] == "bounce" and bounce.payload["mail"]["report"]["status"] == "5.1.1"
    assert await counts(runtime) == before  # no case, no customer for the mailer daemon
    assert len(relay.received) == 1  # the receipt only: nothing answers a bounce
    delivery = (await gql(DELIVERY, {"id": to_global_id("Contact", ours.id)}))["node"]["delivery"]
    assert delivery == {"status": "FAILED", "lastResponse": "bounced: 5.1.1 smtp; 550 5.1.1 User unknown"}


async def test_an_out_of_office_reply_lands_on_the_case_without_a_new_case_or_an_answer(runtime, receipt):
    port, relay, ours = receipt
    before = await counts(runtime)
    away = message(
        subject="Out of office",
        message_id="<away@example.org>",
        In_Reply_To=ours.message_id,
        Auto_Submitted="auto-replied",
    )

    await deliver(port, away, sender="ann@example.org")

    reply = next(c for c in await contacts(runtime) if c.external_id == "<away@example.org>")
    assert (reply.case_id, reply.payload["mail"]["kind"], reply.needs_review) == (ours.case_id, "auto_reply", False)
    assert await counts(runtime) == before and len(relay.received) == 1


async def test_a_bounce_about_no_message_of_ours_stays_alone_for_an_agent(runtime, receipt):
    port, relay, ours = receipt
    before = await counts(runtime)

    await deliver(port, dsn("<someone-else@example.org>"), sender="MAILER-DAEMON@mx.example.org")

    stray = next(c for c in await contacts(runtime) if c.external_id == "<dsn-failed@mx.example.org>")
    assert (stray.case_id, stray.customer_id, stray.needs_review) == (None, None, True)
    assert await counts(runtime) == before

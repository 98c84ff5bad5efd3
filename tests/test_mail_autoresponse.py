"""Auto-responses (seed 004): a mail that opens a case gets a receipt carrying the case's reference
(the submission id), from the pool's or the mailbox's sandboxed template, through the relay; never
to automatic mail, at most a few a day to one address, and never for a mail that joins a case."""

from __future__ import annotations

from email import message_from_bytes, policy

import aiosmtplib
import pytest

from app.auth import SYSTEM
from app.services import mail as mail_service
from app.services import queues
from tests.mail_support import add_mailbox, arq_pool, contacts, listener, message, relay_server, run_jobs

POOL_RECEIPT = {
    "subject": "We received: {{ subject }}",
    "text": "Dear {{ customer_name or sender }}, your submission id is {{ reference }}.\n",
}
POOL_CREATE = (
    "mutation($input: PoolCreateInput!) { poolCreate(input: $input) { pool { id autoResponse { subject } } } }"
)
POOL_UPDATE = "mutation($input: PoolUpdateInput!) { poolUpdate(input: $input) { pool { autoResponse { subject } } errors { field code } } }"


@pytest.fixture
async def relay():
    async with relay_server() as handler:
        yield handler


@pytest.fixture
async def mailbox(runtime, servers, relay):
    async with runtime.transaction() as session:
        pool = await queues.create_pool(session, actor=SYSTEM, name="Orders", auto_response=POOL_RECEIPT)
    relay_settings = {"host": "127.0.0.1", "port": relay.port, "security": "none"}
    mailbox_id = await add_mailbox(runtime, display_name="Orders desk", pool_id=pool.id, relay=relay_settings)
    async with arq_pool(servers) as arq, listener(runtime, arq) as port:
        yield port, mailbox_id


async def deliver(port: int, *raws: bytes, sender: str = "ann@example.org") -> None:
    for raw in raws:
        await aiosmtplib.send(
            raw, sender=sender, recipients=["support@casegraph.test"], hostname="127.0.0.1", port=port
        )
    await run_jobs()


async def test_a_new_case_gets_a_receipt_with_its_reference_and_a_reply_on_it_does_not(mailbox, relay, runtime):
    port, _ = mailbox
    await deliver(port, message(sender="Ann Smith <ann@example.org>", message_id="<q@example.org>"))

    [sent] = relay.received
    receipt = message_from_bytes(sent.original_content, policy=policy.default)
    [question] = [c for c in await contacts(runtime) if c.direction == "inbound"]
    reference = receipt["Subject"].rsplit("[", 1)[1].rstrip("]")
    assert reference.startswith("CASE-")
    assert receipt["Subject"] == f"We received: My order [{reference}]"
    assert receipt["Auto-Submitted"] == "auto-replied" and receipt["In-Reply-To"] == "<q@example.org>"
    assert sent.rcpt_tos == ["ann@example.org"] and receipt["From"] == "Orders desk <support@casegraph.test>"
    assert receipt.get_body(("plain",)).get_content().strip() == f"Dear Ann Smith, your submission id is {reference}."
    outbound = [c for c in await contacts(runtime) if c.direction == "outbound"]
    assert [(c.case_id, c.payload["mail"]["kind"]) for c in outbound] == [(question.case_id, "auto_response")]

    await deliver(port, message(subject="Re: My order", message_id="<r@example.org>", In_Reply_To="<q@example.org>"))
    assert len(relay.received) == 1


@pytest.mark.parametrize(
    "headers,sender,opens_a_case",
    [
        ({"Precedence": "bulk"}, "news@example.org", True),
        ({"List_Id": "<offers.example.org>"}, "list@example.org", True),
        ({}, "MAILER-DAEMON@example.org", True),
        # An autoresponder's answer to nothing of ours: kept for an agent, on no case (see test_mail_bounces).
        ({"Auto_Submitted": "auto-replied"}, "ann@example.org", False),
        ({"X_Autoreply": "yes"}, "away@example.org", False),
    ],
)
async def test_automatic_mail_gets_no_receipt(mailbox, relay, runtime, headers, sender, opens_a_case):
    port, _ = mailbox
    await deliver(port, message(sender=sender, **headers), sender=sender)

    [contact] = await contacts(runtime)
    assert (contact.case_id is not None) == opens_a_case
    assert relay.received == []


async def test_one_address_gets_at_most_three_receipts_a_day(mailbox, relay, runtime):
    port, _ = mailbox
    await deliver(port, *(message(subject=f"Question {n}") for n in range(5)))

    assert len({c.case_id for c in await contacts(runtime) if c.direction == "inbound"}) == 5
    assert len(relay.received) == mail_service.AUTO_RESPONSE_LIMIT == 3


async def test_the_mailbox_template_wins_and_a_template_breaking_the_sandbox_sends_nothing(
    mailbox, relay, runtime, gql
):
    port, mailbox_id = mailbox
    async with runtime.transaction() as session:
        await mail_service.update_mailbox(
            session, actor=SYSTEM, mailbox_id=mailbox_id, auto_response={"subject": "Thanks", "text": "{{ reference }}"}
        )
    await deliver(port, message(sender="bob@example.org"), sender="bob@example.org")
    assert message_from_bytes(relay.received[0].original_content, policy=policy.default)["Subject"].startswith(
        "Thanks [CASE-"
    )

    async with runtime.transaction() as session:
        await mail_service.update_mailbox(
            session,
            actor=SYSTEM,
            mailbox_id=mailbox_id,
            auto_response={"subject": "x", "text": "{{ ''.__class__.__mro__[1].__subclasses__() }}"},
        )
    await deliver(port, message(sender="eve@example.org"), sender="eve@example.org")

    assert len(relay.received) == 1
    assert len([c for c in await contacts(runtime) if c.direction == "inbound"]) == 2


async def test_templates_are_checked_when_saved(gql):
    created = await gql(POOL_CREATE, {"input": {"name": "P", "autoResponse": {"subject": "Hi", "text": "ok"}}})
    pool_id = created["poolCreate"]["pool"]["id"]
    assert created["poolCreate"]["pool"]["autoResponse"] == {"subject": "Hi"}

    broken = await gql(POOL_UPDATE, {"input": {"id": pool_id, "autoResponse": {"subject": "Hi", "text": "{% if %}"}}})
    assert broken["poolUpdate"]["errors"] == [{"field": "autoResponse.text", "code": "INVALID"}]
    two_lines = await gql(POOL_UPDATE, {"input": {"id": pool_id, "autoResponse": {"subject": "a\nb", "text": "x"}}})
    assert two_lines["poolUpdate"]["errors"] == [{"field": "autoResponse.subject", "code": "INVALID"}]
    removed = await gql(POOL_UPDATE, {"input": {"id": pool_id, "autoResponse": None}})
    assert removed["poolUpdate"]["pool"]["autoResponse"] is None

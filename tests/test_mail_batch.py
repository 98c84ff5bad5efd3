"""Batched mail intake: stored messages taken in together (a reply to a message of the same batch, a
repeated Message-ID, a bounce in the middle, an attachment, a malformed message, one that fails)
become what taking them in one by one makes of them; the parsing helper process reads as the
worker does."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailparser_reply import EmailReplyParser
from sqlalchemy import select

from app.mail.parse import PARALLEL_FROM, REPLY_LANGUAGES, ParsedMail, _new_text, parse_message, parse_messages
from app.models import InboundMessage
from app.services import mail as mail_service
from app.settings import JOB_QUEUE
from tests.mail_support import add_mailbox, arq_pool, contacts, message, run_jobs
from tests.test_ingest_batch import reset, snapshot
from tests.test_runtime import ROOT


def corpus() -> list[bytes]:
    mails = []
    for i in range(24):
        sender = f"Customer {i % 5} <c{i % 5}@example.org>"
        headers = {}
        if i in (7, 15):  # replies to the first mail of the same sender, in the same batch
            headers = {"In_Reply_To": f"<mail-{i % 5}@example.org>"}
        if i == 11:
            sender = f'"{"N" * 230}" <long@example.org>'  # no profile can carry this name: fails
        mails.append(message(sender=sender, subject=f"Question {i}", message_id=f"<mail-{i}@example.org>", **headers))
    mails[9] = mails[3]  # the same mail twice
    with_file = EmailMessage()
    with_file["From"], with_file["To"], with_file["Subject"] = "c1@example.org", "support@casegraph.test", "Photo"
    with_file["Message-ID"] = "<photo@example.org>"
    with_file.set_content("See attached")
    with_file.add_attachment(b"\x89PNG...", maintype="image", subtype="png", filename="p.png")
    mails[13] = with_file.as_bytes(policy=SMTP)
    mails[17] = message(
        sender="Out Of Office <c2@example.org>",
        subject="Away",
        message_id="<away@example.org>",
        Auto_Submitted="auto-replied",
    )
    mails[19] = (
        b"From: c3@example.org\r\nSubject: =?bogus?Q?x?=\r\nContent-Type: text/plain; charset=nope\r\n\r\n\xff\xfe"
    )
    return mails


async def store_all(runtime, mailbox_id: int) -> list[int]:
    async with runtime.transaction() as session:
        return [
            await mail_service.store_inbound(session, mailbox_id=mailbox_id, via="smtp", raw=raw) for raw in corpus()
        ]


async def inbound_state(runtime) -> list[tuple]:
    async with runtime.reading() as session:
        rows = await session.execute(
            select(InboundMessage.status, InboundMessage.problems, InboundMessage.contact_id.is_not(None)).order_by(
                InboundMessage.id
            )
        )
        return [tuple(row) for row in rows]


async def test_stored_messages_taken_in_together_become_what_one_by_one_makes_of_them(runtime, table_names):
    mailbox_id = await add_mailbox(runtime)
    ids = await store_all(runtime, mailbox_id)
    for inbound_id in ids:
        await mail_service.take_in(runtime, inbound_id=inbound_id)
    expected, _ = await snapshot(runtime)
    expected_inbound = await inbound_state(runtime)

    await reset(runtime, table_names)
    mailbox_id = await add_mailbox(runtime)
    ids = await store_all(runtime, mailbox_id)
    taken = await mail_service.take_in_batch(runtime, inbound_id=ids[0])
    assert len(taken) == len(ids)  # one job, every message
    assert await mail_service.take_in_batch(runtime, inbound_id=ids[5]) == []  # done already

    state, _ = await snapshot(runtime)
    for run in (state, expected):  # the times are those the messages were stored at, in each run
        run["customers"] = [(rank, name) for rank, name, _ in run["customers"]]
    assert state == expected
    assert await inbound_state(runtime) == expected_inbound
    assert all(status == "done" for status, _, linked in expected_inbound)
    traces = {c["externalId"]: c["trace"] for c in state["contacts"]}
    assert traces["<mail-11@example.org>"]["outcome"] == "error"
    assert traces["<mail-7@example.org>"]["matchedRule"] == "Email thread"
    assert sum(1 for c in state["contacts"] if c["externalId"] == "<mail-3@example.org>") == 1


def test_the_parsing_helper_reads_as_the_worker_does():
    raws = corpus() * 2
    assert len(raws) >= PARALLEL_FROM

    async def both():
        return await parse_messages(raws)

    import asyncio

    assert asyncio.run(both()) == [parse_message(raw) for raw in raws]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.text(st.characters(blacklist_characters=":-_", blacklist_categories=("Cs",)), max_size=60)
        | st.sampled_from(["Best regards", "Sent from my iPhone", "Thanks,", "> quoted line", "On Monday Ann wrote"]),
        max_size=12,
    ),
    st.sampled_from(["\n", "\r\n"]),
)
def test_a_text_without_any_quote_cue_skips_the_reply_parser_and_reads_the_same(lines, newline):
    """The reply parser's headers all hold a colon, five dashes or underscores: for a text without
    any, the short cut answers exactly what the parser answers."""
    text = newline.join(lines)
    mail = ParsedMail()
    expected = (EmailReplyParser(languages=REPLY_LANGUAGES).parse_reply(text) or "").strip() or text
    assert _new_text(text, mail) == expected
    assert mail.problems == []


OWNER = """
import asyncio, sys
from app.mail import parse
from tests.mail_support import message

raws = [message(message_id=f"<m{i}@example.org>") for i in range(parse.PARALLEL_FROM)]
asyncio.run(parse.parse_messages(raws))
print(*parse._helper._processes, flush=True)
sys.stdin.read()
"""


def test_the_parsing_helper_ends_when_the_worker_that_started_it_is_killed():
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    [helper] = [int(pid) for pid in owner.stdout.readline().split()]
    os.kill(helper, 0)  # running
    owner.kill()  # SIGKILL: the pool is never shut down
    owner.wait()

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(helper, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError("the parsing helper outlived the killed worker")


async def test_new_mail_shares_one_intake_job_per_slot_and_it_takes_every_message_in(runtime, servers):
    mailbox_id = await add_mailbox(runtime)
    async with runtime.transaction() as session:
        ids = [
            await mail_service.store_inbound(
                session, mailbox_id=mailbox_id, via="smtp", raw=message(message_id=f"<slot-{n}@example.org>")
            )
            for n in range(30)
        ]
    async with arq_pool(servers) as arq:
        # Within one slot (a slot is 50 ms; a slow machine may cross one boundary).
        while (time.time() % mail_service.INTAKE_SLOT_SECONDS) > mail_service.INTAKE_SLOT_SECONDS / 2:
            await asyncio.sleep(0.005)
        enqueue = mail_service.intake_enqueuer(arq)
        for inbound_id in ids:
            await enqueue(inbound_id)
        assert await arq.zcard(JOB_QUEUE) in (1, 2)
    await run_jobs()
    assert {status for status, _, linked in await inbound_state(runtime) if linked} == {"done"}
    assert len(await contacts(runtime)) == 30


async def test_an_intake_job_hands_over_after_its_batches_with_mail_still_waiting(runtime, monkeypatch):
    mailbox_id = await add_mailbox(runtime)
    async with runtime.transaction() as session:
        for n in range(mail_service.INTAKE_BATCH + 5):
            await mail_service.store_inbound(
                session, mailbox_id=mailbox_id, via="smtp", raw=message(message_id=f"<many-{n}@example.org>")
            )
    monkeypatch.setattr(mail_service, "INTAKE_JOB_BATCHES", 1)
    monkeypatch.setattr(mail_service, "INTAKE_JOB_LANES", 1)
    handovers = []

    async def handover() -> None:
        handovers.append(True)

    first = await mail_service.take_in_new_mail(runtime, handover=handover)
    assert len(first) == mail_service.INTAKE_BATCH and handovers == [True]
    second = await mail_service.take_in_new_mail(runtime, handover=handover)
    assert len(second) == 5 and handovers == [True]  # a batch not full: no further job


async def test_a_lane_leaves_alone_the_messages_another_lane_of_its_job_is_retrying(runtime, monkeypatch):
    mailbox_id = await add_mailbox(runtime)
    unfit = message(sender=f'"{"N" * 230}" <long@example.org>', subject="Hello", message_id="<unfit@example.org>")
    async with runtime.transaction() as session:
        stored = await mail_service.store_inbound(session, mailbox_id=mailbox_id, via="smtp", raw=unfit)
    held: set[int] = set()
    other_lane_took = []
    take_in_alone = mail_service.take_in

    async def other_lane_looks_first(runtime, *, inbound_id, send=None):
        # The failed batch has let go of its lock; the message is retried alone next.
        other_lane_took.append(await mail_service.take_in_batch(runtime, inbound_id=None, held=held))
        return await take_in_alone(runtime, inbound_id=inbound_id, send=send)

    monkeypatch.setattr(mail_service, "take_in", other_lane_looks_first)
    taken = await mail_service.take_in_batch(runtime, inbound_id=None, held=held)
    assert other_lane_took == [[]] and len(taken) == 1 and held == set()
    async with runtime.reading() as session:
        attempts = await session.scalar(select(InboundMessage.attempts).where(InboundMessage.id == stored))
    assert attempts == 1

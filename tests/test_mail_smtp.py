"""Mail pushed to the SMTP listener: 250 only once stored, 4xx when storing fails, then one intake
job makes each message a recognised contact (threaded onto its case), bad input included."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from datetime import timedelta

import aiosmtplib
import pytest
import sqlalchemy
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.auth import SYSTEM
from app.mail.listener import IntakeSMTP
from app.services import mail as mail_service
from app.services import queues
from jobs.worker import mail_sweep
from schema.ids import to_global_id
from tests.conftest import _free_port
from tests.mail_support import add_mailbox, arq_pool, contacts, inbound, listener, message, run_jobs

BACKLOG = "{ mailboxes { status { waitingMessages failedMessages } } }"
CASE_POOL = "query($id: ID!) { node(id: $id) { ... on Case { pool { name } } } }"


@pytest.fixture
async def smtp(runtime, servers):
    await add_mailbox(runtime)
    async with arq_pool(servers) as arq, listener(runtime, arq) as port:
        yield port


async def send(port: int, raw: bytes, to: str = "support@casegraph.test", sender: str = "ann@example.org"):
    return await aiosmtplib.send(raw, sender=sender, recipients=[to], hostname="127.0.0.1", port=port)


async def test_a_message_is_stored_exactly_before_250_and_becomes_a_contact(smtp, runtime):
    raw = message(text="Where is my order?\n", html="<p>Where is my <b>order</b>?</p><script>alert(1)</script>")

    _, answer = await send(smtp, raw)

    assert answer.startswith("2.0.0 Message stored")
    [stored] = await inbound(runtime)
    assert stored.raw == raw and stored.status == "pending" and stored.via == "smtp"
    assert stored.envelope_to == ["support@casegraph.test"]

    await run_jobs()

    [contact] = await contacts(runtime)
    assert (contact.channel, contact.direction, contact.subject) == ("email", "inbound", "My order")
    assert contact.from_address == "Ann Customer <ann@example.org>" and contact.text == "Where is my order?"
    assert "<script>" not in contact.html and "<b>order</b>" in contact.html
    assert contact.customer_id is not None and contact.case_id is not None  # the e-mail no-match policy
    assert contact.payload["mail"]["inboundMessageId"] == stored.id
    [done] = await inbound(runtime)
    assert done.status == "done" and done.contact_id == contact.id


async def test_the_same_message_twice_is_one_contact(smtp, runtime):
    raw = message()
    await send(smtp, raw)
    await send(smtp, raw)

    await run_jobs()

    assert len(await contacts(runtime)) == 1
    first, second = await inbound(runtime)
    assert first.contact_id == second.contact_id and second.status == "done"


async def test_an_unknown_recipient_is_refused(smtp, runtime):
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(smtp, message(), to="nobody@casegraph.test")
    assert refused.value.recipients[0].code == 550
    assert await inbound(runtime) == []


async def test_a_mailbox_disabled_after_rcpt_answers_4xx_and_the_retry_is_refused(smtp, runtime):
    await send(smtp, message(message_id="<first@example.org>"))  # the recipient is now known to the listener
    async with runtime.transaction() as session:
        await session.execute(text("UPDATE mailboxes SET enabled = false"))

    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await send(smtp, message(message_id="<second@example.org>"))
    assert refused.value.code == 451  # not 250 for a message kept nowhere
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as retried:
        await send(smtp, message(message_id="<second@example.org>"))
    assert retried.value.recipients[0].code == 550
    assert len(await inbound(runtime)) == 1


async def test_storage_failing_answers_4xx_and_the_sender_retries_later(smtp, runtime):
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE FUNCTION refuse_storage() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql"
            )
        )
        await conn.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON inbound_messages FOR EACH ROW EXECUTE FUNCTION refuse_storage()"
            )
        )
    try:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await send(smtp, message(message_id="<retry@example.org>"))
        assert refused.value.code == 451
    finally:
        async with runtime.engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER refuse ON inbound_messages"))
            await conn.execute(text("DROP FUNCTION refuse_storage()"))

    _, answer = await send(smtp, message(message_id="<retry@example.org>"))
    assert answer.startswith("2.0.0")
    await run_jobs()
    assert [c.external_id for c in await contacts(runtime)] == ["<retry@example.org>"]


async def test_replies_thread_onto_the_case_by_header_or_subject_tag_but_a_stranger_does_not(smtp, runtime):
    await send(smtp, message(message_id="<first@example.org>"))
    await run_jobs()
    [first] = await contacts(runtime)
    async with runtime.reading() as session:
        reference = (
            await session.execute(text("SELECT reference FROM cases WHERE id = :id"), {"id": first.case_id})
        ).scalar()

    await send(smtp, message(subject="Re: My order", message_id="<r1@example.org>", In_Reply_To="<first@example.org>"))
    await send(
        smtp, message(subject="Re: My order", message_id="<r2@example.org>", References="<x@y> <first@example.org>")
    )
    await send(smtp, message(subject=f"Still waiting [{reference}]", message_id="<r3@example.org>"))
    await send(
        smtp,
        message(
            sender="mallory@evil.example",
            subject=f"About [{reference}]",
            message_id="<m@evil.example>",
            In_Reply_To="<first@example.org>",
        ),
        sender="mallory@evil.example",
    )
    await run_jobs()

    by_id = {c.external_id: c for c in await contacts(runtime)}
    assert [by_id[f"<r{n}@example.org>"].case_id for n in (1, 2, 3)] == [first.case_id] * 3
    assert by_id["<m@evil.example>"].case_id != first.case_id
    assert by_id["<m@evil.example>"].customer_id != first.customer_id


async def test_html_only_mail_gets_a_text_and_the_quoted_history_is_kept_apart(smtp, runtime):
    html = "<div>Thanks, it arrived.</div><div>On Mon, 2 Jan 2026 at 10:00, Support &lt;support@casegraph.test&gt; wrote:</div><blockquote>Your parcel left today.</blockquote>"
    await send(smtp, message(text=None, html=html))
    await run_jobs()

    [contact] = await contacts(runtime)
    assert contact.text == "Thanks, it arrived."
    assert "Your parcel left today." in contact.payload["mail"]["quotedText"]
    assert not contact.needs_review


async def test_broken_mail_is_kept_read_as_far_as_possible_and_flagged(smtp, runtime):
    eight_bit = b"From: J\xfcrgen <j@example.org>\r\nTo: support@casegraph.test\r\nSubject: Gr\xfc\xdfe\r\nMessage-ID: <8bit@example.org>\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\nHall\xf6 \xff\xfe\r\n"
    nested = (
        b"From: deep@example.org\r\nTo: support@casegraph.test\r\nSubject: deep\r\nMessage-ID: <deep@example.org>\r\n"
        + b"Content-Type: message/rfc822\r\n\r\n" * 3000
        + b"hi\r\n"
    )
    garbage = b"\x00\xff not a message at all\r\n"
    for raw in (eight_bit, nested, garbage):
        await send(smtp, raw, sender="j@example.org")

    await run_jobs()

    stored = await inbound(runtime)
    assert [m.raw for m in stored] == [eight_bit, nested, garbage]  # byte for byte
    assert all(m.status == "done" for m in stored)
    by_id = {c.id: c for c in await contacts(runtime)}
    eight, deep, junk = (by_id[m.contact_id] for m in stored)
    assert (
        eight.subject == "Grüße" and eight.text.startswith("Hallö") and eight.from_address == "Jürgen <j@example.org>"
    )
    assert "UNKNOWN_CHARSET" in stored[0].problems and eight.needs_review
    assert deep.subject == "deep" and "NESTED_TOO_DEEP" in stored[1].problems and deep.needs_review
    assert junk.external_id == f"sha256:{stored[2].sha256}" and junk.needs_review


async def test_a_message_id_too_long_for_an_index_is_dropped_and_the_message_still_taken_in(runtime, servers):
    # Longer than SMTP allows on a line, but IMAP hands over whatever a server holds; random, so
    # that PostgreSQL cannot compress it into an index entry.
    mailbox_id = await add_mailbox(runtime)
    raw = message(message_id="<" + secrets.token_urlsafe(4500) + "@example.org>", subject="huge id")
    async with runtime.transaction() as session:
        inbound_id = await mail_service.store_inbound(session, mailbox_id=mailbox_id, via="imap", raw=raw, imap_uid=1)
    async with arq_pool(servers) as arq:
        await mail_service.intake_enqueuer(arq)(inbound_id)
    await run_jobs()

    [stored] = await inbound(runtime)
    [contact] = await contacts(runtime)
    assert stored.status == "done" and "MALFORMED_MESSAGE_ID" in stored.problems
    assert contact.subject == "huge id" and contact.external_id == f"sha256:{stored.sha256}" and contact.needs_review


async def test_a_failed_intake_keeps_the_message_pending_and_the_sweeper_takes_it_in_later(smtp, runtime, servers, gql):
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE FUNCTION refuse_contact() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'down'; END $$ LANGUAGE plpgsql"
            )
        )
        await conn.execute(
            text("CREATE TRIGGER refuse BEFORE INSERT ON contacts FOR EACH ROW EXECUTE FUNCTION refuse_contact()")
        )
    try:
        await send(smtp, message(message_id="<later@example.org>"))
        await run_jobs()
    finally:
        async with runtime.engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER refuse ON contacts"))
            await conn.execute(text("DROP FUNCTION refuse_contact()"))
    [pending] = await inbound(runtime)
    assert (pending.status, pending.attempts, pending.last_error) == ("pending", 1, "DATABASE_ERROR")
    assert await contacts(runtime) == []
    assert (await gql(BACKLOG))["mailboxes"][0]["status"] == {"waitingMessages": 1, "failedMessages": 0}

    async with runtime.engine.begin() as conn:  # a minute later
        await conn.execute(text("UPDATE inbound_messages SET received_at = received_at - interval '2 minutes'"))
    async with arq_pool(servers) as arq:
        assert await mail_sweep({"runtime": runtime, "redis": arq}) == 1
    await run_jobs()

    [done] = await inbound(runtime)
    assert (done.status, done.attempts, done.last_error) == ("done", 2, None)
    assert [c.external_id for c in await contacts(runtime)] == ["<later@example.org>"]
    assert (await gql(BACKLOG))["mailboxes"][0]["status"] == {"waitingMessages": 0, "failedMessages": 0}


async def test_a_message_given_up_on_is_counted_for_the_administrator(smtp, runtime, servers, gql):
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE FUNCTION refuse_contact() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'down'; END $$ LANGUAGE plpgsql"
            )
        )
        await conn.execute(
            text("CREATE TRIGGER refuse BEFORE INSERT ON contacts FOR EACH ROW EXECUTE FUNCTION refuse_contact()")
        )
    try:
        await send(smtp, message())
        for _ in range(mail_service.MAX_INTAKE_ATTEMPTS):
            await mail_service.take_in(runtime, inbound_id=(await inbound(runtime))[0].id)
    finally:
        async with runtime.engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER refuse ON contacts"))
            await conn.execute(text("DROP FUNCTION refuse_contact()"))

    assert (await gql(BACKLOG))["mailboxes"][0]["status"] == {"waitingMessages": 0, "failedMessages": 1}
    assert await mail_service.pending_inbound(runtime, older_than=timedelta(0)) == []  # the sweeper leaves it


async def test_the_smtp_command_listens_and_stores(runtime, servers):
    await add_mailbox(runtime)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "smtp", "--port", str(port)],
        env={**os.environ, **servers},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(150):
            try:
                _, answer = await send(port, message(message_id="<cli@example.org>"))
                break
            except (aiosmtplib.SMTPConnectError, ConnectionError, OSError):
                await asyncio.sleep(0.1)
        else:
            raise AssertionError(process.stderr.read().decode())
    finally:
        process.terminate()
        process.wait(10)
    assert answer.startswith("2.0.0")
    [stored] = await inbound(runtime)
    assert b"<cli@example.org>" in stored.raw


async def test_a_case_opened_by_mail_lands_in_the_mailbox_pool(runtime, servers, gql):
    async with runtime.transaction() as session:
        pool = await queues.create_pool(session, actor=SYSTEM, name="Billing")
    await add_mailbox(runtime, "billing@casegraph.test", pool_id=pool.id)
    async with arq_pool(servers) as arq, listener(runtime, arq) as port:
        await send(
            port, message(to="billing@casegraph.test", message_id="<bill@example.org>"), to="billing@casegraph.test"
        )
        await run_jobs()

    [contact] = await contacts(runtime)
    case = await gql(CASE_POOL, {"id": to_global_id("Case", contact.case_id)})
    assert case["node"]["pool"] == {"name": "Billing"}


async def test_serve_runs_the_listener_beside_the_api_and_the_worker(runtime, servers):
    await add_mailbox(runtime)
    api_port, smtp_port = _free_port(), _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(api_port), "--smtp-port", str(smtp_port)],
        env={**os.environ, **servers},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(150):
            try:
                await send(smtp_port, message(message_id="<served@example.org>"))
                break
            except (aiosmtplib.SMTPConnectError, ConnectionError, OSError):
                await asyncio.sleep(0.1)
        else:
            raise AssertionError(process.stderr.read().decode())
        for _ in range(100):  # the worker inside `serve` takes it in
            if await contacts(runtime):
                break
            await asyncio.sleep(0.1)
    finally:
        process.terminate()
        process.wait(20)
    assert [c.external_id for c in await contacts(runtime)] == ["<served@example.org>"]


@pytest.fixture
async def slow_first_store(runtime):
    """The store of mail from slow@ takes a second and a half; mail from refused@ cannot be stored."""
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text(
                """CREATE FUNCTION slow_or_refuse() RETURNS trigger AS $$ BEGIN
                   IF NEW.envelope_from = 'slow@example.org' THEN PERFORM pg_sleep(1.5); END IF;
                   IF NEW.envelope_from = 'refused@example.org' THEN RAISE EXCEPTION 'refused'; END IF;
                   RETURN NEW; END $$ LANGUAGE plpgsql"""
            )
        )
        await conn.execute(
            text("CREATE TRIGGER slow BEFORE INSERT ON inbound_messages FOR EACH ROW EXECUTE FUNCTION slow_or_refuse()")
        )
    yield
    async with runtime.engine.begin() as conn:
        await conn.execute(text("DROP TRIGGER slow ON inbound_messages"))
        await conn.execute(text("DROP FUNCTION slow_or_refuse()"))


async def send_while_a_store_is_under_way(port: int, senders: list[str]) -> tuple[str, list]:
    slow = asyncio.create_task(send(port, message(message_id="<slow@example.org>"), sender="slow@example.org"))
    await asyncio.sleep(0.2)
    together = await asyncio.gather(
        *(send(port, message(message_id=f"<{s}>"), sender=s) for s in senders), return_exceptions=True
    )
    return (await slow)[1], together


async def test_messages_ending_while_a_store_is_under_way_are_stored_together_in_one_commit(
    smtp, runtime, slow_first_store
):
    commits = []

    def counted(connection) -> None:
        commits.append(True)

    sqlalchemy.event.listen(runtime.engine.sync_engine, "commit", counted)
    try:
        senders = [f"c{n}@example.org" for n in range(5)]
        first, together = await send_while_a_store_is_under_way(smtp, senders)
    finally:
        sqlalchemy.event.remove(runtime.engine.sync_engine, "commit", counted)
    assert first.startswith("2.0.0 Message stored")
    assert all(answer.startswith("2.0.0 Message stored") for _, answer in together)
    assert len(await inbound(runtime)) == 6
    assert len(commits) == 2  # the slow one, then the five together


async def test_a_message_that_cannot_be_stored_fails_alone_and_its_group_is_stored(smtp, runtime, slow_first_store):
    senders = ["refused@example.org"] + [f"c{n}@example.org" for n in range(4)]
    first, (refused, *stored) = await send_while_a_store_is_under_way(smtp, senders)
    assert first.startswith("2.0.0 Message stored")
    assert isinstance(refused, aiosmtplib.SMTPDataError) and refused.code == 451
    assert all(answer.startswith("2.0.0 Message stored") for _, answer in stored)
    assert sorted(m.envelope_from for m in await inbound(runtime)) == sorted(["slow@example.org", *senders[1:]])


async def test_a_group_keeps_each_message_once_per_enabled_mailbox_among_its_recipients(runtime):
    sales = await add_mailbox(runtime, "sales@casegraph.test")
    support = await add_mailbox(runtime, "support@casegraph.test")
    await add_mailbox(runtime, "closed@casegraph.test", enabled=False)
    group = [
        mail_service.Pushed(b"to both", "a@example.org", ["Support@casegraph.test", "sales@casegraph.test"]),
        mail_service.Pushed(b"to none", "b@example.org", ["closed@casegraph.test", "nobody@casegraph.test"]),
        mail_service.Pushed(b"to one", None, ["support@casegraph.test", "closed@casegraph.test"]),
    ]
    async with runtime.transaction() as session:
        stored = await mail_service.store_for_recipients(session, via="smtp", messages=group)
    rows = {row.id: row for row in await inbound(runtime)}
    assert [len(ids) for ids in stored] == [2, 0, 1]
    assert [(rows[i].raw, rows[i].mailbox_id) for ids in stored for i in ids] == [
        (b"to both", sales),
        (b"to both", support),
        (b"to one", support),
    ]
    assert rows[stored[2][0]].envelope_from is None
    assert rows[stored[0][0]].envelope_to == ["Support@casegraph.test", "sales@casegraph.test"]
    assert len(rows) == 3


def _path_outcome(server, arg: str):
    try:
        return server._getaddr(arg)
    except Exception as error:  # noqa: BLE001 - aiosmtpd's own failure, which ours must share
        return type(error)


_PATH_CHARS = st.sampled_from(list('ab.@<> \t"()\\,;:-_+=Z9\x85é'))
_PLAIN_PATHS = st.builds(
    lambda space, local, domain, params: f"{space}<{local}@{domain}>{space}{params}",
    st.sampled_from(["", " ", "\t", "  "]),
    st.from_regex(r"[a-z0-9.+_-]{1,70}", fullmatch=True),
    st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True),
    st.sampled_from(["", "SIZE=5120", "BODY=8BITMIME SMTPUTF8", " x"]),
)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(_PLAIN_PATHS, st.text(_PATH_CHARS, max_size=30)))
def test_the_listener_reads_a_path_as_aiosmtpd_does(arg):
    assert _path_outcome(IntakeSMTP(None), arg) == _path_outcome(SMTP(None), arg)

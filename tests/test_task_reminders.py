"""Task reminders: the worker's cron claims due reminders in PostgreSQL and marks them in the
transaction that announces them, so each fires once: across a worker killed and started again,
for one that came due while no worker ran, and with several workers claiming at once. The
assignee's `taskReminder` subscription receives it (nobody else's does), and a mail goes out
where the assignee has an address and a mailbox has a relay."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
import websockets
from sqlalchemy import text

from app import events
from app.auth import Actor
from app.services import auth as auth_service
from app.services import tasks as task_service
from tests.conftest import wait_for_subscriber
from tests.mail_support import add_mailbox, relay_server
from tests.support import make_customer, rows, scalar

REMINDERS = "subscription { taskReminder { remindedAt task { subject assignee { name } } } }"


async def user(runtime, name: str, email: str | None = None) -> tuple[Actor, str]:
    async with runtime.transaction() as session:
        created = await auth_service.create_user(
            session, actor=Actor(None, "test", "admin"), name=name, role="agent", email=email
        )
        token = await auth_service.create_token(session, name=name, role="agent")
    return Actor(created.id, name, "agent"), token


async def plan(runtime, actor: Actor, customer_id: int, subject: str, remind_in: float) -> int:
    async with runtime.transaction() as session:
        task = await task_service.create_task(
            session,
            actor=actor,
            kind="call",
            subject=subject,
            customer_id=customer_id,
            remind_at=datetime.now(UTC) + timedelta(seconds=remind_in),
        )
        return task.id


async def subscribe(host: str, token: str):
    ws = await websockets.connect(f"ws://{host}/graphql", subprotocols=["graphql-transport-ws"])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": REMINDERS}}))
    return ws


async def next_reminder(ws, timeout: float) -> dict:
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=timeout))
    assert message["type"] == "next", message
    return message["payload"]["data"]["taskReminder"]


async def nothing_arrives(ws, seconds: float) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), timeout=seconds)
    except TimeoutError:
        return True
    return False


def start_worker(servers) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        env={**os.environ, **servers},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def reminded(runtime, task_id: int) -> bool:
    return await scalar(runtime, "SELECT reminded_at IS NOT NULL FROM tasks WHERE id = :id", id=task_id)


async def mails_sent(runtime, relay, count: int, seconds: float) -> bool:
    """Whether `count` mails reached the relay and their sends were recorded, within `seconds`."""
    for _ in range(int(seconds * 10)):
        if len(relay.received) >= count:
            sent = await scalar(runtime, "SELECT count(*) FROM outbound_messages WHERE status = 'sent'")
            if sent >= count:
                return True
        await asyncio.sleep(0.1)
    return False


@pytest.fixture
async def relay():
    async with relay_server() as handler:
        yield handler


async def test_a_reminder_fires_once_across_a_worker_kill_and_one_due_meanwhile_fires_after_restart(
    runtime, servers, live_server, relay
):
    ann, ann_token = await user(runtime, "ann", email="ann@casegraph.test")
    bob, bob_token = await user(runtime, "bob", email="bob@casegraph.test")
    relay_settings = {
        "host": "127.0.0.1",
        "port": relay.port,
        "security": "none",
        "from_address": "desk@casegraph.test",
    }
    await add_mailbox(runtime, address="desk@casegraph.test", relay=relay_settings)
    customer = await make_customer(runtime, "Ada Lovelace")
    ann_ws, bob_ws = await subscribe(live_server, ann_token), await subscribe(live_server, bob_token)
    try:
        await wait_for_subscriber(runtime, task_service.REMINDER_TOPIC, ann.user_id)
        await wait_for_subscriber(runtime, task_service.REMINDER_TOPIC, bob.user_id)
        first = await plan(runtime, ann, customer, "Call Ada", remind_in=2)

        worker = start_worker(servers)
        try:
            first_reminder = await next_reminder(ann_ws, timeout=60)
            # Killed once its mail is sent and recorded: a send killed in flight waits for the minute's sweeper.
            first_mailed = await mails_sent(runtime, relay, 1, 30)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        second = await plan(runtime, ann, customer, "Call Ada again", remind_in=1)
        await asyncio.sleep(2)  # it comes due while no worker runs
        due_meanwhile_waited = not await reminded(runtime, second)

        worker = start_worker(servers)
        try:
            second_reminder = await next_reminder(ann_ws, timeout=60)
            mailed = await mails_sent(runtime, relay, 2, 30)
            await asyncio.sleep(5)  # more runs of the cron: nothing fires twice
        finally:
            worker.terminate()
            worker.wait(20)
        ann_heard_more = not await nothing_arrives(ann_ws, 0.5)
        bob_heard_nothing = await nothing_arrives(bob_ws, 0.5)
    finally:
        await ann_ws.close()
        await bob_ws.close()

    assert first_reminder["task"] == {"subject": "Call Ada", "assignee": {"name": "ann"}}
    assert due_meanwhile_waited
    assert second_reminder["task"]["subject"] == "Call Ada again"
    assert not ann_heard_more and bob_heard_nothing
    fired = await rows(
        runtime, "SELECT entity_id, count(*) FROM audit_events WHERE action = 'task.remind' GROUP BY 1 ORDER BY 1"
    )
    assert fired == [(first, 1), (second, 1)]
    assert await rows(runtime, "SELECT count(*) FROM tasks WHERE reminded_at IS NULL") == [(0,)]
    assert first_mailed and mailed and len(relay.received) == 2
    subjects = sorted(message_from_bytes(e.content, policy=policy.default)["Subject"] for e in relay.received)
    assert subjects == ["Reminder: Call Ada", "Reminder: Call Ada again"]
    assert {tuple(e.rcpt_tos) for e in relay.received} == {("ann@casegraph.test",)}
    assert (
        await rows(runtime, "SELECT kind, status, contact_id FROM outbound_messages")
        == [("task_reminder", "sent", None)] * 2
    )


async def test_workers_claiming_at_once_deliver_each_due_reminder_once(runtime):
    ann, _ = await user(runtime, "ann", email="ann@casegraph.test")  # an address, but no relay: no mail
    customer = await make_customer(runtime, "Ada Lovelace")
    ids = [await plan(runtime, ann, customer, f"call {n}", remind_in=3600) for n in range(60)]
    done = await plan(runtime, ann, customer, "done already", remind_in=3600)
    async with runtime.transaction() as session:
        await task_service.complete_task(session, actor=ann, task_id=done)
    async with runtime.engine.begin() as conn:
        await conn.execute(text("UPDATE tasks SET remind_at = now() - interval '1 minute'"))

    results = await asyncio.gather(*(task_service.send_due_reminders(runtime, batch=5) for _ in range(4)))
    again = await task_service.send_due_reminders(runtime)

    sent = [task_id for result in results for task_id in result.sent]
    assert sorted(sent) == ids  # each once; the completed task's reminder does not go out
    assert again.sent == []
    assert await scalar(runtime, "SELECT count(*) FROM audit_events WHERE action = 'task.remind'") == 60
    entries = await runtime.redis.xrange(events.STREAM)
    channel = events.channel(task_service.REMINDER_TOPIC, ann.user_id).encode()
    assert sum(fields[b"channel"] == channel for _, fields in entries) == 60
    assert await scalar(runtime, "SELECT count(*) FROM outbound_messages") == 0
    assert all(result.mails == [] for result in results)


async def test_a_new_reminder_time_rearms_a_reminder_that_went_out(runtime):
    ann, _ = await user(runtime, "ann")
    customer = await make_customer(runtime, "Ada Lovelace")
    task_id = await plan(runtime, ann, customer, "Call Ada", remind_in=0.5)
    await asyncio.sleep(0.7)

    first = await task_service.send_due_reminders(runtime)
    async with runtime.transaction() as session:
        await task_service.update_task(
            session, actor=ann, task_id=task_id, remind_at=datetime.now(UTC) + timedelta(seconds=0.5)
        )
    too_early = await task_service.send_due_reminders(runtime)
    await asyncio.sleep(0.7)
    second = await task_service.send_due_reminders(runtime)
    third = await task_service.send_due_reminders(runtime)

    assert (first.sent, too_early.sent, second.sent, third.sent) == ([task_id], [], [task_id], [])

"""Nothing is lost and nothing doubled when the worker is killed (SIGKILL) in the middle of taking
in a batch of stored messages: started again, with the sweeper enqueuing what was left, every
message is a contact exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from sqlalchemy import text

from app.services import mail as mail_service
from jobs.worker import mail_sweep
from tests.mail_support import add_mailbox, arq_pool, message

MESSAGES = 400


def start_worker(servers) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        env={**os.environ, **servers},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def done_count(runtime) -> int:
    async with runtime.engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM inbound_messages WHERE status = 'done'"))).scalar()


async def wait_for(runtime, count: int, seconds: float) -> int:
    for _ in range(int(seconds * 10)):
        done = await done_count(runtime)
        if done >= count:
            return done
        await asyncio.sleep(0.1)
    return await done_count(runtime)


async def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(runtime, servers):
    mailbox_id = await add_mailbox(runtime)
    async with runtime.transaction() as session:
        ids = [
            await mail_service.store_inbound(
                session,
                mailbox_id=mailbox_id,
                via="smtp",
                raw=message(message_id=f"<m{n}@example.org>", subject=f"Q{n}"),
            )
            for n in range(MESSAGES)
        ]
    async with arq_pool(servers) as arq:
        enqueue = mail_service.intake_enqueuer(arq)
        for inbound_id in ids:
            await enqueue(inbound_id)

        worker = start_worker(servers)
        try:
            killed_at = await wait_for(runtime, MESSAGES // 4, 60)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        assert 0 < killed_at < MESSAGES, "the kill must land in the middle of the batch"

        # A minute later the sweeper enqueues what the killed worker held (arq keeps those claimed).
        async with runtime.engine.begin() as conn:
            await conn.execute(text("UPDATE inbound_messages SET received_at = received_at - interval '2 minutes'"))
        await mail_sweep({"runtime": runtime, "redis": arq})
        worker = start_worker(servers)
        try:
            finished = await wait_for(runtime, MESSAGES, 120)
        finally:
            worker.terminate()
            worker.wait(20)

    assert finished == MESSAGES
    async with runtime.engine.connect() as conn:
        contacts, distinct = (
            await conn.execute(text("SELECT count(*), count(DISTINCT external_id) FROM contacts"))
        ).one()
        unlinked = (await conn.execute(text("SELECT count(*) FROM inbound_messages WHERE contact_id IS NULL"))).scalar()
    assert (contacts, distinct, unlinked) == (MESSAGES, MESSAGES, 0)

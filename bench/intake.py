"""Mail intake end to end: generated messages sent over eight SMTP sessions to the listener
(`casegraph smtp`, a process of its own as in production), stored, and taken in by a separate
`casegraph worker` process as recognised contacts. Prints messages per second end to end,
the parse-only ceiling measured in the same run, their ratio, and what was lost or duplicated;
the last line is JSON.

    .venv/bin/python bench/intake.py [--messages 1000] [--mix plain|full] [--burst 1000] [--kill 1000]

Then, for the intake alone, a burst of `--burst` messages is stored at once and taken in by the
worker (`intake_only_msgs_per_s`: without the listener and the sender sharing the cores with
the worker, as end to end they do). Last, `--kill` more messages are stored and enqueued, the worker is killed
with SIGKILL once a third of them are contacts, and a new worker takes in the rest: `lost` and
`duplicated` count over every message of the run, the killed batch included.

`plain` sends 5 KB plain-text messages; `full` mixes them with 50 KB HTML messages and 1 MB
messages with an attachment (80/15/5). Messages come from 200 senders, so most find their customer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP

from _common import ROOT, embedded_servers, free_port

LOREM = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt. "


def generate(n: int, mix: str, prefix: str = "bench") -> list[bytes]:
    rng = random.Random(7)
    messages = []
    for i in range(n):
        mail = EmailMessage()
        mail["From"] = f"Customer {i % 200} <customer{i % 200}@example.org>"
        mail["To"] = "support@casegraph.test"
        mail["Subject"] = f"Question {i}"
        mail["Message-ID"] = f"<{prefix}-{i}@example.org>"
        kind = rng.random() if mix == "full" else 0.0
        if kind < 0.80:
            mail.set_content(LOREM * 55)  # about 5 KB
        elif kind < 0.95:
            mail.set_content(LOREM * 20)
            mail.add_alternative("<html><body>" + f"<p>{LOREM}</p>" * 500 + "</body></html>", subtype="html")
        else:
            mail.set_content(LOREM * 10)
            mail.add_attachment(
                rng.randbytes(1024 * 1024), maintype="application", subtype="octet-stream", filename="a.bin"
            )
        messages.append(mail.as_bytes(policy=SMTP))
    return messages


def parse_ceiling(messages: list[bytes]) -> float:
    from app.mail.parse import parse_message

    started = time.perf_counter()
    for raw in messages:
        parse_message(raw)
    return len(messages) / (time.perf_counter() - started)


async def wait_for_intake(runtime) -> None:
    from sqlalchemy import text

    while True:
        async with runtime.engine.connect() as conn:
            pending = (
                await conn.execute(text("SELECT count(*) FROM inbound_messages WHERE status = 'pending'"))
            ).scalar()
        if pending == 0:
            return
        await asyncio.sleep(0.1)


async def drain(runtime, enqueue, mailbox_id: int, messages: list[bytes]) -> float:
    """The intake alone: messages stored at once (as a burst the listener had accepted), then taken
    in by the worker; messages per second from the first enqueue to the last contact."""
    from app.services import mail as mail_service

    ids = []
    async with runtime.transaction() as session:
        for raw in messages:
            ids.append(await mail_service.store_inbound(session, mailbox_id=mailbox_id, via="smtp", raw=raw))
    started = time.perf_counter()
    for inbound_id in ids:
        await enqueue(inbound_id)
    await wait_for_intake(runtime)
    return len(messages) / (time.perf_counter() - started)


async def contact_count(runtime) -> int:
    from sqlalchemy import text

    async with runtime.engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM contacts"))).scalar()


def start_worker(urls: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"], env={**os.environ, **urls}, cwd=ROOT, stderr=subprocess.DEVNULL
    )


async def kill_midway(runtime, enqueue, mailbox_id: int, messages: list[bytes], urls: dict, worker) -> subprocess.Popen:
    """Store and enqueue `messages`, SIGKILL the worker once a third are contacts, start another
    one, and wait until every message is taken in (the sweeper re-enqueues what the killed worker
    held); returns the new worker."""
    from app.services import mail as mail_service

    before = await contact_count(runtime)
    ids = []
    async with runtime.transaction() as session:
        for raw in messages:
            ids.append(await mail_service.store_inbound(session, mailbox_id=mailbox_id, via="smtp", raw=raw))
    for inbound_id in ids:
        await enqueue(inbound_id)
    while await contact_count(runtime) - before < len(messages) // 3:
        await asyncio.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    replacement = start_worker(urls)
    await wait_for_intake(runtime)
    return replacement


async def send_over_smtp(port: int, queue: list[bytes]) -> int:
    """Send queued messages over one SMTP session, as a mail server relaying to us would: each
    command answered before the next (the listener offers no PIPELINING), the data dot-stuffed.
    Lean, so that what the cores spend is the listener's work rather than a client library's;
    returns how many were accepted."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def command(line: bytes, expected: bytes) -> None:
        if line:
            writer.write(line)
        while (reply := await reader.readline())[3:4] == b"-":  # a multi-line reply's last line has a space
            pass
        if not reply.startswith(expected):
            raise RuntimeError(f"{line!r} answered {reply!r}")

    await command(b"", b"220")
    await command(b"EHLO bench.example.org\r\n", b"250")
    accepted = 0
    while queue:
        raw = queue.pop()
        await command(b"MAIL FROM:<bench@example.org>\r\n", b"250")
        await command(b"RCPT TO:<support@casegraph.test>\r\n", b"250")
        await command(b"DATA\r\n", b"354")
        data = (b"." if raw.startswith(b".") else b"") + raw.replace(b"\r\n.", b"\r\n..")
        await command(data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n", b"250")
        accepted += 1
    await command(b"QUIT\r\n", b"221")
    writer.close()
    return accepted


async def wait_for_port(port: int, process: subprocess.Popen) -> None:
    while process.poll() is None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the SMTP listener did not start")


async def run(messages: list[bytes], burst: list[bytes], killed: list[bytes], urls: dict[str, str]) -> dict:
    from arq.connections import RedisSettings, create_pool
    from sqlalchemy import text

    from app.auth import SYSTEM
    from app.runtime import create_runtime
    from app.services import mail as mail_service
    from app.settings import JOB_QUEUE, load_settings

    runtime = create_runtime(load_settings(), pool_size=10)
    async with runtime.transaction() as session:
        mailbox = await mail_service.create_mailbox(
            session, actor=SYSTEM, address="support@casegraph.test", intake="smtp"
        )
    arq = await create_pool(RedisSettings.from_dsn(urls["REDIS_URL"]), default_queue_name=JOB_QUEUE)
    port = free_port()
    listener = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "smtp", "--port", str(port)],
        env={**os.environ, **urls},
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    await wait_for_port(port, listener)
    worker = start_worker(urls)
    queue = list(reversed(messages))

    started = time.perf_counter()
    try:
        accepted = sum(await asyncio.gather(*(send_over_smtp(port, queue) for _ in range(8))))
        sent_at = time.perf_counter()
        await wait_for_intake(runtime)
        finished = time.perf_counter()
        drained = await drain(runtime, mail_service.intake_enqueuer(arq), mailbox.id, burst) if burst else 0.0
        if killed:
            worker = await kill_midway(runtime, mail_service.intake_enqueuer(arq), mailbox.id, killed, urls, worker)
        async with runtime.engine.connect() as conn:
            contacts = (await conn.execute(text("SELECT count(*), count(DISTINCT external_id) FROM contacts"))).one()
    finally:
        worker.terminate()
        worker.wait(30)
        listener.terminate()
        listener.wait(30)
        await arq.aclose()
        await runtime.close()
    return {
        "messages": len(messages),
        "accepted": accepted,
        "send_seconds": round(sent_at - started, 2),
        "msgs_per_s": round(len(messages) / (finished - started), 1),
        "intake_only_msgs_per_s": round(drained, 1),
        "killed_batch": len(killed),
        "lost": accepted + len(burst) + len(killed) - contacts[1],
        "duplicated": contacts[0] - contacts[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--mix", choices=("plain", "full"), default="plain")
    parser.add_argument("--burst", type=int, default=1000, help="messages stored at once for the intake-only figure")
    parser.add_argument("--kill", type=int, default=1000, help="messages taken in across a worker killed midway")
    args = parser.parse_args()
    messages = generate(args.messages, args.mix)
    burst = generate(args.burst, args.mix, prefix="burst")
    killed = generate(args.kill, args.mix, prefix="killed")
    ceiling = parse_ceiling(messages)
    with embedded_servers() as urls:
        result = asyncio.run(run(messages, burst, killed, urls))
    result |= {"mix": args.mix, "parse_ceiling_per_s": round(ceiling, 1)}
    result["ratio"] = round(result["msgs_per_s"] / result["parse_ceiling_per_s"], 3)
    print(
        f"{result['messages']} messages ({args.mix}) through the SMTP listener to contacts: {result['msgs_per_s']}/s end to end"
    )
    print(f"parse-only ceiling in the same run: {result['parse_ceiling_per_s']}/s; ratio {result['ratio']}")
    print(f"intake alone (a burst of {args.burst} stored messages): {result['intake_only_msgs_per_s']}/s")
    print(
        f"lost {result['lost']}, duplicated {result['duplicated']} over every message, "
        f"{result['killed_batch']} of them taken in across a worker killed with SIGKILL midway"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Helpers of the mail tests: messages as bytes, the intake listener on a free port, draining the job queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid

from aiosmtpd.smtp import SMTP as SMTPServer
from arq.connections import RedisSettings, create_pool
from sqlalchemy import select

from app.auth import SYSTEM
from app.mail.listener import start_listener
from app.models import Contact, InboundMessage
from app.services import mail as mail_service
from app.settings import JOB_QUEUE
from jobs.worker import close_worker, create_worker
from tests.conftest import _free_port


def message(
    *,
    sender: str = "Ann Customer <ann@example.org>",
    to: str = "support@casegraph.test",
    subject: str = "My order",
    text: str | None = "Where is my order?",
    html: str | None = None,
    message_id: str | None = None,
    **headers: str,
) -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, to, subject
    mail["Message-ID"] = message_id or make_msgid(domain="example.org")
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    if text is not None:
        mail.set_content(text)
    if html is not None:
        if text is None:
            mail.set_content(html, subtype="html")
        else:
            mail.add_alternative(html, subtype="html")
    return mail.as_bytes(policy=SMTP)  # CRLF line ends, as on the wire


async def add_mailbox(runtime, address: str = "support@casegraph.test", **settings) -> int:
    async with runtime.transaction() as session:
        mailbox = await mail_service.create_mailbox(
            session, actor=SYSTEM, address=address, intake=settings.pop("intake", "smtp"), **settings
        )
        return mailbox.id


@asynccontextmanager
async def arq_pool(servers) -> AsyncIterator:
    pool = await create_pool(RedisSettings.from_dsn(servers["REDIS_URL"]), default_queue_name=JOB_QUEUE)
    try:
        yield pool
    finally:
        await pool.aclose()


@asynccontextmanager
async def listener(runtime, arq) -> AsyncIterator[int]:
    port = _free_port()
    server = await start_listener(runtime, mail_service.intake_enqueuer(arq), host="127.0.0.1", port=port)
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


async def run_jobs() -> None:
    """Run the real worker until the queue is empty."""
    worker = create_worker(handle_signals=False, burst=True, poll_delay=0.05)
    try:
        await worker.main()
    finally:
        await close_worker(worker)


async def contacts(runtime) -> list:
    async with runtime.reading() as session:
        return list((await session.execute(select(Contact.__table__).order_by(Contact.id))).all())


async def inbound(runtime) -> list:
    async with runtime.reading() as session:
        return list((await session.execute(select(InboundMessage.__table__).order_by(InboundMessage.id))).all())


class Relay:
    """An outbound relay that records what it accepts and refuses the first `refusals` messages."""

    def __init__(self, refusals: int = 0, answer: str = "451 4.3.0 Try again later") -> None:
        self.refusals, self.answer = refusals, answer
        self.received: list = []
        self.port = _free_port()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        if self.refusals:
            self.refusals -= 1
            return self.answer
        self.received.append(envelope)
        return "250 2.0.0 Queued as R1"


@asynccontextmanager
async def relay_server() -> AsyncIterator[Relay]:
    """A real SMTP server (aiosmtpd) standing in for a mailbox's outbound relay."""
    handler = Relay()
    server = await asyncio.get_running_loop().create_server(lambda: SMTPServer(handler), "127.0.0.1", handler.port)
    try:
        yield handler
    finally:
        server.close()
        await server.wait_closed()

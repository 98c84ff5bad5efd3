"""The inbound SMTP/LMTP listener (`casegraph smtp`, and `casegraph serve`): a message is answered
250 only once it is stored, and 4xx (the sender retries) when storing fails."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from app.services import mail as mail_service

if TYPE_CHECKING:
    from app.runtime import Runtime

log = logging.getLogger(__name__)

DEFAULT_PORT = 2525
# 25 MB attachments arrive base64-encoded (a third larger) inside the message.
MAX_MESSAGE_BYTES = 40 * 1024 * 1024
KNOWN_RECIPIENT_SECONDS = 5.0


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# A MAIL FROM or RCPT TO path in its plain form: a dot-atom address in angle brackets, then the parameters.
_PLAIN_PATH = re.compile(rf"[ \t]*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*(.*)", re.DOTALL)


class _PlainPaths:
    """aiosmtpd reads every path with the email package's full address parser, a third of the
    listener's time per message; a plain path is read here, to the same result, and any other by
    aiosmtpd."""

    local_part_limit: int

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = _PLAIN_PATH.fullmatch(arg)
        if plain is None or (self.local_part_limit and len(plain[1].rpartition("@")[0]) > self.local_part_limit):
            return super()._getaddr(arg)  # type: ignore[misc]
        return plain[1], plain[2]


class IntakeSMTP(_PlainPaths, SMTP):
    pass


class IntakeLMTP(_PlainPaths, LMTP):
    pass


class IntakeHandler:
    def __init__(self, runtime: Runtime, enqueue: mail_service.Enqueue) -> None:
        self.runtime = runtime
        self.enqueue = enqueue
        # Recipients found to be enabled mailboxes, until when (a mailbox is not checked at every
        # RCPT; DATA stores only for the enabled ones anyway).
        self.known: dict[str, float] = {}
        # Messages whose DATA ended while a store was under way, stored together next.
        self.waiting: list[tuple[mail_service.Pushed, asyncio.Future[list[int]]]] = []
        self.storing: asyncio.Task[None] | None = None

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.known.get(address.lower(), 0.0) < time.monotonic():
            try:
                async with self.runtime.reading() as db:
                    known = await mail_service.mailboxes_for_recipients(db, [address])
            except Exception:  # noqa: BLE001 - the database is away: the sender tries again later
                log.exception("checking a recipient failed")
                return "451 4.3.0 Temporary failure, try again later"
            if not known:
                return "550 5.1.1 No such mailbox here"
            self.known[address.lower()] = time.monotonic() + KNOWN_RECIPIENT_SECONDS
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def store(self, message: mail_service.Pushed) -> list[int]:
        """Store a message in a group commit: the messages of all sessions that end their DATA
        while a store is under way are stored next, in one statement, so that one commit serves
        them all. When that fails, each is tried alone: one bad message fails alone."""
        done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self.waiting.append((message, done))
        if self.storing is None:  # a task of its own: a session that goes away cannot stop it
            self.storing = asyncio.create_task(self._store_waiting())
        return await done

    async def _store_waiting(self) -> None:
        try:
            while self.waiting:
                group, self.waiting = self.waiting, []
                await self._store_group(group)
        finally:
            self.storing = None

    async def _store_group(self, group: list[tuple[mail_service.Pushed, asyncio.Future[list[int]]]]) -> None:
        try:
            async with self.runtime.transaction() as db:
                stored = await mail_service.store_for_recipients(db, via="smtp", messages=[m for m, _ in group])
        except Exception as error:  # noqa: BLE001 - answered per message below
            if len(group) == 1:
                _settle(group[0][1], error=error)
                return
            for one in group:
                await self._store_group([one])
            return
        for (_, done), ids in zip(group, stored, strict=True):
            _settle(done, ids)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        try:
            stored = await self.store(mail_service.Pushed(raw, envelope.mail_from, list(envelope.rcpt_tos)))
        except Exception:  # noqa: BLE001 - not stored, so not accepted: the sender keeps it and retries
            log.exception("storing an inbound message failed")
            return "451 4.3.0 Message not stored, try again later"
        if not stored:
            # Its mailboxes were disabled since RCPT: the retry is refused there (550) and bounces.
            self.known.clear()
            return "451 4.3.0 Mailbox changed, try again later"
        try:
            await self.enqueue(stored[0])  # the intake job takes in all new mail
        except Exception:  # noqa: BLE001 - stored is what counts: the sweeper enqueues it later
            log.warning("enqueueing intake of messages %s failed; the sweeper will", stored, exc_info=True)
        return "250 2.0.0 Message stored"


def _settle(done: asyncio.Future[list[int]], ids: list[int] | None = None, *, error: Exception | None = None) -> None:
    if done.done():  # its session was cancelled (the client went away)
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(ids or [])


async def start_listener(
    runtime: Runtime, enqueue: mail_service.Enqueue, *, host: str, port: int, lmtp: bool = False
) -> asyncio.Server:
    """Listen on host:port in the running loop; close the returned server to stop."""
    handler = IntakeHandler(runtime, enqueue)
    protocol: Any = IntakeLMTP if lmtp else IntakeSMTP

    def factory() -> SMTP:
        return protocol(handler, data_size_limit=MAX_MESSAGE_BYTES, enable_SMTPUTF8=True, hostname="casegraph")

    return await asyncio.get_running_loop().create_server(factory, host=host, port=port)

"""An IMAP folder as the poll job sees it: new UIDs, one raw message at a time, and marking what was stored."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aioimaplib
from aioimaplib.aioimaplib import Command

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")
TIMEOUT_SECONDS = 30.0


class ImapError(Exception):
    """The server refused or failed a command; the message says which, never with a secret."""


def _ok(response: aioimaplib.Response, what: str) -> aioimaplib.Response:
    if response.result != "OK":
        detail = b" ".join(line for line in response.lines if isinstance(line, bytes))[:200]
        raise ImapError(f"{what} failed: {response.result} {detail.decode('utf-8', 'replace')}".strip())
    return response


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapFolder:
    def __init__(self, client: aioimaplib.IMAP4, folder: str) -> None:
        self.client = client
        self.folder = folder
        self.uid_validity: int | None = None

    async def select(self) -> int:
        response = _ok(await self.client.select(_quoted(self.folder)), f"SELECT {self.folder}")
        for line in response.lines:
            match = _UIDVALIDITY.search(line) if isinstance(line, bytes) else None
            if match:
                self.uid_validity = int(match.group(1))
        if self.uid_validity is None:
            raise ImapError(f"SELECT {self.folder} gave no UIDVALIDITY")
        return self.uid_validity

    async def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above `last_uid`, oldest first (a range n:* always names the newest message, so it is filtered)."""
        response = _ok(await self.client.uid_search(f"UID {last_uid + 1}:*"), "UID SEARCH")
        uids = [int(token) for line in response.lines[:-1] for token in line.split() if token.isdigit()]
        return sorted(uid for uid in set(uids) if uid > last_uid)

    async def fetch(self, uid: int) -> bytes | None:
        """The raw message, or None when it vanished meanwhile."""
        response = _ok(await self.client.uid("fetch", str(uid), "(UID RFC822)"), f"UID FETCH {uid}")
        for index, line in enumerate(response.lines):
            if isinstance(line, bytes) and _FETCH_UID.search(line) and index + 1 < len(response.lines):
                literal = response.lines[index + 1]
                if isinstance(literal, bytearray | bytes):
                    return bytes(literal)
        return None

    async def mark(self, uid: int, *, mark: str, move_to: str | None) -> None:
        """Flag the message as seen, or move it to `move_to` (MOVE where offered, else COPY and delete)."""
        if mark == "move" and move_to:
            if self.client.has_capability("MOVE"):
                _ok(await self.client.uid("move", str(uid), _quoted(move_to)), f"UID MOVE {uid}")
                return
            _ok(await self.client.uid("copy", str(uid), _quoted(move_to)), f"UID COPY {uid}")
            _ok(await self.client.uid("store", str(uid), "+FLAGS", r"(\Deleted)"), f"UID STORE {uid}")
            _ok(await self.client.expunge(), "EXPUNGE")
            return
        _ok(await self.client.uid("store", str(uid), "+FLAGS", r"(\Seen)"), f"UID STORE {uid}")

    def offers_idle(self) -> bool:
        return self.client.has_capability("IDLE")

    async def wait_for_news(self, seconds: float) -> bool:
        """IDLE until the server reports a change in the folder (True) or `seconds` pass (False);
        a connection the server dropped raises ImapError at once, not when the wait ends."""
        idle = await self.client.idle_start(timeout=seconds)
        try:
            while True:
                lines = await asyncio.wait_for(self.client.wait_server_push(), seconds + TIMEOUT_SECONDS)
                if lines is _LOST:
                    raise ImapError("the server closed the connection")
                if lines == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    return False
                if any(isinstance(line, bytes) and _NEWS.search(line) for line in lines):
                    return True
        finally:
            if self.client.has_pending_idle() and not _closed(self.client):
                with contextlib.suppress(Exception):
                    self.client.idle_done()
                    await asyncio.wait_for(idle, TIMEOUT_SECONDS)


def _closed(client: aioimaplib.IMAP4) -> bool:
    transport = client.protocol.transport
    return transport is None or transport.is_closing()


_NEWS = re.compile(rb"^\d+ (EXISTS|RECENT)")
_LOST = ["connection lost"]  # put in the IDLE queue when the connection goes


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The system's trusted certificates, and those of `ca_file` (a private CA) when given; always verified."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


async def _start_tls(client: aioimaplib.IMAP4, *, host: str, context: ssl.SSLContext) -> None:
    """Upgrade the clear connection (RFC 2595) before any credential is sent; a server that does
    not offer it is refused, so a password never travels in clear when encryption was asked for."""
    if not client.has_capability("STARTTLS"):
        raise ImapError("the server does not offer STARTTLS: not logging in without encryption")
    protocol = client.protocol
    _ok(await protocol.execute(Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)), "STARTTLS")
    protocol.transport = await protocol.loop.start_tls(
        protocol.transport, protocol, context, server_hostname=host, ssl_handshake_timeout=TIMEOUT_SECONDS
    )
    await asyncio.wait_for(protocol.capability(), TIMEOUT_SECONDS)  # the clear ones may have been forged


@asynccontextmanager
async def open_folder(
    *,
    host: str,
    port: int,
    security: str,
    user: str,
    password: str,
    folder: str,
    context: ssl.SSLContext | None = None,
) -> AsyncIterator[ImapFolder]:
    """Log in (over TLS, or after STARTTLS, as the mailbox asks) and select the folder; logs out on
    leaving, whatever happened."""
    context = context or tls_context()
    lost: list[aioimaplib.IMAP4] = []

    def connection_lost(_: Exception | None) -> None:
        if lost:  # a waiting IDLE learns it at once
            lost[0].protocol.idle_queue.put_nowait(_LOST)

    if security == "tls":
        client = aioimaplib.IMAP4(
            host=host, port=port, timeout=TIMEOUT_SECONDS, ssl_context=context, conn_lost_cb=connection_lost
        )
    else:
        client = aioimaplib.IMAP4(host=host, port=port, timeout=TIMEOUT_SECONDS, conn_lost_cb=connection_lost)
    lost.append(client)
    try:
        await client.wait_hello_from_server()
        if security == "starttls":
            await _start_tls(client, host=host, context=context)
        _ok(await client.login(user, password), "LOGIN")
        await asyncio.wait_for(client.protocol.capability(), TIMEOUT_SECONDS)  # IDLE, MOVE: offered once logged in
        opened = ImapFolder(client, folder)
        await opened.select()
        yield opened
    finally:
        if not _closed(client):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.logout(), TIMEOUT_SECONDS)

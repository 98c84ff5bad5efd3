"""An IMAP folder as the poll job sees it: new UIDs, one raw message at a time, and marking what was stored."""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aioimaplib

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


@asynccontextmanager
async def open_folder(
    *, host: str, port: int, security: str, user: str, password: str, folder: str
) -> AsyncIterator[ImapFolder]:
    """Log in and select the folder; logs out on leaving, whatever happened."""
    if security == "tls":
        client = aioimaplib.IMAP4_SSL(
            host=host, port=port, timeout=TIMEOUT_SECONDS, ssl_context=ssl.create_default_context()
        )
    else:
        client = aioimaplib.IMAP4(host=host, port=port, timeout=TIMEOUT_SECONDS)
    try:
        await client.wait_hello_from_server()
        _ok(await client.login(user, password), "LOGIN")
        opened = ImapFolder(client, folder)
        await opened.select()
        yield opened
    finally:
        with contextlib.suppress(Exception):  # the connection may already be gone
            await client.logout()

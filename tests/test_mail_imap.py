"""IMAP intake against a real IMAP server (pymap) started by the tests: messages placed with APPEND
are fetched by UID, stored, then marked; nothing is taken twice, not even after a crash between
storing and marking; a broken mailbox shows its error and does not stop the others."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import aioimaplib
import pytest
from sqlalchemy import update

from app.models import Mailbox
from jobs.worker import mail_poll_due
from tests.conftest import _free_port
from tests.mail_support import add_mailbox, arq_pool, contacts, inbound, message, run_jobs

USER, PASSWORD = "support", "s3cret-imap"
SECRET_ENV = "CASEGRAPH_SECRET_TEST_IMAP"
MAILBOXES = "{ mailboxes { address status { lastPolledAt lastUid lastError lastErrorAt } } }"


@pytest.fixture
async def imap_port():
    port = _free_port()
    pymap = Path(sys.executable).with_name("pymap")
    process = subprocess.Popen(
        [
            str(pymap),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-tls",
            "dict",
            "--demo-user",
            USER,
            "--demo-password",
            PASSWORD,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    else:
        process.kill()
        raise AssertionError(process.stderr.read().decode())
    yield port
    process.terminate()
    process.wait(10)


class Server:
    """A client of the test's IMAP server, to place messages and look at them."""

    def __init__(self, port: int) -> None:
        self.client = aioimaplib.IMAP4(host="127.0.0.1", port=port, timeout=10)

    async def __aenter__(self) -> Server:
        await self.client.wait_hello_from_server()
        assert (await self.client.login(USER, PASSWORD)).result == "OK"
        return self

    async def __aexit__(self, *_) -> None:
        await self.client.logout()

    async def append(self, raw: bytes, folder: str = "INBOX") -> None:
        assert (await self.client.append(raw, mailbox=folder)).result == "OK"

    async def seen(self, folder: str = "INBOX") -> list[bool]:
        """For each message in the folder, whether it is flagged \\Seen."""
        await self.client.select(folder)
        response = await self.client.fetch("1:*", "(FLAGS)")
        return [b"\\Seen" in line for line in response.lines[:-1] if b"FETCH" in line]

    async def count(self, folder: str) -> int:
        response = await self.client.select(folder)
        return next(int(line.split()[0]) for line in response.lines if line.endswith(b"EXISTS"))


async def imap_mailbox(runtime, port: int, address: str = "support@casegraph.test", **imap) -> int:
    settings = {"host": "127.0.0.1", "port": port, "security": "none", "user": USER, "secret_env": SECRET_ENV, **imap}
    return await add_mailbox(runtime, address, intake="imap", imap=settings)


async def poll(runtime, servers, mailbox_id: int) -> None:
    """The worker's poll job for one mailbox, then the intake jobs it enqueued."""
    async with arq_pool(servers) as arq:
        await arq.enqueue_job("mail_poll", mailbox_id)
    await run_jobs()


@pytest.fixture(autouse=True)
def imap_secret(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, PASSWORD)


async def test_new_messages_are_stored_marked_and_never_taken_twice(runtime, servers, imap_port, gql):
    mailbox_id = await imap_mailbox(runtime, imap_port)
    async with Server(imap_port) as server:
        for n in range(3):
            await server.append(message(message_id=f"<m{n}@example.org>", subject=f"Question {n}"))

        await poll(runtime, servers, mailbox_id)

        # Intake jobs run concurrently: contacts are numbered in the order they finish.
        assert sorted(c.external_id for c in await contacts(runtime)) == [
            "<m0@example.org>",
            "<m1@example.org>",
            "<m2@example.org>",
        ]
        assert [m.via for m in await inbound(runtime)] == ["imap"] * 3
        assert await server.seen() == [True, True, True]
        status = (await gql(MAILBOXES))["mailboxes"][0]["status"]
        assert status["lastError"] is None and status["lastPolledAt"] is not None and status["lastUid"] > 0

        await server.append(message(message_id="<m3@example.org>"))
        await poll(runtime, servers, mailbox_id)
        await poll(runtime, servers, mailbox_id)

    assert len(await inbound(runtime)) == 4
    assert len(await contacts(runtime)) == 4


async def test_a_crash_between_storing_and_marking_fetches_again_and_the_duplicate_is_recognised(
    runtime, servers, imap_port
):
    mailbox_id = await imap_mailbox(runtime, imap_port)
    async with Server(imap_port) as server:
        await server.append(message(message_id="<once@example.org>"))
        await poll(runtime, servers, mailbox_id)
        # As after a crash once the message was stored but before the server was told and the UID moved on.
        async with runtime.transaction() as session:
            await session.execute(update(Mailbox).values(imap_last_uid=0))
        await server.client.select("INBOX")
        await server.client.store("1", "-FLAGS", r"(\Seen)")

        await poll(runtime, servers, mailbox_id)

        assert await server.seen() == [True]
    assert len(await inbound(runtime)) == 1
    [contact] = await contacts(runtime)
    assert contact.external_id == "<once@example.org>"


async def test_messages_can_be_moved_to_another_folder_once_stored(runtime, servers, imap_port):
    async with Server(imap_port) as server:
        await server.client.create("Processed")
        mailbox_id = await imap_mailbox(runtime, imap_port, mark="move", move_to="Processed")
        await server.append(message())
        await server.append(message())

        await poll(runtime, servers, mailbox_id)

        assert await server.count("INBOX") == 0
        assert await server.count("Processed") == 2
    assert len(await contacts(runtime)) == 2


async def test_a_broken_mailbox_shows_its_error_and_the_others_go_on(runtime, servers, imap_port, gql, monkeypatch):
    await imap_mailbox(runtime, imap_port, "a-wrong-password@casegraph.test", secret_env="CASEGRAPH_SECRET_WRONG")
    monkeypatch.setenv("CASEGRAPH_SECRET_WRONG", "not-the-password")
    await imap_mailbox(runtime, _free_port(), "b-server-down@casegraph.test")
    await imap_mailbox(runtime, imap_port, "c-working@casegraph.test")
    async with Server(imap_port) as server:
        await server.append(message(to="c-working@casegraph.test"))

    # The scheduler's job: every mailbox is due, each gets its own poll job.
    async with arq_pool(servers) as arq:
        assert await mail_poll_due({"runtime": runtime, "redis": arq}) == 3
    await run_jobs()

    statuses = {m["address"]: m["status"] for m in (await gql(MAILBOXES))["mailboxes"]}
    assert "LOGIN failed" in statuses["a-wrong-password@casegraph.test"]["lastError"]
    assert PASSWORD not in statuses["a-wrong-password@casegraph.test"]["lastError"]
    assert "cannot connect" in statuses["b-server-down@casegraph.test"]["lastError"]
    assert statuses["b-server-down@casegraph.test"]["lastErrorAt"] is not None
    assert statuses["c-working@casegraph.test"]["lastError"] is None
    assert len(await contacts(runtime)) == 1
    # Polled just now: not due again before its interval.
    async with arq_pool(servers) as arq:
        assert await mail_poll_due({"runtime": runtime, "redis": arq}) == 0

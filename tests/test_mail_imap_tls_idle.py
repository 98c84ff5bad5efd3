"""IMAP over STARTTLS and with IDLE, against a real IMAP server (pymap) started by the tests: the
connection is upgraded before the password is sent (and refused when the server cannot upgrade),
the certificate is verified against the system's and a configured CA, and a mailbox that asks for
IDLE takes new mail in as it arrives, reconnects when the server goes away, is held by one
worker at a time, and is polled when the server offers no IDLE."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from app.models import Mailbox
from app.services import mail as mail_service
from app.settings import get_settings
from jobs.worker import close_worker, create_worker, mail_poll_due
from tests.conftest import _free_port
from tests.mail_support import arq_pool, contacts, inbound, message, run_jobs
from tests.test_mail_imap import PASSWORD, SECRET_ENV, USER, Server, imap_mailbox

MAILBOXES = "{ mailboxes { address status { lastError lastPolledAt } } }"


@pytest.fixture(autouse=True)
def imap_secret(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, PASSWORD)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=casegraph-test"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


class Pymap:
    """A pymap server (in memory) that can be stopped and started again on the same port."""

    def __init__(self, port: int, *options: str) -> None:
        self.port, self.options, self.process = port, options, None

    async def start(self) -> Pymap:
        pymap = Path(sys.executable).with_name("pymap")
        self.process = subprocess.Popen(
            [str(pymap), "--host", "127.0.0.1", "--port", str(self.port), *self.options]
            + ["dict", "--demo-user", USER, "--demo-password", PASSWORD],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                await asyncio.sleep(0.05)
        self.stop()
        raise AssertionError("pymap did not start")

    def stop(self) -> None:
        """Gone at once, its connections dropped (as when it crashes)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
async def plain_server():
    server = await Pymap(_free_port(), "--no-tls").start()
    yield server
    server.stop()


@pytest.fixture
async def tls_server(certificate):
    cert, key = certificate
    server = await Pymap(_free_port(), "--cert", str(cert), "--key", str(key)).start()
    yield server
    server.stop()


class Wiretap:
    """A TCP relay between Casegraph and the server that records what the client sends in the
    clear, and may hide the server's IDLE capability."""

    def __init__(self, upstream: int, *, hide_idle: bool = False) -> None:
        self.upstream, self.hide_idle = upstream, hide_idle
        self.sent = bytearray()
        self.port = _free_port()

    async def __aenter__(self) -> Wiretap:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_) -> None:
        self.server.close()

    async def _relay(self, client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def pump(reader, writer, record: bool) -> None:
            try:
                while data := await reader.read(65536):
                    if record:
                        self.sent += data
                    elif self.hide_idle:
                        data = data.replace(b" IDLE", b"")
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

        await asyncio.gather(pump(client_reader, server_writer, True), pump(server_reader, client_writer, False))


def trusting(runtime, monkeypatch, ca_file: Path | None) -> None:
    """The runtime (and workers started now) trusting `ca_file` for mail servers."""
    monkeypatch.setattr(runtime, "settings", dataclasses.replace(runtime.settings, mail_ca_file=str(ca_file)))
    monkeypatch.setenv("CASEGRAPH_MAIL_CA_FILE", str(ca_file))
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def fresh_settings():
    yield
    get_settings.cache_clear()


async def stored_ids(mailbox_id: int, runtime) -> tuple[mail_service.PollResult, list[int]]:
    """Poll the mailbox once; what it stored (the intake jobs it would have enqueued)."""
    collected: list[int] = []

    async def enqueue(inbound_id: int) -> None:
        collected.append(inbound_id)

    result = await mail_service.poll_mailbox(runtime, mailbox_id=mailbox_id, enqueue=enqueue)
    return result, collected


# ---- STARTTLS -----------------------------------------------------------------------------------


async def test_starttls_upgrades_the_connection_before_the_password_is_sent(
    runtime, tls_server, certificate, monkeypatch
):
    trusting(runtime, monkeypatch, certificate[0])
    async with Wiretap(tls_server.port) as tap:
        mailbox_id = await imap_mailbox(runtime, tap.port, security="starttls")
        async with Server(tls_server.port) as server:
            await server.append(message(message_id="<secret@example.org>"))

            result, stored = await stored_ids(mailbox_id, runtime)

            assert result.error is None and result.fetched == 1 and len(stored) == 1
            assert await server.seen() == [True]
    assert b"STARTTLS" in tap.sent
    assert PASSWORD.encode() not in tap.sent and USER.encode() not in tap.sent  # encrypted after STARTTLS
    assert b"LOGIN" not in tap.sent


async def test_a_certificate_no_trusted_ca_signed_is_refused_before_logging_in(runtime, tls_server, gql):
    async with Wiretap(tls_server.port) as tap:
        mailbox_id = await imap_mailbox(runtime, tap.port, security="starttls")

        result, stored = await stored_ids(mailbox_id, runtime)

    assert result.error.startswith("TLS failed: CERTIFICATE_VERIFY_FAILED") and stored == []
    assert PASSWORD.encode() not in tap.sent and b"LOGIN" not in tap.sent
    [status] = [m["status"] for m in (await gql(MAILBOXES))["mailboxes"]]
    assert status["lastError"] == result.error


async def test_a_server_without_starttls_gets_no_password_and_the_other_mailboxes_go_on(
    runtime, servers, plain_server, gql
):
    async with Wiretap(plain_server.port) as tap:
        await imap_mailbox(runtime, tap.port, "a-wants-tls@casegraph.test", security="starttls")
        await imap_mailbox(runtime, plain_server.port, "b-clear@casegraph.test", security="none")
        async with Server(plain_server.port) as server:
            await server.append(message(to="b-clear@casegraph.test"))
        async with arq_pool(servers) as arq:
            assert await mail_poll_due({"runtime": runtime, "redis": arq}) == 2
        await run_jobs()

    statuses = {m["address"]: m["status"] for m in (await gql(MAILBOXES))["mailboxes"]}
    assert statuses["a-wants-tls@casegraph.test"]["lastError"] == (
        "the server does not offer STARTTLS: not logging in without encryption"
    )
    assert statuses["b-clear@casegraph.test"]["lastError"] is None
    assert b"LOGIN" not in tap.sent and PASSWORD.encode() not in tap.sent
    assert len(await contacts(runtime)) == 1


async def test_starttls_is_a_security_setting_of_its_own_with_port_143(gql):
    created = await gql(
        """mutation { mailboxCreate(input: {address: "s@casegraph.test", intake: IMAP,
             imap: {host: "imap.example.org", user: "s", security: STARTTLS}}) {
             mailbox { imap { security port } } errors { code } } }"""
    )
    assert created["mailboxCreate"]["mailbox"]["imap"] == {"security": "STARTTLS", "port": 143}


# ---- IDLE ---------------------------------------------------------------------------------------


async def polled_at(runtime, mailbox_id: int):
    async with runtime.reading() as session:
        return await session.scalar(select(Mailbox.last_polled_at).where(Mailbox.id == mailbox_id))


async def eventually(check, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("not within the time allowed")


async def test_a_mailbox_on_idle_takes_new_mail_in_within_a_second_or_two(runtime, servers, plain_server, gql):
    mailbox_id = await imap_mailbox(runtime, plain_server.port, idle=True, poll_seconds=600)
    idling = "{ mailboxes { status { idling } } }"
    assert (await gql(idling))["mailboxes"][0]["status"]["idling"] is False
    worker = create_worker(handle_signals=False, poll_delay=0.05)
    running = asyncio.create_task(worker.main())
    try:
        await eventually(lambda: polled_at(runtime, mailbox_id))  # connected, caught up, now in IDLE
        assert (await gql(idling))["mailboxes"][0]["status"]["idling"] is True
        await asyncio.sleep(0.3)
        async with Server(plain_server.port) as server:
            started = time.monotonic()
            await server.append(message(message_id="<pushed@example.org>"))

            [contact] = await eventually(lambda: contacts(runtime))
            took = time.monotonic() - started
            assert await eventually(server.seen) == [True]
    finally:
        running.cancel()
        await close_worker(worker)
    assert contact.external_id == "<pushed@example.org>"
    assert took < 3, took  # the poll interval is ten minutes
    assert (await gql(idling))["mailboxes"][0]["status"]["idling"] is False  # given up on shutdown


async def test_idle_reconnects_after_the_server_dropped_it_and_shows_the_outage(runtime, servers, plain_server, gql):
    mailbox_id = await imap_mailbox(runtime, plain_server.port, idle=True, poll_seconds=600)
    async with arq_pool(servers) as arq:
        keeper = mail_service.IdleKeeper(
            runtime, mail_service.intake_enqueuer(arq), scan_seconds=0.2, backoff_base=0.2, backoff_max=1
        )
        keeper.start()
        try:
            await eventually(lambda: polled_at(runtime, mailbox_id))
            plain_server.stop()

            async def outage_shown():
                [mailbox] = (await gql(MAILBOXES))["mailboxes"]
                return mailbox["status"]["lastError"]

            # The drop, then the refused connections while it is down.
            outage = await eventually(outage_shown)
            assert "the server closed the connection" in outage or "cannot connect" in outage
            await plain_server.start()  # a new, empty server: another UIDVALIDITY
            async with Server(plain_server.port) as server:
                await server.append(message(message_id="<after-restart@example.org>"))

                await eventually(lambda: inbound(runtime))
                assert await eventually(server.seen) == [True]
        finally:
            await keeper.stop()
    await run_jobs()
    assert [c.external_id for c in await contacts(runtime)] == ["<after-restart@example.org>"]
    [mailbox] = (await gql(MAILBOXES))["mailboxes"]
    assert mailbox["status"]["lastError"] is None


async def test_one_idle_connection_per_mailbox_whatever_the_number_of_workers(runtime, servers, plain_server):
    mailbox_id = await imap_mailbox(runtime, plain_server.port, idle=True, poll_seconds=600)
    async with arq_pool(servers) as arq:
        enqueue = mail_service.intake_enqueuer(arq)
        first = mail_service.IdleKeeper(runtime, enqueue, scan_seconds=0.2)
        second = mail_service.IdleKeeper(runtime, enqueue, scan_seconds=0.2)
        try:
            await first.scan()
            await second.scan()
            await first.scan()
            assert list(first.running) == [mailbox_id] and second.running == {}

            await first.stop()  # that worker stops: the other takes the mailbox over
            await second.scan()
            assert list(second.running) == [mailbox_id]
            await first.scan()
            assert first.running == {}
        finally:
            await first.stop()
            await second.stop()


async def test_a_server_without_idle_leaves_the_mailbox_to_polling(runtime, servers, plain_server):
    async with Wiretap(plain_server.port, hide_idle=True) as tap:
        mailbox_id = await imap_mailbox(runtime, tap.port, idle=True, poll_seconds=600)
        async with arq_pool(servers) as arq:
            keeper = mail_service.IdleKeeper(runtime, mail_service.intake_enqueuer(arq), scan_seconds=0.2)
            try:
                await keeper.scan()
                [(_, task)] = keeper.running.values()
                await asyncio.wait_for(task, 10)  # it found no IDLE and ended
                await keeper.scan()
                assert keeper.running == {} and mailbox_id in keeper.unsupported
                assert await runtime.redis.exists(mail_service.idle_lease_key(mailbox_id)) == 0
            finally:
                await keeper.stop()
        assert b"IDLE\r\n" not in tap.sent
        async with Server(plain_server.port) as server:
            await server.append(message(message_id="<polled@example.org>"))
        async with arq_pool(servers) as arq:
            await arq.enqueue_job("mail_poll", mailbox_id)
        await run_jobs()
    assert [c.external_id for c in await contacts(runtime)] == ["<polled@example.org>"]

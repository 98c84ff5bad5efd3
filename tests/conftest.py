"""Real servers for the whole test session: embedded PostgreSQL and Redis, the real ASGI app.

Each test starts from empty tables and an empty Redis database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import event, text

from app import events
from app.embedded import EmbeddedServers
from app.migrate import upgrade
from app.runtime import Runtime, create_runtime
from app.services.auth import create_token
from app.settings import load_settings

KEEP_TABLES = {"alembic_version"}


@pytest.fixture(scope="session")
def servers() -> dict[str, str]:
    home = Path(tempfile.mkdtemp(prefix="cg-test-"))
    embedded = EmbeddedServers(home)
    urls = embedded.start(database=True, redis=True)
    os.environ.update(urls)
    upgrade(urls["DATABASE_URL"])
    yield urls
    embedded.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(servers):
    return load_settings()


@pytest.fixture(scope="session")
async def runtime(settings) -> AsyncIterator[Runtime]:
    runtime = create_runtime(settings)
    yield runtime
    await runtime.close()


@pytest.fixture(scope="session")
async def table_names(runtime) -> list[str]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        return [r[0] for r in rows if r[0] not in KEEP_TABLES]


@pytest.fixture(autouse=True)
async def clean_state(request, table_names):
    """Empty every table (and Redis) before each test; seed rows come back from `reseed`."""
    runtime = request.getfixturevalue("runtime")
    async with runtime.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(table_names)} RESTART IDENTITY CASCADE"))
        await conn.execute(text("ALTER SEQUENCE customer_number_seq RESTART"))
        await conn.execute(text("ALTER SEQUENCE case_reference_seq RESTART"))
        for seed in SEEDS:
            await seed(conn)
    await runtime.redis.flushdb()
    yield


# Migrations that ship default rows register a function here that puts them back after TRUNCATE.
SEEDS: list = []

from app.services.recognition import seed_defaults as _seed_recognition_defaults  # noqa: E402

SEEDS.append(_seed_recognition_defaults)

from app.services.reasons import seed_defaults as _seed_reason_codes  # noqa: E402

SEEDS.append(_seed_reason_codes)


@pytest.fixture(scope="session")
def app(settings, runtime):
    from app.asgi import create_app

    return create_app(settings, runtime=runtime)


async def _token(runtime: Runtime, name: str, role: str) -> str:
    async with runtime.transaction() as session:
        return await create_token(session, name=name, role=role)


@pytest.fixture
async def admin_token(runtime) -> str:
    return await _token(runtime, "admin", "admin")


@pytest.fixture
async def agent_token(runtime) -> str:
    return await _token(runtime, "agent-ann", "agent")


class GraphQLClient:
    def __init__(self, http: httpx.AsyncClient, token: str | None) -> None:
        self.http = http
        self.token = token

    async def post(self, query: str, variables: dict | None = None, token: str | None = None) -> httpx.Response:
        headers = {}
        if token or self.token:
            headers["Authorization"] = f"Bearer {token or self.token}"
        return await self.http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)

    async def __call__(self, query: str, variables: dict | None = None, token: str | None = None) -> dict:
        response = await self.post(query, variables, token)
        assert response.status_code == 200, response.text
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]


@pytest.fixture
async def http(app) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


@pytest.fixture
async def gql(http, admin_token) -> GraphQLClient:
    return GraphQLClient(http, admin_token)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def serve_app(app) -> tuple[uvicorn.Server, asyncio.Task, int]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task, port


@pytest.fixture(scope="session")
async def live_server(app) -> AsyncIterator[str]:
    """The same app on a real uvicorn socket, for WebSocket tests."""
    server, task, port = await serve_app(app)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    await task


class QueryCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        # Published events leave the outbox a moment after their change, in the background: that
        # statement belongs to no request.
        if not statement.startswith("DELETE FROM event_outbox"):
            self.statements.append(statement)

    def read(self, statement: str) -> None:
        """A statement of the compiled read path, which bypasses the engine."""
        self.statements.append(statement)

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def count_queries(runtime):
    """Counts SQL statements run through the app's engine and its compiled reads while the test runs."""
    counter = QueryCounter()
    event.listen(runtime.engine.sync_engine, "before_cursor_execute", counter)
    runtime.compiled_reads.listeners.append(counter.read)
    yield counter
    runtime.compiled_reads.listeners.remove(counter.read)
    event.remove(runtime.engine.sync_engine, "before_cursor_execute", counter)


async def wait_for_subscriber(runtime, topic: str, key) -> None:
    """Until a subscription served by this process (the live server) listens on the channel."""
    channel = events.channel(topic, key)
    for _ in range(250):
        if runtime.event_hub.listening(channel):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"nobody subscribed to {channel}")


@pytest.fixture
async def second_api_process(servers):
    """A second, separate `casegraph api` process on the same PostgreSQL and Redis."""
    port = _free_port()
    # The log goes to a file: a pipe nobody reads fills up and then blocks the process mid-request.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "api", "--port", str(port)],
            env={**os.environ, **servers},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        async with httpx.AsyncClient() as client:
            for _ in range(150):
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                process.kill()
                log.seek(0)
                raise AssertionError(log.read().decode())
        yield f"127.0.0.1:{port}"
        process.terminate()
        process.wait(10)


async def last_event_id(runtime) -> str:
    """The id of the newest event in the stream ("0-0" when empty): pass it to published_channels."""
    newest = await runtime.redis.xrevrange(events.STREAM, count=1)
    return newest[0][0].decode() if newest else "0-0"


async def published_channels(runtime, after: str = "0-0") -> list[str]:
    """The channels of the events published after the event id `after`, oldest first."""
    entries = await runtime.redis.xrange(events.STREAM, min=f"({after}")
    return [fields[b"channel"].decode() for _, fields in entries]

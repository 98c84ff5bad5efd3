"""Process-wide resources: the database engine, the Redis client, and transactions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app import events
from app.read_pool import ReadPool
from app.recognition.connector import HostPolicy, connectors
from app.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    event_hub: events.EventHub
    compiled_reads: ReadPool  # the compiled read path's statements (resolvers/compiled.py)
    published: events.PublishedOutbox = field(init=False)

    def __post_init__(self) -> None:
        self.published = events.PublishedOutbox(self.engine)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: its events go to the outbox with it, and out once it committed."""
        async with self.sessionmaker() as session:
            async with session.begin():
                yield session
                stored = await events.store_pending(session)
            await events.publish_committed(self.redis, self.published, stored, retain=self.settings.events_retained)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    async def close(self) -> None:
        await self.published.close()
        await self.event_hub.close()
        await self.redis.aclose()
        await self.compiled_reads.close()
        await self.engine.dispose()


def _json_dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def create_runtime(settings: Settings, *, pool_size: int = 10) -> Runtime:
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("DATABASE_URL and REDIS_URL must be set (or the embedded servers started)")
    engine = create_async_engine(
        settings.database_url,
        pool_size=pool_size,
        # No overflow: under load, overflow connections are opened and closed for every request
        # (each a new backend, type introspection and statement preparation); waiting for a
        # pooled connection is cheaper.
        max_overflow=0,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        hide_parameters=True,  # a customer's data never lands in a log line or an error text
    )
    redis = Redis.from_url(settings.redis_url)
    # The process's connectors follow the administrator's allow-list.
    connectors.policy = HostPolicy.parse(settings.connector_hosts, allow_private=settings.connector_allow_private)
    return Runtime(
        settings=settings,
        engine=engine,
        sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
        redis=redis,
        event_hub=events.EventHub(redis),
        compiled_reads=ReadPool(settings.database_url, size=pool_size),
    )

"""Process-wide resources: the database engine, the Redis client, and transactions."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app import events
from app.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on success, then publish the events it emitted."""
        async with self.sessionmaker() as session:
            async with session.begin():
                yield session
            try:
                await events.publish(self.redis, events.take_pending(session))
            except (RedisError, OSError):
                # The change is committed: report it as done. Live subscribers miss this event
                # and catch up on the next one (each event reloads the record).
                log.exception("publishing change events failed after commit")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    async def close(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()


def _json_dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def create_runtime(settings: Settings, *, pool_size: int = 10) -> Runtime:
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("DATABASE_URL and REDIS_URL must be set (or the embedded servers started)")
    engine = create_async_engine(
        settings.database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )
    return Runtime(
        settings=settings,
        engine=engine,
        sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
        redis=Redis.from_url(settings.redis_url),
    )

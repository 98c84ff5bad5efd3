"""Change events over Redis pub/sub, published only after the transaction commits.

Services call `emit(session, ...)`; `Runtime.transaction()` publishes what was emitted once
the commit succeeded, so a subscriber in any API process never sees a rolled-back change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

PREFIX = "casegraph:events:"


def channel(topic: str, key: int | str) -> str:
    return f"{PREFIX}{topic}:{key}"


def emit(session: AsyncSession, topic: str, key: int | str, **data: Any) -> None:
    pending: list[tuple[str, dict[str, Any]]] = session.info.setdefault("pending_events", [])
    event = (channel(topic, key), {"topic": topic, "key": key, **data})
    if event not in pending:
        pending.append(event)


def take_pending(session: AsyncSession) -> list[tuple[str, dict[str, Any]]]:
    return session.info.pop("pending_events", [])


async def publish(redis: Redis, events: list[tuple[str, dict[str, Any]]]) -> None:
    if not events:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for name, body in events:
            pipe.publish(name, orjson.dumps(body))
        await pipe.execute()


async def listen(redis: Redis, *channels: str) -> AsyncIterator[dict[str, Any]]:
    """Yield each event published on any of `channels` until the caller stops iterating."""
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(*channels)
    try:
        async for message in pubsub.listen():
            if message and message.get("type") == "message":
                yield orjson.loads(message["data"])
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()

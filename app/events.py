"""Change events over Redis pub/sub, published only after the transaction commits.

Services call `emit(session, ...)`; `Runtime.transaction()` publishes what was emitted once
the commit succeeded, so a subscriber in any API process never sees a rolled-back change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

PREFIX = "casegraph:events:"


def channel(topic: str, key: int | str) -> str:
    return f"{PREFIX}{topic}:{key}"


def emit(session: AsyncSession, topic: str, key: int | str, **data: Any) -> None:
    """Queue an event for after the commit; the same event twice in one transaction is sent once."""
    emit_many(session, topic, [key], **data)


def emit_many(session: AsyncSession, topic: str, keys: Iterable[int | str], **data: Any) -> None:
    pending: dict[tuple[str, bytes], dict[str, Any]] = session.info.setdefault("pending_events", {})
    for key in keys:
        body = {"topic": topic, "key": key, **data}
        pending.setdefault((channel(topic, key), orjson.dumps(body)), body)


def pending_count(session: AsyncSession) -> int:
    return len(session.info.get("pending_events", {}))


def discard_after(session: AsyncSession, count: int) -> None:
    """Forget the events queued after the first `count` (their changes were rolled back)."""
    pending = session.info.get("pending_events", {})
    for event in list(pending)[count:]:
        del pending[event]


def take_pending(session: AsyncSession) -> list[tuple[str, dict[str, Any]]]:
    return [(name, body) for (name, _), body in session.info.pop("pending_events", {}).items()]


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

"""Change events: stored in an outbox with their change, published to a Redis stream after it.

Services call `emit(session, ...)`. `Runtime.transaction()` writes what was emitted to the
`event_outbox` table in the same transaction (one row for all of it), and once the commit
succeeded appends it to the Redis stream and (a moment later, in a batch) deletes the outbox rows. If Redis cannot be reached, the rows stay and the
worker's relay (`relay`) publishes them a few seconds later: an event is never lost, at worst
delivered twice (subscribers reload the record each time, so that is harmless).

The stream gives every event an increasing id (`1732380000000-0`). Each API process reads the
stream once (`EventHub`) and hands each event to its subscribers; a subscriber that reconnects
passes the last id it saw and first receives what it missed, as long as the stream retains it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import BigInteger, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.models import EventOutbox

log = logging.getLogger(__name__)

PREFIX = "casegraph:events:"
STREAM = "casegraph:event-stream"
_READ_BLOCK_MS = 5_000
_CATCH_UP_MAX = 10_000
_PENDING_PER_SUBSCRIBER = 1_000


def channel(topic: str, key: int | str) -> str:
    return f"{PREFIX}{topic}:{key}"


def emit(session: AsyncSession, topic: str, key: int | str, **data: Any) -> None:
    """Queue an event for the outbox; the same event twice in one transaction is stored once."""
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


@dataclass(frozen=True)
class Stored:
    """The events of one transaction, kept in the outbox row `outbox_id`: channels and encoded bodies."""

    outbox_id: int
    channels: list[str]
    bodies: list[bytes]


@dataclass(frozen=True)
class Event:
    id: str  # the stream id: increasing, and what a reconnecting subscriber passes back
    channel: str
    body: dict[str, Any]


_STORE = text("INSERT INTO event_outbox (events) VALUES (CAST(:events AS jsonb)) RETURNING id")


async def store_pending(session: AsyncSession) -> list[Stored]:
    """Write the queued events to the outbox, in one row, inside the transaction of their change."""
    pending = session.info.pop("pending_events", {})
    if not pending:
        return []
    bodies = [encoded for _, encoded in pending]
    row = b"[" + b",".join(bodies) + b"]"
    outbox_id = await (await session.connection()).scalar(_STORE, {"events": row.decode()})
    return [Stored(outbox_id, [name for name, _ in pending], bodies)]


# Every event of a change in one command (a pipeline of one XADD each costs more to encode than
# the events themselves): the channels and the bodies each joined by newlines, which JSON never
# holds unescaped.
_APPEND = """
local channels = {}
for channel in string.gmatch(ARGV[2], '[^\\n]+') do channels[#channels + 1] = channel end
local i = 0
for body in string.gmatch(ARGV[3], '[^\\n]+') do
  i = i + 1
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'channel', channels[i], 'body', body)
end
"""


async def publish(redis: Redis, stored: list[Stored], *, retain: int) -> None:
    channels = "\n".join(channel for entry in stored for channel in entry.channels)
    bodies = b"\n".join(body for entry in stored for body in entry.bodies)
    await redis.eval(_APPEND, 1, STREAM, retain, channels, bodies)


# By array: one prepared statement whatever the count (an IN list is a new statement per length).
_DELETE = text("DELETE FROM event_outbox WHERE id = ANY(:ids)").bindparams(bindparam("ids", type_=ARRAY(BigInteger)))


class PublishedOutbox:
    """Deletes the outbox rows of published events in batches, off the path of the change that
    emitted them (one statement for all the changes of a moment, not one transaction each). A
    process that stops first leaves its rows to the relay, which publishes them once more:
    harmless, as said above."""

    def __init__(self, engine: AsyncEngine, *, delay: float = 0.05) -> None:
        self.engine = engine
        self.delay = delay
        self.ids: list[int] = []
        self.task: asyncio.Task | None = None

    def forget(self, stored: list[Stored]) -> None:
        self.ids.extend(entry.outbox_id for entry in stored)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._clear_soon())

    async def _clear_soon(self) -> None:
        await asyncio.sleep(self.delay)
        await self.flush()

    async def flush(self) -> None:
        while self.ids:
            ids, self.ids = self.ids, []
            try:
                async with self.engine.connect() as conn:
                    await conn.execute(_DELETE, {"ids": ids})
                    await conn.commit()
            except Exception:  # the events went out; the relay may send them once more, which is harmless
                log.exception("clearing %d published events from the outbox failed", len(ids))

    async def close(self) -> None:
        if self.task is not None:
            await self.task
        await self.flush()


async def publish_committed(redis: Redis, outbox: PublishedOutbox, stored: list[Stored], *, retain: int) -> None:
    """After the commit: publish, then clear the outbox rows; on failure the relay retries."""
    if not stored:
        return
    try:
        await publish(redis, stored, retain=retain)
    except (RedisError, OSError):
        count = sum(len(entry.bodies) for entry in stored)
        log.warning("publishing %d change events failed; the outbox relay will publish them", count)
        return
    outbox.forget(stored)


async def relay(
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis,
    *,
    retain: int,
    older_than: timedelta,
    batch: int = 50,
) -> int:
    """Publish outbox events whose publication after commit failed (or whose process died), oldest
    first, `batch` transactions' events at a time; how many events."""
    published = 0
    while True:
        async with sessionmaker() as session, session.begin():
            rows = (
                await session.execute(
                    select(EventOutbox.id, EventOutbox.events)
                    .where(EventOutbox.created_at < func.now() - older_than)
                    .order_by(EventOutbox.id)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return published
            stored = [
                Stored(
                    row.id, [channel(e["topic"], e["key"]) for e in row.events], [orjson.dumps(e) for e in row.events]
                )
                for row in rows
            ]
            await publish(redis, stored, retain=retain)
            await session.execute(_DELETE, {"ids": [entry.outbox_id for entry in stored]})
        published += sum(len(entry.bodies) for entry in stored)


def _stream_id(value: str | bytes) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


_MAX_STREAM_PART = 2**64 - 1  # each half of a Redis stream id is an unsigned 64-bit number


def parse_event_id(value: str) -> tuple[int, int] | None:
    """A stream id as a client sent it (`<ms>-<seq>` or `<ms>`), or None when it is not one."""
    milliseconds, dash, sequence = value.partition("-")
    parts = [milliseconds, sequence] if dash else [milliseconds]
    if not all(part.isascii() and part.isdigit() and len(part) <= 20 for part in parts):
        return None
    numbers = [int(part) for part in parts]
    if any(number > _MAX_STREAM_PART for number in numbers):
        return None
    return numbers[0], numbers[1] if dash else 0


def _decode(entry_id: bytes, fields: dict[bytes, bytes]) -> Event:
    return Event(entry_id.decode(), fields[b"channel"].decode(), orjson.loads(fields[b"body"]))


class EventsExpired(Exception):
    """The events after the id a subscriber gave are no longer retained: it must reload."""


class FellBehind(Exception):
    """A subscriber did not take its events fast enough; it can resume from its last id."""


@dataclass(eq=False)
class _Subscriber:
    channels: frozenset[str]
    pending: deque[Event] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False


class EventHub:
    """One reader of the event stream per process, shared by every subscriber in it."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._subscribers: dict[str, set[_Subscriber]] = defaultdict(set)
        self._reader: asyncio.Task | None = None
        self._position: bytes | str | None = None
        self._starting = asyncio.Lock()

    def listening(self, channel_name: str) -> bool:
        return self._position is not None and bool(self._subscribers.get(channel_name))

    def listeners(self, channel_name: str) -> int:
        return len(self._subscribers.get(channel_name, ()))

    async def listen(self, channels: Iterable[str], *, after: str | None = None) -> AsyncIterator[Event]:
        """Events on `channels` from now on, or from just after the event id `after`."""
        subscriber = _Subscriber(frozenset(channels))
        for name in subscriber.channels:
            self._subscribers[name].add(subscriber)
        try:
            await self._start_reader()
            seen = None
            if after is not None:
                for event in await self._since(after, subscriber.channels):
                    seen = _stream_id(event.id)
                    yield event
            while True:
                await subscriber.wake.wait()
                subscriber.wake.clear()
                while subscriber.pending:
                    event = subscriber.pending.popleft()
                    if seen is None or _stream_id(event.id) > seen:
                        yield event
                if subscriber.overflowed:
                    raise FellBehind()
        finally:
            self._remove(subscriber)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
            self._position = None

    async def _since(self, after: str, channels: frozenset[str]) -> list[Event]:
        start = parse_event_id(after)
        if start is None:
            raise EventsExpired(f"'{after[:40]}' is not an event id")
        oldest = await self.redis.xrange(STREAM, count=1)
        if oldest and _stream_id(oldest[0][0]) > start and start != (0, 0):
            raise EventsExpired("events after that id are no longer retained")
        entries = await self.redis.xrange(STREAM, min=f"({start[0]}-{start[1]}", count=_CATCH_UP_MAX)
        return [event for event in (_decode(*entry) for entry in entries) if event.channel in channels]

    async def _start_reader(self) -> None:
        async with self._starting:
            if self._reader is None:
                latest = await self.redis.xrevrange(STREAM, count=1)
                self._position = latest[0][0] if latest else "0-0"
                self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            try:
                replies = await self.redis.xread({STREAM: self._position}, block=_READ_BLOCK_MS, count=500)
            except (RedisError, OSError):
                log.warning("reading the event stream failed; retrying", exc_info=True)
                await asyncio.sleep(1)
                continue
            for _stream, entries in replies or []:
                for entry_id, fields in entries:
                    self._position = entry_id
                    self._dispatch(_decode(entry_id, fields))

    def _dispatch(self, event: Event) -> None:
        for subscriber in list(self._subscribers.get(event.channel, ())):
            if len(subscriber.pending) >= _PENDING_PER_SUBSCRIBER:
                subscriber.overflowed = True
                self._remove(subscriber)
            else:
                subscriber.pending.append(event)
            subscriber.wake.set()

    def _remove(self, subscriber: _Subscriber) -> None:
        for name in subscriber.channels:
            members = self._subscribers.get(name)
            if members is not None:
                members.discard(subscriber)
                if not members:
                    del self._subscribers[name]

"""Automatic persisted queries (Apollo's protocol): documents kept by their sha256 in Redis.

A client sends only `extensions.persistedQuery.sha256Hash`; when the hash is unknown it is
answered `PersistedQueryNotFound` and sends the document with the hash, which registers it.
Every API process shares the store. It is bounded: past `max_entries` the least recently
registered or fetched documents are dropped (a client then simply registers them again).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_KEY = "cg:apq:doc:"
_RECENCY = "cg:apq:recency"  # sorted set: hash -> last use, to find the oldest entries
_LOCAL_ENTRIES = 1024


def sha256_hex(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


class PersistedQueries:
    def __init__(self, redis: Redis, *, max_entries: int) -> None:
        self.redis = redis
        self.max_entries = max_entries
        # Content-addressed, so a local copy can never be stale: it only saves the round trip.
        self._local: OrderedDict[str, str] = OrderedDict()

    async def get(self, sha256: str) -> str | None:
        document = self._local.get(sha256)
        if document is not None:
            self._local.move_to_end(sha256)
            return document
        try:
            raw = await self.redis.get(_KEY + sha256)
            if raw is not None:
                await self.redis.zadd(_RECENCY, {sha256: time.time()})
        except (RedisError, OSError):
            log.warning("the persisted query store is unreachable; the client will send the document")
            return None
        if raw is None:
            return None
        document = raw.decode()
        self._remember(sha256, document)
        return document

    async def put(self, sha256: str, document: str) -> None:
        """Store a document that parsed and validated (the caller checked its hash)."""
        self._remember(sha256, document)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(_KEY + sha256, document)
                pipe.zadd(_RECENCY, {sha256: time.time()})
                pipe.zcard(_RECENCY)
                *_, count = await pipe.execute()
            if count > self.max_entries:
                evicted = [member for member, _ in await self.redis.zpopmin(_RECENCY, count - self.max_entries)]
                if evicted:
                    await self.redis.delete(*(_KEY + member.decode() for member in evicted))
        except (RedisError, OSError):
            # Registering is a saving, not a duty: the query itself was answered.
            log.warning("the persisted query store is unreachable; %s is kept in this process only", sha256)

    def _remember(self, sha256: str, document: str) -> None:
        self._local[sha256] = document
        self._local.move_to_end(sha256)
        if len(self._local) > _LOCAL_ENTRIES:
            self._local.popitem(last=False)

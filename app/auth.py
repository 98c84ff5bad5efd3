"""Bearer API tokens (stored as sha256 of a random secret), the acting user, and revocation.

Token lookups are cached briefly per process. A revocation (a token revoked, a user deactivated
or changed) is published as a change event; every process follows those events, drops what it
cached and closes the WebSockets concerned, so it takes effect everywhere within a moment.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.models import ApiToken, User

log = logging.getLogger(__name__)

TOKEN_PREFIX = "cg_"
# The backstop should a revocation event be missed: a cached lookup lives this many seconds.
_CACHE_SECONDS = 10.0
_CACHE_MAX = 10_000  # bounds memory when clients send many unknown tokens
_cache: dict[str, tuple[float, Actor | None]] = {}
# Bumped by every revocation: a lookup that raced with one is not cached.
_generation = 0
_TOUCH_EVERY = text("interval '1 minute'")

REVOKED_TOPIC = "accessRevoked"
REVOKED_CHANNEL = events.channel(REVOKED_TOPIC, "all")


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    name: str
    role: str
    token_id: int | None = None

    def has_role(self, *roles: str) -> bool:
        return self.role in roles or self.role == "admin"


# Agents and supervisors work cases; integrators only feed contacts in.
STAFF_ROLES = ("agent", "supervisor")
SYSTEM = Actor(user_id=None, name="system", role="admin")


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


NOT_CACHED = object()


def cached_actor(secret: str | None) -> Actor | None | object:
    """What `authenticate` would answer, from this process's cache alone; NOT_CACHED when the
    token must be looked up (saves opening a session on most requests)."""
    if not secret:
        return None
    cached = _cache.get(hash_token(secret))
    if cached and cached[0] > time.monotonic():
        return cached[1]
    return NOT_CACHED


async def authenticate(session: AsyncSession, secret: str | None) -> Actor | None:
    """The actor of a live token of an active user, or None; notes when the token was last used."""
    if not secret:
        return None
    key = hash_token(secret)
    now = time.monotonic()
    cached = _cache.get(key)
    if cached and cached[0] > now:
        return cached[1]
    generation = _generation
    row = (
        await session.execute(
            select(
                ApiToken.id.label("token_id"),
                User.id,
                User.name,
                User.role,
                or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < func.now() - _TOUCH_EVERY).label("stale"),
            )
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.token_hash == key, ApiToken.revoked_at.is_(None), User.active)
        )
    ).first()
    actor = Actor(user_id=row.id, name=row.name, role=row.role, token_id=row.token_id) if row else None
    if row is not None and row.stale:
        await _touch(session, row.token_id)
    if generation == _generation:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[key] = (now + _CACHE_SECONDS, actor)
    return actor


async def _touch(session: AsyncSession, token_id: int) -> None:
    # At most one write a minute per token, whatever the number of processes and requests.
    await session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < func.now() - _TOUCH_EVERY),
        )
        .values(last_used_at=func.now())
    )
    await session.commit()


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@dataclass(frozen=True)
class Revocation:
    """Tokens, or all of a user's tokens, whose cached actors are stale; `close` with a reason ends their WebSockets."""

    token_ids: frozenset[int]
    user_id: int | None
    reason: str
    close: bool

    def concerns(self, actor: Actor | None) -> bool:
        if actor is None:
            return False
        return actor.token_id in self.token_ids or (self.user_id is not None and actor.user_id == self.user_id)


def publish_revocation(
    session: AsyncSession, *, reason: str, token_ids: Iterable[int] = (), user_id: int | None = None, close: bool = True
) -> None:
    """Tell every API process, once the transaction commits, to drop the tokens (or the user's)."""
    events.emit(session, REVOKED_TOPIC, "all", tokenIds=sorted(token_ids), userId=user_id, reason=reason, close=close)


def forget(revocation: Revocation) -> None:
    """Drop this process's cached lookups that the revocation concerns."""
    global _generation
    _generation += 1
    for key, (_, actor) in list(_cache.items()):
        if revocation.concerns(actor):
            _cache.pop(key, None)


class RevocationFollower:
    """Follows the revocations every process publishes: forgets them here, then tells the listeners."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[Revocation], Awaitable[None]]] = []
        self._task: asyncio.Task | None = None

    def follow(self, hub: events.EventHub) -> None:
        """Start following (once per process; called when the first token is checked)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(hub))

    async def _run(self, hub: events.EventHub) -> None:
        while True:
            try:
                async for event in hub.listen([REVOKED_CHANNEL]):
                    body = event.body
                    revocation = Revocation(
                        token_ids=frozenset(body.get("tokenIds") or ()),
                        user_id=body.get("userId"),
                        reason=body.get("reason") or "Access revoked",
                        close=bool(body.get("close")),
                    )
                    forget(revocation)
                    for listener in self.listeners:
                        await listener(revocation)
            except asyncio.CancelledError:
                raise
            except Exception:  # never stop following: a missed revocation would live on in the cache
                log.exception("following revocations failed; resuming")
                await asyncio.sleep(1)

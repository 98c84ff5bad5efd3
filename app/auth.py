"""Bearer API tokens (stored as sha256 of a random secret) and the acting user."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import ErrorCode, UserError
from app.models import ROLES, ApiToken, User

TOKEN_PREFIX = "cg_"
# Token lookups are cached briefly per process: revocation takes effect within this many seconds.
_CACHE_SECONDS = 10.0
_CACHE_MAX = 10_000  # bounds memory when clients send many unknown tokens
_cache: dict[str, tuple[float, Actor | None]] = {}


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    name: str
    role: str

    def has_role(self, *roles: str) -> bool:
        return self.role in roles or self.role == "admin"


# Agents and supervisors work cases; integrators only feed contacts in.
STAFF_ROLES = ("agent", "supervisor")
SYSTEM = Actor(user_id=None, name="system", role="admin")


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_token(session: AsyncSession, *, name: str, role: str) -> str:
    """Create (or reuse) the user `name` with `role` and return a new token secret for it."""
    if role not in ROLES:
        raise UserError(ErrorCode.INVALID, f"role must be one of {', '.join(ROLES)}", "role")
    user = await session.scalar(select(User).where(User.name == name))
    if user is None:
        user = User(name=name, role=role)
        session.add(user)
        await session.flush()
    else:
        user.role = role
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name, token_hash=hash_token(secret)))
    await session.flush()
    return secret


async def authenticate(session: AsyncSession, secret: str | None) -> Actor | None:
    if not secret:
        return None
    key = hash_token(secret)
    now = time.monotonic()
    cached = _cache.get(key)
    if cached and cached[0] > now:
        return cached[1]
    row = (
        await session.execute(
            select(User.id, User.name, User.role)
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.token_hash == key, ApiToken.revoked_at.is_(None), User.active)
        )
    ).first()
    actor = Actor(user_id=row.id, name=row.name, role=row.role) if row else None
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[key] = (now + _CACHE_SECONDS, actor)
    return actor


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None

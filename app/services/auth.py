"""Users (agents, supervisors, admins, integrations) and their API tokens: create, change, revoke."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import SYSTEM, TOKEN_PREFIX, Actor, hash_token, publish_revocation
from app.errors import ErrorCode, UserError, not_found
from app.identifiers import normalize_email
from app.models import ROLES, ApiToken, User
from app.pagination import Page, decode_cursor
from app.services import audit

MAX_NAME_LENGTH = 200
_USERS_LOCK = 0x6361_7365_7573_6572  # any fixed key: the lock that serialises changes to users


def snapshot(user: User) -> dict[str, Any]:
    return {"name": user.name, "email": user.email, "role": user.role, "active": user.active}


def _name(value: str, field: str = "name") -> str:
    name = value.strip()
    if not name:
        raise UserError(ErrorCode.REQUIRED, "a name is required", field)
    if len(name) > MAX_NAME_LENGTH:
        raise UserError(ErrorCode.INVALID, f"a name has at most {MAX_NAME_LENGTH} characters", field)
    return name


def _role(value: str) -> str:
    if value not in ROLES:
        raise UserError(ErrorCode.INVALID, f"role must be one of {', '.join(ROLES)}", "role")
    return value


def _email(value: str | None) -> str | None:
    """Normalised as customers' emails are, so the THREAD rule recognises the user replying."""
    return normalize_email(value) if value and value.strip() else None


async def _check_unique(session: AsyncSession, *, name: str | None, email: str | None, user_id: int | None) -> None:
    others = select(User.id).where(User.id != user_id) if user_id is not None else select(User.id)
    if name is not None and await session.scalar(others.where(User.name == name)):
        raise UserError(ErrorCode.DUPLICATE, f"a user named '{name}' exists", "name")
    if email is not None and await session.scalar(others.where(User.email == email)):
        raise UserError(ErrorCode.DUPLICATE, f"another user has the email {email}", "email")


async def _get_user_for_update(session: AsyncSession, user_id: int) -> User:
    # Changes to users are serialised, taken before any row lock: two admins demoting each other at
    # once would otherwise each see the other remain (and deadlock on their audit rows' references).
    await session.execute(select(func.pg_advisory_xact_lock(_USERS_LOCK)))
    # NO KEY UPDATE: rows that merely reference the user (audit events, tokens) are not held up.
    user = await session.scalar(select(User).where(User.id == user_id).with_for_update(key_share=True))
    if user is None:
        raise not_found("user", "id")
    return user


async def _keeps_an_admin(session: AsyncSession, user: User) -> None:
    """Someone must stay able to administer users and tokens."""
    others = await session.scalar(
        select(func.count()).where(User.role == "admin", User.active, User.id != user.id).select_from(User)
    )
    if not others:
        raise UserError(ErrorCode.CONFLICT, "the last active admin cannot lose the admin role", "id")


async def create_user(session: AsyncSession, *, actor: Actor, name: str, role: str, email: str | None = None) -> User:
    """Create a user; its email (normalised) and name are unique."""
    user = User(name=_name(name), role=_role(role), email=_email(email))
    await _check_unique(session, name=user.name, email=user.email, user_id=None)
    session.add(user)
    await session.flush()
    await session.refresh(user, ["active", "created_at"])
    _audit(session, actor, "user.create", user, None, snapshot(user))
    return user


async def update_user(
    session: AsyncSession,
    *,
    actor: Actor,
    user_id: int,
    name: str | None = None,
    email: str | None = None,
    role: str | None = None,
) -> User:
    """Rename a user, change its email ('' clears it) or role; a role change ends its open WebSockets."""
    user = await _get_user_for_update(session, user_id)
    before = snapshot(user)
    if name is not None:
        user.name = _name(name)
    if email is not None:
        user.email = _email(email)
    if role is not None and _role(role) != user.role:
        if user.role == "admin" and user.active:
            await _keeps_an_admin(session, user)
        user.role = role
    await _check_unique(session, name=user.name, email=user.email, user_id=user.id)
    await session.flush()
    after = snapshot(user)
    if after != before:
        _audit(session, actor, "user.update", user, before, after)
        role_changed = before["role"] != after["role"]
        publish_revocation(
            session,
            user_id=user.id,
            reason="The user's role changed: connect again" if role_changed else "The user changed",
            close=role_changed,
        )
    return user


async def deactivate_user(session: AsyncSession, *, actor: Actor, user_id: int) -> User:
    """Deactivate a user: its tokens stop working on every API process and its WebSockets close."""
    user = await _get_user_for_update(session, user_id)
    if not user.active:
        return user
    if user.role == "admin":
        await _keeps_an_admin(session, user)
    before = snapshot(user)
    user.active = False
    await session.flush()
    _audit(session, actor, "user.deactivate", user, before, snapshot(user))
    publish_revocation(session, user_id=user.id, reason="The user was deactivated")
    return user


async def list_users(session: AsyncSession, *, first: int, after: str | None, active: bool | None) -> Page[User]:
    """Users in the order they were created; `active` filters when given."""
    query = select(User)
    if active is not None:
        query = query.where(User.active.is_(active))
    if after:
        (last_id,) = decode_cursor(after, int)
        query = query.where(User.id > last_id)
    rows = (await session.scalars(query.order_by(User.id).limit(first + 1))).all()
    return Page.from_overfetch(list(rows), first)


async def _new_token(session: AsyncSession, actor: Actor, user: User, name: str) -> tuple[ApiToken, str]:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=_name(name), token_hash=hash_token(secret))
    session.add(token)
    await session.flush()
    await session.refresh(token, ["created_at"])
    _audit_token(session, actor, "token.create", token, None, {"name": token.name, "userId": user.id})
    return token, secret


async def issue_token(
    session: AsyncSession, *, actor: Actor, user_id: int, name: str | None = None
) -> tuple[ApiToken, str]:
    """A new token for an active user; the secret is returned once and stored only hashed."""
    user = await session.get(User, user_id)
    if user is None:
        raise not_found("user", "userId")
    if not user.active:
        raise UserError(ErrorCode.CONFLICT, "the user is deactivated", "userId")
    return await _new_token(session, actor, user, name if name is not None else user.name)


async def create_token(session: AsyncSession, *, name: str, role: str, actor: Actor = SYSTEM) -> str:
    """A new token for the user `name`, created with `role` if new; an existing user's role is never changed."""
    role = _role(role)
    user = await session.scalar(select(User).where(User.name == _name(name)))
    if user is None:
        user = await create_user(session, actor=actor, name=name, role=role)
    elif user.role != role:
        raise UserError(
            ErrorCode.CONFLICT,
            f"user '{user.name}' has the role {user.role}, not {role}: pass --role {user.role} "
            "or change the user's role (userUpdate) first",
            "role",
        )
    elif not user.active:
        raise UserError(ErrorCode.CONFLICT, f"user '{user.name}' is deactivated", "name")
    _, secret = await _new_token(session, actor, user, user.name)
    return secret


async def revoke_token(session: AsyncSession, *, actor: Actor, token_id: int) -> ApiToken:
    """Revoke a token: it stops working on every API process and its WebSockets close."""
    token = await session.scalar(select(ApiToken).where(ApiToken.id == token_id).with_for_update())
    if token is None:
        raise not_found("token", "id")
    if token.revoked_at is None:
        token.revoked_at = func.now()
        await session.flush()
        await session.refresh(token, ["revoked_at"])
        _audit_token(session, actor, "token.revoke", token, {"revokedAt": None}, {"revokedAt": str(token.revoked_at)})
        publish_revocation(session, token_ids=[token.id], reason="The token was revoked")
    return token


async def list_tokens(
    session: AsyncSession, *, first: int, after: str | None, user_id: int | None, revoked: bool | None
) -> Page[ApiToken]:
    """Tokens, newest first, without their secrets (only hashes are stored)."""
    query = select(ApiToken)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    if revoked is not None:
        query = query.where(ApiToken.revoked_at.is_not(None) if revoked else ApiToken.revoked_at.is_(None))
    if after:
        (last_id,) = decode_cursor(after, int)
        query = query.where(ApiToken.id < last_id)
    rows = (await session.scalars(query.order_by(ApiToken.id.desc()).limit(first + 1))).all()
    return Page.from_overfetch(list(rows), first)


def _audit(session: AsyncSession, actor: Actor, action: str, user: User, before: Any, after: Any) -> None:
    audit.record(session, actor=actor, action=action, entity_type="user", entity_id=user.id, before=before, after=after)


def _audit_token(session: AsyncSession, actor: Actor, action: str, token: ApiToken, before: Any, after: Any) -> None:
    audit.record(
        session, actor=actor, action=action, entity_type="api_token", entity_id=token.id, before=before, after=after
    )

"""Queues: pools, the themed queues that mailboxes feed and agents serve."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.errors import ErrorCode, UserError, not_found
from app.mail.templates import checked_auto_response
from app.models import Pool
from app.services import audit, forms

_UNSET = object()


def _snapshot(pool: Pool) -> dict:
    return {
        "name": pool.name,
        "description": pool.description,
        "priority": pool.priority,
        "auto_response": auto_response_of(pool),
    }


def auto_response_of(owner: Any) -> dict[str, str] | None:
    """A pool's or mailbox's auto-response templates as one mapping, or None."""
    if owner.auto_response_subject is None:
        return None
    return {"subject": owner.auto_response_subject, "text": owner.auto_response_text}


async def _check_name(session: AsyncSession, name: object, exclude_id: int | None = None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise UserError(ErrorCode.REQUIRED, "a pool needs a name", "name")
    query = select(Pool.id).where(Pool.name == name.strip())
    if exclude_id is not None:
        query = query.where(Pool.id != exclude_id)
    if await session.scalar(query) is not None:
        raise UserError(ErrorCode.DUPLICATE, f"a pool named {name.strip()!r} exists", "name")
    return name.strip()


async def create_pool(
    session: AsyncSession,
    *,
    actor: Actor,
    name: str,
    description: str | None = None,
    priority: int = 0,
    auto_response: dict[str, str] | None = None,
) -> Pool:
    """Add a pool."""
    subject, text = checked_auto_response(auto_response)
    pool = Pool(
        name=await _check_name(session, name),
        description=description,
        priority=priority,
        auto_response_subject=subject,
        auto_response_text=text,
    )
    session.add(pool)
    await session.flush()
    await session.refresh(pool)
    audit.record(
        session, actor=actor, action="pool.create", entity_type="pool", entity_id=pool.id, after=_snapshot(pool)
    )
    return pool


async def update_pool(
    session: AsyncSession,
    *,
    actor: Actor,
    pool_id: int,
    name: str | None = None,
    description: object = _UNSET,
    priority: int | None = None,
    auto_response: object = _UNSET,
) -> Pool:
    """Change a pool's name, description, priority or auto-response (what is not given stays)."""
    pool = await session.get(Pool, pool_id, with_for_update=True)
    if pool is None:
        raise not_found("pool", "id")
    before = _snapshot(pool)
    if name is not None:
        pool.name = await _check_name(session, name, exclude_id=pool_id)
    if description is not _UNSET:
        pool.description = description
    if priority is not None:
        pool.priority = priority
    if auto_response is not _UNSET:
        pool.auto_response_subject, pool.auto_response_text = checked_auto_response(auto_response)
    await session.flush()
    await session.refresh(pool)
    audit.record(
        session,
        actor=actor,
        action="pool.update",
        entity_type="pool",
        entity_id=pool_id,
        before=before,
        after=_snapshot(pool),
    )
    return pool


async def delete_pool(session: AsyncSession, *, actor: Actor, pool_id: int) -> None:
    """Remove a pool; its mailboxes stay, without a pool; its dictionaries go with it (refused while a form uses one)."""
    pool = await session.get(Pool, pool_id)
    if pool is None:
        raise not_found("pool", "id")
    await forms.check_pool_dictionaries_unused(session, pool_id=pool_id)
    await session.execute(delete(Pool).where(Pool.id == pool_id))
    audit.record(
        session, actor=actor, action="pool.delete", entity_type="pool", entity_id=pool_id, before=_snapshot(pool)
    )


async def list_pools(session: AsyncSession) -> list[Pool]:
    return list(await session.scalars(select(Pool).order_by(Pool.priority.desc(), Pool.name)))


async def pool_by_name(session: AsyncSession, name: str) -> Pool | None:
    return await session.scalar(select(Pool).where(Pool.name == name))

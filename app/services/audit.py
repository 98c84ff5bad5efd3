"""The audit trail: every change is recorded in the transaction that makes it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.auth import Actor
from app.models import AuditEvent
from app.pagination import Page, decode_cursor

_PENDING = "pending_audit"


def record(
    session: AsyncSession,
    *,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: int,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Add an audit event to the session's transaction: written when it commits, all of the
    transaction's events in one statement (plain rows: an object per event costs an ingest more
    than the rest of its audit)."""
    session.info.setdefault(_PENDING, []).append(
        {
            "actor_user_id": actor.user_id,
            "actor_name": actor.name,
            "action": action,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "before": before,
            "after": after,
        }
    )


def pending_count(session: AsyncSession) -> int:
    return len(session.info.get(_PENDING, []))


def discard_after(session: AsyncSession, count: int) -> None:
    """Forget the events recorded after the first `count` (their changes were rolled back)."""
    del session.info.get(_PENDING, [])[count:]


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    rows = session.info.pop(_PENDING, None)
    if rows:
        session.execute(insert(AuditEvent.__table__), rows)


async def list_events(
    session: AsyncSession, *, entity_type: str, entity_id: int, first: int, after: str | None
) -> Page[AuditEvent]:
    """An entity's audit events, newest first."""
    query = select(AuditEvent).where(AuditEvent.entity_type == entity_type, AuditEvent.entity_id == entity_id)
    if after:
        (last_id,) = decode_cursor(after, int)
        query = query.where(AuditEvent.id < last_id)
    rows = (await session.scalars(query.order_by(AuditEvent.id.desc()).limit(first + 1))).all()
    return Page.from_overfetch(list(rows), first)

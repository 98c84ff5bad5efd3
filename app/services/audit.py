"""The audit trail: every change is recorded in the transaction that makes it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, event, select, text
from sqlalchemy.dialects.postgresql import JSONB
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


# One statement text whatever the count (a multi-row VALUES list is a new statement to prepare
# for every count), and the events keep the order they were recorded in.
_WRITE = text("""
    INSERT INTO audit_events (actor_user_id, actor_name, action, entity_type, entity_id, before, after)
    SELECT actor_user_id, actor_name, action, entity_type, entity_id, before, after
    FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb)) AS (
        actor_user_id bigint, actor_name text, action text, entity_type text, entity_id bigint, before jsonb,
        after jsonb)) WITH ORDINALITY AS e(actor_user_id, actor_name, action, entity_type, entity_id, before, after, n)
    ORDER BY n
""").bindparams(bindparam("rows", type_=JSONB))


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    rows = session.info.pop(_PENDING, None)
    if rows:
        session.execute(_WRITE, {"rows": rows})


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

"""Reason codes: why a case is in its status. Supervisors keep the list; status changes that take a
reason accept only an active code of the new status's category."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app import limits
from app.auth import Actor
from app.errors import ErrorCode, UserError, errors_at, not_found
from app.limits import check_text
from app.models import CATEGORY_OF_STATUS, STATUS_CATEGORIES, Case, ReasonCode
from app.services import audit

# The code case merges close the source case with: it always exists, in the closed category.
MERGED = "merged"

# What a fresh installation offers (migration 0014 seeds the same list).
DEFAULT_REASON_CODES = [
    ("completed", "Completed", "closed"),
    ("not-a-problem", "Not a problem", "closed"),
    ("rejected", "Rejected", "closed"),
    ("duplicate", "Duplicate of another case", "closed"),
    ("no-response", "No response from the customer", "closed"),
    (MERGED, "Merged into another case", "closed"),
    ("customer-replied", "The customer replied", "in_progress"),
    ("reopened", "Reopened", "in_progress"),
    ("needs-approval", "Needs approval", "under_consultation"),
    ("awaiting-customer", "Waiting for the customer", "pending_customer"),
]


async def seed_defaults(conn: AsyncConnection) -> None:
    """Insert the default reason codes (into an empty table)."""
    await conn.execute(
        insert(ReasonCode.__table__),
        [
            {"code": code, "description": description, "category": category, "position": position}
            for position, (code, description, category) in enumerate(DEFAULT_REASON_CODES)
        ],
    )


def _snapshot(reason: ReasonCode) -> dict[str, Any]:
    return {
        "code": reason.code,
        "description": reason.description,
        "category": reason.category,
        "active": reason.active,
        "position": reason.position,
    }


def _checked_description(description: object) -> str:
    if not isinstance(description, str) or not description.strip():
        raise UserError(ErrorCode.REQUIRED, "a reason code needs a description", "description")
    check_text(description, "description", limits.NAME)
    return description.strip()


def _checked_category(category: object) -> str:
    if category not in STATUS_CATEGORIES:
        raise UserError(ErrorCode.INVALID, f"category must be one of {', '.join(STATUS_CATEGORIES)}", "category")
    return category


async def _in_use(session: AsyncSession, code: str) -> bool:
    return bool(await session.scalar(select(exists().where(Case.reason_code == code))))


async def list_reason_codes(
    session: AsyncSession, *, category: str | None = None, include_inactive: bool = False
) -> list[ReasonCode]:
    """Reason codes in the order agents see them, by category if given; active ones unless asked."""
    query = select(ReasonCode)
    if category is not None:
        query = query.where(ReasonCode.category == category)
    if not include_inactive:
        query = query.where(ReasonCode.active)
    return list(await session.scalars(query.order_by(ReasonCode.position, ReasonCode.code)))


async def reason_codes_by_code(session: AsyncSession, codes: list[str]) -> dict[str, ReasonCode]:
    rows = await session.scalars(select(ReasonCode).where(ReasonCode.code.in_(codes)))
    return {r.code: r for r in rows}


async def create_reason_code(
    session: AsyncSession,
    *,
    actor: Actor,
    code: str,
    description: str,
    category: str,
    active: bool = True,
    position: int | None = None,
) -> ReasonCode:
    """Add a reason code (at the end of the list unless a position is given)."""
    if not isinstance(code, str) or not code.strip():
        raise UserError(ErrorCode.REQUIRED, "a reason code needs a code", "code")
    check_text(code, "code", limits.REASON_CODE)
    code = code.strip()
    if await session.scalar(select(ReasonCode.id).where(ReasonCode.code == code)) is not None:
        raise UserError(ErrorCode.DUPLICATE, f"reason code {code!r} exists", "code")
    if position is None:
        position = await session.scalar(select(func.coalesce(func.max(ReasonCode.position) + 1, 0)))
    reason = ReasonCode(
        code=code,
        description=_checked_description(description),
        category=_checked_category(category),
        active=active,
        position=position,
    )
    session.add(reason)
    await session.flush()
    await session.refresh(reason)
    audit.record(
        session,
        actor=actor,
        action="reason_code.create",
        entity_type="reason_code",
        entity_id=reason.id,
        after=_snapshot(reason),
    )
    return reason


async def update_reason_code(
    session: AsyncSession,
    *,
    actor: Actor,
    reason_code_id: int,
    description: str | None = None,
    category: str | None = None,
    active: bool | None = None,
    position: int | None = None,
) -> ReasonCode:
    """Change a reason code's description, category, activity or position; the code itself stays, so
    cases closed with it read the new description. A code in use keeps its category."""
    reason = await session.get(ReasonCode, reason_code_id, with_for_update=True)
    if reason is None:
        raise not_found("reason code", "id")
    before = _snapshot(reason)
    if description is not None:
        reason.description = _checked_description(description)
    if category is not None and category != reason.category:
        _checked_category(category)
        if reason.code == MERGED or await _in_use(session, reason.code):
            raise UserError(ErrorCode.IN_USE, f"cases hold reason code {reason.code!r}: its category stays", "category")
        reason.category = category
    if active is not None:
        if not active and reason.code == MERGED:
            raise UserError(ErrorCode.IN_USE, "case merges close with this code: it stays active", "active")
        reason.active = active
    if position is not None:
        reason.position = position
    await session.flush()
    await session.refresh(reason)
    audit.record(
        session,
        actor=actor,
        action="reason_code.update",
        entity_type="reason_code",
        entity_id=reason.id,
        before=before,
        after=_snapshot(reason),
    )
    return reason


async def delete_reason_code(session: AsyncSession, *, actor: Actor, reason_code_id: int) -> None:
    """Remove a reason code no case holds (deactivate one that is in use)."""
    reason = await session.get(ReasonCode, reason_code_id, with_for_update=True)
    if reason is None:
        raise not_found("reason code", "id")
    if reason.code == MERGED or await _in_use(session, reason.code):
        raise UserError(ErrorCode.IN_USE, f"reason code {reason.code!r} is in use: deactivate it instead", "id")
    await session.execute(delete(ReasonCode).where(ReasonCode.id == reason_code_id))
    audit.record(
        session,
        actor=actor,
        action="reason_code.delete",
        entity_type="reason_code",
        entity_id=reason_code_id,
        before=_snapshot(reason),
    )


async def check_reason(session: AsyncSession, code: str, *, status: str, field: str = "reasonCode") -> str:
    """The code, when it is an active reason code of `status`'s category; NOT_FOUND, INACTIVE or
    WRONG_CATEGORY on `field` otherwise."""
    check_text(code, field, limits.REASON_CODE)
    code = code.strip()
    # FOR KEY SHARE: a deletion waits for this transaction, then finds the code in use.
    reason = await session.scalar(
        select(ReasonCode).where(ReasonCode.code == code).with_for_update(read=True, key_share=True)
    )
    if reason is None:
        raise UserError(ErrorCode.NOT_FOUND, f"there is no reason code {code!r}", field)
    if not reason.active:
        raise UserError(ErrorCode.INACTIVE, f"reason code {code!r} is no longer in use", field)
    category = CATEGORY_OF_STATUS[status]
    if reason.category != category:
        raise UserError(
            ErrorCode.WRONG_CATEGORY,
            f"reason code {code!r} is for {reason.category.replace('_', ' ')} cases, not {category.replace('_', ' ')}",
            field,
        )
    return code


# ---- the reasonCodes section of the configuration file ---------------------------------------------


async def export_section(session: AsyncSession) -> list[dict[str, Any]]:
    return [
        {"code": r.code, "description": r.description, "category": r.category, "active": r.active}
        for r in await list_reason_codes(session, include_inactive=True)
    ]


async def import_section(session: AsyncSession, *, actor: Actor, items: list[dict[str, Any]]) -> set[str]:
    """Create or update each code of the file, in the file's order; returns the codes kept."""
    existing = {r.code: r for r in await list_reason_codes(session, include_inactive=True)}
    kept: set[str] = set()
    for position, item in enumerate(items):
        with errors_at(f"reasonCodes.{position}"):
            code = str(item.get("code") or "").strip()
            if code in kept:
                raise UserError(ErrorCode.DUPLICATE, f"reason code {code!r} appears twice", "code")
            values = {
                "description": item.get("description"),
                "category": item.get("category"),
                "active": bool(item.get("active", True)),
                "position": position,
            }
            if code in existing:
                await update_reason_code(session, actor=actor, reason_code_id=existing[code].id, **values)
            else:
                await create_reason_code(session, actor=actor, code=code, **values)
            kept.add(code)
    return kept


async def prune_section(session: AsyncSession, *, actor: Actor, kept: set[str]) -> int:
    """Delete the codes the file no longer lists (refused for a code in use); the merge code stays."""
    removed = 0
    for reason in await list_reason_codes(session, include_inactive=True):
        if reason.code not in kept and reason.code != MERGED:
            with errors_at(f"reasonCodes[{reason.code}]"):
                await delete_reason_code(session, actor=actor, reason_code_id=reason.id)
            removed += 1
    return removed

"""Queues: pools, the themed queues that mailboxes feed and agents serve; who serves them; taking
the next case, handing cases on, absences and replacements; what a contact does to a case's status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Row, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app import events, limits
from app.auth import STAFF_ROLES, SYSTEM, Actor
from app.errors import ErrorCode, UserError, not_found
from app.limits import check_text
from app.mail.templates import checked_auto_response
from app.models import (
    FINISHED_CASE_STATUSES,
    OPEN_CASE_STATUSES,
    REPLY_STATUSES,
    Absence,
    Case,
    Pool,
    PoolMember,
    RoutingRule,
    User,
)
from app.services import audit, forms, search, sla
from app.services import cases as case_service

# Without a pool, a customer's contact reopens a case closed at most this many days ago.
DEFAULT_REOPEN_DAYS = 14

_UNSET = object()


def _snapshot(pool: Pool) -> dict:
    return {
        "name": pool.name,
        "description": pool.description,
        "priority": pool.priority,
        "auto_response": auto_response_of(pool),
        "reply_status": pool.reply_status,
        "reopen_within_days": pool.reopen_within_days,
    }


def _check_automation(reply_status: str | None, reopen_within_days: int | None) -> dict[str, Any]:
    """The pool's status automation settings that were given, checked."""
    values: dict[str, Any] = {}
    if reply_status is not None:
        if reply_status not in REPLY_STATUSES:
            raise UserError(ErrorCode.INVALID, f"replyStatus must be one of {', '.join(REPLY_STATUSES)}", "replyStatus")
        values["reply_status"] = reply_status
    if reopen_within_days is not None:
        if not isinstance(reopen_within_days, int) or not 0 <= reopen_within_days <= 3650:
            raise UserError(ErrorCode.INVALID, "reopenWithinDays must be between 0 and 3650", "reopenWithinDays")
        values["reopen_within_days"] = reopen_within_days
    return values


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
    reply_status: str | None = None,
    reopen_within_days: int | None = None,
) -> Pool:
    """Add a pool."""
    subject, text = checked_auto_response(auto_response)
    pool = Pool(
        name=await _check_name(session, name),
        description=description,
        priority=priority,
        auto_response_subject=subject,
        auto_response_text=text,
        **_check_automation(reply_status, reopen_within_days),
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
    reply_status: str | None = None,
    reopen_within_days: int | None = None,
) -> Pool:
    """Change a pool's name, description, priority, auto-response or status automation (what is not given stays)."""
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
    for key, value in _check_automation(reply_status, reopen_within_days).items():
        setattr(pool, key, value)
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
    """Remove a pool; its mailboxes stay, without a pool; its dictionaries go with it. Refused while
    a form uses one of them, a routing rule sends cases to the pool or a search screen filters by it."""
    pool = await session.get(Pool, pool_id)
    if pool is None:
        raise not_found("pool", "id")
    await forms.check_pool_dictionaries_unused(session, pool_id=pool_id)
    routing = list(await session.scalars(select(RoutingRule.name).where(RoutingRule.pool_id == pool_id)))
    if routing:
        raise UserError(ErrorCode.IN_USE, f"routing rules send cases to this pool: {', '.join(routing)}", "id")
    await search.check_pool_unused(session, pool_id=pool_id)
    await session.execute(delete(Pool).where(Pool.id == pool_id))
    audit.record(
        session, actor=actor, action="pool.delete", entity_type="pool", entity_id=pool_id, before=_snapshot(pool)
    )


async def list_pools(session: AsyncSession) -> list[Pool]:
    return list(await session.scalars(select(Pool).order_by(Pool.priority.desc(), Pool.name)))


async def pool_by_name(session: AsyncSession, name: str) -> Pool | None:
    return await session.scalar(select(Pool).where(Pool.name == name))


# ---- membership -------------------------------------------------------------------------------------


async def _require_pool(session: AsyncSession, pool_id: int, field: str) -> Pool:
    pool = await session.get(Pool, pool_id)
    if pool is None:
        raise not_found("pool", field)
    return pool


async def _require_agent(session: AsyncSession, user_id: int, field: str) -> User:
    """A user who works cases: an active agent or supervisor."""
    user = await session.get(User, user_id)
    if user is None:
        raise not_found("user", field)
    if not user.active or user.role not in STAFF_ROLES:
        raise UserError(ErrorCode.INVALID, f"{user.name} is not an active agent or supervisor", field)
    return user


async def set_member(
    session: AsyncSession, *, actor: Actor, pool_id: int, user_id: int, priority: int = 0
) -> PoolMember:
    """Put an agent in a pool, or change the priority the pool has for them."""
    await _require_pool(session, pool_id, "poolId")
    await _require_agent(session, user_id, "userId")
    statement = pg_insert(PoolMember).values(pool_id=pool_id, user_id=user_id, priority=priority)
    statement = statement.on_conflict_do_update(
        index_elements=["pool_id", "user_id"], set_={"priority": statement.excluded.priority}
    )
    member = (await session.execute(statement.returning(PoolMember))).scalar_one()
    audit.record(
        session,
        actor=actor,
        action="pool.member.set",
        entity_type="pool",
        entity_id=pool_id,
        after={"userId": user_id, "priority": priority},
    )
    return member


async def remove_member(session: AsyncSession, *, actor: Actor, pool_id: int, user_id: int) -> None:
    removed = await session.execute(
        delete(PoolMember).where(PoolMember.pool_id == pool_id, PoolMember.user_id == user_id)
    )
    if not removed.rowcount:
        raise UserError(ErrorCode.NOT_IN_POOL, "that user is not a member of the pool", "userId")
    audit.record(
        session,
        actor=actor,
        action="pool.member.remove",
        entity_type="pool",
        entity_id=pool_id,
        before={"userId": user_id},
    )


async def replace_members(
    session: AsyncSession, *, actor: Actor, pool_id: int, members: list[tuple[str, int]], field: str = "members"
) -> None:
    """Make a pool's members exactly these (user name, priority) pairs, as a configuration file says."""
    wanted: dict[int, int] = {}
    for index, (name, priority) in enumerate(members):
        user_id = await session.scalar(select(User.id).where(User.name == name))
        if user_id is None:
            raise not_found(f"user {name!r}", f"{field}.{index}.user")
        await _require_agent(session, user_id, f"{field}.{index}.user")
        wanted[user_id] = priority
    current = {m.user_id: m.priority for m in (await members_of(session, [pool_id]))[pool_id]}
    for user_id in current.keys() - wanted.keys():
        await remove_member(session, actor=actor, pool_id=pool_id, user_id=user_id)
    for user_id, priority in wanted.items():
        if current.get(user_id) != priority:
            await set_member(session, actor=actor, pool_id=pool_id, user_id=user_id, priority=priority)


async def members_of(session: AsyncSession, pool_ids: list[int]) -> dict[int, list[PoolMember]]:
    found: dict[int, list[PoolMember]] = {pool_id: [] for pool_id in pool_ids}
    query = select(PoolMember).where(PoolMember.pool_id.in_(pool_ids)).order_by(PoolMember.user_id)
    for member in await session.scalars(query):
        found[member.pool_id].append(member)
    return found


async def memberships(session: AsyncSession, user_id: int) -> list[PoolMember]:
    """The pools a user serves, in the order `caseNext` serves them."""
    query = (
        select(PoolMember)
        .join(Pool, Pool.id == PoolMember.pool_id)
        .where(PoolMember.user_id == user_id)
        .order_by(PoolMember.priority.desc(), Pool.priority.desc(), Pool.id)
    )
    return list(await session.scalars(query))


async def may_see_pool(session: AsyncSession, actor: Actor, pool_id: int) -> bool:
    """Supervisors see every pool; an agent sees the pools they serve."""
    if actor.has_role("supervisor"):
        return await session.get(Pool, pool_id) is not None
    query = select(PoolMember.pool_id).where(PoolMember.pool_id == pool_id, PoolMember.user_id == actor.user_id)
    return await session.scalar(query) is not None


@dataclass
class PoolCounts:
    waiting: int
    in_progress: int
    oldest_waiting_since: datetime | None


async def pool_counts(session: AsyncSession, pool_id: int) -> PoolCounts:
    """How many cases wait in the pool, how many of its cases agents hold, and since when the oldest waits."""
    row = (
        await session.execute(
            select(
                func.count().filter(Case.waiting_since.is_not(None)),
                func.count().filter(Case.assignee_id.is_not(None)),
                func.min(Case.waiting_since),
            ).where(
                Case.pool_id == pool_id,
                Case.status.in_(OPEN_CASE_STATUSES),
                Case.merged_into_id.is_(None),
                Case.archived_at.is_(None),
            )
        )
    ).one()
    return PoolCounts(waiting=row[0], in_progress=row[1], oldest_waiting_since=row[2])


# ---- announcing what changed ------------------------------------------------------------------------


class QueueChange(StrEnum):
    ENTERED = "entered"  # the case now waits in the pool
    CLAIMED = "claimed"  # an agent took it from the pool
    RELEASED = "released"  # its agent gave it back to the pool
    LEFT = "left"  # it went to another pool or agent, or was closed, merged or archived


# Every change of an agent's work (cases and tasks) goes to `myWorkUpdated:<user id>`.
WORK_TOPIC = "myWorkUpdated"


class WorkChange(StrEnum):
    ASSIGNED = "assigned"
    UNASSIGNED = "unassigned"
    STATUS_CHANGED = "status_changed"  # a case
    # a task
    CREATED = "created"
    UPDATED = "updated"
    COMPLETED = "completed"
    REOPENED = "reopened"
    CANCELLED = "cancelled"
    DELETED = "deleted"


def announce(
    session: AsyncSession, *, case_id: int, pools: dict[int, QueueChange], agents: dict[int, WorkChange]
) -> None:
    """Queue and work events for one case: to each pool's subscribers and to each agent's."""
    for pool_id, change in pools.items():
        events.emit(session, "queueUpdated", pool_id, change=change.value, caseId=case_id)
    for user_id, change in agents.items():
        events.emit(session, WORK_TOPIC, user_id, kind="case", change=change.value, caseId=case_id)


@dataclass(frozen=True)
class QueueState:
    """Where a case stands in the queues: its pool, agent, status and whether it waits."""

    pool_id: int | None
    assignee_id: int | None
    status: str
    waiting_since: datetime | None

    @classmethod
    def of(cls, case: Row[Any] | Case) -> QueueState:
        return cls(case.pool_id, case.assignee_id, case.status, case.waiting_since)


async def queue_state(session: AsyncSession, case_id: int) -> QueueState:
    columns = (Case.pool_id, Case.assignee_id, Case.status, Case.waiting_since)
    return QueueState.of((await session.execute(select(*columns).where(Case.id == case_id))).one())


def announce_move(session: AsyncSession, *, case_id: int, before: QueueState, after: QueueState) -> None:
    """Announce how a case moved between pools and agents, from where it stood before and after a change."""
    pools: dict[int, QueueChange] = {}
    agents: dict[int, WorkChange] = {}
    if before.waiting_since is not None and (after.waiting_since is None or after.pool_id != before.pool_id):
        claimed = after.pool_id == before.pool_id and after.assignee_id is not None
        pools[before.pool_id] = QueueChange.CLAIMED if claimed else QueueChange.LEFT
    if after.waiting_since is not None and (before.waiting_since is None or after.pool_id != before.pool_id):
        released = before.pool_id == after.pool_id and before.assignee_id is not None
        pools[after.pool_id] = QueueChange.RELEASED if released else QueueChange.ENTERED
    if before.assignee_id != after.assignee_id:
        if before.assignee_id is not None:
            agents[before.assignee_id] = WorkChange.UNASSIGNED
        if after.assignee_id is not None:
            agents[after.assignee_id] = WorkChange.ASSIGNED
    elif after.assignee_id is not None and before.status != after.status:
        agents[after.assignee_id] = WorkChange.STATUS_CHANGED
    announce(session, case_id=case_id, pools=pools, agents=agents)


async def _locked_case(session: AsyncSession, case_id: int, field: str = "caseId") -> Case:
    case = await session.get(Case, case_id, with_for_update=True, populate_existing=True)
    case_service.require_live_case(case, field)
    if case.status in FINISHED_CASE_STATUSES:
        raise UserError(ErrorCode.WRONG_STATUS, f"case {case.reference} is {case.status}", field)
    return case


async def _move(
    session: AsyncSession, *, actor: Actor, case: Case, action: str, why: str | None = None, **values: Any
) -> Row[Any]:
    """Change a locked case's pool, assignee and/or status; audit it with who and why, and announce it."""
    before = QueueState.of(case)
    await session.execute(update(Case).where(Case.id == case.id).values(**values, updated_at=func.now()))
    after = await queue_state(session, case.id)
    if sla.clock_may_change(before.status, after.status):
        await sla.status_changed(session, case_id=case.id, status=after.status)
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="case",
        entity_id=case.id,
        before={"poolId": before.pool_id, "assigneeId": before.assignee_id, "status": before.status},
        after={"poolId": after.pool_id, "assigneeId": after.assignee_id, "status": after.status, "why": why},
    )
    announce_move(session, case_id=case.id, before=before, after=after)
    events.emit(session, "caseUpdated", case.id)
    return await case_service.read_case(session, case.id)


async def put_in_pool(session: AsyncSession, *, case_id: int, pool_id: int) -> None:
    """A new case lands in a pool (by its mailbox) and waits there."""
    await session.execute(update(Case).where(Case.id == case_id).values(pool_id=pool_id))
    announce(session, case_id=case_id, pools={pool_id: QueueChange.ENTERED}, agents={})
    events.emit(session, "caseUpdated", case_id)


# ---- absences ---------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


async def current_absences(session: AsyncSession, user_ids: list[int]) -> dict[int, Absence]:
    """The absence each of these users is in now, if any."""
    now = _now()
    query = select(Absence).where(Absence.user_id.in_(user_ids), Absence.starts_at <= now, Absence.ends_at > now)
    return {absence.user_id: absence for absence in await session.scalars(query)}


async def covering_agent(session: AsyncSession, user_id: int | None) -> int | None:
    """Who works a case of this agent's now: the agent, their replacement while they are away,
    or nobody (the case goes back to its pool) when they are away without one."""
    if user_id is None:
        return None
    absence = (await current_absences(session, [user_id])).get(user_id)
    if absence is None:
        return user_id
    return absence.replacement_id


async def record_absence(
    session: AsyncSession,
    *,
    actor: Actor,
    user_id: int,
    starts_at: datetime,
    ends_at: datetime,
    replacement_id: int | None = None,
    reason: str | None = None,
) -> Absence:
    """Record a period an agent is away, and who covers their cases meanwhile."""
    if user_id != actor.user_id and not actor.has_role("supervisor"):
        raise UserError(ErrorCode.FORBIDDEN, "only a supervisor records another agent's absence", "userId")
    check_text(reason, "reason", limits.REASON)
    await _require_agent(session, user_id, "userId")
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise UserError(ErrorCode.INVALID, "give times with their UTC offset", "startsAt")
    if ends_at <= starts_at:
        raise UserError(ErrorCode.INVALID, "an absence ends after it starts", "endsAt")
    if ends_at <= _now():
        raise UserError(ErrorCode.IN_THE_PAST, "that absence is over already", "endsAt")
    # One absence at a time is recorded per agent: lock the agent to serialise the overlap checks.
    await session.execute(select(User.id).where(User.id == user_id).with_for_update())
    overlapping = select(Absence.id).where(
        Absence.user_id == user_id, Absence.starts_at < ends_at, Absence.ends_at > starts_at
    )
    if await session.scalar(overlapping) is not None:
        raise UserError(ErrorCode.OVERLAPPING_ABSENCE, "an absence of this agent overlaps that period", "startsAt")
    if replacement_id is not None:
        if replacement_id == user_id:
            raise UserError(ErrorCode.INVALID, "an agent cannot replace themselves", "replacementId")
        await _require_agent(session, replacement_id, "replacementId")
        away = select(Absence.id).where(
            Absence.user_id == replacement_id, Absence.starts_at < ends_at, Absence.ends_at > starts_at
        )
        if await session.scalar(away) is not None:
            raise UserError(
                ErrorCode.REPLACEMENT_ABSENT, "the replacement is away during that period too", "replacementId"
            )
    absence = Absence(
        user_id=user_id,
        replacement_id=replacement_id,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        created_by_id=actor.user_id,
    )
    session.add(absence)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="absence.record",
        entity_type="user",
        entity_id=user_id,
        after={
            "absenceId": absence.id,
            "startsAt": starts_at.isoformat(),
            "endsAt": ends_at.isoformat(),
            "replacementId": replacement_id,
        },
    )
    return absence


async def end_absence(session: AsyncSession, *, actor: Actor, absence_id: int) -> Absence | None:
    """End an absence now (an agent back early); one that has not started yet is withdrawn (None)."""
    absence = await session.get(Absence, absence_id, with_for_update=True)
    if absence is None:
        raise not_found("absence", "id")
    if absence.user_id != actor.user_id and not actor.has_role("supervisor"):
        raise UserError(ErrorCode.FORBIDDEN, "only a supervisor ends another agent's absence", "id")
    now = _now()
    if absence.ends_at <= now:
        raise UserError(ErrorCode.IN_THE_PAST, "that absence is over already", "id")
    before = {"startsAt": absence.starts_at.isoformat(), "endsAt": absence.ends_at.isoformat()}
    if absence.starts_at > now:
        await session.delete(absence)
        result = None
    else:
        absence.ends_at = now
        result = absence
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="absence.end",
        entity_type="user",
        entity_id=absence.user_id,
        before={"absenceId": absence_id, **before},
        after={"endsAt": now.isoformat()} if result else None,
    )
    return result


async def list_absences(
    session: AsyncSession, *, user_id: int | None = None, replacement_id: int | None = None, current: bool = False
) -> list[Absence]:
    """Absences not yet over, soonest first: of one agent, or that one agent covers."""
    now = _now()
    query = select(Absence).where(Absence.ends_at > now)
    if user_id is not None:
        query = query.where(Absence.user_id == user_id)
    if replacement_id is not None:
        query = query.where(Absence.replacement_id == replacement_id)
    if current:
        query = query.where(Absence.starts_at <= now)
    return list(await session.scalars(query.order_by(Absence.starts_at, Absence.id)))


# ---- claiming and handing work on -------------------------------------------------------------------


_SERVED = text("""
    SELECT away.found AS away, m.pool_id, m.priority AS own_priority, p.priority AS pool_priority
    FROM (
        SELECT EXISTS (
            SELECT 1 FROM absences WHERE user_id = :user_id AND starts_at <= now() AND ends_at > now()
        ) AS found
    ) AS away
    LEFT JOIN (pool_members m JOIN pools p ON p.id = m.pool_id) ON m.user_id = :user_id
""")


async def claim_order(session: AsyncSession, user_id: int) -> tuple[bool, list[list[int]]]:
    """Whether the agent is away now, and the pools they serve grouped by priority, highest first:
    the agent's own priority for the pool, then the pool's. Within a group the case whose SLA
    deadline comes first (`cases.due_at`), then those without one, each the longest waiting
    first. (This is the order `caseNext` serves.)"""
    served = (await session.execute(_SERVED, {"user_id": user_id})).all()
    tiers: dict[tuple[int, int], list[int]] = {}
    for row in served:
        if row.pool_id is not None:
            tiers.setdefault((row.own_priority, row.pool_priority), []).append(row.pool_id)
    return served[0].away, [sorted(tiers[key]) for key in sorted(tiers, reverse=True)]


_CLAIM = text("""
    WITH picked AS (
        SELECT id, status FROM cases
        WHERE pool_id = ANY(:pool_ids) AND waiting_since IS NOT NULL
        ORDER BY due_at, waiting_since, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    UPDATE cases SET assignee_id = :user_id, status = 'open', updated_at = now()
    FROM picked WHERE cases.id = picked.id
    RETURNING cases.*, picked.status AS previous_status
""").bindparams(bindparam("pool_ids", type_=ARRAY(BigInteger)))


async def claim_next(session: AsyncSession, *, actor: Actor, pool_ids: list[int] | None = None) -> Row[Any] | None:
    """Take the next waiting case in `claim_order`: assigned to the caller and in progress.
    Concurrent callers never get the same case; with nothing waiting, None."""
    if actor.user_id is None:
        raise UserError(ErrorCode.FORBIDDEN, "only an agent takes cases", None)
    away, tiers = await claim_order(session, actor.user_id)
    if away:
        raise UserError(ErrorCode.AGENT_ABSENT, "you are recorded as away: end the absence first", None)
    if pool_ids is not None:
        limits.check_count(pool_ids, "poolIds", limits.IDS_PER_CALL)
        serving = {pool_id for tier in tiers for pool_id in tier}
        for index, pool_id in enumerate(pool_ids):
            if pool_id not in serving:
                await _require_pool(session, pool_id, f"poolIds.{index}")
                raise UserError(ErrorCode.NOT_IN_POOL, "you are not a member of that pool", f"poolIds.{index}")
        tiers = [kept for tier in tiers if (kept := [pool_id for pool_id in tier if pool_id in pool_ids])]
    for tier in tiers:
        claimed = (await session.execute(_CLAIM, {"user_id": actor.user_id, "pool_ids": tier})).one_or_none()
        if claimed is not None:
            if sla.clock_may_change(claimed.previous_status, claimed.status):
                await sla.status_changed(session, case_id=claimed.id, status=claimed.status)
            audit.record(
                session,
                actor=actor,
                action="case.claim",
                entity_type="case",
                entity_id=claimed.id,
                after={"poolId": claimed.pool_id, "assigneeId": actor.user_id, "status": claimed.status},
            )
            announce(
                session,
                case_id=claimed.id,
                pools={claimed.pool_id: QueueChange.CLAIMED},
                agents={actor.user_id: WorkChange.ASSIGNED},
            )
            events.emit(session, "caseUpdated", claimed.id)
            return claimed
    return None


def _may_hand_on(actor: Actor, case: Case) -> None:
    """Agents hand on their own cases and waiting ones; supervisors any."""
    if actor.has_role("supervisor") or case.assignee_id in (None, actor.user_id):
        return
    raise UserError(ErrorCode.FORBIDDEN, "only its agent or a supervisor hands a case on", "caseId")


async def release_case(session: AsyncSession, *, actor: Actor, case_id: int, why: str | None = None) -> Row[Any]:
    """Give a case back to its pool, where it waits again as received."""
    check_text(why, "reason", limits.REASON)
    case = await _locked_case(session, case_id)
    _may_hand_on(actor, case)
    if case.assignee_id is None:
        raise UserError(ErrorCode.WRONG_STATUS, f"case {case.reference} has no agent", "caseId")
    if case.pool_id is None:
        raise UserError(ErrorCode.NO_POOL, f"case {case.reference} is in no pool: transfer it to one", "caseId")
    status = "new" if case.status == "open" else case.status
    return await _move(session, actor=actor, case=case, action="case.release", why=why, assignee_id=None, status=status)


async def transfer_case(
    session: AsyncSession,
    *,
    actor: Actor,
    case_id: int,
    pool_id: int | None = None,
    assignee_id: int | None = None,
    why: str | None = None,
) -> Row[Any]:
    """Hand a case to another pool (where it waits for an agent) and/or to an agent."""
    check_text(why, "reason", limits.REASON)
    if pool_id is None and assignee_id is None:
        raise UserError(ErrorCode.REQUIRED, "name a pool or an agent to transfer the case to", "poolId")
    case = await _locked_case(session, case_id)
    _may_hand_on(actor, case)
    values: dict[str, Any] = {}
    if pool_id is not None:
        await _require_pool(session, pool_id, "poolId")
        values["pool_id"] = pool_id
        values["assignee_id"] = None
        values["status"] = "new" if case.status == "open" else case.status
    if assignee_id is not None:
        await _require_agent(session, assignee_id, "assigneeId")
        absence = (await current_absences(session, [assignee_id])).get(assignee_id)
        if absence is not None:
            raise UserError(ErrorCode.AGENT_ABSENT, "that agent is away; transfer to their replacement", "assigneeId")
        values["assignee_id"] = assignee_id
        values.pop("status", None)
    return await _move(session, actor=actor, case=case, action="case.transfer", why=why, **values)


async def reassign_cases(
    session: AsyncSession,
    *,
    actor: Actor,
    from_user_id: int,
    to_user_id: int | None = None,
    why: str | None = None,
) -> list[int]:
    """Hand every open case of one agent to another, or back to their pools (a case in no pool
    stays with its agent then). Returns the cases moved."""
    check_text(why, "reason", limits.REASON)
    if to_user_id is not None:
        if to_user_id == from_user_id:
            raise UserError(ErrorCode.INVALID, "the cases are with that agent already", "toUserId")
        await _require_agent(session, to_user_id, "toUserId")
    held = select(Case.id).where(
        Case.assignee_id == from_user_id,
        Case.status.in_(OPEN_CASE_STATUSES),
        Case.merged_into_id.is_(None),
        Case.archived_at.is_(None),
    )
    if to_user_id is None:
        held = held.where(Case.pool_id.is_not(None))
    moved = []
    for case_id in await session.scalars(held.order_by(Case.id).with_for_update()):
        case = await _locked_case(session, case_id)
        if to_user_id is None:
            await _move(session, actor=actor, case=case, action="case.reassign", why=why, assignee_id=None)
        else:
            await _move(session, actor=actor, case=case, action="case.reassign", why=why, assignee_id=to_user_id)
        moved.append(case_id)
    return moved


# ---- status automation (seed 004) -------------------------------------------------------------------


# The cases new contacts could change (`_automatic_change`), found in one statement: customers'
# contacts on pending or closed cases or on cases of an agent away; agents' replies on cases in work.
_MAY_CHANGE = text("""
    SELECT c.id FROM cases c
    WHERE c.id = ANY(:inbound) AND (c.status IN ('pending', 'resolved', 'closed') OR EXISTS (
        SELECT 1 FROM absences a WHERE a.user_id = c.assignee_id AND a.starts_at <= now() AND a.ends_at > now()))
    UNION
    SELECT c.id FROM cases c WHERE c.id = ANY(:replied) AND c.status IN ('new', 'open')
""").bindparams(bindparam("inbound", type_=ARRAY(BigInteger)), bindparam("replied", type_=ARRAY(BigInteger)))


async def after_contacts(session: AsyncSession, contacts: list[tuple[int, str, int | None]]) -> None:
    """`after_contact` for new contacts as (case id, direction, agent id); most change nothing, and
    one statement finds those that may."""
    inbound = sorted({case_id for case_id, direction, _ in contacts if direction == "inbound"})
    replied = sorted({case_id for case_id, direction, agent in contacts if direction == "outbound" and agent})
    if not inbound and not replied:
        return
    may_change = set(await session.scalars(_MAY_CHANGE, {"inbound": inbound, "replied": replied}))
    for case_id, direction, agent_id in contacts:
        if case_id in may_change:
            await after_contact(session, case_id=case_id, direction=direction, agent_id=agent_id)


async def after_contact(session: AsyncSession, *, case_id: int, direction: str, agent_id: int | None) -> None:
    """What a new contact does to its case's status and agent (see `_automatic_change`). Most
    contacts change nothing, so the case is locked only when something is to change."""
    case = await session.get(Case, case_id, populate_existing=True)
    if case is None or not await _automatic_change(session, case, direction, agent_id):
        return
    case = await session.get(Case, case_id, with_for_update=True, populate_existing=True)
    change = await _automatic_change(session, case, direction, agent_id)
    if change:
        why, values = change
        await _move(session, actor=SYSTEM, case=case, action="case.status", why=why, **values)


async def _automatic_change(
    session: AsyncSession, case: Case, direction: str, agent_id: int | None
) -> tuple[str, dict[str, Any]] | None:
    """Seed 004's status automation, as (why, new values) or None:
    - an agent's reply leaves the case pending the customer (unless its pool keeps the status);
    - the customer's contact on a pending case, or on one closed within the pool's reopen window,
      puts it back in progress with its agent;
    - an agent away hands the customer's returning case to their replacement or, without one,
      back to the pool."""
    if case.merged_into_id is not None or case.archived_at is not None:
        return None
    pool = await session.get(Pool, case.pool_id) if case.pool_id is not None else None
    if direction == "outbound" and agent_id is not None:
        if case.status in ("new", "open") and (pool is None or pool.reply_status == "pending"):
            return "agent replied", {"status": "pending"}
        return None
    if direction != "inbound":
        return None
    reopen_days = pool.reopen_within_days if pool is not None else DEFAULT_REOPEN_DAYS
    finished = case.status in FINISHED_CASE_STATUSES
    if finished and (case.closed_at is None or case.closed_at < _now() - timedelta(days=reopen_days)):
        return None  # closed long ago: the case stays closed
    reopening = finished or case.status == "pending"
    agent = await covering_agent(session, case.assignee_id)
    values: dict[str, Any] = {}
    if agent != case.assignee_id:
        values["assignee_id"] = agent
    if reopening:
        values["status"] = "open" if agent is not None else "new"
        if finished:
            values.update(closed_at=None, reason_code=None)
    if not values:
        return None
    return ("customer replied" if reopening else "agent away"), values

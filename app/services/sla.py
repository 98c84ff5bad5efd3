"""SLA: turnaround-time policies, each case's clock (deadlines, pauses, first response), and the sweep
that marks warnings and breaches once and escalates them.

A case's deadlines are `started_at` plus its policy's target for its priority plus the business time
it spent paused, counted in its region's calendar. Every status change goes through
`status_changed`, the one place that pauses, resumes and stops the clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.auth import Actor
from app.business_time import BusinessCalendar, add_business_time, business_seconds_between
from app.errors import ErrorCode, UserError, not_found
from app.models import (
    PRIORITIES,
    SLA_STAGES,
    TAT_TARGETS,
    Case,
    CaseSla,
    CaseTemplate,
    Region,
    TatPolicy,
    TatTarget,
    Workflow,
)
from app.models.cases import CATEGORY_OF_STATUS
from app.services import audit, messages, queues
from app.services.calendars import calendar_of

log = logging.getLogger(__name__)

_UNSET = object()
SWEEPER = Actor(user_id=None, name="sla", role="admin")
SLA_TOPIC = "slaEvents"


# ---- TAT policies -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    priority: str
    target: str
    minimum_minutes: int | None
    maximum_minutes: int


def checked_targets(items: list[dict[str, Any]], field: str = "targets") -> list[Target]:
    """Targets as given ({priority, target, minimumMinutes, maximumMinutes}); one per priority and target."""
    if not isinstance(items, list):
        raise UserError(ErrorCode.INVALID, "targets are a list", field)
    seen: set[tuple[str, str]] = set()
    checked = []
    for index, item in enumerate(items):
        where = f"{field}.{index}"
        if not isinstance(item, dict):
            raise UserError(ErrorCode.INVALID, "a target is a mapping", where)
        priority, target = str(item.get("priority", "")).lower(), str(item.get("target", "")).lower()
        if priority not in PRIORITIES:
            raise UserError(ErrorCode.INVALID, f"priority must be one of {', '.join(PRIORITIES)}", f"{where}.priority")
        if target not in TAT_TARGETS:
            raise UserError(ErrorCode.INVALID, f"target must be one of {', '.join(TAT_TARGETS)}", f"{where}.target")
        if (priority, target) in seen:
            raise UserError(ErrorCode.DUPLICATE, f"two {target} targets for priority {priority}", where)
        seen.add((priority, target))
        maximum, minimum = item.get("maximum_minutes"), item.get("minimum_minutes")
        if isinstance(maximum, bool) or not isinstance(maximum, int) or maximum <= 0:
            raise UserError(ErrorCode.INVALID, "the maximum is a positive number of minutes", f"{where}.maximumMinutes")
        if minimum is not None and (isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 0):
            raise UserError(ErrorCode.INVALID, "the minimum is a number of minutes", f"{where}.minimumMinutes")
        if minimum is not None and minimum > maximum:
            raise UserError(
                ErrorCode.TAT_MINIMUM_ABOVE_MAXIMUM,
                f"the minimum ({minimum} min) is above the maximum ({maximum} min)",
                f"{where}.minimumMinutes",
            )
        checked.append(Target(priority, target, minimum, maximum))
    return checked


async def _check_code(session: AsyncSession, code: object, exclude_id: int | None = None) -> str:
    if not isinstance(code, str) or not code.strip():
        raise UserError(ErrorCode.REQUIRED, "a TAT policy needs a code", "code")
    query = select(TatPolicy.id).where(TatPolicy.code == code.strip())
    if exclude_id is not None:
        query = query.where(TatPolicy.id != exclude_id)
    if await session.scalar(query) is not None:
        raise UserError(ErrorCode.DUPLICATE, f"a TAT policy {code.strip()!r} exists", "code")
    return code.strip()


async def policy_targets(session: AsyncSession, policy_ids: list[int]) -> dict[int, list[TatTarget]]:
    rows = await session.scalars(
        select(TatTarget).where(TatTarget.policy_id.in_(policy_ids)).order_by(TatTarget.priority, TatTarget.target)
    )
    found: dict[int, list[TatTarget]] = {policy_id: [] for policy_id in policy_ids}
    for row in rows:
        found[row.policy_id].append(row)
    return found


async def policy_snapshot(session: AsyncSession, policy: TatPolicy) -> dict[str, Any]:
    targets = (await policy_targets(session, [policy.id]))[policy.id]
    return {
        "code": policy.code,
        "description": policy.description,
        "pause_pending_customer": policy.pause_pending_customer,
        "pause_under_consultation": policy.pause_under_consultation,
        "is_default": policy.is_default,
        "targets": [
            {
                "priority": t.priority,
                "target": t.target,
                "minimum_minutes": t.minimum_minutes,
                "maximum_minutes": t.maximum_minutes,
            }
            for t in targets
        ],
    }


async def _replace_targets(session: AsyncSession, policy_id: int, targets: list[Target]) -> None:
    await session.execute(delete(TatTarget).where(TatTarget.policy_id == policy_id))
    if targets:
        await session.execute(
            insert(TatTarget),
            [
                {
                    "policy_id": policy_id,
                    "priority": t.priority,
                    "target": t.target,
                    "minimum_minutes": t.minimum_minutes,
                    "maximum_minutes": t.maximum_minutes,
                }
                for t in targets
            ],
        )


async def create_policy(
    session: AsyncSession,
    *,
    actor: Actor,
    code: str,
    targets: list[dict[str, Any]],
    description: str | None = None,
    pause_pending_customer: bool = True,
    pause_under_consultation: bool = False,
    is_default: bool = False,
) -> TatPolicy:
    """Add a TAT policy; with `is_default` it applies to cases whose workflow names none."""
    checked = checked_targets(targets)
    policy = TatPolicy(
        code=await _check_code(session, code),
        description=description,
        pause_pending_customer=pause_pending_customer,
        pause_under_consultation=pause_under_consultation,
    )
    session.add(policy)
    await session.flush()
    await _replace_targets(session, policy.id, checked)
    if is_default:
        await _make_only_default(session, policy)
    await session.refresh(policy)
    audit.record(
        session,
        actor=actor,
        action="tatPolicy.create",
        entity_type="tat_policy",
        entity_id=policy.id,
        after=await policy_snapshot(session, policy),
    )
    return policy


async def _make_only_default(session: AsyncSession, policy: TatPolicy) -> None:
    await session.execute(
        update(TatPolicy).where(TatPolicy.is_default, TatPolicy.id != policy.id).values(is_default=False)
    )
    policy.is_default = True
    await session.flush()


async def update_policy(
    session: AsyncSession,
    *,
    actor: Actor,
    policy_id: int,
    code: str | None = None,
    targets: list[dict[str, Any]] | None = None,
    description: object = _UNSET,
    pause_pending_customer: bool | None = None,
    pause_under_consultation: bool | None = None,
    is_default: bool | None = None,
) -> TatPolicy:
    """Change a policy (given targets replace all of them). Open cases keep their deadlines until
    `recompute_open_clocks` (enqueued after the commit) applies the new targets."""
    policy = await session.get(TatPolicy, policy_id, with_for_update=True)
    if policy is None:
        raise not_found("TAT policy", "id")
    before = await policy_snapshot(session, policy)
    checked = checked_targets(targets) if targets is not None else None
    if code is not None:
        policy.code = await _check_code(session, code, exclude_id=policy_id)
    if description is not _UNSET:
        policy.description = description
    if pause_pending_customer is not None:
        policy.pause_pending_customer = pause_pending_customer
    if pause_under_consultation is not None:
        policy.pause_under_consultation = pause_under_consultation
    await session.flush()
    if checked is not None:
        await _replace_targets(session, policy_id, checked)
    if is_default:
        await _make_only_default(session, policy)
    elif is_default is False:
        policy.is_default = False
        await session.flush()
    await session.refresh(policy)
    audit.record(
        session,
        actor=actor,
        action="tatPolicy.update",
        entity_type="tat_policy",
        entity_id=policy_id,
        before=before,
        after=await policy_snapshot(session, policy),
    )
    return policy


async def delete_policy(session: AsyncSession, *, actor: Actor, policy_id: int) -> None:
    """Remove a TAT policy that no workflow uses; cases it timed keep their deadlines."""
    policy = await session.get(TatPolicy, policy_id)
    if policy is None:
        raise not_found("TAT policy", "id")
    used_by = await session.scalar(select(Workflow.code).where(Workflow.tat_policy_id == policy_id).limit(1))
    if used_by is not None:
        raise UserError(ErrorCode.IN_USE, f"workflow {used_by} uses this policy", "id")
    before = await policy_snapshot(session, policy)
    await session.delete(policy)
    await session.flush()
    audit.record(
        session, actor=actor, action="tatPolicy.delete", entity_type="tat_policy", entity_id=policy_id, before=before
    )


async def list_policies(session: AsyncSession) -> list[TatPolicy]:
    return list(await session.scalars(select(TatPolicy).order_by(TatPolicy.code)))


async def policy_by_code(session: AsyncSession, code: str) -> TatPolicy | None:
    return await session.scalar(select(TatPolicy).where(TatPolicy.code == code))


# ---- a case's clock ---------------------------------------------------------------------------

_DEADLINE_COLUMNS = ("response_warn_at", "response_due_at", "resolution_warn_at", "resolution_due_at")
# Each warning point or deadline and the mark the sweep sets when it passes.
_MARKS = {
    "response_warn_at": "response_warned_at",
    "response_due_at": "response_breached_at",
    "resolution_warn_at": "resolution_warned_at",
    "resolution_due_at": "resolution_breached_at",
}


def deadlines(
    calendar: BusinessCalendar, started_at: datetime, paused_seconds: float, targets: list[Any]
) -> dict[str, datetime | None]:
    """The warning points and deadlines of one priority's targets: business minutes after the start,
    moved on by the business time spent paused."""
    found: dict[str, datetime | None] = dict.fromkeys(_DEADLINE_COLUMNS)
    for target in targets:
        found[f"{target.target}_due_at"] = add_business_time(
            calendar, started_at, target.maximum_minutes * 60 + paused_seconds
        )
        if target.minimum_minutes is not None:
            found[f"{target.target}_warn_at"] = add_business_time(
                calendar, started_at, target.minimum_minutes * 60 + paused_seconds
            )
    return found


# The policy (the workflow's, else the default), the region (the workflow's resolver group's, else its
# creator group's, else the default) and the policy's targets for a priority, in one round trip.
_CLOCK_SETTING = text("""
WITH w AS (SELECT * FROM workflows WHERE id = :workflow_id),
     chosen AS (
         SELECT coalesce((SELECT tat_policy_id FROM w), (SELECT id FROM tat_policies WHERE is_default)) AS policy_id,
                coalesce((SELECT g.region_id FROM w JOIN user_groups g ON g.id = w.resolver_group_id),
                         (SELECT g.region_id FROM w JOIN user_groups g ON g.id = w.creator_group_id),
                         (SELECT id FROM regions WHERE is_default)) AS region_id
     )
SELECT chosen.policy_id, chosen.region_id,
       (SELECT row_to_json(r) FROM regions r WHERE r.id = chosen.region_id) AS region,
       (SELECT coalesce(json_agg(json_build_object('target', t.target, 'minimum_minutes', t.minimum_minutes,
                                                   'maximum_minutes', t.maximum_minutes)), '[]')
          FROM tat_targets t WHERE t.policy_id = chosen.policy_id AND t.priority = :priority) AS targets
FROM chosen
""")


@dataclass
class _ClockSetting:
    policy_id: int | None
    region: Region | None
    targets: list[Target]


# Where `remember_clock_settings` was called, the settings read by that session, by (workflow, priority).
_REMEMBERED = "clock_settings"


def remember_clock_settings(session: AsyncSession) -> None:
    """Read each clock setting once for the rest of the session's transaction: for work that opens
    many cases and edits no SLA configuration (a batch of ingested contacts)."""
    session.info[_REMEMBERED] = {}


async def _clock_setting(session: AsyncSession, *, workflow_id: int | None, priority: str) -> _ClockSetting:
    remembered = session.info.get(_REMEMBERED)
    if remembered is not None and (workflow_id, priority) in remembered:
        return remembered[workflow_id, priority]
    setting = await _read_clock_setting(session, workflow_id=workflow_id, priority=priority)
    if remembered is not None:
        remembered[workflow_id, priority] = setting
    return setting


async def _read_clock_setting(session: AsyncSession, *, workflow_id: int | None, priority: str) -> _ClockSetting:
    row = (await session.execute(_CLOCK_SETTING, {"workflow_id": workflow_id, "priority": priority})).one()
    region = None
    if row.region is not None:
        values = dict(row.region)
        for stamp in ("created_at", "updated_at"):
            values[stamp] = datetime.fromisoformat(values[stamp])
        region = Region(**values)  # transient: read for its calendar only
    targets = [Target(priority, t["target"], t["minimum_minutes"], t["maximum_minutes"]) for t in row.targets]
    return _ClockSetting(row.policy_id, region, targets)


async def start_clock(session: AsyncSession, *, case: Case) -> None:
    """Compute a case's deadlines from its creation; a case no policy applies to gets no clock."""
    setting = await _clock_setting(session, workflow_id=case.workflow_id, priority=case.priority)
    if setting.policy_id is None:
        return
    values = deadlines(calendar_of(setting.region), case.created_at, 0, setting.targets)
    await session.execute(
        insert(CaseSla).values(
            case_id=case.id,
            policy_id=setting.policy_id,
            region_id=setting.region.id if setting.region else None,
            started_at=case.created_at,
            **values,
        )
    )


RECOMPUTE_JOB = "sla_recompute"


async def enqueue_recompute(runtime: Any, *, policy_id: int | None = None, region_id: int | None = None) -> None:
    """After a policy's targets or a region's calendar changed (and committed): recompute the open
    clocks that use it in the worker. One job per policy or region waits at a time."""
    from app.services import mail
    from app.settings import JOB_QUEUE

    key = f"policy:{policy_id}" if policy_id is not None else f"region:{region_id}"
    try:
        await mail.arq_of(runtime).enqueue_job(
            RECOMPUTE_JOB, policy_id, region_id, _job_id=f"sla-recompute:{key}", _queue_name=JOB_QUEUE
        )
    except Exception:  # noqa: BLE001 - the clocks move at their next priority, workflow or pause change
        log.warning("enqueueing the recomputation of the %s clocks failed", key, exc_info=True)


async def recompute_open_clocks(
    runtime: Any, *, policy_id: int | None = None, region_id: int | None = None, batch: int = 500
) -> int:
    """Recompute the deadlines of the unresolved clocks that use a policy or a region, a committed
    batch at a time; returns how many."""
    condition = CaseSla.policy_id == policy_id if policy_id is not None else CaseSla.region_id == region_id
    done, after = 0, 0
    now = datetime.now(UTC)
    while True:
        async with runtime.transaction() as session:
            ids = list(
                await session.scalars(
                    select(CaseSla.case_id)
                    .where(condition, CaseSla.resolved_at.is_(None), CaseSla.case_id > after)
                    .order_by(CaseSla.case_id)
                    .limit(batch)
                )
            )
            for case in await session.scalars(select(Case).where(Case.id.in_(ids)).order_by(Case.id)):
                await recompute(session, case=case, now=now)
        done += len(ids)
        if len(ids) < batch:
            return done
        after = ids[-1]


async def _clock_for_update(session: AsyncSession, case_id: int) -> CaseSla | None:
    return await session.scalar(select(CaseSla).where(CaseSla.case_id == case_id).with_for_update())


async def recompute(session: AsyncSession, *, case: Case, now: datetime | None = None) -> None:
    """After a priority or workflow change: the policy and region again, and the deadlines from the
    start. A warning or breach already marked stays marked if its new time has passed too; one
    whose time moved into the future is cleared, so the new deadline is escalated once in turn."""
    clock = await _clock_for_update(session, case.id)
    if clock is None:  # no policy applied until now
        await start_clock(session, case=case)
        return
    now = now or datetime.now(UTC)
    setting = await _clock_setting(session, workflow_id=case.workflow_id, priority=case.priority)
    calendar = calendar_of(setting.region)
    values = deadlines(calendar, clock.started_at, _paused_so_far(clock, calendar, now), setting.targets)
    for due, mark in _MARKS.items():
        if values[due] is None or values[due] > now:
            setattr(clock, mark, None)
        setattr(clock, due, values[due])
    clock.policy_id = setting.policy_id
    clock.region_id = setting.region.id if setting.region else None
    await session.flush()


def _paused_so_far(clock: CaseSla, calendar: BusinessCalendar, now: datetime) -> float:
    """The business seconds the clock has been paused, counting a pause still going on until now."""
    ongoing = business_seconds_between(calendar, clock.paused_at, now) if clock.paused_at else 0
    return clock.paused_seconds + ongoing


# A case in these categories keeps its clock running whatever its policy.
_ALWAYS_RUNNING = ("received", "in_progress")


def clock_may_change(before: str, after: str) -> bool:
    """Whether moving from one status to another can pause, resume or stop a clock (received to in
    progress, the usual claim, cannot): `status_changed` is needed only then."""
    return not (CATEGORY_OF_STATUS[before] in _ALWAYS_RUNNING and CATEGORY_OF_STATUS[after] in _ALWAYS_RUNNING)


def clock_runs(status: str, policy: TatPolicy | None) -> bool:
    """Whether a status counts towards the deadlines: not finished, and not a waiting state the policy pauses in."""
    category = CATEGORY_OF_STATUS[status]
    if category == "closed":
        return False
    if policy is None:
        return True
    return not (
        (category == "pending_customer" and policy.pause_pending_customer)
        or (category == "under_consultation" and policy.pause_under_consultation)
    )


async def status_changed(session: AsyncSession, *, case_id: int, status: str, now: datetime | None = None) -> None:
    """The case has moved to `status`: pause, resume or stop its clock. On resume the business time
    spent paused is added and the deadlines move on by it. Called by every status change."""
    clock = await _clock_for_update(session, case_id)
    if clock is None:
        return
    now = now or datetime.now(UTC)
    policy = await session.get(TatPolicy, clock.policy_id) if clock.policy_id is not None else None
    finished = CATEGORY_OF_STATUS[status] == "closed"
    clock.resolved_at = (clock.resolved_at or now) if finished else None
    if clock_runs(status, policy):
        if clock.paused_at is not None:
            region = await session.get(Region, clock.region_id) if clock.region_id is not None else None
            calendar = calendar_of(region)
            clock.paused_seconds = round(_paused_so_far(clock, calendar, now))
            clock.paused_at = None
            priority = await session.scalar(select(Case.priority).where(Case.id == case_id))
            targets = (
                list(
                    await session.scalars(
                        select(TatTarget).where(TatTarget.policy_id == policy.id, TatTarget.priority == priority)
                    )
                )
                if policy is not None
                else []
            )
            for due, value in deadlines(calendar, clock.started_at, clock.paused_seconds, targets).items():
                setattr(clock, due, value)
    elif clock.paused_at is None:
        clock.paused_at = now
    await session.flush()


async def record_first_response(session: AsyncSession, *, case_id: int, at: datetime) -> None:
    """The first outbound contact on a case by a person (not an automatic receipt) is its first response."""
    await session.execute(
        update(CaseSla)
        .where(CaseSla.case_id == case_id, CaseSla.first_responded_at.is_(None))
        .values(first_responded_at=at)
    )


# ---- what the case shows -------------------------------------------------------------------------


@dataclass(frozen=True)
class SlaState:
    policy_id: int | None
    response_warn_at: datetime | None
    response_due_at: datetime | None
    resolution_warn_at: datetime | None
    resolution_due_at: datetime | None
    first_responded_at: datetime | None
    paused: bool
    breached: bool
    time_left: int | None  # business seconds to the next open deadline; negative once it passed


def state_of(clock: Any, region: Region | None, now: datetime) -> SlaState:
    """A clock as the case shows it: a deadline passed unanswered, or answered late, is a breach."""
    response_open = clock.first_responded_at is None
    resolution_open = clock.resolved_at is None
    breached = (
        clock.response_breached_at is not None
        or clock.resolution_breached_at is not None
        or _late(clock.response_due_at, clock.first_responded_at)
        or _late(clock.resolution_due_at, clock.resolved_at)
    )
    # While paused the deadlines are not yet known (they move on by the pause): count from the pause.
    counted_to = clock.paused_at or now
    pending = [
        due
        for due, open_ in ((clock.response_due_at, response_open), (clock.resolution_due_at, resolution_open))
        if due is not None and open_
    ]
    time_left = None
    if pending:
        next_due = min(pending)
        breached = breached or (clock.paused_at is None and next_due <= now)
        time_left = round(business_seconds_between(calendar_of(region), counted_to, next_due))
    return SlaState(
        policy_id=clock.policy_id,
        response_warn_at=clock.response_warn_at,
        response_due_at=clock.response_due_at,
        resolution_warn_at=clock.resolution_warn_at,
        resolution_due_at=clock.resolution_due_at,
        first_responded_at=clock.first_responded_at,
        paused=clock.paused_at is not None,
        breached=breached,
        time_left=time_left,
    )


def _late(due: datetime | None, met: datetime | None) -> bool:
    return due is not None and met is not None and met > due


async def states(session: AsyncSession, case_ids: list[int], now: datetime | None = None) -> dict[int, SlaState]:
    """The SLA state of each case that has a clock (one query for the clocks, one for their regions)."""
    now = now or datetime.now(UTC)
    clocks = list(await session.scalars(select(CaseSla).where(CaseSla.case_id.in_(case_ids))))
    region_ids = {c.region_id for c in clocks if c.region_id is not None}
    regions = (
        {r.id: r for r in await session.scalars(select(Region).where(Region.id.in_(region_ids)))} if region_ids else {}
    )
    return {c.case_id: state_of(c, regions.get(c.region_id), now) for c in clocks}


# ---- the sweep ----------------------------------------------------------------------------------

# Locks the due clocks no other sweeper holds, notes which stages passed, and reads what escalation
# needs; the partial index on next_check_at makes this cost what is due, not what is open.
_DUE = text("""
SELECT s.case_id,
       s.first_responded_at IS NULL AND s.response_warned_at IS NULL AND s.response_warn_at <= :now AS response_warning,
       s.first_responded_at IS NULL AND s.response_breached_at IS NULL AND s.response_due_at <= :now AS response_breach,
       s.resolution_warned_at IS NULL AND s.resolution_warn_at <= :now AS resolution_warning,
       s.resolution_breached_at IS NULL AND s.resolution_due_at <= :now AS resolution_breach,
       s.response_due_at, s.resolution_due_at,
       c.reference, c.subject, c.assignee_id, c.pool_id,
       w.escalator_group_id, w.escalation, g.pool_id AS escalation_pool_id
FROM case_slas s
JOIN cases c ON c.id = s.case_id
LEFT JOIN workflows w ON w.id = c.workflow_id
LEFT JOIN user_groups g ON g.id = w.escalator_group_id
WHERE s.next_check_at <= :now
ORDER BY s.next_check_at
LIMIT :limit
FOR UPDATE OF s SKIP LOCKED
""")

_MARK = text("""
UPDATE case_slas s SET
    response_warned_at = CASE WHEN d.response_warning THEN :now ELSE s.response_warned_at END,
    response_breached_at = CASE WHEN d.response_breach THEN :now ELSE s.response_breached_at END,
    resolution_warned_at = CASE WHEN d.resolution_warning THEN :now ELSE s.resolution_warned_at END,
    resolution_breached_at = CASE WHEN d.resolution_breach THEN :now ELSE s.resolution_breached_at END,
    escalated_group_id = CASE WHEN d.escalate THEN d.escalator_group_id ELSE s.escalated_group_id END,
    updated_at = now()
FROM unnest(CAST(:case_ids AS bigint[]), CAST(:rw AS boolean[]), CAST(:rb AS boolean[]), CAST(:sw AS boolean[]),
            CAST(:sb AS boolean[]), CAST(:escalate AS boolean[]), CAST(:groups AS bigint[]))
     AS d(case_id, response_warning, response_breach, resolution_warning, resolution_breach, escalate, escalator_group_id)
WHERE s.case_id = d.case_id
""")


async def _notify_by_mail(session: AsyncSession, rows: list[Any], escalate: list[bool]) -> list[int]:
    """A mail to the case's assignee for each warning or breach, and to the escalator group's members
    for an escalated breach, where they have addresses and the case came by a mailbox with a relay."""
    from app.models import GroupMember, User
    from app.services import mail

    wanted_users = {r.assignee_id for r in rows if r.assignee_id is not None}
    groups = {r.escalator_group_id for r, e in zip(rows, escalate, strict=True) if e}
    members: dict[int, set[int]] = {}
    if groups:
        for group_id, user_id in await session.execute(
            select(GroupMember.group_id, GroupMember.user_id).where(GroupMember.group_id.in_(groups))
        ):
            members.setdefault(group_id, set()).add(user_id)
            wanted_users.add(user_id)
    if not wanted_users:
        return []
    emails = {
        user_id: email
        for user_id, email in await session.execute(
            select(User.id, User.email).where(User.id.in_(wanted_users), User.email.is_not(None))
        )
    }
    queued = []
    for row, escalated in zip(rows, escalate, strict=True):
        recipients = {row.assignee_id} if row.assignee_id is not None else set()
        if escalated:
            recipients |= members.get(row.escalator_group_id, set())
        to = sorted({emails[u] for u in recipients if u in emails})
        if not to:
            continue
        breach = row.response_breach or row.resolution_breach
        passed = [
            f"{target} {'deadline' if stage == 'breach' else 'warning point'} "
            f"({_iso(getattr(row, f'{target}_due_at'))})"
            for target in TAT_TARGETS
            for stage in SLA_STAGES
            if getattr(row, f"{target}_{stage}")
        ]
        subject, text = await messages.message(
            session,
            "sla_breach" if breach else "sla_warning",
            {"reference": row.reference, "subject": row.subject, "passed": passed, "escalated": bool(escalated)},
        )
        outbound_id = await mail.queue_case_notification(
            session, actor=SWEEPER, case_id=row.case_id, to=to, subject=subject, text=text
        )
        if outbound_id is not None:
            queued.append(outbound_id)
    return queued


async def _send_notifications(runtime: Any, outbound_ids: list[int]) -> None:
    """After the commit: the send jobs (the mail sweep sends whatever could not be enqueued)."""
    if not outbound_ids:
        return
    from app.services import mail

    send = mail.send_enqueuer(mail.arq_of(runtime))
    try:
        for outbound_id in outbound_ids:
            await send(outbound_id)
    except Exception:
        log.warning("enqueueing %d SLA notification mails failed; the mail sweep sends them", len(outbound_ids))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


_AUDIT = text("""
INSERT INTO audit_events (actor_name, action, entity_type, entity_id, after)
SELECT :actor, a.action, 'case', a.entity_id, a.after::jsonb
FROM unnest(CAST(:ids AS bigint[]), CAST(:actions AS text[]), CAST(:afters AS text[])) AS a(entity_id, action, after)
""")


@dataclass
class SweepResult:
    checked: int = 0
    warnings: int = 0
    breaches: int = 0
    escalations: int = 0
    batches: int = 0
    notifications: list[int] = field(default_factory=list)  # outbox ids of the notification mails


async def sweep_batch(session: AsyncSession, *, now: datetime, limit: int = 5000) -> SweepResult:
    """One batch of due clocks in the caller's transaction: mark what passed (each mark once),
    escalate breaches, record and announce them."""
    rows = (await session.execute(_DUE, {"now": now, "limit": limit})).all()
    result = SweepResult(checked=len(rows), batches=1)
    if not rows:
        return result
    escalate = [(r.response_breach or r.resolution_breach) and r.escalator_group_id is not None for r in rows]
    await session.execute(
        _MARK,
        {
            "now": now,
            "case_ids": [r.case_id for r in rows],
            "rw": [bool(r.response_warning) for r in rows],
            "rb": [bool(r.response_breach) for r in rows],
            "sw": [bool(r.resolution_warning) for r in rows],
            "sb": [bool(r.resolution_breach) for r in rows],
            "escalate": escalate,
            "groups": [r.escalator_group_id for r in rows],
        },
    )
    handed_over = [r.case_id for r, e in zip(rows, escalate, strict=True) if e and r.escalation == "assign"]
    if handed_over:
        # Handing a case to the escalator group: unassigned, in the group's pool where it has one.
        await session.execute(
            text("""
                UPDATE cases c SET assignee_id = NULL, pool_id = coalesce(g.pool_id, c.pool_id), updated_at = now()
                FROM workflows w JOIN user_groups g ON g.id = w.escalator_group_id
                WHERE c.id = ANY(:ids) AND w.id = c.workflow_id
            """),
            {"ids": handed_over},
        )
        for row in rows:
            if row.case_id in handed_over:
                after = await queues.queue_state(session, row.case_id)
                waited = row.assignee_id is None and row.pool_id is not None
                before = queues.QueueState(
                    row.pool_id, row.assignee_id, after.status, after.waiting_since if waited else None
                )
                queues.announce_move(session, case_id=row.case_id, before=before, after=after)
    audit_rows = []
    for row, escalated in zip(rows, escalate, strict=True):
        marks = [
            {"stage": stage, "target": target, "dueAt": _iso(getattr(row, f"{target}_due_at"))}
            for target in TAT_TARGETS
            for stage in SLA_STAGES
            if getattr(row, f"{target}_{stage}")
        ]
        breach = any(m["stage"] == "breach" for m in marks)
        result.breaches += sum(m["stage"] == "breach" for m in marks)
        result.warnings += sum(m["stage"] == "warning" for m in marks)
        result.escalations += bool(escalated)
        escalated_to = row.escalator_group_id if escalated else None
        # One event and one audit entry per case and sweep, listing every stage that passed.
        keys: list[int | str] = ["all"]
        if row.assignee_id is not None:
            keys.append(f"user:{row.assignee_id}")
        if row.escalator_group_id is not None:
            keys.append(f"group:{row.escalator_group_id}")
        events.emit_many(
            session,
            SLA_TOPIC,
            keys,
            caseId=row.case_id,
            reference=row.reference,
            marks=marks,
            escalatedGroupId=escalated_to,
        )
        audit_rows.append(
            (
                row.case_id,
                "case.sla.breach" if breach else "case.sla.warning",
                orjson.dumps({"marks": marks, "escalatedGroupId": escalated_to}).decode(),
            )
        )
    if audit_rows:
        # One statement for the batch's audit entries (what audit.record adds one at a time).
        ids, actions, afters = zip(*audit_rows, strict=True)
        await session.execute(
            _AUDIT, {"actor": SWEEPER.name, "ids": list(ids), "actions": list(actions), "afters": list(afters)}
        )
    result.notifications = await _notify_by_mail(session, rows, escalate)
    # A case shows a passed deadline as breached by itself; only a handover changes what it shows.
    events.emit_many(session, "caseUpdated", handed_over)
    return result


async def sweep(runtime: Any, *, now: datetime | None = None, limit: int = 5000) -> SweepResult:
    """Every due clock, one committed batch after another (a worker that dies loses at most its open
    batch, which the next sweep takes again: marks are set in the same transaction as their events)."""
    now = now or datetime.now(UTC)
    total = SweepResult()
    while True:
        async with runtime.transaction() as session:
            batch = await sweep_batch(session, now=now, limit=limit)
        total.checked += batch.checked
        total.warnings += batch.warnings
        total.breaches += batch.breaches
        total.escalations += batch.escalations
        total.batches += 1
        await _send_notifications(runtime, batch.notifications)
        if batch.checked < limit:
            return total


# ---- the configuration as a file: regions, TAT policies, groups and workflows ------------------

SECTIONS = ("regions", "tat_policies", "user_groups", "workflows")


async def export_sla_config(session: AsyncSession) -> dict[str, Any]:
    """Regions, TAT policies, user groups and workflows as plain data, referring to each other (and
    to pools and users) by name."""
    from app.models import Pool, User, WorkflowMode
    from app.services import calendars as calendar_service
    from app.services import workflows as workflow_service

    pools = {p.id: p.name for p in await session.scalars(select(Pool))}
    users = {u.id: u.name for u in await session.scalars(select(User))}
    case_templates = dict((await session.execute(select(CaseTemplate.id, CaseTemplate.name))).all())
    regions = await calendar_service.list_regions(session)
    region_names = {r.id: r.name for r in regions}
    policies = await list_policies(session)
    policy_codes = {p.id: p.code for p in policies}
    targets = await policy_targets(session, [p.id for p in policies])
    groups = await workflow_service.list_groups(session)
    group_names = {g.id: g.name for g in groups}
    members = await workflow_service.group_members(session, [g.id for g in groups])
    modes: dict[int, list[WorkflowMode]] = {}
    for mode in await session.scalars(select(WorkflowMode).order_by(WorkflowMode.workflow_id, WorkflowMode.user_id)):
        modes.setdefault(mode.workflow_id, []).append(mode)
    return {
        "regions": [
            {
                "name": r.name,
                "description": r.description,
                "time_zone": r.time_zone,
                "business_hours": r.business_hours,
                "holiday_country": r.holiday_country,
                "holiday_subdivision": r.holiday_subdivision,
                "holiday_calendar": r.holiday_calendar,
                "default": r.is_default,
            }
            for r in regions
        ],
        "tat_policies": [
            {
                "code": p.code,
                "description": p.description,
                "pause_pending_customer": p.pause_pending_customer,
                "pause_under_consultation": p.pause_under_consultation,
                "default": p.is_default,
                "targets": [
                    {
                        "priority": t.priority,
                        "target": t.target,
                        "minimum_minutes": t.minimum_minutes,
                        "maximum_minutes": t.maximum_minutes,
                    }
                    for t in targets[p.id]
                ],
            }
            for p in policies
        ],
        "user_groups": [
            {
                "name": g.name,
                "description": g.description,
                "region": region_names.get(g.region_id),
                "pool": pools.get(g.pool_id),
                "members": [users[u] for u in members[g.id]],
            }
            for g in groups
        ],
        "workflows": [
            {
                "code": w.code,
                "description": w.description,
                "creator_group": group_names.get(w.creator_group_id),
                "resolver_group": group_names.get(w.resolver_group_id),
                "escalator_group": group_names.get(w.escalator_group_id),
                "tat_policy": policy_codes.get(w.tat_policy_id),
                "default_pool": pools.get(w.default_pool_id),
                "case_template": case_templates.get(w.case_template_id),
                "escalation": w.escalation,
                "modes": [{"user": users[m.user_id], "mode": m.mode} for m in modes.get(w.id, [])],
            }
            for w in await workflow_service.list_workflows(session)
        ],
    }


def _where(error: UserError, prefix: str) -> UserError:
    """The error of an entry of the file, its field named from the top of the file."""
    field = f"{prefix}.{error.field}" if error.field else prefix
    return UserError(error.code, f"{field}: {error.message}", field)


def _items(data: dict[str, Any], section: str) -> list[dict[str, Any]] | None:
    if section not in data:
        return None
    value = data[section] or []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise UserError(ErrorCode.INVALID, f"{section} must be a list of mappings", section)
    return value


def _key(item: dict[str, Any], name: str, where: str, seen: set[str]) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value.strip():
        raise UserError(ErrorCode.REQUIRED, f"{where}: {name} is required", f"{where}.{name}")
    if value.strip() in seen:
        raise UserError(ErrorCode.DUPLICATE, f"{where}: {value.strip()!r} appears twice", f"{where}.{name}")
    seen.add(value.strip())
    return value.strip()


async def import_sla_config(session: AsyncSession, data: dict[str, Any], actor: Actor) -> dict[str, int]:
    """Make the regions, TAT policies, user groups and workflows those of `data` (each section given
    replaces its kind; a section left out is kept). Everything is checked before anything is written,
    so a refusal names the first bad entry and changes nothing."""
    from app.models import Pool, User, UserGroup, WorkflowMode
    from app.models import Workflow as WorkflowModel
    from app.services import calendars as calendar_service
    from app.services import workflows as workflow_service

    if not isinstance(data, dict):
        raise UserError(ErrorCode.INVALID, "the configuration must be a mapping", "file")
    sections = {section: _items(data, section) for section in SECTIONS}
    pools = {p.name: p.id for p in await session.scalars(select(Pool))}
    users = {u.name: u.id for u in await session.scalars(select(User))}
    case_templates = dict((await session.execute(select(CaseTemplate.name, CaseTemplate.id))).all())

    # ---- check everything --------------------------------------------------------------------
    region_names = {r.name for r in await calendar_service.list_regions(session)}
    if sections["regions"] is not None:
        seen: set[str] = set()
        for index, item in enumerate(sections["regions"]):
            where = f"regions.{index}"
            try:
                _key(item, "name", where, seen)
                calendar_service.checked_time_zone(item.get("time_zone"), "time_zone")
                calendar_service.checked_business_hours(item.get("business_hours") or [], "business_hours")
                calendar_service.checked_holiday_country(item.get("holiday_country"), item.get("holiday_subdivision"))
                calendar_service.checked_holiday_calendar(item.get("holiday_calendar"), "holiday_calendar")
            except UserError as error:
                raise error if error.field and error.field.startswith(where) else _where(error, where) from None
        region_names = seen
    policy_codes = {p.code for p in await list_policies(session)}
    if sections["tat_policies"] is not None:
        seen = set()
        for index, item in enumerate(sections["tat_policies"]):
            where = f"tat_policies.{index}"
            try:
                _key(item, "code", where, seen)
                checked_targets(item.get("targets") or [])
            except UserError as error:
                raise error if error.field and error.field.startswith(where) else _where(error, where) from None
        policy_codes = seen
    group_names = {g.name for g in await workflow_service.list_groups(session)}
    if sections["user_groups"] is not None:
        seen = set()
        for index, item in enumerate(sections["user_groups"]):
            where = f"user_groups.{index}"
            _key(item, "name", where, seen)
            _check_named(item.get("region"), region_names, "region", f"{where}.region")
            _check_named(item.get("pool"), set(pools), "pool", f"{where}.pool")
            for position, member in enumerate(item.get("members") or []):
                _check_named(member, set(users), "user", f"{where}.members.{position}")
        group_names = seen
    if sections["workflows"] is not None:
        seen = set()
        for index, item in enumerate(sections["workflows"]):
            where = f"workflows.{index}"
            _key(item, "code", where, seen)
            for name in ("creator_group", "resolver_group", "escalator_group"):
                _check_named(item.get(name), group_names, "group", f"{where}.{name}")
            _check_named(item.get("tat_policy"), policy_codes, "TAT policy", f"{where}.tat_policy")
            _check_named(item.get("default_pool"), set(pools), "pool", f"{where}.default_pool")
            _check_named(item.get("case_template"), set(case_templates), "case template", f"{where}.case_template")
            if item.get("escalation", "notify") not in ("notify", "assign"):
                raise UserError(ErrorCode.INVALID, f"{where}: escalation is notify or assign", f"{where}.escalation")
            for position, mode in enumerate(item.get("modes") or []):
                if not isinstance(mode, dict) or mode.get("mode") not in ("creator", "resolver", "both"):
                    raise UserError(
                        ErrorCode.INVALID, f"{where}: a mode is creator, resolver or both", f"{where}.modes.{position}"
                    )
                _check_named(mode.get("user"), set(users), "user", f"{where}.modes.{position}.user")
    else:
        # Workflows that stay must still find the groups and policies they name.
        kept_groups = {g.id: g.name for g in await session.scalars(select(UserGroup))}
        for workflow in await workflow_service.list_workflows(session):
            for group_id in (workflow.creator_group_id, workflow.resolver_group_id, workflow.escalator_group_id):
                if group_id is not None and kept_groups[group_id] not in group_names:
                    raise UserError(
                        ErrorCode.IN_USE, f"workflow {workflow.code} names group {kept_groups[group_id]}", "user_groups"
                    )
            policy = await session.get(TatPolicy, workflow.tat_policy_id) if workflow.tat_policy_id else None
            if policy is not None and policy.code not in policy_codes:
                raise UserError(ErrorCode.IN_USE, f"workflow {workflow.code} uses policy {policy.code}", "tat_policies")

    # ---- write ---------------------------------------------------------------------------------
    counts: dict[str, int] = {}
    if sections["regions"] is not None:
        for item in sections["regions"]:
            values = {
                "time_zone": item.get("time_zone"),
                "business_hours": item.get("business_hours") or [],
                "description": item.get("description"),
                "holiday_country": item.get("holiday_country"),
                "holiday_subdivision": item.get("holiday_subdivision"),
                "holiday_calendar": item.get("holiday_calendar"),
                "is_default": bool(item.get("default", False)),
            }
            existing = await calendar_service.region_by_name(session, item["name"].strip())
            if existing is None:
                await calendar_service.create_region(session, actor=actor, name=item["name"], **values)
            else:
                await calendar_service.update_region(session, actor=actor, region_id=existing.id, **values)
        counts["regions"] = len(sections["regions"])
    if sections["tat_policies"] is not None:
        for item in sections["tat_policies"]:
            values = {
                "targets": item.get("targets") or [],
                "description": item.get("description"),
                "pause_pending_customer": bool(item.get("pause_pending_customer", True)),
                "pause_under_consultation": bool(item.get("pause_under_consultation", False)),
                "is_default": bool(item.get("default", False)),
            }
            existing = await policy_by_code(session, item["code"].strip())
            if existing is None:
                await create_policy(session, actor=actor, code=item["code"], **values)
            else:
                await update_policy(session, actor=actor, policy_id=existing.id, **values)
        counts["tat_policies"] = len(sections["tat_policies"])
    regions = {r.name: r.id for r in await calendar_service.list_regions(session)}
    if sections["user_groups"] is not None:
        for item in sections["user_groups"]:
            values = {
                "description": item.get("description"),
                "region_id": regions.get(item.get("region")),
                "pool_id": pools.get(item.get("pool")),
                "member_ids": [users[m] for m in item.get("members") or []],
            }
            existing = await session.scalar(select(UserGroup).where(UserGroup.name == item["name"].strip()))
            if existing is None:
                await workflow_service.create_group(session, actor=actor, name=item["name"], **values)
            else:
                await workflow_service.update_group(session, actor=actor, group_id=existing.id, **values)
        counts["user_groups"] = len(sections["user_groups"])
    groups = {g.name: g.id for g in await workflow_service.list_groups(session)}
    policies = {p.code: p.id for p in await list_policies(session)}
    if sections["workflows"] is not None:
        kept = []
        for item in sections["workflows"]:
            refs = {
                "creator_group_id": groups.get(item.get("creator_group")),
                "resolver_group_id": groups.get(item.get("resolver_group")),
                "escalator_group_id": groups.get(item.get("escalator_group")),
                "tat_policy_id": policies.get(item.get("tat_policy")),
                "default_pool_id": pools.get(item.get("default_pool")),
                "case_template_id": case_templates.get(item.get("case_template")),
            }
            values = {"description": item.get("description"), "escalation": item.get("escalation", "notify")}
            existing = await session.scalar(select(WorkflowModel).where(WorkflowModel.code == item["code"].strip()))
            if existing is None:
                workflow = await workflow_service.create_workflow(
                    session, actor=actor, code=item["code"], **values, **refs
                )
            else:
                workflow = await workflow_service.update_workflow(
                    session, actor=actor, workflow_id=existing.id, **values, **refs
                )
            kept.append(workflow.id)
            await session.execute(delete(WorkflowMode).where(WorkflowMode.workflow_id == workflow.id))
            for mode in item.get("modes") or []:
                await workflow_service.set_mode(
                    session, actor=actor, workflow_id=workflow.id, user_id=users[mode["user"]], mode=mode["mode"]
                )
        for workflow in await workflow_service.list_workflows(session):
            if workflow.id not in kept:
                await workflow_service.delete_workflow(session, actor=actor, workflow_id=workflow.id)
        counts["workflows"] = len(sections["workflows"])
    if sections["user_groups"] is not None:
        wanted = {item["name"].strip() for item in sections["user_groups"]}
        for group in await workflow_service.list_groups(session):
            if group.name not in wanted:
                await workflow_service.delete_group(session, actor=actor, group_id=group.id)
    if sections["tat_policies"] is not None:
        wanted = {item["code"].strip() for item in sections["tat_policies"]}
        for policy in await list_policies(session):
            if policy.code not in wanted:
                await delete_policy(session, actor=actor, policy_id=policy.id)
    if sections["regions"] is not None:
        wanted = {item["name"].strip() for item in sections["regions"]}
        for region in await calendar_service.list_regions(session):
            if region.name not in wanted:
                await calendar_service.delete_region(session, actor=actor, region_id=region.id)
    return counts


def _check_named(value: object, known: set[str], what: str, field: str) -> None:
    if value is not None and value not in known:
        raise UserError(ErrorCode.NOT_FOUND, f"{field}: no {what} named {value!r}", field)

"""Workflows: user groups in regions, workflows (creator, resolver and escalator groups, TAT policy,
default pool), and each user's mode on a workflow, which decides who may open and who may resolve
its cases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.errors import ErrorCode, UserError, not_found
from app.models import (
    ESCALATION_ACTIONS,
    USER_MODES,
    CaseTemplate,
    GroupMember,
    Pool,
    Region,
    SearchScreen,
    TatPolicy,
    User,
    UserGroup,
    Workflow,
    WorkflowMode,
)
from app.services import audit

_UNSET = object()
RIGHTS = ("creator", "resolver")


# ---- groups -----------------------------------------------------------------------------------


async def _check_unique(session: AsyncSession, model: Any, column: str, value: object, what: str, exclude: int | None):
    if not isinstance(value, str) or not value.strip():
        raise UserError(ErrorCode.REQUIRED, f"a {what} needs a {column}", column)
    query = select(model.id).where(getattr(model, column) == value.strip())
    if exclude is not None:
        query = query.where(model.id != exclude)
    if await session.scalar(query) is not None:
        raise UserError(ErrorCode.DUPLICATE, f"a {what} {value.strip()!r} exists", column)
    return value.strip()


async def _check_ref(session: AsyncSession, model: Any, value: int | None, what: str, field: str) -> int | None:
    if value is not None and await session.get(model, value) is None:
        raise not_found(what, field)
    return value


async def group_members(session: AsyncSession, group_ids: list[int]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {g: [] for g in group_ids}
    for row in await session.execute(
        select(GroupMember.group_id, GroupMember.user_id)
        .where(GroupMember.group_id.in_(group_ids))
        .order_by(GroupMember.group_id, GroupMember.user_id)
    ):
        found[row.group_id].append(row.user_id)
    return found


async def _group_snapshot(session: AsyncSession, group: UserGroup) -> dict[str, Any]:
    return {
        "name": group.name,
        "description": group.description,
        "regionId": group.region_id,
        "poolId": group.pool_id,
        "memberIds": (await group_members(session, [group.id]))[group.id],
    }


async def _set_members(session: AsyncSession, group_id: int, user_ids: list[int]) -> None:
    user_ids = list(dict.fromkeys(user_ids))
    found = set(await session.scalars(select(User.id).where(User.id.in_(user_ids)))) if user_ids else set()
    for index, user_id in enumerate(user_ids):
        if user_id not in found:
            raise not_found("user", f"memberIds.{index}")
    await session.execute(delete(GroupMember).where(GroupMember.group_id == group_id))
    if user_ids:
        await session.execute(insert(GroupMember), [{"group_id": group_id, "user_id": u} for u in user_ids])


async def create_group(
    session: AsyncSession,
    *,
    actor: Actor,
    name: str,
    description: str | None = None,
    region_id: int | None = None,
    pool_id: int | None = None,
    member_ids: list[int] | None = None,
) -> UserGroup:
    """Add a user group, working in a region; escalations handed to it wait in its pool."""
    group = UserGroup(
        name=await _check_unique(session, UserGroup, "name", name, "group", None),
        description=description,
        region_id=await _check_ref(session, Region, region_id, "region", "regionId"),
        pool_id=await _check_ref(session, Pool, pool_id, "pool", "poolId"),
    )
    session.add(group)
    await session.flush()
    await _set_members(session, group.id, member_ids or [])
    await session.refresh(group)
    audit.record(
        session,
        actor=actor,
        action="group.create",
        entity_type="user_group",
        entity_id=group.id,
        after=await _group_snapshot(session, group),
    )
    return group


async def update_group(
    session: AsyncSession,
    *,
    actor: Actor,
    group_id: int,
    name: str | None = None,
    description: object = _UNSET,
    region_id: object = _UNSET,
    pool_id: object = _UNSET,
    member_ids: list[int] | None = None,
) -> UserGroup:
    """Change a group; given members replace all of them."""
    group = await session.get(UserGroup, group_id, with_for_update=True)
    if group is None:
        raise not_found("group", "id")
    before = await _group_snapshot(session, group)
    if name is not None:
        group.name = await _check_unique(session, UserGroup, "name", name, "group", group_id)
    if description is not _UNSET:
        group.description = description
    if region_id is not _UNSET:
        group.region_id = await _check_ref(session, Region, region_id, "region", "regionId")
    if pool_id is not _UNSET:
        group.pool_id = await _check_ref(session, Pool, pool_id, "pool", "poolId")
    if member_ids is not None:
        await _set_members(session, group_id, member_ids)
    await session.flush()
    await session.refresh(group)
    audit.record(
        session,
        actor=actor,
        action="group.update",
        entity_type="user_group",
        entity_id=group_id,
        before=before,
        after=await _group_snapshot(session, group),
    )
    return group


async def delete_group(session: AsyncSession, *, actor: Actor, group_id: int) -> None:
    """Remove a group that no workflow names and that has no search screens."""
    group = await session.get(UserGroup, group_id)
    if group is None:
        raise not_found("group", "id")
    used_by = await session.scalar(
        select(Workflow.code)
        .where(
            or_(
                Workflow.creator_group_id == group_id,
                Workflow.resolver_group_id == group_id,
                Workflow.escalator_group_id == group_id,
            )
        )
        .limit(1)
    )
    if used_by is not None:
        raise UserError(ErrorCode.IN_USE, f"workflow {used_by} names this group", "id")
    screen = await session.scalar(select(SearchScreen.name).where(SearchScreen.group_id == group_id).limit(1))
    if screen is not None:
        raise UserError(ErrorCode.IN_USE, f"the search screen {screen!r} belongs to this group", "id")
    before = await _group_snapshot(session, group)
    await session.delete(group)
    await session.flush()
    audit.record(
        session, actor=actor, action="group.delete", entity_type="user_group", entity_id=group_id, before=before
    )


async def groups_of(session: AsyncSession, user_id: int) -> list[int]:
    """The groups a user belongs to."""
    return list(await session.scalars(select(GroupMember.group_id).where(GroupMember.user_id == user_id)))


async def list_groups(session: AsyncSession) -> list[UserGroup]:
    return list(await session.scalars(select(UserGroup).order_by(UserGroup.name)))


# ---- workflows --------------------------------------------------------------------------------

_WORKFLOW_REFS = {
    "creator_group_id": (UserGroup, "group", "creatorGroupId"),
    "resolver_group_id": (UserGroup, "group", "resolverGroupId"),
    "escalator_group_id": (UserGroup, "group", "escalatorGroupId"),
    "tat_policy_id": (TatPolicy, "TAT policy", "tatPolicyId"),
    "default_pool_id": (Pool, "pool", "defaultPoolId"),
    "case_template_id": (CaseTemplate, "case template", "caseTemplateId"),
}


def workflow_snapshot(workflow: Workflow) -> dict[str, Any]:
    return {
        "code": workflow.code,
        "description": workflow.description,
        "escalation": workflow.escalation,
        **{name: getattr(workflow, name) for name in _WORKFLOW_REFS},
    }


def _check_escalation(value: object) -> str:
    if value not in ESCALATION_ACTIONS:
        raise UserError(ErrorCode.INVALID, f"escalation must be one of {', '.join(ESCALATION_ACTIONS)}", "escalation")
    return value


async def create_workflow(
    session: AsyncSession,
    *,
    actor: Actor,
    code: str,
    description: str | None = None,
    escalation: str = "notify",
    **refs: int | None,
) -> Workflow:
    """Add a workflow: its groups, TAT policy, default pool, and whether breaches notify or hand over."""
    unknown = set(refs) - set(_WORKFLOW_REFS)
    if unknown:
        raise TypeError(f"unknown workflow settings: {', '.join(sorted(unknown))}")
    values = {}
    for name, (model, what, field) in _WORKFLOW_REFS.items():
        values[name] = await _check_ref(session, model, refs.get(name), what, field)
    workflow = Workflow(
        code=await _check_unique(session, Workflow, "code", code, "workflow", None),
        description=description,
        escalation=_check_escalation(escalation),
        **values,
    )
    session.add(workflow)
    await session.flush()
    await session.refresh(workflow)
    audit.record(
        session,
        actor=actor,
        action="workflow.create",
        entity_type="workflow",
        entity_id=workflow.id,
        after=workflow_snapshot(workflow),
    )
    return workflow


async def update_workflow(
    session: AsyncSession,
    *,
    actor: Actor,
    workflow_id: int,
    code: str | None = None,
    description: object = _UNSET,
    escalation: str | None = None,
    **refs: Any,
) -> Workflow:
    """Change a workflow (references given as None are cleared; those not given stay)."""
    workflow = await session.get(Workflow, workflow_id, with_for_update=True)
    if workflow is None:
        raise not_found("workflow", "id")
    before = workflow_snapshot(workflow)
    if code is not None:
        workflow.code = await _check_unique(session, Workflow, "code", code, "workflow", workflow_id)
    if description is not _UNSET:
        workflow.description = description
    if escalation is not None:
        workflow.escalation = _check_escalation(escalation)
    for name, value in refs.items():
        model, what, field = _WORKFLOW_REFS[name]
        setattr(workflow, name, await _check_ref(session, model, value, what, field))
    await session.flush()
    await session.refresh(workflow)
    audit.record(
        session,
        actor=actor,
        action="workflow.update",
        entity_type="workflow",
        entity_id=workflow_id,
        before=before,
        after=workflow_snapshot(workflow),
    )
    return workflow


async def delete_workflow(session: AsyncSession, *, actor: Actor, workflow_id: int) -> None:
    """Remove a workflow; its cases stay, without one."""
    workflow = await session.get(Workflow, workflow_id)
    if workflow is None:
        raise not_found("workflow", "id")
    before = workflow_snapshot(workflow)
    await session.delete(workflow)
    await session.flush()
    audit.record(
        session, actor=actor, action="workflow.delete", entity_type="workflow", entity_id=workflow_id, before=before
    )


async def get_workflow(session: AsyncSession, workflow_id: int) -> Workflow | None:
    return await session.get(Workflow, workflow_id)


async def list_workflows(session: AsyncSession) -> list[Workflow]:
    return list(await session.scalars(select(Workflow).order_by(Workflow.code)))


# ---- modes and rights -------------------------------------------------------------------------


async def set_mode(
    session: AsyncSession, *, actor: Actor, workflow_id: int, user_id: int, mode: str | None
) -> WorkflowMode | None:
    """Set a user's mode on a workflow (creator, resolver or both); None removes it, and the user's
    groups decide again."""
    if await session.get(Workflow, workflow_id) is None:
        raise not_found("workflow", "workflowId")
    if await session.get(User, user_id) is None:
        raise not_found("user", "userId")
    if mode is not None and mode not in USER_MODES:
        raise UserError(ErrorCode.INVALID, f"mode must be one of {', '.join(USER_MODES)}", "mode")
    existing = await session.get(WorkflowMode, (workflow_id, user_id), with_for_update=True)
    before = {"mode": existing.mode} if existing else None
    if mode is None:
        if existing is not None:
            await session.delete(existing)
        result = None
    elif existing is None:
        result = WorkflowMode(workflow_id=workflow_id, user_id=user_id, mode=mode)
        session.add(result)
    else:
        existing.mode = mode
        result = existing
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="workflow.mode",
        entity_type="workflow",
        entity_id=workflow_id,
        before={"userId": user_id, **(before or {})},
        after={"userId": user_id, "mode": mode},
    )
    return result


async def list_modes(session: AsyncSession, workflow_id: int) -> list[WorkflowMode]:
    return list(
        await session.scalars(
            select(WorkflowMode).where(WorkflowMode.workflow_id == workflow_id).order_by(WorkflowMode.user_id)
        )
    )


async def rights_of(session: AsyncSession, *, user_id: int, workflow: Workflow) -> set[str]:
    """A user's rights on a workflow: their mode on it if one is set, else those of their groups
    (the creator group opens its cases, the resolver group resolves them)."""
    mode = await session.scalar(
        select(WorkflowMode.mode).where(WorkflowMode.workflow_id == workflow.id, WorkflowMode.user_id == user_id)
    )
    if mode is not None:
        return set(RIGHTS) if mode == "both" else {mode}
    groups = set(await groups_of(session, user_id))
    rights = set()
    if workflow.creator_group_id in groups:
        rights.add("creator")
    if workflow.resolver_group_id in groups:
        rights.add("resolver")
    return rights


async def require_right(
    session: AsyncSession, *, actor: Actor, workflow_id: int | None, right: str, field: str
) -> Workflow | None:
    """The workflow, when the actor holds `right` on it (work done by the system needs none);
    None for no workflow."""
    if workflow_id is None:
        return None
    workflow = await session.get(Workflow, workflow_id)
    if workflow is None:
        raise not_found("workflow", field)
    if actor.user_id is not None and right not in await rights_of(session, user_id=actor.user_id, workflow=workflow):
        verb = "open" if right == "creator" else "resolve"
        raise UserError(
            ErrorCode.FORBIDDEN, f"you need the {right} mode on workflow {workflow.code} to {verb} its cases", field
        )
    return workflow

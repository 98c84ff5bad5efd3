"""Workflows: user groups, workflows and user modes (supervised configuration)."""

from __future__ import annotations

import strawberry

from app.services import workflows as service
from resolvers.mutation_helpers import mutate
from schema.ids import db_id, optional_db_id
from schema.permissions import allow
from schema.sla import SlaConfigDeleteInput, SlaConfigDeletePayload
from schema.workflows import (
    UserGroup,
    UserGroupCreateInput,
    UserGroupPayload,
    UserGroupUpdateInput,
    Workflow,
    WorkflowCreateInput,
    WorkflowModeSetInput,
    WorkflowPayload,
    WorkflowUpdateInput,
)

_GROUP_REFS = {"region_id": "Region", "pool_id": "Pool"}
_WORKFLOW_REFS = {
    "creator_group_id": "UserGroup",
    "resolver_group_id": "UserGroup",
    "escalator_group_id": "UserGroup",
    "tat_policy_id": "TatPolicy",
    "default_pool_id": "Pool",
    "case_template_id": "CaseTemplate",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _refs(input, refs: dict[str, str], *, only_set: bool) -> dict:
    """The database ids of the references given (with only_set, UNSET ones are left out)."""
    found = {}
    for name, type_name in refs.items():
        value = getattr(input, name)
        if only_set and value is strawberry.UNSET:
            continue
        found[name] = optional_db_id(value, type_name, _camel(name))
    return found


async def _group(session, group) -> UserGroup:
    members = await service.group_members(session, [group.id])
    return UserGroup.of(group, members[group.id])


async def _workflow(session, workflow) -> Workflow:
    return Workflow.of(workflow, await service.list_modes(session, workflow.id))


@strawberry.type
class WorkflowQuery:
    @strawberry.field(permission_classes=[allow("Query.userGroups")], description="Every user group, by name.")
    async def user_groups(self, info: strawberry.Info) -> list[UserGroup]:
        async with info.context.runtime.reading() as session:
            groups = await service.list_groups(session)
            members = await service.group_members(session, [g.id for g in groups])
        return [UserGroup.of(g, members[g.id]) for g in groups]

    @strawberry.field(permission_classes=[allow("Query.workflows")], description="Every workflow, by code.")
    async def workflows(self, info: strawberry.Info) -> list[Workflow]:
        async with info.context.runtime.reading() as session:
            return [await _workflow(session, w) for w in await service.list_workflows(session)]


@strawberry.type
class WorkflowMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.userGroupCreate")])
    async def user_group_create(self, info: strawberry.Info, input: UserGroupCreateInput) -> UserGroupPayload:
        async def work(session):
            group = await service.create_group(
                session,
                actor=info.context.actor,
                name=input.name,
                description=input.description,
                member_ids=[db_id(m, "User", f"memberIds.{i}") for i, m in enumerate(input.member_ids)],
                **_refs(input, _GROUP_REFS, only_set=False),
            )
            return await _group(session, group)

        return await mutate(info, UserGroupPayload, work, lambda group: {"user_group": group})

    @strawberry.mutation(permission_classes=[allow("Mutation.userGroupUpdate")])
    async def user_group_update(self, info: strawberry.Info, input: UserGroupUpdateInput) -> UserGroupPayload:
        async def work(session):
            changes = _refs(input, _GROUP_REFS, only_set=True)
            if input.description is not strawberry.UNSET:
                changes["description"] = input.description
            members = input.member_ids
            group = await service.update_group(
                session,
                actor=info.context.actor,
                group_id=db_id(input.id, "UserGroup", "id"),
                name=input.name,
                member_ids=None
                if members is None
                else [db_id(m, "User", f"memberIds.{i}") for i, m in enumerate(members)],
                **changes,
            )
            return await _group(session, group)

        return await mutate(info, UserGroupPayload, work, lambda group: {"user_group": group})

    @strawberry.mutation(
        permission_classes=[allow("Mutation.userGroupDelete")], description="Remove a group no workflow names."
    )
    async def user_group_delete(self, info: strawberry.Info, input: SlaConfigDeleteInput) -> SlaConfigDeletePayload:
        return await mutate(
            info,
            SlaConfigDeletePayload,
            lambda session: service.delete_group(
                session, actor=info.context.actor, group_id=db_id(input.id, "UserGroup", "id")
            ),
            lambda _: {"deleted_id": input.id},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.workflowCreate")])
    async def workflow_create(self, info: strawberry.Info, input: WorkflowCreateInput) -> WorkflowPayload:
        async def work(session):
            workflow = await service.create_workflow(
                session,
                actor=info.context.actor,
                code=input.code,
                description=input.description,
                escalation=input.escalation.value,
                **_refs(input, _WORKFLOW_REFS, only_set=False),
            )
            return await _workflow(session, workflow)

        return await mutate(info, WorkflowPayload, work, lambda workflow: {"workflow": workflow})

    @strawberry.mutation(permission_classes=[allow("Mutation.workflowUpdate")])
    async def workflow_update(self, info: strawberry.Info, input: WorkflowUpdateInput) -> WorkflowPayload:
        async def work(session):
            changes = _refs(input, _WORKFLOW_REFS, only_set=True)
            if input.description is not strawberry.UNSET:
                changes["description"] = input.description
            workflow = await service.update_workflow(
                session,
                actor=info.context.actor,
                workflow_id=db_id(input.id, "Workflow", "id"),
                code=input.code,
                escalation=input.escalation.value if input.escalation else None,
                **changes,
            )
            return await _workflow(session, workflow)

        return await mutate(info, WorkflowPayload, work, lambda workflow: {"workflow": workflow})

    @strawberry.mutation(
        permission_classes=[allow("Mutation.workflowDelete")],
        description="Remove a workflow; its cases stay, without one.",
    )
    async def workflow_delete(self, info: strawberry.Info, input: SlaConfigDeleteInput) -> SlaConfigDeletePayload:
        return await mutate(
            info,
            SlaConfigDeletePayload,
            lambda session: service.delete_workflow(
                session, actor=info.context.actor, workflow_id=db_id(input.id, "Workflow", "id")
            ),
            lambda _: {"deleted_id": input.id},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.workflowModeSet")],
        description="Set a user's mode on a workflow: creator (opens its cases), resolver (resolves them) or both.",
    )
    async def workflow_mode_set(self, info: strawberry.Info, input: WorkflowModeSetInput) -> WorkflowPayload:
        async def work(session):
            workflow_id = db_id(input.workflow_id, "Workflow", "workflowId")
            await service.set_mode(
                session,
                actor=info.context.actor,
                workflow_id=workflow_id,
                user_id=db_id(input.user_id, "User", "userId"),
                mode=input.mode.value if input.mode else None,
            )
            workflow = await service.get_workflow(session, workflow_id)
            return await _workflow(session, workflow)

        return await mutate(info, WorkflowPayload, work, lambda workflow: {"workflow": workflow})

"""Workflows: user groups in regions, workflows and the users' modes on them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.models import ESCALATION_ACTIONS, USER_MODES
from schema.enums import values_enum
from schema.errors import UserError
from schema.ids import to_global_id
from schema.node import Node

UserMode = values_enum("UserMode", USER_MODES, "A user's rights on a workflow: open its cases, resolve them, or both.")
EscalationAction = values_enum(
    "EscalationAction",
    ESCALATION_ACTIONS,
    "What a breach does: notify the escalator group, or also hand the case to it.",
)


def _gid(type_name: str, db_id: int | None) -> strawberry.ID | None:
    return None if db_id is None else strawberry.ID(to_global_id(type_name, db_id))


@strawberry.type(description="A team of users working in one region (its time zone and calendar).")
class UserGroup(Node):
    db_id: strawberry.Private[int]
    name: str
    description: str | None
    region_id: strawberry.ID | None
    pool_id: strawberry.ID | None = strawberry.field(
        description="Where cases escalated to the group by assignment wait."
    )
    member_ids: list[strawberry.ID]
    created_at: datetime

    @classmethod
    def of(cls, row: Any, member_ids: list[int]) -> UserGroup:
        return super().from_row(
            row,
            region_id=_gid("Region", row.region_id),
            pool_id=_gid("Pool", row.pool_id),
            member_ids=[to_global_id("User", m) for m in member_ids],
        )


@strawberry.input
class UserGroupCreateInput:
    name: str
    description: str | None = None
    region_id: strawberry.ID | None = None
    pool_id: strawberry.ID | None = None
    member_ids: list[strawberry.ID] = strawberry.field(default_factory=list)


@strawberry.input
class UserGroupUpdateInput:
    id: strawberry.ID
    name: str | None = None
    description: str | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    region_id: strawberry.ID | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    pool_id: strawberry.ID | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    member_ids: list[strawberry.ID] | None = strawberry.field(default=None, description="Replaces all members.")


@strawberry.type
class UserGroupPayload:
    user_group: UserGroup | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(description="A user's mode on a workflow.")
class WorkflowUserMode:
    user_id: strawberry.ID
    mode: UserMode


@strawberry.type(description="A kind of case: who opens it, who resolves it, who receives its escalations, its TAT.")
class Workflow(Node):
    db_id: strawberry.Private[int]
    code: str
    description: str | None
    creator_group_id: strawberry.ID | None
    resolver_group_id: strawberry.ID | None
    escalator_group_id: strawberry.ID | None
    tat_policy_id: strawberry.ID | None
    default_pool_id: strawberry.ID | None
    case_template_id: strawberry.ID | None = strawberry.field(
        description="The template its cases open from, unless a case names another."
    )
    escalation: EscalationAction
    modes: list[WorkflowUserMode] = strawberry.field(
        description="Users' own modes; a user without one has the rights of their groups."
    )
    created_at: datetime

    @classmethod
    def of(cls, row: Any, modes: list[Any]) -> Workflow:
        return super().from_row(
            row,
            creator_group_id=_gid("UserGroup", row.creator_group_id),
            resolver_group_id=_gid("UserGroup", row.resolver_group_id),
            escalator_group_id=_gid("UserGroup", row.escalator_group_id),
            tat_policy_id=_gid("TatPolicy", row.tat_policy_id),
            default_pool_id=_gid("Pool", row.default_pool_id),
            case_template_id=_gid("CaseTemplate", row.case_template_id),
            escalation=EscalationAction(row.escalation),
            modes=[WorkflowUserMode(user_id=to_global_id("User", m.user_id), mode=UserMode(m.mode)) for m in modes],
        )


@strawberry.input
class WorkflowCreateInput:
    code: str
    description: str | None = None
    creator_group_id: strawberry.ID | None = None
    resolver_group_id: strawberry.ID | None = None
    escalator_group_id: strawberry.ID | None = None
    tat_policy_id: strawberry.ID | None = None
    default_pool_id: strawberry.ID | None = None
    case_template_id: strawberry.ID | None = None
    escalation: EscalationAction = EscalationAction.NOTIFY


@strawberry.input
class WorkflowUpdateInput:
    id: strawberry.ID
    code: str | None = None
    description: str | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    creator_group_id: strawberry.ID | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    resolver_group_id: strawberry.ID | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    escalator_group_id: strawberry.ID | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    tat_policy_id: strawberry.ID | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    default_pool_id: strawberry.ID | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    case_template_id: strawberry.ID | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    escalation: EscalationAction | None = None


@strawberry.type
class WorkflowPayload:
    workflow: Workflow | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class WorkflowModeSetInput:
    workflow_id: strawberry.ID
    user_id: strawberry.ID
    mode: UserMode | None = strawberry.field(description="null removes it: the user's groups decide again.")

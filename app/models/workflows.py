"""Workflows: user groups in regions, workflows with creator, resolver and escalator groups, and user modes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, one_of, pk, updated_at

USER_MODES = ("creator", "resolver", "both")
ESCALATION_ACTIONS = ("notify", "assign")


class UserGroup(Base):
    """A team of users working in one region (seed 002)."""

    __tablename__ = "user_groups"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id", ondelete="SET NULL"))
    # Where cases escalated to this group by assignment wait for its members.
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (Index("ix_user_groups_region_id", "region_id"),)


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("user_groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (Index("ix_group_members_user_id", "user_id"),)


class Workflow(Base):
    """A kind of case (seed 002): who opens it, who resolves it, who receives its escalations, and its TAT."""

    __tablename__ = "workflows"

    id: Mapped[int] = pk()
    code: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    creator_group_id: Mapped[int | None] = mapped_column(ForeignKey("user_groups.id", ondelete="SET NULL"))
    resolver_group_id: Mapped[int | None] = mapped_column(ForeignKey("user_groups.id", ondelete="SET NULL"))
    escalator_group_id: Mapped[int | None] = mapped_column(ForeignKey("user_groups.id", ondelete="SET NULL"))
    tat_policy_id: Mapped[int | None] = mapped_column(ForeignKey("tat_policies.id", ondelete="SET NULL"))
    default_pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id", ondelete="SET NULL"))
    # The template its cases open from (defaults and form), unless a case names another.
    case_template_id: Mapped[int | None] = mapped_column(ForeignKey("case_templates.id", ondelete="SET NULL"))
    # What a breach does for the escalator group: notify its members, or also hand the case to it.
    escalation: Mapped[str] = mapped_column(String(8), nullable=False, server_default="notify")
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (CheckConstraint(one_of("escalation", ESCALATION_ACTIONS), name="escalation"),)


class WorkflowMode(Base):
    """A user's rights on one workflow: creator (opens its cases), resolver (closes them) or both."""

    __tablename__ = "workflow_modes"

    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    mode: Mapped[str] = mapped_column(String(8), nullable=False)

    __table_args__ = (
        CheckConstraint(one_of("mode", USER_MODES), name="mode"),
        Index("ix_workflow_modes_user_id", "user_id"),
    )

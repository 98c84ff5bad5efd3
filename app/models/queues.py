"""Queues: pools are themed queues that cases land in and agents serve; members serve them with a
priority of their own; absences hand an agent's work to a replacement for a while."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy import text as sql
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, one_of, pk, updated_at

# What an agent's reply does to the case's status (seed 004: it now waits on the customer);
# "keep" leaves the status alone.
REPLY_STATUSES = ("pending", "keep")


class Pool(Base):
    """A themed queue (seed 004: mailboxes are combined into theme-specific pools)."""

    __tablename__ = "pools"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql("0"))
    # The receipt its mailboxes send when a mail opens a case, unless a mailbox has its own.
    auto_response_subject: Mapped[str | None] = mapped_column(Text)
    auto_response_text: Mapped[str | None] = mapped_column(Text)
    reply_status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="pending")
    # A customer's new contact on a case closed at most this many days ago reopens it.
    reopen_within_days: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql("14"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        CheckConstraint(one_of("reply_status", REPLY_STATUSES), name="reply_status"),
        CheckConstraint("reopen_within_days >= 0", name="reopen_within_days"),
    )


class PoolMember(Base):
    """An agent who serves a pool; `caseNext` serves the agent's higher-priority pools first."""

    __tablename__ = "pool_members"

    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql("0"))
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (Index("ix_pool_members_user_id", "user_id"),)


class Absence(Base):
    """A period an agent is away, and who covers their cases meanwhile (seed 004)."""

    __tablename__ = "absences"

    id: Mapped[int] = pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    replacement_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="period"),
        Index("ix_absences_user_id_ends_at", "user_id", "ends_at"),
        Index("ix_absences_replacement_id_ends_at", "replacement_id", "ends_at"),
    )

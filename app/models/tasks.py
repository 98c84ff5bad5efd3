"""Tasks and follow-ups (seed 001): a call, email, meeting or chat to make, on a customer or a case,
with a due time and a reminder for its assignee."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String, Text
from sqlalchemy import text as sql
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, one_of, pk, updated_at

TASK_KINDS = ("call", "email", "meeting", "chat", "other")
# Open tasks are to do; completed ones were done (and may be reopened); cancelled ones will not be.
TASK_STATUSES = ("open", "completed", "cancelled")


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = pk()
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="open")
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    notes: Mapped[str | None] = mapped_column(Text)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    assignee_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The reminder is due at remind_at and went out at reminded_at: the worker claims due,
    # unreminded rows and marks them in the transaction that emits the reminder, so it fires
    # once whatever the number of workers and restarts. A new remind_at clears reminded_at.
    remind_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        CheckConstraint(one_of("kind", TASK_KINDS), name="kind"),
        CheckConstraint(one_of("status", TASK_STATUSES), name="status"),
        CheckConstraint("customer_id IS NOT NULL OR case_id IS NOT NULL", name="on_customer_or_case"),
        # myTasks: an assignee's tasks, soonest due first (no due time last).
        Index("ix_tasks_assignee_due", "assignee_id", "due_at", "id"),
        # Everyone's open tasks by due time: a supervisor's view of what is late.
        Index("ix_tasks_open_due", "due_at", "id", postgresql_where=sql("status = 'open'")),
        Index("ix_tasks_customer_due", "customer_id", "due_at", "id", postgresql_where=sql("customer_id IS NOT NULL")),
        Index("ix_tasks_case_due", "case_id", "due_at", "id", postgresql_where=sql("case_id IS NOT NULL")),
        # The reminder cron reads only the armed reminders of open tasks.
        Index(
            "ix_tasks_reminders_due",
            "remind_at",
            postgresql_where=sql("remind_at IS NOT NULL AND reminded_at IS NULL AND status = 'open'"),
        ),
    )

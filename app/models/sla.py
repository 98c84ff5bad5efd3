"""SLA: turnaround-time (TAT) policies with targets per priority, and each case's deadlines and marks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy import text as sql
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, one_of, pk, updated_at
from app.models.cases import PRIORITIES

TAT_TARGETS = ("response", "resolution")
SLA_STAGES = ("warning", "breach")


class TatPolicy(Base):
    """A turnaround-time policy: per priority, how long a first response and a resolution may take."""

    __tablename__ = "tat_policies"

    id: Mapped[int] = pk()
    code: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    # Which waiting states stop the clock (seed 004: waiting on the customer is not the centre's time).
    pause_pending_customer: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("true"))
    pause_under_consultation: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("false"))
    # The policy of cases whose workflow names none (at most one policy is the default).
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("false"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (Index("uq_tat_policies_default", "is_default", unique=True, postgresql_where=sql("is_default")),)


class TatTarget(Base):
    """One target of a policy: for a priority, the first response or the resolution, in business minutes.
    The maximum is the deadline; the minimum is the warning point."""

    __tablename__ = "tat_targets"

    policy_id: Mapped[int] = mapped_column(ForeignKey("tat_policies.id", ondelete="CASCADE"), primary_key=True)
    priority: Mapped[str] = mapped_column(String(16), primary_key=True)
    target: Mapped[str] = mapped_column(String(16), primary_key=True)
    minimum_minutes: Mapped[int | None] = mapped_column(Integer)
    maximum_minutes: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (
        CheckConstraint(one_of("priority", PRIORITIES), name="priority"),
        CheckConstraint(one_of("target", TAT_TARGETS), name="target"),
        CheckConstraint("maximum_minutes > 0", name="maximum_positive"),
        CheckConstraint(
            "minimum_minutes IS NULL OR (minimum_minutes >= 0 AND minimum_minutes <= maximum_minutes)",
            name="minimum_within_maximum",
        ),
    )


class CaseSla(Base):
    """A case's clock: its policy and region, its deadlines, and which warnings and breaches were marked.

    Deadlines are `started_at` plus the target plus the business time spent paused. The sweep reads
    only rows whose `next_check_at` has passed (a partial index), so its cost follows the due cases.
    """

    __tablename__ = "case_slas"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("tat_policies.id", ondelete="SET NULL"))
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    paused_seconds: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=sql("0"))
    first_responded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    response_warn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    response_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_warn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    response_warned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    response_breached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_warned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_breached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalated_group_id: Mapped[int | None] = mapped_column(ForeignKey("user_groups.id", ondelete="SET NULL"))
    # When the sweep next looks at the clock: set by a trigger (migration 0013) on every write, so
    # that no change can leave it stale.
    next_check_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        Index("ix_case_slas_next_check_at", "next_check_at", postgresql_where=sql("next_check_at IS NOT NULL")),
        Index("ix_case_slas_policy_id", "policy_id"),
        Index("ix_case_slas_region_id", "region_id"),
    )

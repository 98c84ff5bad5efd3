"""Cases and the customers they concern."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, Sequence, String, Text
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, human_number, json_object, one_of, pk, updated_at

case_reference_seq = Sequence("case_reference_seq")

CASE_STATUSES = ("new", "open", "pending", "consultation", "resolved", "closed")
# Finished cases can be reopened, and are the ones archive rules look at; the others are open.
FINISHED_CASE_STATUSES = ("resolved", "closed")
OPEN_CASE_STATUSES = tuple(s for s in CASE_STATUSES if s not in FINISHED_CASE_STATUSES)
PRIORITIES = ("low", "normal", "high", "urgent")
# The stages of seed 004's workflow that the fine-grained statuses belong to: a case is received,
# worked on, under consultation (waiting on a colleague or expert), pending the customer, or closed.
STATUS_CATEGORIES = ("received", "in_progress", "under_consultation", "pending_customer", "closed")
CATEGORY_OF_STATUS = {
    "new": "received",
    "open": "in_progress",
    "consultation": "under_consultation",
    "pending": "pending_customer",
    "resolved": "closed",
    "closed": "closed",
}


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = pk()
    reference: Mapped[str] = human_number("CASE-", "case_reference_seq")
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="new")
    # Why the case is in its status (a code of the status's category); history keeps the code.
    reason_code: Mapped[str | None] = mapped_column(ForeignKey("reason_codes.code"))
    priority: Mapped[str] = mapped_column(String(16), nullable=False, server_default="normal")
    severity: Mapped[str | None] = mapped_column(String(16))
    fields: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=sql("'{}'"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The queue the case waits in (a case opened by mail lands in its mailbox's pool).
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id", ondelete="SET NULL"))
    # Since when the case waits in its pool for an agent; kept by the database (migration 0011):
    # set when a live, unfinished case is in a pool without an assignee, cleared otherwise.
    waiting_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The template the case was opened from: its form validates the case's fields.
    template_id: Mapped[int | None] = mapped_column(ForeignKey("case_templates.id"))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()
    # Set when archive expiry (or an erasure) anonymised the case, so the sweep does not do it again.
    anonymised_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(one_of("status", CASE_STATUSES), name="status"),
        CheckConstraint(one_of("priority", PRIORITIES), name="priority"),
        CheckConstraint(json_object("fields"), name="fields_object"),
        Index("ix_cases_status_id", "status", "id"),
        Index("ix_cases_assignee_id_id", "assignee_id", "id"),
        Index("ix_cases_parent_id", "parent_id"),
        Index("ix_cases_pool_id_id", "pool_id", "id", postgresql_where=sql("pool_id IS NOT NULL")),
        # caseNext: the oldest waiting case of a pool is the first entry of its range.
        Index("ix_cases_waiting", "pool_id", "waiting_since", "id", postgresql_where=sql("waiting_since IS NOT NULL")),
        # EXTERNAL_REFERENCE recognition looks cases up by a custom field (`fields @> ...`).
        Index("ix_cases_fields", "fields", postgresql_using="gin", postgresql_ops={"fields": "jsonb_path_ops"}),
        # A reason code or template in use cannot be deleted: these find the use.
        Index("ix_cases_reason_code", "reason_code", postgresql_where=sql("reason_code IS NOT NULL")),
        Index("ix_cases_template_id", "template_id", postgresql_where=sql("template_id IS NOT NULL")),
        Index("ix_cases_merged_into_id", "merged_into_id", postgresql_where=sql("merged_into_id IS NOT NULL")),
        # The archive sweep reads only the inactive rows, then only the archived ones not yet
        # anonymised (an anonymised case leaves the index the expiry sweep reads).
        Index(
            "ix_cases_inactive",
            "updated_at",
            "id",
            postgresql_where=sql(
                f"archived_at IS NULL AND merged_into_id IS NULL AND {one_of('status', FINISHED_CASE_STATUSES)}"
            ),
        ),
        Index(
            "ix_cases_archived_at",
            "archived_at",
            "id",
            postgresql_where=sql("archived_at IS NOT NULL AND anonymised_at IS NULL"),
        ),
    )


class CaseCustomer(Base):
    """Links a case to each customer it concerns; exactly one link per case is primary."""

    __tablename__ = "case_customers"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    is_primary: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("false"))
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (
        Index("ix_case_customers_customer_case", "customer_id", "case_id"),
        Index("uq_case_customers_primary", "case_id", unique=True, postgresql_where=sql("is_primary")),
    )

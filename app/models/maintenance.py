"""Maintenance: the customer-merge journal (what moved, so it can be undone) and archive rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, pk

FIELD_STRATEGIES = ("survivor_wins", "fill_empty")
# What a journal entry records: a contact, a case link or an identifier that moved (or was
# dropped as a duplicate of one the survivor already had), a survivor link promoted to
# primary, an older tombstone re-pointed at the survivor, or a contact's candidate list that
# named a duplicate.
MERGE_ENTRY_KINDS = ("contact", "case_link", "case_primary", "identifier", "tombstone", "candidates")
ARCHIVE_ENTITIES = ("customer", "case")
EXPIRY_ACTIONS = ("delete", "anonymise")


class CustomerMerge(Base):
    """One customer merge: survivor, duplicates, and their state before the merge."""

    __tablename__ = "customer_merges"

    id: Mapped[int] = pk()
    survivor_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), nullable=False)
    duplicate_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), nullable=False)
    field_strategy: Mapped[str] = mapped_column(String(16), nullable=False)
    # survivor: {name, fields, lastActivityAt} before and after; duplicates: {id: {status, archivedAt}}
    survivor_before: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    survivor_after: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    duplicates_before: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=sql("'{}'"))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = created_at()
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    undone_by: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("field_strategy IN ('survivor_wins', 'fill_empty', 'picks')", name="field_strategy"),
        Index("ix_customer_merges_survivor_id", "survivor_id", sql("id DESC")),
    )


class CustomerMergeEntry(Base):
    """One row a merge moved or dropped; undo replays these in reverse, set-based."""

    __tablename__ = "customer_merge_entries"

    merge_id: Mapped[int] = mapped_column(
        ForeignKey("customer_merges.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    row_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    from_customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    was_primary: Mapped[bool | None] = mapped_column(Boolean)
    dropped: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("false"))
    identifier_kind: Mapped[str | None] = mapped_column(String(16))
    identifier_value: Mapped[str | None] = mapped_column(Text)
    # kind 'candidates': the contact's candidate list before the merge rewrote it.
    previous_candidate_ids: Mapped[list[int] | None] = mapped_column(ARRAY(BigInteger))


class ArchiveRule(Base):
    """When records leave the working set, which are exempt, and what happens when retention ends."""

    __tablename__ = "archive_rules"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    entity: Mapped[str] = mapped_column(String(16), nullable=False)
    inactivity_days: Mapped[int] = mapped_column(Integer, nullable=False)
    # Records whose custom fields contain this JSON object (jsonb @>) are kept, e.g. {"vip": true}.
    exempt_when: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    retention_days: Mapped[int | None] = mapped_column(Integer)
    expiry_action: Mapped[str] = mapped_column(String(16), nullable=False, server_default="anonymise")
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("true"))
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (
        CheckConstraint("entity IN ('customer', 'case')", name="entity"),
        CheckConstraint("expiry_action IN ('delete', 'anonymise')", name="expiry_action"),
        CheckConstraint("inactivity_days >= 0", name="inactivity_days"),
        CheckConstraint("retention_days IS NULL OR retention_days >= 0", name="retention_days"),
    )


# The maintenance work owns these additions to tables defined in app.models.core and app.models.recognition.
from sqlalchemy import Column  # noqa: E402

from app.models import recognition as _recognition  # noqa: E402,F401  (defines Contact.candidate_customer_ids)
from app.models.core import Case, Contact  # noqa: E402

# Set when archive expiry (or an erasure) anonymised the case, so the sweep does not do it again.
Case.anonymised_at = Column("anonymised_at", DateTime(timezone=True))
Index(
    "ix_cases_archived_at", Case.archived_at, Case.id,
    postgresql_where=sql("archived_at IS NOT NULL AND anonymised_at IS NULL"),
)
Index(
    "ix_contacts_candidate_customer_ids", Contact.candidate_customer_ids, postgresql_using="gin",
    postgresql_where=sql("candidate_customer_ids <> '{}'"),
)

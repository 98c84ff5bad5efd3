"""Customers, their identifiers, and the customer-merge journal (what moved, so it can be undone)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Index, Sequence, String, Text
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, human_number, json_object, one_of, pk, updated_at

customer_number_seq = Sequence("customer_number_seq")

CUSTOMER_STATUSES = ("active", "merged", "archived", "erased")
IDENTIFIER_KINDS = ("email", "phone", "account_id", "external_ref")
FIELD_STRATEGIES = ("survivor_wins", "fill_empty")


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = pk()
    number: Mapped[str] = human_number("C-", "customer_number_seq")
    name: Mapped[str | None] = mapped_column(Text)
    fields: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=sql("'{}'"))
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="active")
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    last_activity_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        CheckConstraint(one_of("status", CUSTOMER_STATUSES), name="status"),
        CheckConstraint(json_object("fields"), name="fields_object"),
        Index("ix_customers_status_id", "status", "id"),
        # FIELD_MATCH recognition looks customers up by a custom field (`fields @> ...`).
        Index("ix_customers_fields", "fields", postgresql_using="gin", postgresql_ops={"fields": "jsonb_path_ops"}),
        # customerDuplicates: similar names by trigram similarity.
        Index("ix_customers_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"}),
        # customerSearch: names folded (lower case, no accents) by trigram similarity.
        Index(
            "ix_customers_name_folded",
            sql("casegraph_fold(name) gin_trgm_ops"),
            postgresql_using="gin",
        ),
        # customerSearch: the holders of a folded name, in order (migration 0023).
        Index("ix_customers_folded_name", sql("casegraph_fold(name)"), "id"),
        # Re-pointing older tombstones at a new survivor touches only those rows.
        Index("ix_customers_merged_into_id", "merged_into_id", postgresql_where=sql("merged_into_id IS NOT NULL")),
        # The archive sweep reads only the inactive (then only the expired) rows, not the table.
        Index(
            "ix_customers_inactive",
            sql("coalesce(last_activity_at, created_at)"),
            "id",
            postgresql_where=sql("status = 'active'"),
        ),
        Index("ix_customers_archived_at", "archived_at", "id", postgresql_where=sql("status = 'archived'")),
    )


class CustomerIdentifier(Base):
    """An email, phone, account id or external reference; not unique across customers."""

    __tablename__ = "customer_identifiers"

    id: Mapped[int] = pk()
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (
        CheckConstraint(one_of("kind", IDENTIFIER_KINDS), name="kind"),
        Index("uq_customer_identifiers_customer_kind_value", "customer_id", "kind", "value", unique=True),
        Index("ix_customer_identifiers_kind_value", "kind", "value"),
        # customerSearch: a phone typed without its country code matches the end of the E.164 value.
        Index(
            "ix_customer_identifiers_phone_reversed",
            sql("reverse(value) text_pattern_ops"),
            postgresql_where=sql("kind = 'phone'"),
        ),
    )


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
        # "picks": the merge took some values customer by customer.
        CheckConstraint(one_of("field_strategy", (*FIELD_STRATEGIES, "picks")), name="field_strategy"),
        Index("ix_customer_merges_survivor_id", "survivor_id", sql("id DESC")),
    )


class CustomerMergeEntry(Base):
    """One row a merge moved or dropped; undo replays these in reverse, set-based."""

    __tablename__ = "customer_merge_entries"

    merge_id: Mapped[int] = mapped_column(ForeignKey("customer_merges.id", ondelete="CASCADE"), primary_key=True)
    # What moved (or was dropped as a duplicate of one the survivor already had): a 'contact', a
    # 'case_link' or an 'identifier'; a survivor link promoted to primary ('case_primary'), an older
    # 'tombstone' re-pointed at the survivor, or a contact's 'candidates' list that named a duplicate.
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    row_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    from_customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    was_primary: Mapped[bool | None] = mapped_column(Boolean)
    dropped: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("false"))
    identifier_kind: Mapped[str | None] = mapped_column(String(16))
    identifier_value: Mapped[str | None] = mapped_column(Text)
    # kind 'candidates': the contact's candidate list before the merge rewrote it.
    previous_candidate_ids: Mapped[list[int] | None] = mapped_column(ARRAY(BigInteger))

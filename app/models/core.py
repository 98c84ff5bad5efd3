"""The customer–case–contact graph, its users, tokens and audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Sequence,
    String,
    Text,
    func,
)
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, pk

customer_number_seq = Sequence("customer_number_seq")
case_reference_seq = Sequence("case_reference_seq")

CUSTOMER_STATUSES = ("active", "merged", "archived", "erased")
CASE_STATUSES = ("new", "open", "pending", "consultation", "resolved", "closed")
IDENTIFIER_KINDS = ("email", "phone", "account_id", "external_ref")
CHANNELS = ("email", "phone", "chat", "sms", "web", "social", "note")
DIRECTIONS = ("inbound", "outbound", "internal")
ROLES = ("agent", "supervisor", "admin", "integrator")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class User(Base):
    """An agent, supervisor, administrator or integration account."""

    __tablename__ = "users"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    email: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("true"))
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    # sha256 of a 256-bit random secret: the secret itself is shown once and never stored
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = created_at()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = pk()
    number: Mapped[str] = mapped_column(
        Text,
        nullable=False,
        unique=True,
        server_default=sql("human_number('C-', nextval('customer_number_seq'))"),
    )
    name: Mapped[str | None] = mapped_column(Text)
    fields: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=sql("'{}'"))
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="active")
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    last_activity_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )

    __table_args__ = (
        CheckConstraint(_in("status", CUSTOMER_STATUSES), name="status"),
        Index("ix_customers_status_id", "status", "id"),
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
        CheckConstraint(_in("kind", IDENTIFIER_KINDS), name="kind"),
        Index("uq_customer_identifiers_customer_kind_value", "customer_id", "kind", "value", unique=True),
        Index("ix_customer_identifiers_kind_value", "kind", "value"),
    )


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = pk()
    reference: Mapped[str] = mapped_column(
        Text,
        nullable=False,
        unique=True,
        server_default=sql("human_number('CASE-', nextval('case_reference_seq'))"),
    )
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="new")
    reason_code: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(String(16), nullable=False, server_default="normal")
    severity: Mapped[str | None] = mapped_column(String(16))
    fields: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=sql("'{}'"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )

    __table_args__ = (
        CheckConstraint(_in("status", CASE_STATUSES), name="status"),
        CheckConstraint(_in("priority", ("low", "normal", "high", "urgent")), name="priority"),
        Index("ix_cases_status_id", "status", "id"),
        Index("ix_cases_assignee_id_id", "assignee_id", "id"),
        Index("ix_cases_parent_id", "parent_id"),
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


class Contact(Base):
    """One interaction: an email, call, chat, SMS, web form or note."""

    __tablename__ = "contacts"

    id: Mapped[int] = pk()
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    direction: Mapped[str] = mapped_column(String(16), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    subject: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    from_address: Mapped[str | None] = mapped_column(Text)
    to_addresses: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default=sql("'[]'"))
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=sql("'{}'"))
    message_id: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=sql("'{}'"))
    recognition: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    needs_review: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("false"))
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
        Index("ix_contacts_customer_history", "customer_id", sql("occurred_at DESC"), sql("id DESC")),
        Index("ix_contacts_case_history", "case_id", sql("occurred_at DESC"), sql("id DESC")),
        Index(
            "uq_contacts_source_external_id",
            "source",
            "external_id",
            unique=True,
            postgresql_where=sql("external_id IS NOT NULL"),
        ),
        Index("ix_contacts_message_id", "message_id", postgresql_where=sql("message_id IS NOT NULL")),
        Index("ix_contacts_needs_review", "id", postgresql_where=sql("needs_review")),
    )


class AuditEvent(Base):
    """One change made through the API or a job, written in the same transaction."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(Text, nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    entity_type: Mapped[str] = mapped_column(String(32), nullable=False)
    entity_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (Index("ix_audit_events_entity", "entity_type", "entity_id", sql("id DESC")),)

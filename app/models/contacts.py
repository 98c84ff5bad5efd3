"""Contacts: one interaction each (an email, call, chat, SMS, web form or note)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, json_object, one_of, pk

CHANNELS = ("email", "phone", "chat", "sms", "web", "social", "note")
DIRECTIONS = ("inbound", "outbound", "internal")


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
    # A contact whose sender matched several customers keeps them here for an agent to choose.
    candidate_customer_ids: Mapped[list[int]] = mapped_column(
        ARRAY(BigInteger), nullable=False, server_default=sql("'{}'")
    )

    __table_args__ = (
        CheckConstraint(one_of("channel", CHANNELS), name="channel"),
        CheckConstraint(one_of("direction", DIRECTIONS), name="direction"),
        CheckConstraint(json_object("headers"), name="headers_object"),
        CheckConstraint(json_object("payload"), name="payload_object"),
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
        # A merge or erasure rewrites the candidate lists naming a customer without reading every contact.
        Index(
            "ix_contacts_candidate_customer_ids",
            "candidate_customer_ids",
            postgresql_using="gin",
            postgresql_where=sql("candidate_customer_ids <> '{}'"),
        ),
    )


class Blob(Base):
    """Content stored once by its SHA-256, whoever refers to it (see app.blobs)."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(Text, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = created_at()


class Attachment(Base):
    """A file that came with a contact (an email attachment or inline image); its content is a blob."""

    __tablename__ = "attachments"

    id: Mapped[int] = pk()
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), nullable=False)
    filename: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(Text, nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    inline: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("false"))
    content_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (
        Index("ix_attachments_contact_id", "contact_id", "id"),
        Index("ix_attachments_sha256", "sha256"),
    )

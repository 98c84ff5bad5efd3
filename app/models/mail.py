"""Mail: supervised mailboxes, and every inbound message as it arrived (stored before it is acknowledged)."""

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
    LargeBinary,
    String,
    Text,
)
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, one_of, pk, updated_at

MAIL_INTAKES = ("imap", "smtp")
MAIL_SECURITY = ("tls", "starttls", "none")
IMAP_MARKS = ("flag", "move")
INBOUND_STATUSES = ("pending", "done")
OUTBOUND_STATUSES = ("queued", "sent", "failed")
# A task reminder is a mail to its assignee; a notification an internal mail to staff about a case
# (an SLA warning or breach).
OUTBOUND_KINDS = ("reply", "auto_response", "task_reminder", "notification")


class Mailbox(Base):
    """A supervised address: its pool, how its mail arrives (IMAP polling or pushed over SMTP), and
    the relay its replies leave through. Secrets are never stored: a mailbox names the
    CASEGRAPH_SECRET_* environment variable that holds each one."""

    __tablename__ = "mailboxes"

    id: Mapped[int] = pk()
    address: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    display_name: Mapped[str | None] = mapped_column(Text)
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id", ondelete="SET NULL"))
    intake: Mapped[str] = mapped_column(String(8), nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("true"))
    imap_host: Mapped[str | None] = mapped_column(Text)
    imap_port: Mapped[int | None] = mapped_column(Integer)
    imap_security: Mapped[str] = mapped_column(String(8), nullable=False, server_default="tls")
    imap_user: Mapped[str | None] = mapped_column(Text)
    imap_secret_env: Mapped[str | None] = mapped_column(Text)
    imap_folder: Mapped[str] = mapped_column(Text, nullable=False, server_default="INBOX")
    imap_mark: Mapped[str] = mapped_column(String(8), nullable=False, server_default="flag")
    imap_move_to: Mapped[str | None] = mapped_column(Text)
    imap_idle: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("false"))
    poll_seconds: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql("60"))
    relay_host: Mapped[str | None] = mapped_column(Text)
    relay_port: Mapped[int | None] = mapped_column(Integer)
    relay_security: Mapped[str] = mapped_column(String(8), nullable=False, server_default="starttls")
    relay_user: Mapped[str | None] = mapped_column(Text)
    relay_secret_env: Mapped[str | None] = mapped_column(Text)
    relay_from: Mapped[str | None] = mapped_column(Text)
    # A receipt sent when a mail opens a case (Jinja2 templates, rendered in a sandbox); the pool's when unset.
    auto_response_subject: Mapped[str | None] = mapped_column(Text)
    auto_response_text: Mapped[str | None] = mapped_column(Text)
    # The signature of replies sent from it (a Jinja2 template with the agent's name, role...); the
    # agent's own signature when unset.
    signature_template: Mapped[str | None] = mapped_column(Text)
    # Where polling stands: UIDs are only comparable within one UIDVALIDITY of the folder.
    imap_uid_validity: Mapped[int | None] = mapped_column(BigInteger)
    imap_last_uid: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=sql("0"))
    last_polled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        CheckConstraint(one_of("intake", MAIL_INTAKES), name="intake"),
        CheckConstraint(one_of("imap_security", MAIL_SECURITY), name="imap_security"),
        CheckConstraint(one_of("relay_security", MAIL_SECURITY), name="relay_security"),
        CheckConstraint(one_of("imap_mark", IMAP_MARKS), name="imap_mark"),
        CheckConstraint("poll_seconds >= 5", name="poll_seconds"),
    )


class InboundMessage(Base):
    """A message exactly as it arrived, stored before the server or sender is told it was taken;
    the intake job turns it into a contact."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = pk()
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailboxes.id", ondelete="SET NULL"))
    via: Mapped[str] = mapped_column(String(8), nullable=False)
    raw: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    sha256: Mapped[str] = mapped_column(Text, nullable=False)
    envelope_from: Mapped[str | None] = mapped_column(Text)
    envelope_to: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default=sql("'[]'"))
    imap_uid_validity: Mapped[int | None] = mapped_column(BigInteger)
    imap_uid: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(8), nullable=False, server_default="pending")
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql("0"))
    # What parsing could not read, as codes (the message is kept and its contact flagged).
    problems: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default=sql("'[]'"))
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = created_at()
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(one_of("via", MAIL_INTAKES), name="via"),
        CheckConstraint(one_of("status", INBOUND_STATUSES), name="status"),
        # A message fetched again after a crash before it was marked is stored once.
        Index(
            "uq_inbound_messages_imap_uid",
            "mailbox_id",
            "imap_uid_validity",
            "imap_uid",
            unique=True,
            postgresql_where=sql("imap_uid IS NOT NULL"),
        ),
        # The sweeper finds what no intake job has taken yet.
        Index("ix_inbound_messages_pending", "id", postgresql_where=sql("status = 'pending'")),
    )


class OutboundMessage(Base):
    """A reply in the outbox: the message exactly as it will be sent (so every retry sends the same
    bytes and Message-ID), its envelope, and how delivery went."""

    __tablename__ = "outbound_messages"

    id: Mapped[int] = pk()
    # The outbound contact on the case; none for a notification to a user (a task reminder).
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailboxes.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16), nullable=False, server_default="reply")
    raw: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    envelope_from: Mapped[str] = mapped_column(Text, nullable=False)
    envelope_to: Mapped[list[str]] = mapped_column(JSONB, nullable=False)
    status: Mapped[str] = mapped_column(String(8), nullable=False, server_default="queued")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql("0"))
    next_attempt_at: Mapped[datetime] = created_at()
    last_response: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (
        CheckConstraint(one_of("status", OUTBOUND_STATUSES), name="status"),
        CheckConstraint(one_of("kind", OUTBOUND_KINDS), name="kind"),
        Index("ix_outbound_messages_contact_id", "contact_id"),
        # Auto-responses are rate-limited per recipient over the last day.
        Index(
            "ix_outbound_messages_auto_responses",
            "created_at",
            postgresql_where=sql("kind = 'auto_response'"),
        ),
        # The sweeper finds queued replies whose send job was lost.
        Index("ix_outbound_messages_queued", "next_attempt_at", postgresql_where=sql("status = 'queued'")),
    )


class ReplyTemplate(Base):
    """A canned reply (a text module): a Jinja2 template an agent answers a case with, for every
    pool (global) or for one."""

    __tablename__ = "reply_templates"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(Text, nullable=False)
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"))
    subject: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    html: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        # One name once among the global templates, and once within each pool.
        Index("uq_reply_templates_global_name", "name", unique=True, postgresql_where=sql("pool_id IS NULL")),
        Index(
            "uq_reply_templates_pool_name", "pool_id", "name", unique=True, postgresql_where=sql("pool_id IS NOT NULL")
        ),
    )

"""Users (agents, supervisors, administrators, integrations) and their API tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, String, Text
from sqlalchemy import text as sql
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, one_of, pk

ROLES = ("agent", "supervisor", "admin", "integrator")


class User(Base):
    """An agent, supervisor, administrator or integration account."""

    __tablename__ = "users"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    # Normalised (lower-cased); the THREAD rule recognises an agent replying by it.
    email: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("true"))
    # Appended to the user's email replies (plain text).
    signature: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (
        CheckConstraint(one_of("role", ROLES), name="role"),
        Index("uq_users_email", "email", unique=True),
    )


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = pk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    # sha256 of a 256-bit random secret: the secret itself is shown once and never stored
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = created_at()
    # Written at most once a minute per token, not per request.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_api_tokens_user_id", "user_id"),)

"""Queues: pools are themed queues that cases land in and agents serve."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, Text
from sqlalchemy import text as sql
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, pk, updated_at


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
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

"""The outbox of change events: written in the transaction of the change, so none is lost."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, pk


class EventOutbox(Base):
    """An event not yet published to Redis: deleted once published, right after its commit or,
    when that failed, by the worker's relay."""

    __tablename__ = "event_outbox"

    id: Mapped[int] = pk()
    channel: Mapped[str] = mapped_column(Text, nullable=False)
    body: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = created_at()

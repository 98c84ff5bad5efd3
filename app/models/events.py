"""The outbox of change events: written in the transaction of the change, so none is lost."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, pk


class EventOutbox(Base):
    """The events of one transaction not yet published to Redis: deleted once published, right
    after its commit or, when that failed, by the worker's relay."""

    __tablename__ = "event_outbox"

    id: Mapped[int] = pk()
    events: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)  # bodies, each with topic and key
    created_at: Mapped[datetime] = created_at()

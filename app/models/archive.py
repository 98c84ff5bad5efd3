"""Archive rules: when records leave the working set, and what happens when retention ends."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Integer, String, Text
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, one_of, pk

ARCHIVE_ENTITIES = ("customer", "case")
EXPIRY_ACTIONS = ("delete", "anonymise")


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
        CheckConstraint(one_of("entity", ARCHIVE_ENTITIES), name="entity"),
        CheckConstraint(one_of("expiry_action", EXPIRY_ACTIONS), name="expiry_action"),
        CheckConstraint("inactivity_days >= 0", name="inactivity_days"),
        CheckConstraint("retention_days IS NULL OR retention_days >= 0", name="retention_days"),
    )

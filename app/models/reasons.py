"""Reason codes: why a case is in its status (seed 002), each of one status category."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Integer, String, Text
from sqlalchemy import text as sql
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, one_of, pk, updated_at
from app.models.cases import STATUS_CATEGORIES


class ReasonCode(Base):
    """A code agents pick when a case changes status. Cases store the code, so renaming the
    description changes how every past case reads; a code in use is deactivated, never deleted."""

    __tablename__ = "reason_codes"

    id: Mapped[int] = pk()
    code: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    category: Mapped[str] = mapped_column(String(24), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("true"))
    position: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql("0"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (CheckConstraint(one_of("category", STATUS_CATEGORIES), name="category"),)

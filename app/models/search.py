"""Full-text vectors of cases and contacts for caseSearch, kept by triggers (migration 0010).

They live beside the rows they index, so that reading a case or a contact never carries its vector.
The text-search configuration is the deployment's (`casegraph.text_search_config`, default english).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class CaseSearchVector(Base):
    """A case's subject (weight A) and description (B)."""

    __tablename__ = "case_search_vectors"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    vector: Mapped[Any] = mapped_column(TSVECTOR, nullable=False)

    __table_args__ = (Index("ix_case_search_vectors_vector", "vector", postgresql_using="gin"),)


class ContactSearchVector(Base):
    """The subject (weight B) and text (C) of a contact that belongs to a case."""

    __tablename__ = "contact_search_vectors"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    case_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    vector: Mapped[Any] = mapped_column(TSVECTOR, nullable=False)

    __table_args__ = (
        Index("ix_contact_search_vectors_vector", "vector", postgresql_using="gin"),
        Index("ix_contact_search_vectors_case_id", "case_id"),
    )

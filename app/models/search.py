"""Full-text vectors of cases and contacts for caseSearch, kept by triggers (migration 0010), and
saved search screens.

They live beside the rows they index, so that reading a case or a contact never carries its vector.
The text-search configuration is the deployment's (`casegraph.text_search_config`, default english).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, json_object, one_of, pk, updated_at


class CaseSearchVector(Base):
    """A case's subject (weight A) and description (B)."""

    __tablename__ = "case_search_vectors"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    vector: Mapped[Any] = mapped_column(TSVECTOR, nullable=False)

    __table_args__ = (Index("ix_case_search_vectors_vector", "vector", postgresql_using="gin"),)


class RecentCaseSearchVector(Base):
    """The same vectors of the newest cases only (migration 0024), read first by caseSearch, as the
    newest contacts are."""

    __tablename__ = "recent_case_search_vectors"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    vector: Mapped[Any] = mapped_column(TSVECTOR, nullable=False)

    __table_args__ = (Index("ix_recent_case_search_vectors_vector", "vector", postgresql_using="gin"),)


class CustomerFullName(Base):
    """A folded name some customer holds, kept by a trigger (migration 0023): the names holding a
    word alike each typed one are found here by their words, then their holders by name."""

    __tablename__ = "customer_full_names"

    name: Mapped[str] = mapped_column(Text, primary_key=True)

    __table_args__ = (
        Index(
            "ix_customer_full_names_words",
            sql("casegraph_name_words(name)"),
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        ),
    )


class CustomerNameWord(Base):
    """A word some customer's folded name holds, kept by a trigger (migrations 0021, 0023): the
    words alike a typed one are found here."""

    __tablename__ = "customer_name_words"

    word: Mapped[str] = mapped_column(Text, primary_key=True)

    __table_args__ = (
        Index(
            "ix_customer_name_words_word_trgm",
            "word",
            postgresql_using="gin",
            postgresql_ops={"word": "gin_trgm_ops"},
            postgresql_with={"fastupdate": "off"},
        ),
    )


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


class RecentContactSearchVector(Base):
    """The same vectors of the newest contacts only (migration 0022), read first by caseSearch: the
    postings of two common words stay as short as the recent contacts are few."""

    __tablename__ = "recent_contact_search_vectors"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    case_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    vector: Mapped[Any] = mapped_column(TSVECTOR, nullable=False)

    __table_args__ = (Index("ix_recent_contact_search_vectors_vector", "vector", postgresql_using="gin"),)


SEARCH_TARGETS = ("customer", "case")
SEARCH_SORTS = ("relevance", "newest", "oldest", "last_activity")


class SearchScreen(Base):
    """A saved search (seed 000's configurable search screens): what it searches, its filters, the
    columns a result list shows and its order; a team's (user group) or everyone's (no group)."""

    __tablename__ = "search_screens"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    target: Mapped[str] = mapped_column(String(16), nullable=False)
    # A group with screens cannot be deleted: its screens are moved or deleted first.
    group_id: Mapped[int | None] = mapped_column(ForeignKey("user_groups.id", ondelete="RESTRICT"))
    query: Mapped[str | None] = mapped_column(Text)
    # The filters as stored by app.services.search_screens (database ids; the file names them).
    filters: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=sql("'{}'"))
    columns: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default=sql("'[]'"))
    sort: Mapped[str] = mapped_column(String(16), nullable=False, server_default=sql("'relevance'"))
    position: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql("0"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        CheckConstraint(one_of("target", SEARCH_TARGETS), name="target"),
        CheckConstraint(one_of("sort", SEARCH_SORTS), name="sort"),
        CheckConstraint(json_object("filters"), name="filters_object"),
        CheckConstraint("jsonb_typeof(columns) = 'array'", name="columns_array"),
        Index(
            "uq_search_screens_group_target_name",
            "group_id",
            "target",
            "name",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

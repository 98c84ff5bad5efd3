"""Forms: dictionaries (value lists), case templates, and the field definitions of the customer
profile and of each case template."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, json_object, one_of, pk, updated_at
from app.models.cases import PRIORITIES

FIELD_TYPES = ("text", "number", "date", "boolean", "dropdown", "fixed_format", "email", "phone")


class Dictionary(Base):
    """A named list of values (seed 004): global, or kept by one pool for its own forms."""

    __tablename__ = "dictionaries"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (Index("ix_dictionaries_pool_id", "pool_id", postgresql_where=sql("pool_id IS NOT NULL")),)


class DictionaryEntry(Base):
    """One value of a dictionary; records store the value, forms show the label."""

    __tablename__ = "dictionary_entries"

    id: Mapped[int] = pk()
    dictionary_id: Mapped[int] = mapped_column(ForeignKey("dictionaries.id", ondelete="CASCADE"), nullable=False)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    label: Mapped[str] = mapped_column(Text, nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql("0"))
    # An inactive value is no longer offered, but records holding it keep it.
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("true"))

    __table_args__ = (UniqueConstraint("dictionary_id", "value"),)


class CaseTemplate(Base):
    """A kind of case (seeds 002 and 003): the defaults a new case takes and the form it is filled in with."""

    __tablename__ = "case_templates"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[str | None] = mapped_column(String(16))
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id", ondelete="SET NULL"))
    fields: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=sql("'{}'"))
    # An inactive template opens no new cases; the cases it opened keep it and its form.
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("true"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        CheckConstraint(one_of("priority", PRIORITIES), name="priority"),
        CheckConstraint(json_object("fields"), name="fields_object"),
    )


class FormField(Base):
    """One field of a form: the customer profile's (no template) or a case template's."""

    __tablename__ = "form_fields"

    id: Mapped[int] = pk()
    template_id: Mapped[int | None] = mapped_column(ForeignKey("case_templates.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(Text, nullable=False)
    label: Mapped[str] = mapped_column(Text, nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    mandatory: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("false"))
    help_text: Mapped[str | None] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql("0"))
    # DROPDOWN: its values; a dictionary in use cannot be deleted.
    dictionary_id: Mapped[int | None] = mapped_column(ForeignKey("dictionaries.id", ondelete="RESTRICT"))
    # FIXED_FORMAT: the whole value matches the pattern, else the message is shown.
    pattern: Mapped[str | None] = mapped_column(Text)
    pattern_message: Mapped[str | None] = mapped_column(Text)
    # Searchable: customerSearch / caseSearch filter and match by its values (through the GIN index on
    # the record's `fields`); other keys are refused as search filters.
    searchable: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("false"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        CheckConstraint(one_of("type", FIELD_TYPES), name="type"),
        CheckConstraint("(type = 'dropdown') = (dictionary_id IS NOT NULL)", name="dropdown_dictionary"),
        CheckConstraint("(type = 'fixed_format') = (pattern IS NOT NULL)", name="fixed_format_pattern"),
        # One key per form; the customer form is the one without a template.
        Index("uq_form_fields_template_key", "template_id", "key", unique=True, postgresql_nulls_not_distinct=True),
        Index("ix_form_fields_dictionary_id", "dictionary_id", postgresql_where=sql("dictionary_id IS NOT NULL")),
    )

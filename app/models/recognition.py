"""Recognition configuration: the rules that find a contact's case and customer, the rules that
promote contact data to them, and what each channel does when nothing matches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, Integer, Sequence, SmallInteger, String, Text, func
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, pk
from app.models.core import CHANNELS, _in

RULE_TARGETS = ("case", "customer")
CASE_RULE_KINDS = ("reference_in_text", "thread", "external_reference", "open_case_of_customer")
CUSTOMER_RULE_KINDS = ("identifier", "field_match", "lookup")
RULE_KINDS = CASE_RULE_KINDS + CUSTOMER_RULE_KINDS
PROMOTION_POLICIES = ("fill_empty", "overwrite", "add_identifier")


class RecognitionRule(Base):
    """One way of recognising a contact's case or customer; tried in `position` order."""

    __tablename__ = "recognition_rules"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    target: Mapped[str] = mapped_column(String(16), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=sql("'{}'"))
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    # Empty: every channel.
    channels: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default=sql("'[]'"))
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("true"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )

    __table_args__ = (
        CheckConstraint(_in("target", RULE_TARGETS), name="target"),
        CheckConstraint(_in("kind", RULE_KINDS), name="kind"),
    )


class PromotionRule(Base):
    """Copies one piece of contact data (a field or payload path) to the customer or the case."""

    __tablename__ = "promotion_rules"

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    target: Mapped[str] = mapped_column(String(16), nullable=False)
    # "name" or "fields.<key>" for FILL_EMPTY/OVERWRITE; an identifier kind for ADD_IDENTIFIER.
    field: Mapped[str] = mapped_column(Text, nullable=False)
    policy: Mapped[str] = mapped_column(String(16), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    channels: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default=sql("'[]'"))
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("true"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )

    __table_args__ = (
        CheckConstraint(_in("target", RULE_TARGETS), name="target"),
        CheckConstraint(_in("policy", PROMOTION_POLICIES), name="policy"),
    )


recognition_config_version_seq = Sequence("recognition_config_version_seq")


class RecognitionConfig(Base):
    """One row: a version that changes with every edit of the recognition configuration, so each
    process can keep the rule set in memory and still see an edit from the next contact on."""

    __tablename__ = "recognition_config"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default=sql("1"))
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class NoMatchPolicy(Base):
    """What a channel does with a contact no rule recognised."""

    __tablename__ = "no_match_policies"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    create_customer: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("false"))
    # Applies whenever no case was recognised, for a recognised or a newly created customer.
    create_case: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("false"))
    flag_for_review: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("true"))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )

    __table_args__ = (CheckConstraint(_in("channel", CHANNELS), name="channel"),)


# The recognition work owns these additions to tables defined in app.models.core.
from sqlalchemy import ARRAY, Column, Index  # noqa: E402

from app.models.core import Case, Contact, Customer  # noqa: E402

# A contact whose sender matched several customers keeps them here for an agent to choose.
Contact.candidate_customer_ids = Column(
    "candidate_customer_ids", ARRAY(BigInteger), nullable=False, server_default=sql("'{}'")
)
# FIELD_MATCH and EXTERNAL_REFERENCE look customers and cases up by a custom field (`fields @> ...`).
Index("ix_customers_fields", Customer.fields, postgresql_using="gin", postgresql_ops={"fields": "jsonb_path_ops"})
Index("ix_cases_fields", Case.fields, postgresql_using="gin", postgresql_ops={"fields": "jsonb_path_ops"})

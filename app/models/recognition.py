"""Recognition configuration: the rules that find a contact's case and customer, the rules that
promote contact data to them, and what each channel does when nothing matches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Integer, Sequence, SmallInteger, String, Text
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at, one_of, pk, updated_at
from app.models.contacts import CHANNELS

RULE_TARGETS = ("case", "customer")
CASE_RULE_KINDS = ("reference_in_text", "thread", "external_reference", "open_case_of_customer")
CUSTOMER_RULE_KINDS = ("identifier", "field_match", "lookup")
RULE_KINDS = CASE_RULE_KINDS + CUSTOMER_RULE_KINDS
PROMOTION_POLICIES = ("fill_empty", "overwrite", "add_identifier")
# How a routing condition compares what the contact holds at its source with its value.
ROUTING_OPERATORS = ("equals", "contains", "matches", "exists")
# What a channel without a no-match policy row does: creates nothing and flags the contact for an
# agent. The columns' defaults say the same.
NO_ROW_POLICY = {"create_customer": False, "create_case": False, "flag_for_review": True}


def _default(flag: str) -> Any:
    return sql("true" if NO_ROW_POLICY[flag] else "false")


class _Ordered:
    """The columns every kind of rule shares: rules are tried in `position` order."""

    id: Mapped[int] = pk()
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    # Empty: every channel.
    channels: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default=sql("'[]'"))
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("true"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class _Rule(_Ordered):
    target: Mapped[str] = mapped_column(String(16), nullable=False)


class RecognitionRule(_Rule, Base):
    """One way of recognising a contact's case or customer; tried in `position` order."""

    __tablename__ = "recognition_rules"

    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=sql("'{}'"))

    __table_args__ = (
        CheckConstraint(one_of("target", RULE_TARGETS), name="target"),
        CheckConstraint(one_of("kind", RULE_KINDS), name="kind"),
    )


class PromotionRule(_Rule, Base):
    """Copies one piece of contact data (a field or payload path) to the customer or the case."""

    __tablename__ = "promotion_rules"

    source: Mapped[str] = mapped_column(Text, nullable=False)
    # "name" or "fields.<key>" for FILL_EMPTY/OVERWRITE; an identifier kind for ADD_IDENTIFIER.
    field: Mapped[str] = mapped_column(Text, nullable=False)
    policy: Mapped[str] = mapped_column(String(16), nullable=False)

    __table_args__ = (
        CheckConstraint(one_of("target", RULE_TARGETS), name="target"),
        CheckConstraint(one_of("policy", PROMOTION_POLICIES), name="policy"),
    )


class RoutingRule(_Ordered, Base):
    """Sends a case a contact opens to a pool when every condition holds; the first such rule wins."""

    __tablename__ = "routing_rules"

    # [{"source": "to", "operator": "contains", "value": "billing@"}, ...]; none: every contact.
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, server_default=sql("'[]'"))
    # A pool a rule sends cases to cannot be deleted (see queues.delete_pool).
    pool_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("pools.id", ondelete="RESTRICT"), nullable=False)

    __table_args__ = (CheckConstraint("jsonb_typeof(conditions) = 'array'", name="conditions_array"),)


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
    create_customer: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=_default("create_customer"))
    # Applies whenever no case was recognised, for a recognised or a newly created customer.
    create_case: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=_default("create_case"))
    flag_for_review: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=_default("flag_for_review"))
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (CheckConstraint(one_of("channel", CHANNELS), name="channel"),)

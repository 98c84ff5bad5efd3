"""Recognition: rules, promotion rules, no-match policies and the preview."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from app.models import PROMOTION_POLICIES, ROUTING_OPERATORS, RULE_KINDS, RULE_TARGETS
from schema.cases import Case
from schema.contacts import candidates_of, case_of, customer_of
from schema.customers import Customer
from schema.enums import Channel, values_enum
from schema.errors import UserError
from schema.node import Node, load_later

if TYPE_CHECKING:
    from schema.queues import Pool

RecognitionTarget = values_enum(
    "RecognitionTarget", RULE_TARGETS, "Whether a rule recognises the contact's case or its customer."
)
RecognitionRuleKind = values_enum("RecognitionRuleKind", RULE_KINDS)
PromotionPolicy = values_enum("PromotionPolicy", PROMOTION_POLICIES)
RoutingOperator = values_enum(
    "RoutingOperator",
    ROUTING_OPERATORS,
    "EQUALS and CONTAINS ignore case; MATCHES is a regular expression found anywhere; EXISTS needs no value. "
    "A source holding a list (the recipients) holds when any of its items does.",
)


@strawberry.type(description="One way of recognising a contact's case or customer; rules are tried in position order.")
class RecognitionRule(Node):
    db_id: strawberry.Private[int]
    name: str
    target: RecognitionTarget
    kind: RecognitionRuleKind
    config: JSON = strawberry.field(
        description="Kind-specific settings; a connector names the environment variable holding its secret."
    )
    position: int
    channels: list[Channel] = strawberry.field(description="The channels it applies to; empty means all.")
    enabled: bool

    @classmethod
    def from_row(cls, row: Any) -> RecognitionRule:
        return super().from_row(
            row,
            target=RecognitionTarget(row.target),
            kind=RecognitionRuleKind(row.kind),
            config=row.config,
            channels=[Channel(c) for c in row.channels],
        )


@strawberry.type(description="Copies contact data (a field or payload path) to the customer or the case.")
class PromotionRule(Node):
    db_id: strawberry.Private[int]
    name: str
    source: str = strawberry.field(
        description="from, to, subject, text, payload.<path>, headers.<name> or lookup.<path>."
    )
    target: RecognitionTarget
    field: str = strawberry.field(
        description="'fields.<key>', the customer's 'name' or the case's 'subject'; for ADD_IDENTIFIER an identifier kind."
    )
    policy: PromotionPolicy
    position: int
    channels: list[Channel]
    enabled: bool

    @classmethod
    def from_row(cls, row: Any) -> PromotionRule:
        return super().from_row(
            row,
            target=RecognitionTarget(row.target),
            policy=PromotionPolicy(row.policy),
            channels=[Channel(c) for c in row.channels],
        )


@strawberry.type(description="One test of a contact's data.")
class RoutingCondition:
    source: str = strawberry.field(
        description="from, to, subject, text, payload.<path>, headers.<name> or lookup.<path>."
    )
    operator: RoutingOperator
    value: str | None


@strawberry.type(
    description="Sends the case a contact opens to a pool when every condition holds; rules are tried in "
    "position order and the first that holds wins. Without one, a mail's case goes to its mailbox's pool."
)
class RoutingRule(Node):
    db_id: strawberry.Private[int]
    pool_id: strawberry.Private[int]
    name: str
    conditions: list[RoutingCondition] = strawberry.field(description="None: every contact of its channels.")
    position: int
    channels: list[Channel] = strawberry.field(description="The channels it applies to; empty means all.")
    enabled: bool

    @strawberry.field
    def pool(self, info: strawberry.Info) -> Annotated[Pool, strawberry.lazy("schema.queues")] | None:
        return load_later(info.context.loaders.pool, self.pool_id)

    @classmethod
    def from_row(cls, row: Any) -> RoutingRule:
        return super().from_row(
            row,
            conditions=[
                RoutingCondition(source=c["source"], operator=RoutingOperator(c["operator"]), value=c.get("value"))
                for c in row.conditions
            ],
            channels=[Channel(c) for c in row.channels],
        )


@strawberry.type(description="What a channel does with a contact no rule recognised.")
class NoMatchPolicy:
    channel: Channel
    create_customer: bool
    create_case: bool = strawberry.field(description="Also applies when the customer was recognised but no case.")
    flag_for_review: bool

    @classmethod
    def from_row(cls, row: Any) -> NoMatchPolicy:
        return cls(
            channel=Channel(row.channel),
            create_customer=row.create_customer,
            create_case=row.create_case,
            flag_for_review=row.flag_for_review,
        )


@strawberry.input
class RecognitionRuleCreateInput:
    name: str
    kind: RecognitionRuleKind
    config: JSON | None = strawberry.field(default=None, description="Kind-specific settings; defaults filled in.")
    channels: list[Channel] = strawberry.field(default_factory=list)
    enabled: bool = True
    position: int | None = strawberry.field(default=None, description="1-based; the end by default.")


@strawberry.input
class RecognitionRuleUpdateInput:
    id: strawberry.ID
    name: str | None = None
    config: JSON | None = None
    channels: list[Channel] | None = None
    enabled: bool | None = None


@strawberry.input
class RuleDeleteInput:
    id: strawberry.ID


@strawberry.input
class RulesReorderInput:
    ids: list[strawberry.ID] = strawberry.field(description="Every rule, exactly once, in the new order.")


@strawberry.input
class PromotionRuleCreateInput:
    name: str
    source: str
    target: RecognitionTarget
    field: str
    policy: PromotionPolicy
    channels: list[Channel] = strawberry.field(default_factory=list)
    enabled: bool = True
    position: int | None = None


@strawberry.input
class PromotionRuleUpdateInput:
    id: strawberry.ID
    name: str | None = None
    source: str | None = None
    target: RecognitionTarget | None = None
    field: str | None = None
    policy: PromotionPolicy | None = None
    channels: list[Channel] | None = None
    enabled: bool | None = None


@strawberry.input
class RoutingConditionInput:
    source: str
    operator: RoutingOperator
    value: str | None = None


@strawberry.input
class RoutingRuleCreateInput:
    name: str
    pool_id: strawberry.ID
    conditions: list[RoutingConditionInput] = strawberry.field(default_factory=list)
    channels: list[Channel] = strawberry.field(default_factory=list)
    enabled: bool = True
    position: int | None = strawberry.field(default=None, description="1-based; the end by default.")


@strawberry.input
class RoutingRuleUpdateInput:
    id: strawberry.ID
    name: str | None = None
    pool_id: strawberry.ID | None = None
    conditions: list[RoutingConditionInput] | None = None
    channels: list[Channel] | None = None
    enabled: bool | None = None


@strawberry.input
class NoMatchPolicySetInput:
    channel: Channel
    create_customer: bool
    create_case: bool
    flag_for_review: bool


@strawberry.type
class RecognitionRulePayload:
    rule: RecognitionRule | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RecognitionRulesPayload:
    rules: list[RecognitionRule] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RuleDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class PromotionRulePayload:
    rule: PromotionRule | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class PromotionRulesPayload:
    rules: list[PromotionRule] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RoutingRulePayload:
    rule: RoutingRule | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RoutingRulesPayload:
    rules: list[RoutingRule] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class NoMatchPolicyPayload:
    policy: NoMatchPolicy | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(description="What ingesting this contact would do now; nothing was written.")
class RecognitionPreview:
    needs_review: bool
    would_create_customer: bool
    would_create_case: bool
    trace: JSON
    customer_id: strawberry.Private[int | None] = None
    case_id: strawberry.Private[int | None] = None
    candidate_ids: strawberry.Private[list[int]] = strawberry.field(default_factory=list)

    customer: Customer | None = strawberry.field(resolver=customer_of)
    case: Case | None = strawberry.field(resolver=case_of)
    candidates: list[Customer] = strawberry.field(resolver=candidates_of)


@strawberry.type
class RecognitionPreviewPayload:
    preview: RecognitionPreview | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)

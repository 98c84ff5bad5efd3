"""Recognition: the rule set (recognition rules, promotion rules, no-match policies) and the preview."""

from __future__ import annotations

from typing import Any

import strawberry

from app.errors import UserError as AppUserError
from app.recognition.outcome import preview_recognition
from app.services import recognition as service
from resolvers.contacts import contact_data
from resolvers.mutation_helpers import mutate
from schema.contacts import ContactIngestInput
from schema.errors import UserError
from schema.ids import db_id, to_global_id
from schema.permissions import allow
from schema.recognition import (
    NoMatchPolicy,
    NoMatchPolicyPayload,
    NoMatchPolicySetInput,
    PromotionRule,
    PromotionRuleCreateInput,
    PromotionRulePayload,
    PromotionRulesPayload,
    PromotionRuleUpdateInput,
    RecognitionPreview,
    RecognitionPreviewPayload,
    RecognitionRule,
    RecognitionRuleCreateInput,
    RecognitionRulePayload,
    RecognitionRulesPayload,
    RecognitionRuleUpdateInput,
    RoutingRule,
    RoutingRuleCreateInput,
    RoutingRulePayload,
    RoutingRulesPayload,
    RoutingRuleUpdateInput,
    RuleDeleteInput,
    RuleDeletePayload,
    RulesReorderInput,
)


def _channels(channels: list[Any] | None) -> list[str] | None:
    return None if channels is None else [c.value for c in channels]


def _conditions(conditions: list[Any] | None) -> list[dict[str, Any]] | None:
    if conditions is None:
        return None
    return [{"source": c.source, "operator": c.operator.value, "value": c.value} for c in conditions]


def _ids(global_ids: list[strawberry.ID], type_name: str) -> list[int]:
    return [db_id(i, type_name, f"ids.{n}") for n, i in enumerate(global_ids)]


async def _delete(info: strawberry.Info, global_id: strawberry.ID, type_name: str, delete: Any) -> RuleDeletePayload:
    return await mutate(
        info,
        RuleDeletePayload,
        lambda session: delete(session, actor=info.context.actor, rule_id=db_id(global_id, type_name, "id")),
        lambda _: {"deleted_id": to_global_id(type_name, db_id(global_id, type_name, "id"))},
    )


@strawberry.type
class RecognitionQuery:
    @strawberry.field(
        permission_classes=[allow("Query.recognitionRules")],
        description="Recognition rules in the order they are tried.",
    )
    async def recognition_rules(self, info: strawberry.Info) -> list[RecognitionRule]:
        async with info.context.runtime.reading() as session:
            return [RecognitionRule.from_row(r) for r in await service.list_rules(session)]

    @strawberry.field(permission_classes=[allow("Query.promotionRules")])
    async def promotion_rules(self, info: strawberry.Info) -> list[PromotionRule]:
        async with info.context.runtime.reading() as session:
            return [PromotionRule.from_row(r) for r in await service.list_promotion_rules(session)]

    @strawberry.field(
        permission_classes=[allow("Query.routingRules")],
        description="Routing rules in the order they are tried.",
    )
    async def routing_rules(self, info: strawberry.Info) -> list[RoutingRule]:
        async with info.context.runtime.reading() as session:
            return [RoutingRule.from_row(r) for r in await service.list_routing_rules(session)]

    @strawberry.field(
        permission_classes=[allow("Query.noMatchPolicies")],
        description="What each channel does with an unrecognised contact.",
    )
    async def no_match_policies(self, info: strawberry.Info) -> list[NoMatchPolicy]:
        async with info.context.runtime.reading() as session:
            return [NoMatchPolicy.from_row(p) for p in await service.list_policies(session)]

    @strawberry.field(
        permission_classes=[allow("Query.recognitionPreview")],
        description="Run the rules on a contact without storing or creating anything.",
    )
    async def recognition_preview(self, info: strawberry.Info, input: ContactIngestInput) -> RecognitionPreviewPayload:
        try:
            # A reading session is never committed: whatever the rules read, nothing is written.
            async with info.context.runtime.reading() as session:
                result = await preview_recognition(
                    session, data=contact_data(input, source=input.source), region=info.context.phone_region
                )
        except AppUserError as error:
            return RecognitionPreviewPayload(errors=[UserError.from_error(error)])
        return RecognitionPreviewPayload(
            preview=RecognitionPreview(
                needs_review=result.needs_review,
                would_create_customer=result.customer_created,
                would_create_case=result.case_created,
                trace=result.trace,
                customer_id=result.customer_id,
                case_id=result.case_id,
                candidate_ids=result.candidates,
            )
        )


@strawberry.type
class RecognitionMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.recognitionRuleCreate")])
    async def recognition_rule_create(
        self, info: strawberry.Info, input: RecognitionRuleCreateInput
    ) -> RecognitionRulePayload:
        return await mutate(
            info,
            RecognitionRulePayload,
            lambda session: service.create_rule(
                session,
                actor=info.context.actor,
                name=input.name,
                kind=input.kind.value,
                config=input.config,
                channels=_channels(input.channels),
                enabled=input.enabled,
                position=input.position,
            ),
            lambda rule: {"rule": RecognitionRule.from_row(rule)},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.recognitionRuleUpdate")])
    async def recognition_rule_update(
        self, info: strawberry.Info, input: RecognitionRuleUpdateInput
    ) -> RecognitionRulePayload:
        return await mutate(
            info,
            RecognitionRulePayload,
            lambda session: service.update_rule(
                session,
                actor=info.context.actor,
                rule_id=db_id(input.id, "RecognitionRule", "id"),
                name=input.name,
                config=input.config,
                channels=_channels(input.channels),
                enabled=input.enabled,
            ),
            lambda rule: {"rule": RecognitionRule.from_row(rule)},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.recognitionRuleDelete")])
    async def recognition_rule_delete(self, info: strawberry.Info, input: RuleDeleteInput) -> RuleDeletePayload:
        return await _delete(info, input.id, "RecognitionRule", service.delete_rule)

    @strawberry.mutation(permission_classes=[allow("Mutation.recognitionRulesReorder")])
    async def recognition_rules_reorder(
        self, info: strawberry.Info, input: RulesReorderInput
    ) -> RecognitionRulesPayload:
        return await mutate(
            info,
            RecognitionRulesPayload,
            lambda session: service.reorder_rules(
                session, actor=info.context.actor, ids=_ids(input.ids, "RecognitionRule")
            ),
            lambda rules: {"rules": [RecognitionRule.from_row(r) for r in rules]},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.promotionRuleCreate")])
    async def promotion_rule_create(
        self, info: strawberry.Info, input: PromotionRuleCreateInput
    ) -> PromotionRulePayload:
        return await mutate(
            info,
            PromotionRulePayload,
            lambda session: service.create_promotion_rule(
                session,
                actor=info.context.actor,
                name=input.name,
                source=input.source,
                target=input.target.value,
                field=input.field,
                policy=input.policy.value,
                channels=_channels(input.channels),
                enabled=input.enabled,
                position=input.position,
            ),
            lambda rule: {"rule": PromotionRule.from_row(rule)},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.promotionRuleUpdate")])
    async def promotion_rule_update(
        self, info: strawberry.Info, input: PromotionRuleUpdateInput
    ) -> PromotionRulePayload:
        return await mutate(
            info,
            PromotionRulePayload,
            lambda session: service.update_promotion_rule(
                session,
                actor=info.context.actor,
                rule_id=db_id(input.id, "PromotionRule", "id"),
                name=input.name,
                source=input.source,
                target=input.target.value if input.target else None,
                field=input.field,
                policy=input.policy.value if input.policy else None,
                channels=_channels(input.channels),
                enabled=input.enabled,
            ),
            lambda rule: {"rule": PromotionRule.from_row(rule)},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.promotionRuleDelete")])
    async def promotion_rule_delete(self, info: strawberry.Info, input: RuleDeleteInput) -> RuleDeletePayload:
        return await _delete(info, input.id, "PromotionRule", service.delete_promotion_rule)

    @strawberry.mutation(permission_classes=[allow("Mutation.promotionRulesReorder")])
    async def promotion_rules_reorder(self, info: strawberry.Info, input: RulesReorderInput) -> PromotionRulesPayload:
        return await mutate(
            info,
            PromotionRulesPayload,
            lambda session: service.reorder_promotion_rules(
                session, actor=info.context.actor, ids=_ids(input.ids, "PromotionRule")
            ),
            lambda rules: {"rules": [PromotionRule.from_row(r) for r in rules]},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.routingRuleCreate")])
    async def routing_rule_create(self, info: strawberry.Info, input: RoutingRuleCreateInput) -> RoutingRulePayload:
        return await mutate(
            info,
            RoutingRulePayload,
            lambda session: service.create_routing_rule(
                session,
                actor=info.context.actor,
                name=input.name,
                pool_id=db_id(input.pool_id, "Pool", "poolId"),
                conditions=_conditions(input.conditions),
                channels=_channels(input.channels),
                enabled=input.enabled,
                position=input.position,
            ),
            lambda rule: {"rule": RoutingRule.from_row(rule)},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.routingRuleUpdate")])
    async def routing_rule_update(self, info: strawberry.Info, input: RoutingRuleUpdateInput) -> RoutingRulePayload:
        return await mutate(
            info,
            RoutingRulePayload,
            lambda session: service.update_routing_rule(
                session,
                actor=info.context.actor,
                rule_id=db_id(input.id, "RoutingRule", "id"),
                name=input.name,
                pool_id=db_id(input.pool_id, "Pool", "poolId") if input.pool_id is not None else None,
                conditions=_conditions(input.conditions),
                channels=_channels(input.channels),
                enabled=input.enabled,
            ),
            lambda rule: {"rule": RoutingRule.from_row(rule)},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.routingRuleDelete")])
    async def routing_rule_delete(self, info: strawberry.Info, input: RuleDeleteInput) -> RuleDeletePayload:
        return await _delete(info, input.id, "RoutingRule", service.delete_routing_rule)

    @strawberry.mutation(permission_classes=[allow("Mutation.routingRulesReorder")])
    async def routing_rules_reorder(self, info: strawberry.Info, input: RulesReorderInput) -> RoutingRulesPayload:
        return await mutate(
            info,
            RoutingRulesPayload,
            lambda session: service.reorder_routing_rules(
                session, actor=info.context.actor, ids=_ids(input.ids, "RoutingRule")
            ),
            lambda rules: {"rules": [RoutingRule.from_row(r) for r in rules]},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.noMatchPolicySet")],
        description="Set what a channel does with an unrecognised contact.",
    )
    async def no_match_policy_set(self, info: strawberry.Info, input: NoMatchPolicySetInput) -> NoMatchPolicyPayload:
        return await mutate(
            info,
            NoMatchPolicyPayload,
            lambda session: service.set_policy(
                session,
                actor=info.context.actor,
                channel=input.channel.value,
                create_customer=input.create_customer,
                create_case=input.create_case,
                flag_for_review=input.flag_for_review,
            ),
            lambda policy: {"policy": NoMatchPolicy.from_row(policy)},
        )

from __future__ import annotations

from typing import Any

import strawberry

from app.errors import UserError as AppUserError
from app.contact_data import ContactData
from app.recognition import outcome as preview_service
from app.services import contacts as ingest_service
from app.services import recognition as service
from schema.errors import UserError
from schema.ids import db_id, to_global_id
from schema.recognition import (
    ContactIngestInput,
    ContactIngestPayload,
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
    RuleDeleteInput,
    RuleDeletePayload,
    RulesReorderInput,
)
from schema.types import Contact
from resolvers.mutation_helpers import mutate
from resolvers.permissions import SUPERVISOR, roles

INGEST = roles("integrator", "supervisor")


def _region(info: strawberry.Info) -> str:
    return info.context.runtime.settings.default_phone_region


def _contact_data(input: ContactIngestInput) -> ContactData:
    return ContactData(
        channel=input.channel.value,
        direction=input.direction.value,
        occurred_at=input.occurred_at,
        subject=input.subject,
        text=input.text,
        html=input.html,
        from_address=input.from_,
        to_addresses=list(input.to),
        headers=input.headers or {},
        source=input.source,
        external_id=input.external_id,
        payload=input.payload or {},
    )


def _channels(channels: list[Any] | None) -> list[str] | None:
    return None if channels is None else [c.value for c in channels]


@strawberry.type
class RecognitionQuery:
    @strawberry.field(permission_classes=[SUPERVISOR], description="Recognition rules in the order they are tried.")
    async def recognition_rules(self, info: strawberry.Info) -> list[RecognitionRule]:
        async with info.context.runtime.reading() as session:
            return [RecognitionRule.from_row(r) for r in await service.list_rules(session)]

    @strawberry.field(permission_classes=[SUPERVISOR])
    async def promotion_rules(self, info: strawberry.Info) -> list[PromotionRule]:
        async with info.context.runtime.reading() as session:
            return [PromotionRule.from_row(r) for r in await service.list_promotion_rules(session)]

    @strawberry.field(permission_classes=[SUPERVISOR], description="What each channel does with an unrecognised contact.")
    async def no_match_policies(self, info: strawberry.Info) -> list[NoMatchPolicy]:
        async with info.context.runtime.reading() as session:
            return [NoMatchPolicy.from_row(p) for p in await service.list_policies(session)]

    @strawberry.field(permission_classes=[INGEST], description="Run the rules on a contact without storing or creating anything.")
    async def recognition_preview(self, info: strawberry.Info, input: ContactIngestInput) -> RecognitionPreviewPayload:
        try:
            # A reading session is never committed: whatever the rules read, nothing is written.
            async with info.context.runtime.reading() as session:
                result = await preview_service.preview_recognition(session, data=_contact_data(input), region=_region(info))
        except AppUserError as error:
            return RecognitionPreviewPayload(errors=[UserError.from_error(error)])
        return RecognitionPreviewPayload(
            preview=RecognitionPreview(
                needs_review=result.needs_review, would_create_customer=result.customer_created,
                would_create_case=result.case_created, trace=result.trace, customer_id=result.customer_id,
                case_id=result.case_id, candidate_ids=result.candidates,
            )
        )


@strawberry.type
class RecognitionMutation:
    @strawberry.mutation(
        permission_classes=[INGEST],
        description="Store a contact from an integrator, recognised and promoted in one transaction. "
        "Idempotent on (source, externalId): a repeat returns the first contact and creates nothing.",
    )
    async def contact_ingest(self, info: strawberry.Info, input: ContactIngestInput) -> ContactIngestPayload:
        result, errors = await mutate(
            info,
            lambda session: ingest_service.ingest_contact(
                session, actor=info.context.actor, data=_contact_data(input), region=_region(info)
            ),
        )
        if result is None:
            return ContactIngestPayload(errors=errors)
        return ContactIngestPayload(
            contact=Contact.from_row(result.contact), duplicate=result.duplicate,
            customer_created=result.customer_created, case_created=result.case_created,
            customer_id=result.customer_id, case_id=result.case_id, candidate_ids=result.candidates,
        )

    @strawberry.mutation(permission_classes=[SUPERVISOR])
    async def recognition_rule_create(self, info: strawberry.Info, input: RecognitionRuleCreateInput) -> RecognitionRulePayload:
        rule, errors = await mutate(
            info,
            lambda session: service.create_rule(
                session, actor=info.context.actor, name=input.name, kind=input.kind.value, config=input.config,
                channels=_channels(input.channels), enabled=input.enabled, position=input.position,
            ),
        )
        return RecognitionRulePayload(rule=RecognitionRule.from_row(rule) if rule else None, errors=errors)

    @strawberry.mutation(permission_classes=[SUPERVISOR])
    async def recognition_rule_update(self, info: strawberry.Info, input: RecognitionRuleUpdateInput) -> RecognitionRulePayload:
        rule, errors = await mutate(
            info,
            lambda session: service.update_rule(
                session, actor=info.context.actor, rule_id=db_id(input.id, "RecognitionRule", "id"), name=input.name,
                config=input.config, channels=_channels(input.channels), enabled=input.enabled,
            ),
        )
        return RecognitionRulePayload(rule=RecognitionRule.from_row(rule) if rule else None, errors=errors)

    @strawberry.mutation(permission_classes=[SUPERVISOR])
    async def recognition_rule_delete(self, info: strawberry.Info, input: RuleDeleteInput) -> RuleDeletePayload:
        async def work(session):
            rule_id = db_id(input.id, "RecognitionRule", "id")
            await service.delete_rule(session, actor=info.context.actor, rule_id=rule_id)
            return rule_id

        rule_id, errors = await mutate(info, work)
        return RuleDeletePayload(deleted_id=to_global_id("RecognitionRule", rule_id) if rule_id else None, errors=errors)

    @strawberry.mutation(permission_classes=[SUPERVISOR])
    async def recognition_rules_reorder(self, info: strawberry.Info, input: RulesReorderInput) -> RecognitionRulesPayload:
        rules, errors = await mutate(
            info,
            lambda session: service.reorder_rules(
                session, actor=info.context.actor, ids=[db_id(i, "RecognitionRule", f"ids.{n}") for n, i in enumerate(input.ids)]
            ),
        )
        return RecognitionRulesPayload(rules=[RecognitionRule.from_row(r) for r in rules or []], errors=errors)

    @strawberry.mutation(permission_classes=[SUPERVISOR])
    async def promotion_rule_create(self, info: strawberry.Info, input: PromotionRuleCreateInput) -> PromotionRulePayload:
        rule, errors = await mutate(
            info,
            lambda session: service.create_promotion_rule(
                session, actor=info.context.actor, name=input.name, source=input.source, target=input.target.value,
                field=input.field, policy=input.policy.value, channels=_channels(input.channels),
                enabled=input.enabled, position=input.position,
            ),
        )
        return PromotionRulePayload(rule=PromotionRule.from_row(rule) if rule else None, errors=errors)

    @strawberry.mutation(permission_classes=[SUPERVISOR])
    async def promotion_rule_update(self, info: strawberry.Info, input: PromotionRuleUpdateInput) -> PromotionRulePayload:
        rule, errors = await mutate(
            info,
            lambda session: service.update_promotion_rule(
                session, actor=info.context.actor, rule_id=db_id(input.id, "PromotionRule", "id"), name=input.name,
                source=input.source, target=input.target.value if input.target else None, field=input.field,
                policy=input.policy.value if input.policy else None, channels=_channels(input.channels),
                enabled=input.enabled,
            ),
        )
        return PromotionRulePayload(rule=PromotionRule.from_row(rule) if rule else None, errors=errors)

    @strawberry.mutation(permission_classes=[SUPERVISOR])
    async def promotion_rule_delete(self, info: strawberry.Info, input: RuleDeleteInput) -> RuleDeletePayload:
        async def work(session):
            rule_id = db_id(input.id, "PromotionRule", "id")
            await service.delete_promotion_rule(session, actor=info.context.actor, rule_id=rule_id)
            return rule_id

        rule_id, errors = await mutate(info, work)
        return RuleDeletePayload(deleted_id=to_global_id("PromotionRule", rule_id) if rule_id else None, errors=errors)

    @strawberry.mutation(permission_classes=[SUPERVISOR])
    async def promotion_rules_reorder(self, info: strawberry.Info, input: RulesReorderInput) -> PromotionRulesPayload:
        rules, errors = await mutate(
            info,
            lambda session: service.reorder_promotion_rules(
                session, actor=info.context.actor, ids=[db_id(i, "PromotionRule", f"ids.{n}") for n, i in enumerate(input.ids)]
            ),
        )
        return PromotionRulesPayload(rules=[PromotionRule.from_row(r) for r in rules or []], errors=errors)

    @strawberry.mutation(permission_classes=[SUPERVISOR], description="Set what a channel does with an unrecognised contact.")
    async def no_match_policy_set(self, info: strawberry.Info, input: NoMatchPolicySetInput) -> NoMatchPolicyPayload:
        policy, errors = await mutate(
            info,
            lambda session: service.set_policy(
                session, actor=info.context.actor, channel=input.channel.value, create_customer=input.create_customer,
                create_case=input.create_case, flag_for_review=input.flag_for_review,
            ),
        )
        return NoMatchPolicyPayload(policy=NoMatchPolicy.from_row(policy) if policy else None, errors=errors)

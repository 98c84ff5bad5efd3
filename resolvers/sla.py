"""SLA: regions and TAT policies (supervised configuration), and the slaEvents subscription."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from app import events
from app.services import calendars as calendar_service
from app.services import sla as service
from app.services import workflows as workflow_service
from resolvers.mutation_helpers import mutate
from resolvers.subscriptions import After, _events
from schema.ids import db_id
from schema.permissions import SUPERVISOR, allow
from schema.sla import (
    Region,
    RegionCreateInput,
    RegionPayload,
    RegionUpdateInput,
    SlaConfigDeleteInput,
    SlaConfigDeletePayload,
    SlaEvent,
    TatPolicy,
    TatPolicyCreateInput,
    TatPolicyPayload,
    TatPolicyUpdateInput,
    hours_settings,
    target_settings,
)


async def _policy(session, policy) -> TatPolicy:
    targets = await service.policy_targets(session, [policy.id])
    return TatPolicy.of(policy, targets[policy.id])


def _unset_to_changes(input, names: tuple[str, ...]) -> dict:
    return {name: getattr(input, name) for name in names if getattr(input, name) is not strawberry.UNSET}


async def _recomputing(info: strawberry.Info, payload: dict, **changed: int) -> dict:
    """Committed: the open cases' deadlines follow the changed policy or region (in the worker)."""
    await service.enqueue_recompute(info.context.runtime, **changed)
    return payload


@strawberry.type
class SlaQuery:
    @strawberry.field(permission_classes=[allow("Query.regions")], description="Every region, by name.")
    async def regions(self, info: strawberry.Info) -> list[Region]:
        async with info.context.runtime.reading() as session:
            return [Region.from_row(r) for r in await calendar_service.list_regions(session)]

    @strawberry.field(permission_classes=[allow("Query.tatPolicies")], description="Every TAT policy, by code.")
    async def tat_policies(self, info: strawberry.Info) -> list[TatPolicy]:
        async with info.context.runtime.reading() as session:
            policies = await service.list_policies(session)
            targets = await service.policy_targets(session, [p.id for p in policies])
        return [TatPolicy.of(p, targets[p.id]) for p in policies]


@strawberry.type
class SlaMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.regionCreate")])
    async def region_create(self, info: strawberry.Info, input: RegionCreateInput) -> RegionPayload:
        return await mutate(
            info,
            RegionPayload,
            lambda session: calendar_service.create_region(
                session,
                actor=info.context.actor,
                name=input.name,
                time_zone=input.time_zone,
                business_hours=hours_settings(input.business_hours),
                description=input.description,
                holiday_country=input.holiday_country,
                holiday_subdivision=input.holiday_subdivision,
                holiday_calendar=input.holiday_calendar,
                is_default=input.is_default,
            ),
            lambda region: {"region": Region.from_row(region)},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.regionUpdate")])
    async def region_update(self, info: strawberry.Info, input: RegionUpdateInput) -> RegionPayload:
        changes = _unset_to_changes(
            input, ("description", "holiday_country", "holiday_subdivision", "holiday_calendar")
        )
        return await mutate(
            info,
            RegionPayload,
            lambda session: calendar_service.update_region(
                session,
                actor=info.context.actor,
                region_id=db_id(input.id, "Region", "id"),
                name=input.name,
                time_zone=input.time_zone,
                business_hours=hours_settings(input.business_hours) if input.business_hours is not None else None,
                is_default=input.is_default,
                **changes,
            ),
            lambda region: _recomputing(info, {"region": Region.from_row(region)}, region_id=region.id),
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.regionDelete")],
        description="Remove a region; its groups' case clocks count in the default region from then on.",
    )
    async def region_delete(self, info: strawberry.Info, input: SlaConfigDeleteInput) -> SlaConfigDeletePayload:
        return await mutate(
            info,
            SlaConfigDeletePayload,
            lambda session: calendar_service.delete_region(
                session, actor=info.context.actor, region_id=db_id(input.id, "Region", "id")
            ),
            lambda _: {"deleted_id": input.id},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.tatPolicyCreate")])
    async def tat_policy_create(self, info: strawberry.Info, input: TatPolicyCreateInput) -> TatPolicyPayload:
        async def work(session):
            policy = await service.create_policy(
                session,
                actor=info.context.actor,
                code=input.code,
                targets=target_settings(input.targets),
                description=input.description,
                pause_pending_customer=input.pause_pending_customer,
                pause_under_consultation=input.pause_under_consultation,
                is_default=input.is_default,
            )
            return await _policy(session, policy)

        return await mutate(info, TatPolicyPayload, work, lambda policy: {"tat_policy": policy})

    @strawberry.mutation(permission_classes=[allow("Mutation.tatPolicyUpdate")])
    async def tat_policy_update(self, info: strawberry.Info, input: TatPolicyUpdateInput) -> TatPolicyPayload:
        async def work(session):
            policy = await service.update_policy(
                session,
                actor=info.context.actor,
                policy_id=db_id(input.id, "TatPolicy", "id"),
                code=input.code,
                targets=target_settings(input.targets) if input.targets is not None else None,
                pause_pending_customer=input.pause_pending_customer,
                pause_under_consultation=input.pause_under_consultation,
                is_default=input.is_default,
                **_unset_to_changes(input, ("description",)),
            )
            return await _policy(session, policy)

        return await mutate(
            info,
            TatPolicyPayload,
            work,
            lambda policy: _recomputing(info, {"tat_policy": policy}, policy_id=policy.db_id),
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.tatPolicyDelete")],
        description="Remove a TAT policy no workflow uses; cases it timed keep their deadlines.",
    )
    async def tat_policy_delete(self, info: strawberry.Info, input: SlaConfigDeleteInput) -> SlaConfigDeletePayload:
        return await mutate(
            info,
            SlaConfigDeletePayload,
            lambda session: service.delete_policy(
                session, actor=info.context.actor, policy_id=db_id(input.id, "TatPolicy", "id")
            ),
            lambda _: {"deleted_id": input.id},
        )


async def _sla_channels(info: strawberry.Info) -> list[str]:
    """Supervisors see every SLA event; an agent those of the cases assigned to them and of their groups."""
    actor = info.context.actor
    if actor.has_role(*SUPERVISOR):
        return [events.channel(service.SLA_TOPIC, "all")]
    channels = []
    if actor.user_id is not None:
        channels.append(events.channel(service.SLA_TOPIC, f"user:{actor.user_id}"))
        async with info.context.runtime.reading() as session:
            groups = await workflow_service.groups_of(session, actor.user_id)
        channels += [events.channel(service.SLA_TOPIC, f"group:{g}") for g in groups]
    return channels


@strawberry.type
class SlaSubscription:
    @strawberry.subscription(
        permission_classes=[allow("Subscription.slaEvents")],
        description="Warnings and breaches as the SLA sweep marks them: all of them for supervisors; for an "
        "agent, those of the cases assigned to them and of the groups they belong to.",
    )
    async def sla_events(self, info: strawberry.Info, after: After = None) -> AsyncGenerator[SlaEvent, None]:
        channels = await _sla_channels(info)
        if not channels:
            return
        async for event in _events(info, channels, after):
            yield SlaEvent.of(event.body)

"""Editing the recognition configuration: recognition rules, promotion rules, no-match policies."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.errors import ErrorCode, UserError, not_found
from app.models import CHANNELS, NoMatchPolicy, PromotionRule, RecognitionConfig, RecognitionRule
from app.recognition.config import check_channels, check_promotion, check_rule_config, keep_masked_secrets, target_of
from app.recognition.connector import connectors
from app.services import audit


def rule_snapshot(rule: RecognitionRule) -> dict[str, Any]:
    return {
        "name": rule.name, "target": rule.target, "kind": rule.kind, "config": rule.config,
        "position": rule.position, "channels": rule.channels, "enabled": rule.enabled,
    }


def promotion_snapshot(rule: PromotionRule) -> dict[str, Any]:
    return {
        "name": rule.name, "source": rule.source, "target": rule.target, "field": rule.field, "policy": rule.policy,
        "position": rule.position, "channels": rule.channels, "enabled": rule.enabled,
    }


async def mark_changed(session: AsyncSession) -> None:
    """Every edit moves the configuration version, in the editing transaction: processes that
    cached the rule set reload it for the first contact after the commit."""
    await session.execute(
        update(RecognitionConfig).values(version=func.nextval("recognition_config_version_seq"))
    )
    connectors.reset()


def _name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise UserError(ErrorCode.REQUIRED, "name is required", "name")
    return name.strip()


async def _check_unique_name(session: AsyncSession, model: Any, name: str, exclude_id: int | None = None) -> None:
    query = select(model.id).where(model.name == name)
    if exclude_id is not None:
        query = query.where(model.id != exclude_id)
    if await session.scalar(query) is not None:
        raise UserError(ErrorCode.DUPLICATE, f"a rule named '{name}' already exists", "name")


async def _lock(session: AsyncSession, model: Any) -> None:
    # Positions are rewritten as a whole: one editor at a time per table.
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(model.__tablename__))))


async def _place(session: AsyncSession, model: Any, position: int | None) -> int:
    """The position for a new rule: the end by default, or `position` with later rules moved down."""
    last = await session.scalar(select(func.coalesce(func.max(model.position), 0)))
    if position is None or position > last:
        return last + 1
    if position < 1:
        raise UserError(ErrorCode.INVALID, "position starts at 1", "position")
    await session.execute(update(model).where(model.position >= position).values(position=model.position + 1))
    return position


async def _get(session: AsyncSession, model: Any, rule_id: int) -> Any:
    rule = await session.get(model, rule_id, with_for_update=True)
    if rule is None:
        raise not_found("rule", "id")
    return rule


async def _reorder(session: AsyncSession, model: Any, ids: list[int]) -> list[Any]:
    existing = set(await session.scalars(select(model.id)))
    if len(ids) != len(set(ids)) or set(ids) != existing:
        raise UserError(ErrorCode.INVALID, "list every rule exactly once, in the new order", "ids")
    for position, rule_id in enumerate(ids, start=1):
        await session.execute(update(model).where(model.id == rule_id).values(position=position))
    return list(await session.scalars(select(model).order_by(model.position, model.id).execution_options(populate_existing=True)))


# Recognition rules


async def list_rules(session: AsyncSession) -> list[RecognitionRule]:
    return list(await session.scalars(select(RecognitionRule).order_by(RecognitionRule.position, RecognitionRule.id)))


async def create_rule(
    session: AsyncSession,
    *,
    actor: Actor,
    name: str,
    kind: str,
    config: dict[str, Any] | None,
    channels: list[str] | None = None,
    enabled: bool = True,
    position: int | None = None,
) -> RecognitionRule:
    """Add a recognition rule; its configuration is checked (INVALID_PATTERN for a bad pattern)."""
    name = _name(name)
    checked = check_rule_config(kind, config)
    channels = check_channels(channels)
    await _lock(session, RecognitionRule)
    await _check_unique_name(session, RecognitionRule, name)
    rule = RecognitionRule(
        name=name, target=target_of(kind), kind=kind, config=checked, channels=channels, enabled=enabled,
        position=await _place(session, RecognitionRule, position),
    )
    session.add(rule)
    await session.flush()
    await mark_changed(session)
    audit.record(session, actor=actor, action="recognition_rule.create", entity_type="recognition_rule", entity_id=rule.id, after=rule_snapshot(rule))
    return rule


async def update_rule(
    session: AsyncSession,
    *,
    actor: Actor,
    rule_id: int,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    channels: list[str] | None = None,
    enabled: bool | None = None,
) -> RecognitionRule:
    """Change a rule; only the arguments given change (its kind is fixed)."""
    rule = await _get(session, RecognitionRule, rule_id)
    before = rule_snapshot(rule)
    if name is not None:
        rule.name = _name(name)
        await _check_unique_name(session, RecognitionRule, rule.name, rule.id)
    if config is not None:
        rule.config = check_rule_config(rule.kind, keep_masked_secrets(rule.config, config))
    if channels is not None:
        rule.channels = check_channels(channels)
    if enabled is not None:
        rule.enabled = enabled
    await session.flush()
    await mark_changed(session)
    audit.record(session, actor=actor, action="recognition_rule.update", entity_type="recognition_rule", entity_id=rule.id, before=before, after=rule_snapshot(rule))
    return rule


async def delete_rule(session: AsyncSession, *, actor: Actor, rule_id: int) -> None:
    rule = await _get(session, RecognitionRule, rule_id)
    await session.execute(delete(RecognitionRule).where(RecognitionRule.id == rule_id))
    await mark_changed(session)
    audit.record(session, actor=actor, action="recognition_rule.delete", entity_type="recognition_rule", entity_id=rule_id, before=rule_snapshot(rule))


async def reorder_rules(session: AsyncSession, *, actor: Actor, ids: list[int]) -> list[RecognitionRule]:
    """Put every recognition rule in the given order."""
    await _lock(session, RecognitionRule)
    rules = await _reorder(session, RecognitionRule, ids)
    await mark_changed(session)
    audit.record(session, actor=actor, action="recognition_rule.reorder", entity_type="recognition_rule", entity_id=0, after={"ids": ids})
    return rules


# Promotion rules


async def list_promotion_rules(session: AsyncSession) -> list[PromotionRule]:
    return list(await session.scalars(select(PromotionRule).order_by(PromotionRule.position, PromotionRule.id)))


async def create_promotion_rule(
    session: AsyncSession,
    *,
    actor: Actor,
    name: str,
    source: str,
    target: str,
    field: str,
    policy: str,
    channels: list[str] | None = None,
    enabled: bool = True,
    position: int | None = None,
) -> PromotionRule:
    """Add a rule copying contact data to the customer or the case."""
    name = _name(name)
    source, target, field, policy = check_promotion(source, target, field, policy)
    channels = check_channels(channels)
    await _lock(session, PromotionRule)
    await _check_unique_name(session, PromotionRule, name)
    rule = PromotionRule(
        name=name, source=source, target=target, field=field, policy=policy, channels=channels, enabled=enabled,
        position=await _place(session, PromotionRule, position),
    )
    session.add(rule)
    await session.flush()
    await mark_changed(session)
    audit.record(session, actor=actor, action="promotion_rule.create", entity_type="promotion_rule", entity_id=rule.id, after=promotion_snapshot(rule))
    return rule


async def update_promotion_rule(
    session: AsyncSession,
    *,
    actor: Actor,
    rule_id: int,
    name: str | None = None,
    source: str | None = None,
    target: str | None = None,
    field: str | None = None,
    policy: str | None = None,
    channels: list[str] | None = None,
    enabled: bool | None = None,
) -> PromotionRule:
    rule = await _get(session, PromotionRule, rule_id)
    before = promotion_snapshot(rule)
    if name is not None:
        rule.name = _name(name)
        await _check_unique_name(session, PromotionRule, rule.name, rule.id)
    rule.source, rule.target, rule.field, rule.policy = check_promotion(
        source if source is not None else rule.source,
        target if target is not None else rule.target,
        field if field is not None else rule.field,
        policy if policy is not None else rule.policy,
    )
    if channels is not None:
        rule.channels = check_channels(channels)
    if enabled is not None:
        rule.enabled = enabled
    await session.flush()
    await mark_changed(session)
    audit.record(session, actor=actor, action="promotion_rule.update", entity_type="promotion_rule", entity_id=rule.id, before=before, after=promotion_snapshot(rule))
    return rule


async def delete_promotion_rule(session: AsyncSession, *, actor: Actor, rule_id: int) -> None:
    rule = await _get(session, PromotionRule, rule_id)
    await session.execute(delete(PromotionRule).where(PromotionRule.id == rule_id))
    await mark_changed(session)
    audit.record(session, actor=actor, action="promotion_rule.delete", entity_type="promotion_rule", entity_id=rule_id, before=promotion_snapshot(rule))


async def reorder_promotion_rules(session: AsyncSession, *, actor: Actor, ids: list[int]) -> list[PromotionRule]:
    await _lock(session, PromotionRule)
    rules = await _reorder(session, PromotionRule, ids)
    await mark_changed(session)
    audit.record(session, actor=actor, action="promotion_rule.reorder", entity_type="promotion_rule", entity_id=0, after={"ids": ids})
    return rules


# No-match policies


async def list_policies(session: AsyncSession) -> list[NoMatchPolicy]:
    rows = {p.channel: p for p in await session.scalars(select(NoMatchPolicy))}
    # A channel without a row creates nothing and flags the contact, as the engine assumes.
    return [rows.get(c) or NoMatchPolicy(channel=c, create_customer=False, create_case=False, flag_for_review=True) for c in CHANNELS]


async def set_policy(
    session: AsyncSession, *, actor: Actor, channel: str, create_customer: bool, create_case: bool, flag_for_review: bool
) -> NoMatchPolicy:
    """Set what a channel does with a contact no rule recognised."""
    if channel not in CHANNELS:
        raise UserError(ErrorCode.INVALID, f"channel must be one of {', '.join(CHANNELS)}", "channel")
    values = {"create_customer": create_customer, "create_case": create_case, "flag_for_review": flag_for_review}
    before = await session.get(NoMatchPolicy, channel)
    before_values = {k: getattr(before, k) for k in values} if before else None
    policy = (
        await session.execute(
            insert(NoMatchPolicy)
            .values(channel=channel, **values)
            .on_conflict_do_update(index_elements=["channel"], set_={**values, "updated_at": func.now()})
            .returning(NoMatchPolicy)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    await mark_changed(session)
    audit.record(session, actor=actor, action="no_match_policy.set", entity_type="no_match_policy", entity_id=0, before=before_values, after={"channel": channel, **values})
    return policy

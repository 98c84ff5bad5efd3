"""Everything recognition writes: editing the rule set (recognition rules, promotion rules,
no-match policies), its YAML file form, the shipped defaults, and carrying out what
`app.recognition` decided for a contact (creating the customer and case, promoting data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import yaml
from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.auth import Actor
from app.errors import ErrorCode, UserError, not_found
from app.limits import NAME, check_text
from app.models import (
    CHANNELS,
    NO_ROW_POLICY,
    Case,
    Customer,
    NoMatchPolicy,
    Pool,
    PromotionRule,
    RecognitionConfig,
    RecognitionRule,
    RoutingRule,
)
from app.recognition.config import check_channels, check_promotion, check_rule_config, target_of
from app.recognition.connector import connectors
from app.recognition.defaults import DEFAULT_POLICIES, DEFAULT_RULES
from app.recognition.engine import Recognition, customers_with
from app.recognition.outcome import (
    Applied,
    Assessment,
    Decision,
    Promotion,
    new_case_subject,
    new_profile,
    promoted_values,
)
from app.recognition.routing import check_conditions, route
from app.recognition.view import ContactView
from app.services import audit
from app.services import cases as case_service
from app.services import customers as customer_service

Rule = TypeVar("Rule", RecognitionRule, PromotionRule, RoutingRule)
FORMAT_VERSION = 1


async def mark_changed(session: AsyncSession) -> None:
    """Every edit moves the configuration version, in the editing transaction: processes that
    cached the rule set reload it for the first contact after the commit."""
    await session.execute(update(RecognitionConfig).values(version=func.nextval("recognition_config_version_seq")))
    connectors.reset()


# ---- editing either kind of rule: recognition and promotion rules share these ----------------------


def _snapshot(rule: RecognitionRule | PromotionRule | RoutingRule) -> dict[str, Any]:
    return {
        column.key: getattr(rule, column.key)
        for column in rule.__table__.columns
        if column.key not in ("id", "created_at", "updated_at")
    }


def _entity(model: type) -> str:
    return model.__tablename__.removesuffix("s")  # recognition_rule, promotion_rule, routing_rule


def _name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise UserError(ErrorCode.REQUIRED, "name is required", "name")
    check_text(name, "name", NAME)
    return name.strip()


async def _check_unique_name(session: AsyncSession, model: type, name: str, exclude_id: int | None = None) -> None:
    query = select(model.id).where(model.name == name)
    if exclude_id is not None:
        query = query.where(model.id != exclude_id)
    if await session.scalar(query) is not None:
        raise UserError(ErrorCode.DUPLICATE, f"a rule named '{name}' already exists", "name")


async def _lock(session: AsyncSession, model: type) -> None:
    # Positions are rewritten as a whole: one editor at a time per table.
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(model.__tablename__))))


async def _place(session: AsyncSession, model: type, position: int | None) -> int:
    """The position for a new rule: the end by default, or `position` with later rules moved down."""
    last = await session.scalar(select(func.coalesce(func.max(model.position), 0)))
    if position is None or position > last:
        return last + 1
    if position < 1:
        raise UserError(ErrorCode.INVALID, "position starts at 1", "position")
    await session.execute(update(model).where(model.position >= position).values(position=model.position + 1))
    return position


async def _list(session: AsyncSession, model: type[Rule]) -> list[Rule]:
    return list(await session.scalars(select(model).order_by(model.position, model.id)))


async def _create(
    session: AsyncSession, *, actor: Actor, model: type[Rule], name: object, position: int | None, **values: Any
) -> Rule:
    name = _name(name)
    await _lock(session, model)
    await _check_unique_name(session, model, name)
    rule = model(name=name, position=await _place(session, model, position), **values)
    session.add(rule)
    await session.flush()
    await mark_changed(session)
    entity = _entity(model)
    audit.record(
        session, actor=actor, action=f"{entity}.create", entity_type=entity, entity_id=rule.id, after=_snapshot(rule)
    )
    return rule


async def _get_for_update(session: AsyncSession, model: type[Rule], rule_id: int) -> Rule:
    rule = await session.get(model, rule_id, with_for_update=True)
    if rule is None:
        raise not_found("rule", "id")
    return rule


async def _rename(session: AsyncSession, rule: Rule, name: str | None) -> None:
    if name is not None:
        rule.name = _name(name)
        await _check_unique_name(session, type(rule), rule.name, rule.id)


async def _edited(session: AsyncSession, *, actor: Actor, rule: Rule, before: dict[str, Any]) -> Rule:
    """Finish an edit: the version moved, the change audited."""
    await session.flush()
    await mark_changed(session)
    entity = _entity(type(rule))
    audit.record(
        session,
        actor=actor,
        action=f"{entity}.update",
        entity_type=entity,
        entity_id=rule.id,
        before=before,
        after=_snapshot(rule),
    )
    return rule


async def _delete(session: AsyncSession, *, actor: Actor, model: type[Rule], rule_id: int) -> None:
    rule = await _get_for_update(session, model, rule_id)
    await session.execute(delete(model).where(model.id == rule_id))
    await mark_changed(session)
    entity = _entity(model)
    audit.record(
        session, actor=actor, action=f"{entity}.delete", entity_type=entity, entity_id=rule_id, before=_snapshot(rule)
    )


async def _reorder(session: AsyncSession, *, actor: Actor, model: type[Rule], ids: list[int]) -> list[Rule]:
    """Put every rule of the table in the given order."""
    await _lock(session, model)
    existing = set(await session.scalars(select(model.id)))
    if len(ids) != len(set(ids)) or set(ids) != existing:
        raise UserError(ErrorCode.INVALID, "list every rule exactly once, in the new order", "ids")
    for position, rule_id in enumerate(ids, start=1):
        await session.execute(update(model).where(model.id == rule_id).values(position=position))
    await mark_changed(session)
    entity = _entity(model)
    audit.record(session, actor=actor, action=f"{entity}.reorder", entity_type=entity, entity_id=0, after={"ids": ids})
    return list(
        await session.scalars(
            select(model).order_by(model.position, model.id).execution_options(populate_existing=True)
        )
    )


# ---- recognition rules -------------------------------------------------------------------------


async def list_rules(session: AsyncSession) -> list[RecognitionRule]:
    """Recognition rules in the order they are tried."""
    return await _list(session, RecognitionRule)


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
    _name(name)
    checked = check_rule_config(kind, config)
    return await _create(
        session,
        actor=actor,
        model=RecognitionRule,
        name=name,
        position=position,
        target=target_of(kind),
        kind=kind,
        config=checked,
        channels=check_channels(channels),
        enabled=enabled,
    )


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
    rule = await _get_for_update(session, RecognitionRule, rule_id)
    before = _snapshot(rule)
    await _rename(session, rule, name)
    if config is not None:
        rule.config = check_rule_config(rule.kind, config)
    if channels is not None:
        rule.channels = check_channels(channels)
    if enabled is not None:
        rule.enabled = enabled
    return await _edited(session, actor=actor, rule=rule, before=before)


async def delete_rule(session: AsyncSession, *, actor: Actor, rule_id: int) -> None:
    await _delete(session, actor=actor, model=RecognitionRule, rule_id=rule_id)


async def reorder_rules(session: AsyncSession, *, actor: Actor, ids: list[int]) -> list[RecognitionRule]:
    """Put every recognition rule in the given order."""
    return await _reorder(session, actor=actor, model=RecognitionRule, ids=ids)


# ---- promotion rules ---------------------------------------------------------------------------


async def list_promotion_rules(session: AsyncSession) -> list[PromotionRule]:
    return await _list(session, PromotionRule)


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
    _name(name)
    source, target, field, policy = check_promotion(source, target, field, policy)
    return await _create(
        session,
        actor=actor,
        model=PromotionRule,
        name=name,
        position=position,
        source=source,
        target=target,
        field=field,
        policy=policy,
        channels=check_channels(channels),
        enabled=enabled,
    )


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
    """Change a promotion rule; only the arguments given change."""
    rule = await _get_for_update(session, PromotionRule, rule_id)
    before = _snapshot(rule)
    await _rename(session, rule, name)
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
    return await _edited(session, actor=actor, rule=rule, before=before)


async def delete_promotion_rule(session: AsyncSession, *, actor: Actor, rule_id: int) -> None:
    await _delete(session, actor=actor, model=PromotionRule, rule_id=rule_id)


async def reorder_promotion_rules(session: AsyncSession, *, actor: Actor, ids: list[int]) -> list[PromotionRule]:
    return await _reorder(session, actor=actor, model=PromotionRule, ids=ids)


# ---- routing rules ------------------------------------------------------------------------------


async def list_routing_rules(session: AsyncSession) -> list[RoutingRule]:
    """Routing rules in the order they are tried."""
    return await _list(session, RoutingRule)


async def _require_pool(session: AsyncSession, pool_id: int) -> int:
    if await session.get(Pool, pool_id) is None:
        raise not_found("pool", "poolId")
    return pool_id


async def create_routing_rule(
    session: AsyncSession,
    *,
    actor: Actor,
    name: str,
    pool_id: int,
    conditions: list[dict[str, Any]] | None = None,
    channels: list[str] | None = None,
    enabled: bool = True,
    position: int | None = None,
) -> RoutingRule:
    """Add a rule sending the cases contacts open to a pool when all its conditions hold."""
    _name(name)
    return await _create(
        session,
        actor=actor,
        model=RoutingRule,
        name=name,
        position=position,
        conditions=check_conditions(conditions),
        pool_id=await _require_pool(session, pool_id),
        channels=check_channels(channels),
        enabled=enabled,
    )


async def update_routing_rule(
    session: AsyncSession,
    *,
    actor: Actor,
    rule_id: int,
    name: str | None = None,
    pool_id: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
    channels: list[str] | None = None,
    enabled: bool | None = None,
) -> RoutingRule:
    """Change a routing rule; only the arguments given change."""
    rule = await _get_for_update(session, RoutingRule, rule_id)
    before = _snapshot(rule)
    await _rename(session, rule, name)
    if pool_id is not None:
        rule.pool_id = await _require_pool(session, pool_id)
    if conditions is not None:
        rule.conditions = check_conditions(conditions)
    if channels is not None:
        rule.channels = check_channels(channels)
    if enabled is not None:
        rule.enabled = enabled
    return await _edited(session, actor=actor, rule=rule, before=before)


async def delete_routing_rule(session: AsyncSession, *, actor: Actor, rule_id: int) -> None:
    await _delete(session, actor=actor, model=RoutingRule, rule_id=rule_id)


async def reorder_routing_rules(session: AsyncSession, *, actor: Actor, ids: list[int]) -> list[RoutingRule]:
    return await _reorder(session, actor=actor, model=RoutingRule, ids=ids)


# ---- no-match policies -------------------------------------------------------------------------


async def list_policies(session: AsyncSession) -> list[NoMatchPolicy]:
    """Every channel's policy; a channel without a row shows what the engine does for it."""
    rows = {p.channel: p for p in await session.scalars(select(NoMatchPolicy))}
    return [rows.get(c) or NoMatchPolicy(channel=c, **NO_ROW_POLICY) for c in CHANNELS]


async def set_policy(
    session: AsyncSession,
    *,
    actor: Actor,
    channel: str,
    create_customer: bool,
    create_case: bool,
    flag_for_review: bool,
) -> NoMatchPolicy:
    """Set what a channel does with a contact no rule recognised."""
    if channel not in CHANNELS:
        raise UserError(ErrorCode.INVALID, f"channel must be one of {', '.join(CHANNELS)}", "channel")
    values = {"create_customer": create_customer, "create_case": create_case, "flag_for_review": flag_for_review}
    before = await session.get(NoMatchPolicy, channel)
    before_values = {k: getattr(before, k) for k in values} if before else None
    policy = (
        await session.execute(
            pg_insert(NoMatchPolicy)
            .values(channel=channel, **values)
            .on_conflict_do_update(index_elements=["channel"], set_={**values, "updated_at": func.now()})
            .returning(NoMatchPolicy)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    await mark_changed(session)
    audit.record(
        session,
        actor=actor,
        action="no_match_policy.set",
        entity_type="no_match_policy",
        entity_id=0,
        before=before_values,
        after={"channel": channel, **values},
    )
    return policy


async def seed_defaults(conn: AsyncConnection) -> None:
    """Insert the default rules and policies (into empty tables)."""
    await conn.execute(insert(RecognitionRule.__table__), DEFAULT_RULES)
    await conn.execute(
        insert(NoMatchPolicy.__table__),
        [{"channel": channel, **policy} for channel, policy in DEFAULT_POLICIES.items()],
    )
    # A fresh version (never a reused one): a process's cached rule set must not survive a reset.
    await conn.execute(
        insert(RecognitionConfig.__table__).values(id=1, version=func.nextval("recognition_config_version_seq"))
    )


# ---- the rule set as YAML, reviewed and versioned like code (`casegraph rules export/import`) ------


async def export_rules(session: AsyncSession) -> str:
    """The whole configuration as a YAML document (routing rules name their pools)."""
    pool_names = dict((await session.execute(select(Pool.id, Pool.name))).all())
    document = {
        "version": FORMAT_VERSION,
        "recognition_rules": [
            {"name": r.name, "kind": r.kind, "config": r.config, "channels": r.channels, "enabled": r.enabled}
            for r in await list_rules(session)
        ],
        "promotion_rules": [
            {
                "name": p.name,
                "source": p.source,
                "target": p.target,
                "field": p.field,
                "policy": p.policy,
                "channels": p.channels,
                "enabled": p.enabled,
            }
            for p in await list_promotion_rules(session)
        ],
        "routing_rules": [
            {
                "name": r.name,
                "pool": pool_names[r.pool_id],
                "conditions": r.conditions,
                "channels": r.channels,
                "enabled": r.enabled,
            }
            for r in await list_routing_rules(session)
        ],
        "no_match_policies": {
            p.channel: {
                "create_customer": p.create_customer,
                "create_case": p.create_case,
                "flag_for_review": p.flag_for_review,
            }
            for p in await list_policies(session)
        },
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _prefixed(error: UserError, prefix: str) -> UserError:
    return UserError(error.code, f"{prefix}: {error.message}", f"{prefix}.{error.field}" if error.field else prefix)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(ErrorCode.INVALID, f"{where} must be a mapping", where)
    return value


async def import_rules(session: AsyncSession, *, actor: Actor, document: str) -> dict[str, int]:
    """Replace the whole configuration with a YAML document's; all or nothing."""
    try:
        data = yaml.safe_load(document)
    except yaml.YAMLError as error:
        raise UserError(ErrorCode.INVALID, f"not valid YAML: {error}", "file") from None
    data = _mapping(data, "file")
    if data.get("version") != FORMAT_VERSION:
        raise UserError(ErrorCode.INVALID, f"version must be {FORMAT_VERSION}", "version")
    recognition_rules = data.get("recognition_rules") or []
    promotion_rules = data.get("promotion_rules") or []
    routing_rules = data.get("routing_rules") or []
    policies = _mapping(data.get("no_match_policies") or {}, "no_match_policies")
    if not all(isinstance(rules, list) for rules in (recognition_rules, promotion_rules, routing_rules)):
        raise UserError(ErrorCode.INVALID, "recognition_rules, promotion_rules and routing_rules must be lists", "file")

    await session.execute(delete(RecognitionRule))
    await session.execute(delete(PromotionRule))
    await session.execute(delete(RoutingRule))
    await mark_changed(session)
    for index, item in enumerate(recognition_rules):
        where = f"recognition_rules.{index}"
        item = _mapping(item, where)
        try:
            await create_rule(
                session,
                actor=actor,
                name=item.get("name"),
                kind=str(item.get("kind", "")).lower(),
                config=item.get("config"),
                channels=item.get("channels"),
                enabled=bool(item.get("enabled", True)),
            )
        except UserError as error:
            raise _prefixed(error, where) from None
    for index, item in enumerate(promotion_rules):
        where = f"promotion_rules.{index}"
        item = _mapping(item, where)
        try:
            await create_promotion_rule(
                session,
                actor=actor,
                name=item.get("name"),
                source=item.get("source"),
                target=str(item.get("target", "")).lower(),
                field=item.get("field"),
                policy=str(item.get("policy", "")).lower(),
                channels=item.get("channels"),
                enabled=bool(item.get("enabled", True)),
            )
        except UserError as error:
            raise _prefixed(error, where) from None
    pool_ids = dict((await session.execute(select(Pool.name, Pool.id))).all())
    for index, item in enumerate(routing_rules):
        where = f"routing_rules.{index}"
        item = _mapping(item, where)
        if not isinstance(item.get("pool"), str) or item["pool"] not in pool_ids:
            raise UserError(ErrorCode.NOT_FOUND, f"{where}: no pool named {item.get('pool')!r}", f"{where}.pool")
        try:
            await create_routing_rule(
                session,
                actor=actor,
                name=item.get("name"),
                pool_id=pool_ids[item["pool"]],
                conditions=item.get("conditions"),
                channels=item.get("channels"),
                enabled=bool(item.get("enabled", True)),
            )
        except UserError as error:
            raise _prefixed(error, where) from None
    if policies:
        await session.execute(delete(NoMatchPolicy))
    for channel, item in policies.items():
        where = f"no_match_policies.{channel}"
        item = _mapping(item, where)
        try:
            await set_policy(
                session,
                actor=actor,
                channel=channel,
                create_customer=bool(item.get("create_customer", False)),
                create_case=bool(item.get("create_case", False)),
                flag_for_review=bool(item.get("flag_for_review", True)),
            )
        except UserError as error:
            raise _prefixed(error, where) from None
    return {
        "recognition_rules": len(recognition_rules),
        "promotion_rules": len(promotion_rules),
        "routing_rules": len(routing_rules),
        "no_match_policies": len(policies),
    }


# ---- carrying out an assessment -----------------------------------------------------------------


@dataclass
class HeldBack:
    """The customers and cases a batch of ingests creates, each written in one statement for the
    batch before anything reads them (customers first: the cases link them)."""

    customers: customer_service.NewCustomers
    cases: case_service.CaseOpenings

    async def write(self) -> None:
        await self.customers.write()
        await self.cases.write()


_LOCK_IDENTIFIER = select(func.pg_advisory_xact_lock(func.hashtextextended(bindparam("key"), 0)))


async def apply_outcome(
    session: AsyncSession,
    *,
    actor: Actor,
    view: ContactView,
    assessment: Assessment,
    region: str,
    identifiers_locked: bool = False,
    locked_customers: set[int] | frozenset[int] = frozenset(),
    held: HeldBack | None = None,
) -> Applied:
    """Create what the policy says, then promote the contact's data to the customer and the case.
    A batch locks the identifiers nobody held before recognition reads them (`identifiers_locked`:
    no other transaction can have given them to a new profile since) and the live customers it
    read (`locked_customers`), and writes the customers and cases it creates together (`held`)."""
    recognition, decision, promotions = assessment.recognition, assessment.decision, assessment.promotions
    if decision.create_customer and not identifiers_locked:
        await _settle_concurrent_newcomers(session, recognition, decision)
    applied = Applied(customer_id=recognition.customer_id, case_id=recognition.case_id)
    if decision.create_customer:
        profile, trace = new_profile(recognition, promotions, region)
        creation = {
            "actor": actor,
            "name": profile["name"],
            "identifiers": [customer_service.IdentifierInput(i["kind"], i["value"]) for i in profile["identifiers"]],
            "fields": profile["fields"],
            "region": region,
        }
        if held is None:
            customer = await customer_service.create_customer(session, **creation, enforce_form=False)
            applied.customer_id = customer.id
        else:
            applied.customer_id = await held.customers.create(**creation)
        applied.customer_created, applied.profile = True, profile
        applied.promoted += trace
    elif applied.customer_id is not None:
        if held is not None and any(p.target == "customer" for p in promotions):
            await held.write()  # the customer may be one the batch created
        applied.promoted += await _promote_to_customer(
            session, actor=actor, customer_id=applied.customer_id, promotions=promotions, region=region
        )
    elif decision.needs_review and not recognition.candidates:
        # Nothing is created: the agent gets the data as a partially completed profile to confirm.
        applied.profile, trace = new_profile(recognition, promotions, region)
        applied.promoted += [
            {**entry, "result": "proposed"} if entry["result"] == "applied" else entry for entry in trace
        ]

    if decision.create_case and applied.customer_id is not None and applied.case_id is None:
        promoted_subject, fields, trace = promoted_values(promotions, "case", None, {})
        applied.routed = route(assessment.rule_set, view)
        opening = {
            "actor": actor,
            "subject": new_case_subject(view, promoted_subject),
            "customer_ids": [applied.customer_id],
            "fields": fields,
            "pool_id": applied.routed["poolId"] if applied.routed else None,
            "customers_locked": applied.customer_created or applied.customer_id in locked_customers,
        }
        if held is None:
            case = await case_service.create_case(session, **opening)
            applied.case_id, applied.case_reference = case.id, case.reference
        else:
            applied.case_id = await held.cases.open(**opening)
        applied.case_created = True
        applied.promoted += trace
    elif applied.case_id is not None and any(p.target == "case" for p in promotions):
        if held is not None:
            await held.write()  # the case may be one the batch opened
        case = await session.get(Case, applied.case_id)
        assert case is not None
        subject, fields, trace = promoted_values(promotions, "case", case.subject, case.fields)
        if subject is not None or fields:
            await case_service.update_case(
                session, actor=actor, case_id=case.id, subject=subject, fields=fields or None
            )
        applied.promoted += trace
    return applied


async def _promote_to_customer(
    session: AsyncSession, *, actor: Actor, customer_id: int, promotions: list[Promotion], region: str
) -> list[dict[str, Any]]:
    """Promote to an existing customer: identifiers are added, name and fields updated; traced in rule order."""
    mine = [p for p in promotions if p.target == "customer"]
    if not mine:
        return []
    customer = await session.get(Customer, customer_id)
    assert customer is not None
    name, changes, value_trace = promoted_values(mine, "customer", customer.name, customer.fields)
    value_entries = iter(value_trace)
    trace: list[dict[str, Any]] = []
    for promotion in mine:
        if promotion.policy != "add_identifier":
            trace.append(next(value_entries))
            continue
        for raw in promotion.value if isinstance(promotion.value, list) else [promotion.value]:
            try:
                await customer_service.add_identifier(
                    session, actor=actor, customer_id=customer_id, kind=promotion.field, value=str(raw), region=region
                )
            except UserError as error:
                trace.append(
                    promotion.entry("unchanged" if error.code == ErrorCode.DUPLICATE else "skipped", error.message)
                )
            else:
                trace.append(promotion.entry("applied"))
    if name is not None or changes:
        await customer_service.update_customer(
            session, actor=actor, customer_id=customer_id, name=name, fields=changes or None, enforce_form=False
        )
    return trace


async def _settle_concurrent_newcomers(session: AsyncSession, recognition: Recognition, decision: Decision) -> None:
    """Two contacts from the same new sender at the same moment must not create two profiles.

    Lock the identifiers the new profile would carry (in a fixed order, so two transactions
    cannot deadlock), then look again: a profile committed meanwhile is recognised instead."""
    pairs = sorted(set(recognition.observed_identifiers))
    if not pairs:
        return
    for kind, value in pairs:
        await session.execute(_LOCK_IDENTIFIER, {"key": f"customer-identifier:{kind}:{value}"})
    ids = await customers_with(await session.connection(), pairs)
    if not ids:
        return
    decision.create_customer = False
    if len(ids) == 1:
        recognition.customer_id = ids[0]
        decision.reason = "a profile with these identifiers was created meanwhile by another contact: recognised"
        recognition.steps.append(
            {
                "rule": None,
                "kind": "recheck",
                "target": "customer",
                "outcome": "match",
                "reason": decision.reason,
                "matches": ids,
            }
        )
    else:
        recognition.candidates = ids
        decision.create_case, decision.needs_review = False, True
        decision.reason = "profiles with these identifiers were created meanwhile: an agent must choose"

"""The rule set as YAML, so it can be reviewed and versioned like code (`casegraph rules export/import`)."""

from __future__ import annotations

from typing import Any

import yaml
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.errors import ErrorCode, UserError
from app.models import NoMatchPolicy, PromotionRule, RecognitionRule
from app.recognition import rules as service

FORMAT_VERSION = 1


async def export_rules(session: AsyncSession) -> str:
    """The whole configuration as a YAML document."""
    document = {
        "version": FORMAT_VERSION,
        "recognition_rules": [
            {"name": r.name, "kind": r.kind, "config": r.config, "channels": r.channels, "enabled": r.enabled}
            for r in await service.list_rules(session)
        ],
        "promotion_rules": [
            {"name": p.name, "source": p.source, "target": p.target, "field": p.field, "policy": p.policy, "channels": p.channels, "enabled": p.enabled}
            for p in await service.list_promotion_rules(session)
        ],
        "no_match_policies": {
            p.channel: {"create_customer": p.create_customer, "create_case": p.create_case, "flag_for_review": p.flag_for_review}
            for p in await service.list_policies(session)
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
    policies = _mapping(data.get("no_match_policies") or {}, "no_match_policies")
    if not isinstance(recognition_rules, list) or not isinstance(promotion_rules, list):
        raise UserError(ErrorCode.INVALID, "recognition_rules and promotion_rules must be lists", "file")

    await session.execute(delete(RecognitionRule))
    await session.execute(delete(PromotionRule))
    await service.mark_changed(session)
    for index, item in enumerate(recognition_rules):
        where = f"recognition_rules.{index}"
        item = _mapping(item, where)
        try:
            await service.create_rule(
                session, actor=actor, name=item.get("name"), kind=str(item.get("kind", "")).lower(), config=item.get("config"),
                channels=item.get("channels"), enabled=bool(item.get("enabled", True)),
            )
        except UserError as error:
            raise _prefixed(error, where) from None
    for index, item in enumerate(promotion_rules):
        where = f"promotion_rules.{index}"
        item = _mapping(item, where)
        try:
            await service.create_promotion_rule(
                session, actor=actor, name=item.get("name"), source=item.get("source"), target=str(item.get("target", "")).lower(),
                field=item.get("field"), policy=str(item.get("policy", "")).lower(), channels=item.get("channels"),
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
            await service.set_policy(
                session, actor=actor, channel=channel,
                create_customer=bool(item.get("create_customer", False)),
                create_case=bool(item.get("create_case", False)),
                flag_for_review=bool(item.get("flag_for_review", True)),
            )
        except UserError as error:
            raise _prefixed(error, where) from None
    return {"recognition_rules": len(recognition_rules), "promotion_rules": len(promotion_rules), "no_match_policies": len(policies)}


async def export_to_file(path: str) -> None:
    """`casegraph rules export FILE`: write the configured rule set to FILE."""
    from pathlib import Path

    from app.runtime import create_runtime
    from app.settings import get_settings

    runtime = create_runtime(get_settings(), pool_size=1)
    try:
        async with runtime.reading() as session:
            document = await export_rules(session)
    finally:
        await runtime.close()
    Path(path).write_text(document, encoding="utf-8")


async def import_from_file(path: str) -> dict[str, int]:
    """`casegraph rules import FILE`: replace the rule set with FILE's, all or nothing."""
    from pathlib import Path

    from app.auth import Actor
    from app.runtime import create_runtime
    from app.settings import get_settings

    document = Path(path).read_text(encoding="utf-8")
    runtime = create_runtime(get_settings(), pool_size=1)
    try:
        async with runtime.transaction() as session:
            return await import_rules(session, actor=Actor(user_id=None, name="cli", role="admin"), document=document)
    finally:
        await runtime.close()

"""Case templates (seeds 002 and 003): the defaults a new case takes (subject, priority, pool,
fields) and the form its fields are checked against. Workflows point at a template to open their
cases with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import limits
from app.auth import Actor
from app.errors import ErrorCode, UserError, errors_at, not_found
from app.limits import check_text
from app.models import PRIORITIES, Case, CaseTemplate, Pool
from app.services import audit, forms
from app.settings import get_settings

_UNSET: Any = object()


def _snapshot(template: CaseTemplate) -> dict[str, Any]:
    return {
        "name": template.name,
        "description": template.description,
        "subject": template.subject,
        "priority": template.priority,
        "poolId": template.pool_id,
        "fields": template.fields,
        "active": template.active,
    }


async def _checked_name(session: AsyncSession, name: object, exclude_id: int | None = None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise UserError(ErrorCode.REQUIRED, "a case template needs a name", "name")
    check_text(name, "name", limits.NAME)
    query = select(CaseTemplate.id).where(CaseTemplate.name == name.strip())
    if exclude_id is not None:
        query = query.where(CaseTemplate.id != exclude_id)
    if await session.scalar(query) is not None:
        raise UserError(ErrorCode.DUPLICATE, f"a case template named {name.strip()!r} exists", "name")
    return name.strip()


def _checked_priority(priority: str | None) -> str | None:
    if priority is not None and priority not in PRIORITIES:
        raise UserError(ErrorCode.INVALID, f"priority must be one of {', '.join(PRIORITIES)}", "priority")
    return priority


async def _check_pool(session: AsyncSession, pool_id: int | None) -> None:
    if pool_id is not None and await session.get(Pool, pool_id) is None:
        raise not_found("pool", "poolId")


async def _checked_defaults(session: AsyncSession, template: CaseTemplate, fields: Any, region: str) -> dict[str, Any]:
    """Default fields are checked against the template's form as written values (mandatory ones may
    be left to the agent)."""
    return await forms.checked_fields(session, template_id=template.id, values=fields, stored={}, region=region)


async def create_template(
    session: AsyncSession,
    *,
    actor: Actor,
    name: str,
    description: str | None = None,
    subject: str | None = None,
    priority: str | None = None,
    pool_id: int | None = None,
    fields: dict[str, Any] | None = None,
    active: bool = True,
) -> CaseTemplate:
    """Add a case template; its form starts empty (add fields with formFieldCreate)."""
    check_text(description, "description", limits.DESCRIPTION)
    check_text(subject, "subject", limits.SUBJECT)
    await _check_pool(session, pool_id)
    template = CaseTemplate(
        name=await _checked_name(session, name),
        description=description,
        subject=subject.strip() if subject and subject.strip() else None,
        priority=_checked_priority(priority),
        pool_id=pool_id,
        active=active,
        fields=limits.check_json_object(fields, "fields") if fields is not None else {},
    )
    session.add(template)
    await session.flush()
    await session.refresh(template)
    audit.record(
        session,
        actor=actor,
        action="case_template.create",
        entity_type="case_template",
        entity_id=template.id,
        after=_snapshot(template),
    )
    return template


async def update_template(
    session: AsyncSession,
    *,
    actor: Actor,
    template_id: int,
    name: str | None = None,
    description: str | None = _UNSET,
    subject: str | None = _UNSET,
    priority: str | None = _UNSET,
    pool_id: int | None = _UNSET,
    fields: dict[str, Any] | None = None,
    active: bool | None = None,
    region: str,
) -> CaseTemplate:
    """Change a template (what is not given stays; `fields` replaces the default fields). Cases
    opened from it keep what they were opened with."""
    template = await session.get(CaseTemplate, template_id, with_for_update=True)
    if template is None:
        raise not_found("case template", "id")
    before = _snapshot(template)
    if name is not None:
        template.name = await _checked_name(session, name, exclude_id=template_id)
    if description is not _UNSET:
        check_text(description, "description", limits.DESCRIPTION)
        template.description = description
    if subject is not _UNSET:
        check_text(subject, "subject", limits.SUBJECT)
        template.subject = subject.strip() if subject and subject.strip() else None
    if priority is not _UNSET:
        template.priority = _checked_priority(priority)
    if pool_id is not _UNSET:
        await _check_pool(session, pool_id)
        template.pool_id = pool_id
    if fields is not None:
        template.fields = await _checked_defaults(session, template, fields, region)
    if active is not None:
        template.active = active
    await session.flush()
    await session.refresh(template)
    audit.record(
        session,
        actor=actor,
        action="case_template.update",
        entity_type="case_template",
        entity_id=template_id,
        before=before,
        after=_snapshot(template),
    )
    return template


async def delete_template(session: AsyncSession, *, actor: Actor, template_id: int) -> None:
    """Remove a template and its form; refused while cases were opened from it (deactivate it instead)."""
    template = await session.get(CaseTemplate, template_id, with_for_update=True)
    if template is None:
        raise not_found("case template", "id")
    if await session.scalar(select(exists().where(Case.template_id == template_id))):
        raise UserError(
            ErrorCode.IN_USE, f"cases were opened from template {template.name!r}: deactivate it instead", "id"
        )
    await session.execute(delete(CaseTemplate).where(CaseTemplate.id == template_id))
    audit.record(
        session,
        actor=actor,
        action="case_template.delete",
        entity_type="case_template",
        entity_id=template_id,
        before=_snapshot(template),
    )


async def list_templates(session: AsyncSession, *, include_inactive: bool = False) -> list[CaseTemplate]:
    query = select(CaseTemplate)
    if not include_inactive:
        query = query.where(CaseTemplate.active)
    return list(await session.scalars(query.order_by(CaseTemplate.name)))


@dataclass(frozen=True)
class CaseDefaults:
    """What a new case is opened with once its template's defaults fill what the input left out."""

    subject: str | None
    priority: str
    pool_id: int | None
    fields: dict[str, Any]


async def case_defaults(
    session: AsyncSession,
    *,
    template_id: int | None,
    subject: str | None,
    priority: str | None,
    pool_id: int | None,
    fields: dict[str, Any] | None,
    field: str = "templateId",
) -> CaseDefaults:
    """The input, completed by the template's defaults (the input wins; fields merge key by key)."""
    if template_id is None:
        return CaseDefaults(subject=subject, priority=priority or "normal", pool_id=pool_id, fields=fields or {})
    # FOR KEY SHARE: a deletion waits for this transaction, then finds the template in use.
    template = await session.get(CaseTemplate, template_id, with_for_update={"read": True, "key_share": True})
    if template is None:
        raise not_found("case template", field)
    if not template.active:
        raise UserError(ErrorCode.INACTIVE, f"case template {template.name!r} is no longer in use", field)
    return CaseDefaults(
        subject=subject if subject is not None and subject.strip() else template.subject,
        priority=priority or template.priority or "normal",
        pool_id=pool_id if pool_id is not None else template.pool_id,
        fields={**template.fields, **(fields or {})},
    )


# ---- the caseTemplates section of the configuration file ------------------------------------------


async def export_section(session: AsyncSession) -> list[dict[str, Any]]:
    pool_names = dict((await session.execute(select(Pool.id, Pool.name))).all())
    documents = []
    for template in await list_templates(session, include_inactive=True):
        document: dict[str, Any] = {"name": template.name}
        for key in ("description", "subject", "priority"):
            if getattr(template, key) is not None:
                document[key] = getattr(template, key)
        if template.pool_id is not None:
            document["pool"] = pool_names[template.pool_id]
        if template.fields:
            document["fields"] = template.fields
        if not template.active:
            document["active"] = False
        document["form"] = await forms.form_document(session, template_id=template.id)
        documents.append(document)
    return documents


async def import_section(session: AsyncSession, *, actor: Actor, items: list[dict[str, Any]]) -> set[str]:
    """Create or update each template of the file (matched by name) with its form; returns the names kept."""
    region = get_settings().default_phone_region
    kept: set[str] = set()
    for index, item in enumerate(items):
        with errors_at(f"caseTemplates.{index}"):
            name = str(item.get("name") or "").strip()
            if name in kept:
                raise UserError(ErrorCode.DUPLICATE, f"the case template {name!r} appears twice", "name")
            values = {
                "description": item.get("description"),
                "subject": item.get("subject"),
                "priority": item.get("priority"),
                "pool_id": await forms.pool_id_by_name(session, item.get("pool")),
                "active": bool(item.get("active", True)),
            }
            existing = await session.scalar(select(CaseTemplate).where(CaseTemplate.name == name))
            if existing is None:
                template = await create_template(session, actor=actor, name=name, **values)
            else:
                template = await update_template(session, actor=actor, template_id=existing.id, region=region, **values)
            with errors_at("form"):
                await forms.import_form(session, actor=actor, template_id=template.id, items=item.get("form") or [])
            # The default fields last: they are checked against the form just imported.
            await update_template(
                session, actor=actor, template_id=template.id, fields=item.get("fields") or {}, region=region
            )
            kept.add(name)
    return kept


async def prune_section(session: AsyncSession, *, actor: Actor, kept: set[str]) -> int:
    removed = [t for t in await list_templates(session, include_inactive=True) if t.name not in kept]
    for template in removed:
        with errors_at(f"caseTemplates[{template.name}]"):
            await delete_template(session, actor=actor, template_id=template.id)
    return len(removed)

"""Message templates: the system's own mails (SLA notices, task reminders) in the words a
supervisor chose, or in their defaults."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.errors import ErrorCode, UserError, errors_at
from app.mail.templates import SYSTEM_MESSAGES, render, template_error
from app.models import MESSAGE_KINDS, MessageTemplate
from app.services import audit


def _entity_id(kind: str) -> int:
    """Audit entries name what they concern by number: a message by its kind's place in the list."""
    return MESSAGE_KINDS.index(kind) + 1


def _check_kind(kind: object) -> str:
    if kind not in MESSAGE_KINDS:
        raise UserError(ErrorCode.INVALID, f"kind must be one of {', '.join(MESSAGE_KINDS)}", "kind")
    return kind


def _check_templates(subject: object, text: object) -> tuple[str, str]:
    for name, template in (("subject", subject), ("text", text)):
        if not isinstance(template, str) or not template.strip():
            raise UserError(ErrorCode.REQUIRED, f"a message needs a {name} template", name)
        problem = template_error(template)
        if problem is not None:
            raise UserError(ErrorCode.INVALID, problem, name)
    if "\n" in subject.strip() or "\r" in subject:
        raise UserError(ErrorCode.INVALID, "the subject template must be one line", "subject")
    return subject.strip(), text


async def edited(session: AsyncSession) -> dict[str, MessageTemplate]:
    return {t.kind: t for t in await session.scalars(select(MessageTemplate))}


async def set_template(session: AsyncSession, *, actor: Actor, kind: str, subject: str, text: str) -> MessageTemplate:
    """Make a system message's subject and text these templates."""
    kind = _check_kind(kind)
    subject, text = _check_templates(subject, text)
    statement = pg_insert(MessageTemplate).values(kind=kind, subject=subject, text=text)
    statement = statement.on_conflict_do_update(index_elements=["kind"], set_={"subject": subject, "text": text})
    template = (await session.execute(statement.returning(MessageTemplate))).scalar_one()
    audit.record(
        session,
        actor=actor,
        action="message.set",
        entity_type="message",
        entity_id=_entity_id(kind),
        after={"kind": kind, "subject": subject, "text": text},
    )
    return template


async def reset_template(session: AsyncSession, *, actor: Actor, kind: str) -> None:
    """Back to the default words."""
    kind = _check_kind(kind)
    removed = await session.execute(delete(MessageTemplate).where(MessageTemplate.kind == kind))
    if removed.rowcount:
        audit.record(session, actor=actor, action="message.reset", entity_type="message", entity_id=_entity_id(kind))


async def message(session: AsyncSession, kind: str, variables: dict[str, Any]) -> tuple[str, str]:
    """A system message's (subject, text) for these variables; an edited template that fails to
    render gives way to the default, so the message still goes out."""
    default = SYSTEM_MESSAGES[kind]
    custom = await session.get(MessageTemplate, kind)
    if custom is not None:
        subject, text = render(custom.subject, variables), render(custom.text, variables)
        if subject is not None and text is not None:
            return " ".join(subject.split()), text
    return " ".join((render(default.subject, variables) or "").split()), render(default.text, variables) or ""


# ---- the configuration file (app/config_file.py) ----------------------------------------------------


async def export_section(session: AsyncSession) -> list[dict[str, Any]]:
    return [{"kind": t.kind, "subject": t.subject, "text": t.text} for t in (await edited(session)).values()]


async def import_section(session: AsyncSession, *, actor: Actor, items: list[dict[str, Any]]) -> set[str]:
    kept: set[str] = set()
    for position, item in enumerate(items):
        with errors_at(f"messageTemplates.{position}"):
            kind = _check_kind(item.get("kind"))
            if kind in kept:
                raise UserError(ErrorCode.DUPLICATE, f"message {kind!r} appears twice", "kind")
            await set_template(session, actor=actor, kind=kind, subject=item.get("subject"), text=item.get("text"))
            kept.add(kind)
    return kept


async def prune_section(session: AsyncSession, *, actor: Actor, kept: set[str]) -> int:
    """The messages the file no longer lists go back to their defaults."""
    dropped = [kind for kind in await edited(session) if kind not in kept]
    for kind in dropped:
        await reset_template(session, actor=actor, kind=kind)
    return len(dropped)

"""What an agent's email replies are made of besides their own words: canned replies (text modules,
global or per pool) and signatures (the agent's own, or the sending mailbox's template)."""

from __future__ import annotations

import html as html_escape
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.errors import ErrorCode, UserError, errors_at, not_found
from app.mail.templates import render, render_html, template_error
from app.models import Case, CaseCustomer, Customer, CustomerIdentifier, Mailbox, Pool, ReplyTemplate, User
from app.services import audit

MAX_SIGNATURE_CHARS = 5_000
SIGNATURE_SEPARATOR = "-- \n"  # RFC 3676: mail readers recognise (and may fold) what follows

# What a canned reply can use; the README documents the same list.
REPLY_VARIABLES = {
    "reference": "the case's reference (CASE-000123)",
    "case": "the case: case.reference, case.subject, case.status, case.priority",
    "customer": "the case's customer: customer.name, customer.number, customer.email (empty when none)",
    "agent": "the agent replying: agent.name, agent.email, agent.role",
    "mailbox": "the mailbox the reply leaves from: mailbox.address, mailbox.name",
    "pool": "the name of the case's pool (empty when none)",
}
# What a mailbox's signature template can use.
SIGNATURE_VARIABLES = {
    "agent_name": "the agent's name",
    "agent_role": "the agent's role (agent, supervisor, admin)",
    "agent_email": "the agent's address",
    "agent_signature": "the agent's own signature (empty when none)",
    "mailbox_address": "the mailbox's address",
    "mailbox_name": "the mailbox's display name",
}


def _one_line(value: Any, field: str, *, required: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise UserError(ErrorCode.REQUIRED, f"{field} is required", field)
        return None
    if not isinstance(value, str) or any(c in value.strip() for c in "\r\n\0"):
        raise UserError(ErrorCode.INVALID, f"{field} must be one line of text", field)
    return value.strip()


def _template(value: Any, field: str, *, required: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise UserError(ErrorCode.REQUIRED, f"{field} is required", field)
        return None
    if not isinstance(value, str):
        raise UserError(ErrorCode.INVALID, f"{field} must be text", field)
    problem = template_error(value)
    if problem is not None:
        raise UserError(ErrorCode.INVALID, problem, field)
    return value


def checked_signature_template(value: Any, field: str = "signature") -> str | None:
    """A mailbox's signature template, valid, or None for none."""
    return _template(value, field)


# ---- canned replies -------------------------------------------------------------------------------


def _snapshot(template: ReplyTemplate) -> dict[str, Any]:
    return {
        "name": template.name,
        "pool_id": template.pool_id,
        "subject": template.subject,
        "text": template.text,
        "html": template.html,
    }


async def _checked(
    session: AsyncSession, *, name: Any, pool_id: int | None, subject: Any, text: Any, html: Any, exclude_id: int | None
) -> dict[str, Any]:
    values = {
        "name": _one_line(name, "name", required=True),
        "pool_id": pool_id,
        "subject": _one_line(subject, "subject"),
        "text": _template(text, "text", required=True),
        "html": _template(html, "html"),
    }
    if values["subject"] is not None:
        _template(values["subject"], "subject")
    if pool_id is not None and await session.get(Pool, pool_id) is None:
        raise not_found("pool", "poolId")
    taken = select(ReplyTemplate.id).where(
        ReplyTemplate.name == values["name"],
        ReplyTemplate.pool_id.is_(None) if pool_id is None else ReplyTemplate.pool_id == pool_id,
    )
    if exclude_id is not None:
        taken = taken.where(ReplyTemplate.id != exclude_id)
    if await session.scalar(taken) is not None:
        where = "for every pool" if pool_id is None else "in this pool"
        raise UserError(ErrorCode.DUPLICATE, f"a canned reply named {values['name']!r} exists {where}", "name")
    return values


async def create_reply_template(
    session: AsyncSession,
    *,
    actor: Actor,
    name: str,
    text: str,
    pool_id: int | None = None,
    subject: str | None = None,
    html: str | None = None,
) -> ReplyTemplate:
    """Add a canned reply, for every pool (no pool) or for one."""
    values = await _checked(session, name=name, pool_id=pool_id, subject=subject, text=text, html=html, exclude_id=None)
    template = ReplyTemplate(**values)
    session.add(template)
    await session.flush()
    await session.refresh(template)
    audit.record(
        session,
        actor=actor,
        action="replyTemplate.create",
        entity_type="reply_template",
        entity_id=template.id,
        after=_snapshot(template),
    )
    return template


_KEEP = object()


async def update_reply_template(
    session: AsyncSession,
    *,
    actor: Actor,
    template_id: int,
    name: Any = _KEEP,
    pool_id: Any = _KEEP,
    subject: Any = _KEEP,
    text: Any = _KEEP,
    html: Any = _KEEP,
) -> ReplyTemplate:
    """Change a canned reply; what is not given stays."""
    template = await session.get(ReplyTemplate, template_id, with_for_update=True)
    if template is None:
        raise not_found("reply template", "id")
    before = _snapshot(template)
    given = {"name": name, "pool_id": pool_id, "subject": subject, "text": text, "html": html}
    merged = {key: before[key] if value is _KEEP else value for key, value in given.items()}
    values = await _checked(session, **merged, exclude_id=template_id)
    for column, value in values.items():
        setattr(template, column, value)
    await session.flush()
    await session.refresh(template)
    audit.record(
        session,
        actor=actor,
        action="replyTemplate.update",
        entity_type="reply_template",
        entity_id=template_id,
        before=before,
        after=_snapshot(template),
    )
    return template


async def delete_reply_template(session: AsyncSession, *, actor: Actor, template_id: int) -> None:
    template = await session.get(ReplyTemplate, template_id)
    if template is None:
        raise not_found("reply template", "id")
    await session.execute(delete(ReplyTemplate).where(ReplyTemplate.id == template_id))
    audit.record(
        session,
        actor=actor,
        action="replyTemplate.delete",
        entity_type="reply_template",
        entity_id=template_id,
        before=_snapshot(template),
    )


async def list_reply_templates(session: AsyncSession, *, pool_id: int | None = None) -> list[ReplyTemplate]:
    """Every canned reply by name; for a pool, the global ones and that pool's."""
    statement = select(ReplyTemplate).order_by(ReplyTemplate.name, ReplyTemplate.pool_id.nulls_first())
    if pool_id is not None:
        statement = statement.where((ReplyTemplate.pool_id.is_(None)) | (ReplyTemplate.pool_id == pool_id))
    return list(await session.scalars(statement))


@dataclass
class RenderedReply:
    subject: str | None
    text: str
    html: str | None


async def reply_variables(session: AsyncSession, *, case: Case, actor: Actor, mailbox: Mailbox | None) -> dict:
    """The variables of a canned reply on this case (REPLY_VARIABLES)."""
    customer = await session.scalar(
        select(Customer)
        .join(CaseCustomer, CaseCustomer.customer_id == Customer.id)
        .where(CaseCustomer.case_id == case.id, CaseCustomer.is_primary)
    )
    email = (
        await session.scalar(
            select(CustomerIdentifier.value)
            .where(CustomerIdentifier.customer_id == customer.id, CustomerIdentifier.kind == "email")
            .order_by(CustomerIdentifier.id)
            .limit(1)
        )
        if customer
        else None
    )
    user = await session.get(User, actor.user_id) if actor.user_id else None
    pool_name = await session.scalar(select(Pool.name).where(Pool.id == case.pool_id)) if case.pool_id else None
    return {
        "reference": case.reference,
        "case": {
            "reference": case.reference,
            "subject": case.subject or "",
            "status": case.status,
            "priority": case.priority,
        },
        "customer": {
            "name": (customer.name if customer else None) or "",
            "number": customer.number if customer else "",
            "email": email or "",
        },
        "agent": {
            "name": user.name if user else actor.name,
            "email": (user.email if user else None) or "",
            "role": actor.role,
        },
        "mailbox": {
            "address": mailbox.address if mailbox else "",
            "name": (mailbox.display_name if mailbox else None) or "",
        },
        "pool": pool_name or "",
    }


async def render_reply_template(
    session: AsyncSession, *, template_id: int, case: Case, actor: Actor, mailbox: Mailbox | None
) -> RenderedReply:
    """A canned reply filled in for this case; one that cannot be rendered is refused, never sent half-made."""
    template = await session.get(ReplyTemplate, template_id)
    if template is None:
        raise not_found("reply template", "templateId")
    if template.pool_id is not None and template.pool_id != case.pool_id:
        raise UserError(ErrorCode.INVALID, "this canned reply belongs to another pool", "templateId")
    variables = await reply_variables(session, case=case, actor=actor, mailbox=mailbox)
    subject = render(template.subject, variables) if template.subject else None
    text = render(template.text, variables)
    html = render_html(template.html, variables) if template.html else None
    if text is None or (template.subject and subject is None) or (template.html and html is None):
        raise UserError(
            ErrorCode.INVALID, "this canned reply cannot be rendered; a supervisor must fix it", "templateId"
        )
    return RenderedReply(subject=" ".join(subject.split()) if subject else None, text=text, html=html)


# ---- signatures ---------------------------------------------------------------------------------------


async def set_signature(session: AsyncSession, *, actor: Actor, user_id: int, signature: str | None) -> User:
    """Set a user's signature (None or blank removes it). Agents set their own; supervisors and
    admins anyone's."""
    if user_id != actor.user_id and not actor.has_role("supervisor"):
        raise UserError(ErrorCode.FORBIDDEN, "agents may only change their own signature", "userId")
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        raise not_found("user", "userId")
    if signature is not None and not isinstance(signature, str):
        raise UserError(ErrorCode.INVALID, "signature must be text", "signature")
    signature = (signature or "").replace("\r\n", "\n").strip("\n")
    signature = signature if signature.strip() else None
    if signature is not None and (len(signature) > MAX_SIGNATURE_CHARS or "\0" in signature):
        raise UserError(ErrorCode.INVALID, f"a signature has at most {MAX_SIGNATURE_CHARS} characters", "signature")
    before = user.signature
    user.signature = signature
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="user.signature",
        entity_type="user",
        entity_id=user_id,
        before={"signature": before},
        after={"signature": signature},
    )
    return user


async def signature_for(session: AsyncSession, *, actor: Actor, mailbox: Mailbox) -> str | None:
    """The signature of a reply: the mailbox's template when it has one (it may include the
    agent's own as agent_signature), else the agent's own; None for none."""
    user = await session.get(User, actor.user_id) if actor.user_id else None
    own = user.signature if user else None
    if not mailbox.signature_template:
        return own
    rendered = render(
        mailbox.signature_template,
        {
            "agent_name": user.name if user else actor.name,
            "agent_role": actor.role,
            "agent_email": (user.email if user else None) or "",
            "agent_signature": own or "",
            "mailbox_address": mailbox.address,
            "mailbox_name": mailbox.display_name or "",
        },
    )
    rendered = (rendered or "").strip("\n")
    return rendered or own


def signed(text: str, html: str | None, signature: str | None) -> tuple[str, str | None]:
    """The text and HTML with the signature after a separator, once: a body that already ends
    with it (a canned reply that holds it) is left as it is."""
    if not signature:
        return text, html
    if not text.rstrip().endswith(signature.strip()):
        text = f"{text.rstrip()}\n\n{SIGNATURE_SEPARATOR}{signature}\n"
    if html is not None:
        escaped = html_escape.escape(signature).replace("\n", "<br>\n")
        if escaped not in html:
            html = f'{html}\n<div class="signature">-- <br>\n{escaped}</div>\n'
    return text, html


# ---- the configuration file (app/config_file.py) ----------------------------------------------------


async def export_section(session: AsyncSession) -> list[dict[str, Any]]:
    pool_names = dict((await session.execute(select(Pool.id, Pool.name))).all())
    return [
        {
            "name": t.name,
            "pool": pool_names.get(t.pool_id),
            "subject": t.subject,
            "text": t.text,
            "html": t.html,
        }
        for t in await list_reply_templates(session)
    ]


def _key(pool: str | None, name: str) -> str:
    return f"{pool or ''}/{name}"


async def import_section(session: AsyncSession, *, actor: Actor, items: list[dict[str, Any]]) -> set[str]:
    """Each canned reply of the file, matched by pool and name; pools are named, and must exist."""
    kept: set[str] = set()
    for position, item in enumerate(items):
        with errors_at(f"replyTemplates.{position}"):
            pool_name = _one_line(item.get("pool"), "pool")
            pool_id = None
            if pool_name is not None:
                pool_id = await session.scalar(select(Pool.id).where(Pool.name == pool_name))
                if pool_id is None:
                    raise UserError(ErrorCode.NOT_FOUND, f"no pool named {pool_name!r}", "pool")
            name = _one_line(item.get("name"), "name", required=True)
            if _key(pool_name, name) in kept:
                raise UserError(ErrorCode.DUPLICATE, f"canned reply {name!r} appears twice", "name")
            existing = await session.scalar(
                select(ReplyTemplate.id).where(
                    ReplyTemplate.name == name,
                    ReplyTemplate.pool_id.is_(None) if pool_id is None else ReplyTemplate.pool_id == pool_id,
                )
            )
            values = {"subject": item.get("subject"), "text": item.get("text"), "html": item.get("html")}
            if existing is None:
                await create_reply_template(session, actor=actor, name=name, pool_id=pool_id, **values)
            else:
                await update_reply_template(session, actor=actor, template_id=existing, **values)
            kept.add(_key(pool_name, name))
    return kept


async def prune_section(session: AsyncSession, *, actor: Actor, kept: set[str]) -> int:
    """The canned replies the file no longer lists are deleted."""
    pool_names = dict((await session.execute(select(Pool.id, Pool.name))).all())
    dropped = [t for t in await list_reply_templates(session) if _key(pool_names.get(t.pool_id), t.name) not in kept]
    for template in dropped:
        await delete_reply_template(session, actor=actor, template_id=template.id)
    return len(dropped)

"""Mail: supervised mailboxes (as data and as a YAML file), inbound messages stored before they are
acknowledged, the intake that turns a stored message into a recognised contact, and IMAP polling."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import html as html_escape
import logging
import math
import os
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

import aiosmtplib
import yaml
from aioimaplib import AioImapException
from arq.connections import ArqRedis
from sqlalchemy import ARRAY, LargeBinary, String, bindparam, delete, func, select, text, update
from sqlalchemy import case as when
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.auth import SYSTEM, Actor
from app.contact_data import ContactData
from app.errors import ErrorCode, UserError, not_found
from app.mail.compose import Outgoing, compose, new_message_id
from app.mail.imap import ImapError, ImapFolder, open_folder, tls_context
from app.mail.parse import ParsedMail, html_to_text, parse_message, parse_messages
from app.mail.templates import checked_auto_response, render
from app.models import (
    IMAP_MARKS,
    MAIL_INTAKES,
    MAIL_SECURITY,
    Case,
    Contact,
    Customer,
    InboundMessage,
    Mailbox,
    OutboundMessage,
    Pool,
    User,
)
from app.recognition.connector import SECRET_ENV_PREFIX
from app.services import audit, replies
from app.services import contacts as contact_service
from app.services import queues as queue_service
from app.services.contacts import failure_code, ingest_contact
from app.settings import JOB_QUEUE

if TYPE_CHECKING:
    from app.runtime import Runtime

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
IMAP_SECURITY = MAIL_SECURITY
MAX_INTAKE_ATTEMPTS = 5

# The settings groups as the API and the YAML file show them, and the columns they are stored in.
IMAP_FIELDS = {
    "host": "imap_host",
    "port": "imap_port",
    "security": "imap_security",
    "user": "imap_user",
    "secret_env": "imap_secret_env",
    "folder": "imap_folder",
    "mark": "imap_mark",
    "move_to": "imap_move_to",
    "idle": "imap_idle",
    "poll_seconds": "poll_seconds",
}
RELAY_FIELDS = {
    "host": "relay_host",
    "port": "relay_port",
    "security": "relay_security",
    "user": "relay_user",
    "secret_env": "relay_secret_env",
    "from_address": "relay_from",
}
IMAP_DEFAULTS = {"security": "tls", "folder": "INBOX", "mark": "flag", "idle": False, "poll_seconds": 60}
RELAY_DEFAULTS = {"security": "starttls"}
_PORTS = {
    ("imap", "tls"): 993,
    ("imap", "starttls"): 143,
    ("imap", "none"): 143,
    ("relay", "tls"): 465,
    ("relay", "starttls"): 587,
}


# ---- mailboxes as data ---------------------------------------------------------------------------


def _plain(value: Any, field: str, *, required: bool = False) -> str | None:
    """A one-line string: CR, LF and NUL never reach a header or a command built from it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise UserError(ErrorCode.REQUIRED, f"{field} is required", field)
        return None
    if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
        raise UserError(ErrorCode.INVALID, f"{field} must be one line of text", field)
    return value.strip()


def normalized_address(value: Any, field: str = "address") -> str:
    """A bare mail address, lower-cased; anything else (a display name, spaces, CR/LF) is refused."""
    text = _plain(value, field, required=True)
    name, address = parseaddr(text)
    if name or address != text or address.count("@") != 1 or " " in address or not all(address.split("@")):
        raise UserError(ErrorCode.INVALID, f"{field} must be a mail address like support@example.com", field)
    return address.lower()


def _port(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise UserError(ErrorCode.INVALID, f"{field} must be a port number (1-65535)", field)
    return value


def _secret_env(value: Any, field: str) -> str | None:
    name = _plain(value, field)
    if name is not None and (not name.startswith(SECRET_ENV_PREFIX) or name == SECRET_ENV_PREFIX):
        raise UserError(
            ErrorCode.INVALID, f"{field} must name an environment variable starting with {SECRET_ENV_PREFIX}", field
        )
    return name


def _group(
    values: dict[str, Any] | None, fields: dict[str, str], defaults: dict[str, Any], where: str
) -> dict[str, Any]:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise UserError(ErrorCode.INVALID, f"{where} must be a mapping", where)
    unknown = set(values) - set(fields)
    if unknown:
        raise UserError(ErrorCode.INVALID, f"{where} has unknown settings: {', '.join(sorted(unknown))}", where)
    merged = {**defaults, **{k: v for k, v in values.items() if v is not None}}
    return {column: merged.get(key) for key, column in fields.items()}


def _checked_imap(columns: dict[str, Any], intake: str) -> None:
    w = "imap"
    columns["imap_host"] = _plain(columns["imap_host"], f"{w}.host", required=intake == "imap")
    columns["imap_user"] = _plain(columns["imap_user"], f"{w}.user", required=intake == "imap")
    columns["imap_secret_env"] = _secret_env(columns["imap_secret_env"], f"{w}.secretEnv")
    if columns["imap_security"] not in IMAP_SECURITY:
        raise UserError(ErrorCode.INVALID, f"{w}.security must be one of {', '.join(IMAP_SECURITY)}", f"{w}.security")
    columns["imap_port"] = _port(columns["imap_port"], f"{w}.port") or _PORTS[("imap", columns["imap_security"])]
    columns["imap_folder"] = _plain(columns["imap_folder"], f"{w}.folder", required=True)
    if columns["imap_mark"] not in IMAP_MARKS:
        raise UserError(ErrorCode.INVALID, f"{w}.mark must be one of {', '.join(IMAP_MARKS)}", f"{w}.mark")
    columns["imap_move_to"] = _plain(columns["imap_move_to"], f"{w}.moveTo", required=columns["imap_mark"] == "move")
    columns["imap_idle"] = bool(columns["imap_idle"])
    seconds = columns["poll_seconds"]
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 5:
        raise UserError(ErrorCode.INVALID, f"{w}.pollSeconds must be at least 5", f"{w}.pollSeconds")


def _checked_relay(columns: dict[str, Any]) -> None:
    w = "relay"
    columns["relay_host"] = _plain(columns["relay_host"], f"{w}.host")
    columns["relay_user"] = _plain(columns["relay_user"], f"{w}.user")
    columns["relay_secret_env"] = _secret_env(columns["relay_secret_env"], f"{w}.secretEnv")
    if columns["relay_security"] not in MAIL_SECURITY:
        raise UserError(ErrorCode.INVALID, f"{w}.security must be one of {', '.join(MAIL_SECURITY)}", f"{w}.security")
    columns["relay_port"] = _port(columns["relay_port"], f"{w}.port") or _PORTS.get(
        ("relay", columns["relay_security"]), 25
    )
    if columns["relay_from"] is not None:
        columns["relay_from"] = normalized_address(columns["relay_from"], f"{w}.fromAddress")


async def _mailbox_columns(
    session: AsyncSession,
    *,
    address: Any,
    display_name: Any,
    pool_id: int | None,
    intake: Any,
    enabled: bool,
    imap: dict[str, Any] | None,
    relay: dict[str, Any] | None,
    auto_response: dict[str, Any] | None = None,
    signature: str | None = None,
    exclude_id: int | None = None,
) -> dict[str, Any]:
    """A mailbox's columns from its settings, every one checked."""
    address = normalized_address(address)
    taken = select(Mailbox.id).where(Mailbox.address == address)
    if exclude_id is not None:
        taken = taken.where(Mailbox.id != exclude_id)
    if await session.scalar(taken) is not None:
        raise UserError(ErrorCode.DUPLICATE, f"a mailbox for {address} exists", "address")
    if intake not in MAIL_INTAKES:
        raise UserError(ErrorCode.INVALID, f"intake must be one of {', '.join(MAIL_INTAKES)}", "intake")
    if pool_id is not None and await session.get(Pool, pool_id) is None:
        raise not_found("pool", "poolId")
    columns = {
        "address": address,
        "display_name": _plain(display_name, "displayName"),
        "pool_id": pool_id,
        "intake": intake,
        "enabled": bool(enabled),
        **_group(imap, IMAP_FIELDS, IMAP_DEFAULTS, "imap"),
        **_group(relay, RELAY_FIELDS, RELAY_DEFAULTS, "relay"),
    }
    _checked_imap(columns, intake)
    _checked_relay(columns)
    columns["auto_response_subject"], columns["auto_response_text"] = checked_auto_response(auto_response)
    columns["signature_template"] = replies.checked_signature_template(signature)
    return columns


def _snapshot(mailbox: Mailbox) -> dict[str, Any]:
    """A mailbox's settings for the audit trail (secrets are only variable names, never values)."""
    return {key: getattr(mailbox, key) for key in ("address", "display_name", "pool_id", "intake", "enabled")} | {
        "imap": {key: getattr(mailbox, column) for key, column in IMAP_FIELDS.items()},
        "relay": {key: getattr(mailbox, column) for key, column in RELAY_FIELDS.items()},
        "auto_response": queue_service.auto_response_of(mailbox),
        "signature": mailbox.signature_template,
    }


async def create_mailbox(
    session: AsyncSession,
    *,
    actor: Actor,
    address: str,
    intake: str,
    display_name: str | None = None,
    pool_id: int | None = None,
    enabled: bool = True,
    imap: dict[str, Any] | None = None,
    relay: dict[str, Any] | None = None,
    auto_response: dict[str, Any] | None = None,
    signature: str | None = None,
) -> Mailbox:
    """Add a supervised mailbox."""
    columns = await _mailbox_columns(
        session,
        address=address,
        display_name=display_name,
        pool_id=pool_id,
        intake=intake,
        enabled=enabled,
        imap=imap,
        relay=relay,
        auto_response=auto_response,
        signature=signature,
    )
    mailbox = Mailbox(**columns)
    session.add(mailbox)
    await session.flush()
    await session.refresh(mailbox)
    audit.record(
        session,
        actor=actor,
        action="mailbox.create",
        entity_type="mailbox",
        entity_id=mailbox.id,
        after=_snapshot(mailbox),
    )
    return mailbox


_KEEP = object()


async def update_mailbox(
    session: AsyncSession,
    *,
    actor: Actor,
    mailbox_id: int,
    address: str | None = None,
    display_name: Any = _KEEP,
    pool_id: Any = _KEEP,
    intake: str | None = None,
    enabled: bool | None = None,
    imap: dict[str, Any] | None = None,
    relay: dict[str, Any] | None = None,
    auto_response: Any = _KEEP,
    signature: Any = _KEEP,
) -> Mailbox:
    """Change a mailbox; a settings group given (imap, relay, auto-response) replaces the whole group."""
    mailbox = await session.get(Mailbox, mailbox_id, with_for_update=True)
    if mailbox is None:
        raise not_found("mailbox", "id")
    before = _snapshot(mailbox)
    columns = await _mailbox_columns(
        session,
        address=address if address is not None else mailbox.address,
        display_name=mailbox.display_name if display_name is _KEEP else display_name,
        pool_id=mailbox.pool_id if pool_id is _KEEP else pool_id,
        intake=intake if intake is not None else mailbox.intake,
        enabled=mailbox.enabled if enabled is None else enabled,
        imap=imap if imap is not None else before["imap"],
        relay=relay if relay is not None else before["relay"],
        auto_response=before["auto_response"] if auto_response is _KEEP else auto_response,
        signature=before["signature"] if signature is _KEEP else signature,
        exclude_id=mailbox_id,
    )
    moved = (columns["imap_host"], columns["imap_user"], columns["imap_folder"]) != (
        mailbox.imap_host,
        mailbox.imap_user,
        mailbox.imap_folder,
    )
    for column, value in columns.items():
        setattr(mailbox, column, value)
    if moved:  # another folder: its UIDs have nothing to do with the old one's
        mailbox.imap_uid_validity, mailbox.imap_last_uid = None, 0
    await session.flush()
    await session.refresh(mailbox)
    audit.record(
        session,
        actor=actor,
        action="mailbox.update",
        entity_type="mailbox",
        entity_id=mailbox_id,
        before=before,
        after=_snapshot(mailbox),
    )
    return mailbox


async def delete_mailbox(session: AsyncSession, *, actor: Actor, mailbox_id: int) -> None:
    """Remove a mailbox; the messages it took in stay, as do their contacts."""
    mailbox = await session.get(Mailbox, mailbox_id)
    if mailbox is None:
        raise not_found("mailbox", "id")
    await session.execute(delete(Mailbox).where(Mailbox.id == mailbox_id))
    audit.record(
        session,
        actor=actor,
        action="mailbox.delete",
        entity_type="mailbox",
        entity_id=mailbox_id,
        before=_snapshot(mailbox),
    )


async def list_mailboxes(session: AsyncSession) -> list[Mailbox]:
    return list(await session.scalars(select(Mailbox).order_by(Mailbox.address)))


async def get_mailbox(session: AsyncSession, mailbox_id: int) -> Mailbox | None:
    return await session.get(Mailbox, mailbox_id)


# ---- the configuration as YAML (`casegraph mail export|import FILE`) -------------------------------


async def export_config(session: AsyncSession) -> str:
    """Pools and mailboxes as a YAML document (secrets appear only as variable names)."""
    pools = await queue_service.list_pools(session)
    pool_names = {pool.id: pool.name for pool in pools}
    members = await queue_service.members_of(session, list(pool_names))
    user_names = dict((await session.execute(select(User.id, User.name))).all())
    mailboxes = []
    for mailbox in await list_mailboxes(session):
        snapshot = _snapshot(mailbox)
        mailboxes.append(
            {
                "address": mailbox.address,
                "display_name": mailbox.display_name,
                "pool": pool_names.get(mailbox.pool_id),
                "intake": mailbox.intake,
                "enabled": mailbox.enabled,
                "imap": snapshot["imap"],
                "relay": snapshot["relay"],
                "auto_response": snapshot["auto_response"],
                "signature": snapshot["signature"],
            }
        )
    document = {
        "version": FORMAT_VERSION,
        "pools": [
            {
                "name": p.name,
                "description": p.description,
                "priority": p.priority,
                "auto_response": queue_service.auto_response_of(p),
                "reply_status": p.reply_status,
                "reopen_within_days": p.reopen_within_days,
                "members": [{"user": user_names[m.user_id], "priority": m.priority} for m in members[p.id]],
            }
            for p in pools
        ],
        "mailboxes": mailboxes,
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _prefixed(error: UserError, prefix: str) -> UserError:
    return UserError(error.code, f"{prefix}: {error.message}", f"{prefix}.{error.field}" if error.field else prefix)


def _list_of_mappings(value: Any, where: str) -> list[dict[str, Any]]:
    value = value or []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise UserError(ErrorCode.INVALID, f"{where} must be a list of mappings", where)
    return value


async def import_config(session: AsyncSession, *, actor: Actor, document: str) -> dict[str, int]:
    """Make the pools and mailboxes those of a YAML document, all or nothing. Matched by pool name
    and mailbox address, so a mailbox that stays keeps where its polling stands."""
    try:
        data = yaml.safe_load(document)
    except yaml.YAMLError as error:
        raise UserError(ErrorCode.INVALID, f"not valid YAML: {error}", "file") from None
    if not isinstance(data, dict):
        raise UserError(ErrorCode.INVALID, "file must be a mapping", "file")
    if data.get("version") != FORMAT_VERSION:
        raise UserError(ErrorCode.INVALID, f"version must be {FORMAT_VERSION}", "version")
    pools = _list_of_mappings(data.get("pools"), "pools")
    mailboxes = _list_of_mappings(data.get("mailboxes"), "mailboxes")

    pool_ids: dict[str, int] = {}
    for index, item in enumerate(pools):
        where = f"pools.{index}"
        try:
            existing = await queue_service.pool_by_name(session, str(item.get("name", "")).strip())
            values = {
                "name": item.get("name"),
                "description": item.get("description"),
                "priority": int(item.get("priority") or 0),
                "reply_status": item.get("reply_status"),
                "reopen_within_days": item.get("reopen_within_days"),
            }
            if existing is None:
                pool = await queue_service.create_pool(session, actor=actor, **values)
            else:
                pool = await queue_service.update_pool(session, actor=actor, pool_id=existing.id, **values)
            if "members" in item:  # a file without the key leaves the members as they are
                members = [
                    (str(m.get("user", "")), int(m.get("priority") or 0))
                    for m in _list_of_mappings(item["members"], "members")
                ]
                await queue_service.replace_members(session, actor=actor, pool_id=pool.id, members=members)
        except UserError as error:
            raise _prefixed(error, where) from None
        except (TypeError, ValueError):
            raise UserError(
                ErrorCode.INVALID, f"{where}: priorities must be whole numbers", f"{where}.priority"
            ) from None
        pool_ids[pool.name] = pool.id

    kept: list[int] = []
    for index, item in enumerate(mailboxes):
        where = f"mailboxes.{index}"
        pool_name = item.get("pool")
        if pool_name is not None and pool_name not in pool_ids:
            raise UserError(ErrorCode.NOT_FOUND, f"{where}: no pool named {pool_name!r} in the file", f"{where}.pool")
        values = {
            "display_name": item.get("display_name"),
            "pool_id": pool_ids.get(pool_name) if pool_name is not None else None,
            "intake": str(item.get("intake", "")).lower(),
            "enabled": bool(item.get("enabled", True)),
            "imap": item.get("imap") or {},
            "relay": item.get("relay") or {},
            "auto_response": item.get("auto_response"),
            "signature": item.get("signature"),
        }
        try:
            address = normalized_address(item.get("address"))
            existing = await session.scalar(select(Mailbox.id).where(Mailbox.address == address))
            if existing is None:
                mailbox = await create_mailbox(session, actor=actor, address=address, **values)
            else:
                mailbox = await update_mailbox(session, actor=actor, mailbox_id=existing, address=address, **values)
        except UserError as error:
            raise _prefixed(error, where) from None
        kept.append(mailbox.id)

    for mailbox in await list_mailboxes(session):
        if mailbox.id not in kept:
            await delete_mailbox(session, actor=actor, mailbox_id=mailbox.id)
    for pool in await queue_service.list_pools(session):
        if pool.id not in pool_ids.values():
            await queue_service.delete_pool(session, actor=actor, pool_id=pool.id)
    return {"pools": len(pools), "mailboxes": len(mailboxes)}


# ---- inbound messages: stored first, taken in by the intake job --------------------------------------

Enqueue = Callable[[int], Awaitable[Any]]
SendEnqueue = Callable[..., Awaitable[Any]]
INTAKE_JOB = "mail_intake"


# New mail shares one intake job per short slot of time: the job starts once its slot is over and
# takes in every new stored message, batch after batch, so a burst of mail costs a job per slot
# rather than one per message. The margin covers a worker's clock running a little ahead of the
# clock of the process that stored the mail; beyond it a message waits for the next slot's job or
# the sweeper, and is never lost.
INTAKE_SLOT_SECONDS = 0.05
INTAKE_SLOT_MARGIN_SECONDS = 0.05


def intake_enqueuer(arq_redis: ArqRedis) -> Enqueue:
    """Schedule the intake of a message just stored: the job of the current slot (one per slot,
    by its job id), which takes it in with the rest of the new mail. Once the slot's job is there,
    the slot's other messages need no call to Redis."""
    scheduled = -1

    async def enqueue(inbound_id: int) -> None:
        nonlocal scheduled
        slot = math.floor(time.time() / INTAKE_SLOT_SECONDS)
        if slot != scheduled:
            await enqueue_new_mail_intake(arq_redis, slot)
            scheduled = slot

    return enqueue


async def enqueue_new_mail_intake(arq_redis: ArqRedis, slot: int | None = None) -> None:
    """The intake job of new mail for a slot (the current one by default), unless it is there already."""
    if slot is None:
        slot = math.floor(time.time() / INTAKE_SLOT_SECONDS)
    starts = (slot + 1) * INTAKE_SLOT_SECONDS + INTAKE_SLOT_MARGIN_SECONDS
    await arq_redis.enqueue_job(
        INTAKE_JOB,
        None,
        _job_id=f"mail-intake:{slot}",
        _defer_until=datetime.fromtimestamp(starts, UTC),
        _queue_name=JOB_QUEUE,
    )


async def enqueue_intake_of(arq_redis: ArqRedis, inbound_id: int) -> None:
    """The sweeper's intake job for one stored message. No job id: a job whose worker was killed
    stays claimed in arq for minutes, and the sweeper must be able to enqueue the message again at
    once; the intake is idempotent, so a second job does nothing twice."""
    await arq_redis.enqueue_job(INTAKE_JOB, inbound_id, _queue_name=JOB_QUEUE)


async def mailboxes_for_recipients(session: AsyncSession, recipients: list[str]) -> dict[str, int]:
    """The enabled mailboxes among an envelope's recipients, by address."""
    addresses = [r.lower() for r in recipients]
    rows = await session.execute(
        select(Mailbox.address, Mailbox.id).where(Mailbox.address.in_(addresses), Mailbox.enabled)
    )
    return dict(rows.all())


# Messages pushed to us, each kept once for every enabled mailbox among its recipients, in one
# statement: ids are taken for the copies first, so each is told which message it keeps.
_STORE_FOR_RECIPIENTS = text("""
    WITH given AS (
        SELECT g.*, CAST(:tos AS jsonb) -> (g.n::int - 1) AS envelope_to
        FROM unnest(CAST(:raws AS bytea[]), CAST(:shas AS text[]), CAST(:froms AS text[]))
            WITH ORDINALITY AS g(raw, sha256, envelope_from, n)
    ), copies AS (
        SELECT nextval('inbound_messages_id_seq') AS id, m.id AS mailbox_id, given.*
        FROM given JOIN mailboxes m ON m.enabled AND m.address IN (
            SELECT lower(address) FROM jsonb_array_elements_text(given.envelope_to) AS a(address))
    ), stored AS (
        INSERT INTO inbound_messages (id, mailbox_id, via, raw, sha256, envelope_from, envelope_to)
        SELECT id, mailbox_id, :via, raw, sha256, envelope_from, envelope_to FROM copies
    )
    SELECT n, id FROM copies ORDER BY n, mailbox_id
""").bindparams(
    bindparam("raws", type_=ARRAY(LargeBinary)),
    bindparam("shas", type_=ARRAY(String)),
    bindparam("froms", type_=ARRAY(String)),
    bindparam("tos", type_=JSONB),
)


@dataclass(frozen=True)
class Pushed:
    """A message pushed to the listener, with its envelope."""

    raw: bytes
    envelope_from: str | None
    envelope_to: list[str]


async def store_for_recipients(session: AsyncSession, *, via: str, messages: list[Pushed]) -> list[list[int]]:
    """Keep each message pushed to us once for each enabled mailbox among its recipients, all in
    one statement; per message, the ids stored (none when no recipient is an enabled mailbox now)."""
    stored: list[list[int]] = [[] for _ in messages]
    rows = await session.execute(
        _STORE_FOR_RECIPIENTS,
        {
            "via": via,
            "raws": [m.raw for m in messages],
            "shas": [hashlib.sha256(m.raw).hexdigest() for m in messages],
            "froms": [m.envelope_from for m in messages],
            "tos": [m.envelope_to for m in messages],
        },
    )
    for position, inbound_id in rows:
        stored[position - 1].append(inbound_id)
    return stored


async def store_inbound(
    session: AsyncSession,
    *,
    mailbox_id: int,
    via: str,
    raw: bytes,
    envelope_from: str | None = None,
    envelope_to: list[str] | None = None,
    imap_uid_validity: int | None = None,
    imap_uid: int | None = None,
) -> int:
    """Keep a message exactly as it arrived; the same IMAP message fetched again is kept once. Returns its id."""
    statement = (
        pg_insert(InboundMessage)
        .values(
            mailbox_id=mailbox_id,
            via=via,
            raw=raw,
            sha256=hashlib.sha256(raw).hexdigest(),
            envelope_from=envelope_from,
            envelope_to=envelope_to or [],
            imap_uid_validity=imap_uid_validity,
            imap_uid=imap_uid,
        )
        .on_conflict_do_nothing(
            index_elements=["mailbox_id", "imap_uid_validity", "imap_uid"],
            index_where=InboundMessage.imap_uid.is_not(None),
        )
        .returning(InboundMessage.id)
    )
    stored = await session.scalar(statement)
    if stored is None:
        stored = await session.scalar(
            select(InboundMessage.id).where(
                InboundMessage.mailbox_id == mailbox_id,
                InboundMessage.imap_uid_validity == imap_uid_validity,
                InboundMessage.imap_uid == imap_uid,
            )
        )
    return stored


def contact_data_of(
    mail: ParsedMail, *, mailbox_id: int, inbound_id: int, sha256: str, received_at: datetime
) -> ContactData:
    """The contact an email becomes: the new text (quoted history apart), the sanitised HTML, the
    threading headers, and the Message-ID as its idempotency key within the mailbox."""
    external_id = (mail.message_id or "").strip() or f"sha256:{sha256}"
    return ContactData(
        channel="email",
        direction="inbound",
        occurred_at=received_at,
        subject=mail.subject,
        text=mail.new_text,
        html=mail.html,
        from_address=mail.from_header,
        to_addresses=mail.to_addresses,
        headers=mail.headers,
        source=f"mailbox:{mailbox_id}",
        external_id=external_id,
        payload={
            "mail": {
                "mailboxId": mailbox_id,
                "inboundMessageId": inbound_id,
                "quotedText": mail.text if mail.text != mail.new_text else None,
                "problems": mail.problems,
            }
        },
    )


async def place_in_pool(session: AsyncSession, *, result: Any, pool: Pool | None) -> Pool | None:
    """A case opened by a mail waits in the pool a routing rule chose (the contact's trace says
    which), else in its mailbox's pool: the pool it waits in (whose auto-response confirms the mail)."""
    routed = (result.contact.recognition or {}).get("routed")
    if routed is not None:
        return pool if pool is not None and pool.id == routed["poolId"] else await session.get(Pool, routed["poolId"])
    if pool is not None:
        await queue_service.put_in_pool(session, case_id=result.case_id, pool_id=pool.id)
    return pool


@dataclass
class IntakeResult:
    contact_id: int | None
    duplicate: bool
    problems: list[str]
    auto_response: int | None = None  # the outbox entry of the receipt sent


async def take_in(runtime: Runtime, *, inbound_id: int, send: SendEnqueue | None = None) -> IntakeResult | None:
    """Turn a stored message into a recognised contact; a message taken in already is left alone
    (arq may run this twice), and one that fails stays pending with its error for the sweeper.
    A mail that opens a case may get an auto-response, handed to `send` once committed."""
    async with runtime.reading() as session:
        message = await session.get(InboundMessage, inbound_id)
        mailbox = await session.get(Mailbox, message.mailbox_id) if message and message.mailbox_id else None
        pool = await session.get(Pool, mailbox.pool_id) if mailbox and mailbox.pool_id else None
    if message is None or message.status == "done":
        return None
    auto_response = None
    mail = parse_message(message.raw)
    data = contact_data_of(
        mail,
        mailbox_id=message.mailbox_id or 0,
        inbound_id=message.id,
        sha256=message.sha256,
        received_at=message.received_at,
    )
    kind = automatic_reply_kind(mail)
    try:
        async with runtime.transaction() as session:
            if kind is not None:
                result = await record_automatic_reply(session, data=data, mail=mail, kind=kind)
            else:
                result = await ingest_contact(
                    session, actor=SYSTEM, data=data, region=runtime.settings.default_phone_region
                )
            if not result.duplicate and mail.attachments:
                await contact_service.add_attachments(session, contact_id=result.contact.id, files=mail.attachments)
            if result.case_created:
                pool = await place_in_pool(session, result=result, pool=pool)
            if result.case_created and mailbox is not None:
                auto_response = await auto_respond(
                    session, message=message, mail=mail, mailbox=mailbox, pool=pool, result=result
                )
            if mail.problems and not result.duplicate:
                # Read as far as possible: an agent checks it against the raw message.
                await session.execute(update(Contact).where(Contact.id == result.contact.id).values(needs_review=True))
            await session.execute(
                update(InboundMessage)
                .where(InboundMessage.id == inbound_id)
                .values(
                    status="done",
                    contact_id=result.contact.id,
                    problems=mail.problems,
                    processed_at=func.now(),
                    attempts=InboundMessage.attempts + 1,
                    last_error=None,
                )
            )
    except Exception as error:  # noqa: BLE001 - the message stays stored and pending; the worker goes on
        log.exception("intake of inbound message %s failed", inbound_id)
        code = error.code.value if isinstance(error, UserError) else failure_code(error)
        async with runtime.transaction() as session:
            await session.execute(
                update(InboundMessage)
                .where(InboundMessage.id == inbound_id)
                .values(attempts=InboundMessage.attempts + 1, last_error=code)
            )
        return IntakeResult(contact_id=None, duplicate=False, problems=[*mail.problems, code])
    if auto_response is not None and send is not None:
        try:
            await send(auto_response)
        except Exception:  # noqa: BLE001 - it is in the outbox: the sweeper sends it
            log.warning("enqueueing auto-response %s failed; the sweeper will", auto_response, exc_info=True)
    return IntakeResult(
        contact_id=result.contact.id, duplicate=result.duplicate, problems=mail.problems, auto_response=auto_response
    )


INTAKE_BATCH = 100  # stored messages one intake job takes in together

# Pending messages for one batch, locked: two intake jobs draining at once take different ones.
_NEXT_PENDING = (
    select(InboundMessage)
    .where(
        InboundMessage.status == "pending",
        (InboundMessage.id == bindparam("first")) | (InboundMessage.attempts == 0),
        InboundMessage.id.not_in(bindparam("held", expanding=True)),
    )
    .order_by((InboundMessage.id != bindparam("first")), InboundMessage.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_LOCK_PENDING = (
    select(InboundMessage.id)
    .where(InboundMessage.id.in_(bindparam("ids", expanding=True)), InboundMessage.status == "pending")
    .with_for_update(skip_locked=True)
)
# Each message's intake recorded in one statement.
_DONE_MANY = text(
    """
    UPDATE inbound_messages m SET status = 'done', contact_id = g.contact_id, problems = g.problems,
      processed_at = now(), attempts = m.attempts + 1, last_error = NULL
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS g(id bigint, contact_id bigint, problems jsonb)
    WHERE m.id = g.id
    """
).bindparams(bindparam("rows", type_=JSONB))


@dataclass
class _Taking:
    message: InboundMessage
    mail: ParsedMail
    data: ContactData


async def take_in_batch(
    runtime: Runtime,
    *,
    inbound_id: int | None,
    limit: int = INTAKE_BATCH,
    send: SendEnqueue | None = None,
    held: set[int] | None = None,
) -> list[IntakeResult]:
    """Take in the stored message `inbound_id` (none: the oldest new one) and up to `limit` - 1
    other new pending ones, in one transaction, recognised set-based (`contacts.ingest_batch`):
    each gets what `take_in` would give it, in the order they were stored. A message that fails is
    taken in alone (`take_in`, which records its error for the sweeper); bounces and automatic
    replies are taken in alone, in their place. A message another job holds is skipped: that job
    takes it in; so is one in `held`, the messages the other lanes of this job have in hand (a
    failed batch lets go of its locks before its messages are tried again alone)."""
    if inbound_id is not None:
        async with runtime.reading() as session:
            first = (
                await session.execute(
                    select(InboundMessage.status, InboundMessage.attempts).where(InboundMessage.id == inbound_id)
                )
            ).first()
        if first is None or first.status == "done":
            return []
        if first.attempts > 0:  # failed before: alone, so it cannot hold up a batch again
            result = await take_in(runtime, inbound_id=inbound_id, send=send)
            return [result] if result is not None else []
    region = runtime.settings.default_phone_region
    taking: list[_Taking] = []
    mailboxes: dict[int, Mailbox] = {}
    pools: dict[int, Pool] = {}
    checked: list[UserError | None] = []

    async def run_batch(chunk: list[int]) -> list[IntakeResult | None]:
        try:
            return await batch_of(chunk)
        except contact_service.BatchItemFailed as failed:  # its place in `chunk`, for the retry
            raise contact_service.BatchItemFailed(chunk.index(failed.position), failed.error) from failed.error

    async def batch_of(chunk: list[int]) -> list[IntakeResult | None]:
        outbox: list[int] = []
        async with runtime.transaction() as session:
            ids = [taking[p].message.id for p in chunk]
            locked = set(await session.scalars(_LOCK_PENDING, {"ids": ids}))
            positions = [p for p in chunk if taking[p].message.id in locked]
            if not positions:
                return []
            try:
                taken = await _batch_in(session, positions, outbox)
            except contact_service.BatchItemFailed as failed:
                raise contact_service.BatchItemFailed(positions[failed.position], failed.error) from failed.error
        await _send_all(send, outbox)
        return taken

    async def _batch_in(session: AsyncSession, positions: list[int], outbox: list[int]) -> list[IntakeResult | None]:
        ingested = await contact_service.ingest_batch(
            session, actor=SYSTEM, items=[taking[p].data for p in positions], region=region
        )
        done, flagged = [], []
        taken: list[IntakeResult | None] = []
        for index, (position, result) in enumerate(zip(positions, ingested, strict=True)):
            item = taking[position]
            mailbox = mailboxes.get(item.message.mailbox_id)
            pool = pools.get(mailbox.pool_id) if mailbox and mailbox.pool_id else None
            try:
                if not result.duplicate and item.mail.attachments:
                    await contact_service.add_attachments(
                        session, contact_id=result.contact.id, files=item.mail.attachments
                    )
                if result.case_created:
                    pool = await place_in_pool(session, result=result, pool=pool)
                auto_response = None
                if result.case_created and mailbox is not None:
                    auto_response = await auto_respond(
                        session, message=item.message, mail=item.mail, mailbox=mailbox, pool=pool, result=result
                    )
                    if auto_response is not None:
                        outbox.append(auto_response)
            except Exception as error:  # noqa: BLE001 - tried again alone
                raise contact_service.BatchItemFailed(index, error) from error
            if item.mail.problems and not result.duplicate:
                flagged.append(result.contact.id)
            done.append({"id": item.message.id, "contact_id": result.contact.id, "problems": item.mail.problems})
            taken.append(
                IntakeResult(result.contact.id, result.duplicate, item.mail.problems, auto_response=auto_response)
            )
        if flagged:
            # Read as far as possible: an agent checks it against the raw message.
            await session.execute(update(Contact).where(Contact.id.in_(flagged)).values(needs_review=True))
        await session.execute(_DONE_MANY, {"rows": done})
        return taken

    async def run_alone(position: int) -> list[IntakeResult | None]:
        return [await take_in(runtime, inbound_id=taking[position].message.id, send=send)]

    held = set() if held is None else held
    chosen: list[int] = []
    try:
        # The messages stay locked from their choice to their commit: a job draining at the same time
        # takes others. The common case (nothing special among them) is that one transaction.
        outbox: list[int] = []
        try:
            async with runtime.transaction() as session:
                messages = sorted(
                    await session.scalars(_NEXT_PENDING, {"first": inbound_id, "limit": limit, "held": sorted(held)}),
                    key=lambda m: m.id,
                )
                if not messages:  # taken by other jobs meanwhile
                    return []
                chosen = [m.id for m in messages]
                held.update(chosen)
                taking = [
                    _parsed(message, mail)
                    for message, mail in zip(messages, await parse_messages([m.raw for m in messages]), strict=True)
                ]
                mailbox_ids = {t.message.mailbox_id for t in taking if t.message.mailbox_id is not None}
                mailboxes = {m.id: m for m in await session.scalars(select(Mailbox).where(Mailbox.id.in_(mailbox_ids)))}
                pool_ids = {m.pool_id for m in mailboxes.values() if m.pool_id is not None}
                pools = {p.id: p for p in await session.scalars(select(Pool).where(Pool.id.in_(pool_ids)))}
                checked = contact_service.check_ingest_items([t.data for t in taking])
                try:
                    if not all(
                        error is None and automatic_reply_kind(t.mail) is None
                        for t, error in zip(taking, checked, strict=True)
                    ):
                        raise _Special
                    taken = await _batch_in(session, list(range(len(taking))), outbox)
                except Exception:
                    session.expunge_all()  # the messages and mailboxes read stay usable after the rollback
                    raise
        except _Special:
            failed: Exception | None = None
        except Exception as error:  # noqa: BLE001 - an item failed, or the batch: see _isolated_run
            if not taking:
                raise
            failed = error
        else:
            await _send_all(send, outbox)
            return [r for r in taken if r is not None]

        # Runs of ordinary messages go as batches; an automatic reply (or refused input) alone, in its place.
        results: list[IntakeResult | None] = []
        run: list[int] = []
        for position, item in enumerate(taking):
            if checked[position] is None and automatic_reply_kind(item.mail) is None:
                run.append(position)
                continue
            results += await _isolated_run(run, run_batch, run_alone)
            run = []
            results += await run_alone(position)
        results += await _isolated_run(run, run_batch, run_alone, failed)
        return [r for r in results if r is not None]
    finally:
        held.difference_update(chosen)


# Batches one intake job of new mail takes in each lane before handing over to a new job (arq ends
# a job that runs past its timeout). Two lanes: while one batch is parsed in the helper process,
# the other is recognised and recorded in the worker.
INTAKE_JOB_BATCHES = 20
INTAKE_JOB_LANES = 2


async def take_in_new_mail(
    runtime: Runtime, *, send: SendEnqueue | None = None, handover: Callable[[], Awaitable[None]]
) -> list[IntakeResult]:
    """The intake job of a slot: every new stored message, batch after batch (`take_in_batch`) in
    each lane; other jobs at work take other batches. After INTAKE_JOB_BATCHES full batches in a
    lane, `handover` schedules the next job."""

    held: set[int] = set()

    async def lane() -> tuple[list[IntakeResult], bool]:
        results: list[IntakeResult] = []
        for _ in range(INTAKE_JOB_BATCHES):
            taken = await take_in_batch(runtime, inbound_id=None, send=send, held=held)
            results += taken
            if len(taken) < INTAKE_BATCH:  # all in, or other jobs hold the rest
                return results, False
        return results, True

    lanes = await asyncio.gather(*(lane() for _ in range(INTAKE_JOB_LANES)))
    if any(more for _, more in lanes):
        await handover()
    return [result for results, _ in lanes for result in results]


class _Special(Exception):
    """Bounces, automatic replies or refused input among the messages: taken in piece by piece."""


def _parsed(message: InboundMessage, mail: ParsedMail) -> _Taking:
    data = contact_data_of(
        mail,
        mailbox_id=message.mailbox_id or 0,
        inbound_id=message.id,
        sha256=message.sha256,
        received_at=message.received_at,
    )
    return _Taking(message, mail, data)


async def _isolated_run(
    positions: list[int], run_batch: Any, run_alone: Any, failed: Exception | None = None
) -> list[IntakeResult | None]:
    async def alone(position: int) -> list[IntakeResult | None]:
        return await run_alone(position)

    async def batch(chunk: list[int]) -> list[list[IntakeResult | None]]:
        return [await run_batch(chunk)]

    return [r for group in await contact_service.isolating(positions, batch, alone, failed) for r in group]


async def _send_all(send: SendEnqueue | None, outbox: list[int]) -> None:
    for outbound_id in outbox:
        if send is None:
            return
        try:
            await send(outbound_id)
        except Exception:  # noqa: BLE001 - it is in the outbox: the sweeper sends it
            log.warning("enqueueing auto-response %s failed; the sweeper will", outbound_id, exc_info=True)


# ---- bounces and out-of-office replies --------------------------------------------------------------

_MESSAGE_IDS = re.compile(r"<[^<>\s]+>")


def automatic_reply_kind(mail: ParsedMail) -> str | None:
    """ "bounce" for a delivery status notification, "auto_reply" for an autoresponder's answer
    (out of office and the like, by the common headers), None for anything else."""
    if mail.report is not None:
        return "bounce"
    headers = {name.lower(): value.lower() for name, value in mail.headers.items()}
    if headers.get("auto-submitted") == "auto-replied" or "x-autoreply" in headers or "x-autorespond" in headers:
        return "auto_reply"
    return None


async def record_automatic_reply(session: AsyncSession, *, data: ContactData, mail: ParsedMail, kind: str) -> Any:
    """A bounce or an out-of-office reply goes on the case of the message of ours it answers, and
    opens no case: it is looked up by Casegraph's own Message-IDs (random, so only a recipient of
    ours can name one). Unmatched, it stays alone, flagged for an agent. A bounce marks the delivery
    of the message it reports on as failed."""
    referenced = [mail.report.original_message_id] if mail.report and mail.report.original_message_id else []
    referenced += _MESSAGE_IDS.findall(" ".join(mail.headers.get(h, "") for h in ("In-Reply-To", "References")))
    original = (
        await session.execute(
            select(Contact.id, Contact.customer_id, Contact.case_id)
            .where(Contact.message_id.in_(referenced), Contact.direction == "outbound")
            .order_by(Contact.occurred_at.desc())
            .limit(1)
        )
    ).first()
    customer_id = case_id = None
    if original is not None:
        with contextlib.suppress(UserError):  # its case was merged or its customer erased since
            customer_id, case_id = await contact_service.resolve_links(
                session, customer_id=original.customer_id, case_id=original.case_id
            )
    data.payload["mail"]["kind"] = kind
    if mail.report is not None:
        data.payload["mail"]["report"] = dataclasses.asdict(mail.report)
    contact, created = await contact_service.insert_contact(
        session, data=data, customer_id=customer_id, case_id=case_id, needs_review=case_id is None
    )
    if created and kind == "bounce" and original is not None and mail.report.action in (None, "failed"):
        answer = " ".join(p for p in ("bounced:", mail.report.status, mail.report.diagnostic) if p)
        await session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.contact_id == original.id)
            .values(status="failed", last_response=answer[:500])
        )
    return contact_service.IngestResult(
        contact=contact, duplicate=not created, customer_id=customer_id, case_id=case_id
    )


# ---- auto-responses (seed 004: receipt confirmed with the submission id) ------------------------------

AUTO_RESPONSE_LIMIT = 3  # per recipient in 24 hours: a loop with another robot stops here at the latest
_ROBOT_SENDERS = ("mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply", "do-not-reply")


def is_automatic(mail: ParsedMail, envelope_from: str | None) -> bool:
    """Mail no robot should answer (RFC 3834 and the common conventions): auto-submitted, bulk or
    list mail, an autoresponder's own answer, a bounce (null sender), a daemon's."""
    headers = {name.lower(): value.lower() for name, value in mail.headers.items()}
    if headers.get("auto-submitted", "no") != "no":
        return True
    if headers.get("precedence") in ("bulk", "list", "junk"):
        return True
    if any(name in headers for name in ("list-id", "list-unsubscribe", "x-autoreply", "x-autorespond")):
        return True
    if any(kind in headers.get("x-auto-response-suppress", "") for kind in ("all", "autoreply", "oof")):
        return True
    if envelope_from is not None and envelope_from.strip("<> ") == "":
        return True
    local = (mail.from_address or "").partition("@")[0]
    return not mail.from_address or local in _ROBOT_SENDERS


async def auto_respond(
    session: AsyncSession,
    *,
    message: InboundMessage,
    mail: ParsedMail,
    mailbox: Mailbox,
    pool: Pool | None,
    result: Any,
) -> int | None:
    """Confirm receipt of a mail that opened a case, carrying its reference; the outbox entry's id,
    or None when there is no template, the mail is automatic, the sender had enough today, or our
    own mailbox sent it."""
    owner = mailbox if mailbox.auto_response_subject else pool if pool and pool.auto_response_subject else None
    if owner is None or not mailbox.relay_host or is_automatic(mail, message.envelope_from):
        return None
    sender = mail.from_address
    if await session.scalar(select(Mailbox.id).where(Mailbox.address == sender)) is not None:
        return None
    sent_today = await session.scalar(
        select(func.count())
        .select_from(OutboundMessage)
        .where(
            OutboundMessage.kind == "auto_response",
            OutboundMessage.created_at > func.now() - timedelta(days=1),
            OutboundMessage.envelope_to.contains([sender]),
        )
    )
    if sent_today >= AUTO_RESPONSE_LIMIT:
        return None
    case = await session.get(Case, result.case_id)
    customer_name = (
        await session.scalar(select(Customer.name).where(Customer.id == result.customer_id))
        if result.customer_id
        else None
    )
    variables = {
        "reference": case.reference,
        "subject": mail.subject or "",
        "sender": sender,
        "customer_name": customer_name or "",
        "mailbox_address": mailbox.address,
        "mailbox_name": mailbox.display_name or "",
    }
    subject, text = render(owner.auto_response_subject, variables), render(owner.auto_response_text, variables)
    if subject is None or text is None:
        return None
    # Under the mail it answers (a batch may already hold later mail on the case).
    in_reply_to, references = await _thread_of(session, case.id, up_to=result.contact.id)
    outgoing = Outgoing(
        from_address=mailbox.relay_from or mailbox.address,
        from_name=mailbox.display_name,
        to=[sender],
        subject=tagged_subject(" ".join(subject.split()) or "Re:", case.reference),
        text=text,
        in_reply_to=in_reply_to,
        references=references,
        auto_submitted="auto-replied",  # RFC 3834: other robots must not answer it
    )
    _, outbound_id = await _queue_email(
        session,
        actor=SYSTEM,
        case_id=case.id,
        customer_id=result.customer_id,
        mailbox=mailbox,
        outgoing=outgoing,
        kind="auto_response",
    )
    return outbound_id


async def pending_inbound(runtime: Runtime, *, older_than: timedelta, limit: int = 500) -> list[int]:
    """Stored messages no intake has finished (its enqueue was lost, or it failed and may be retried)."""
    async with runtime.reading() as session:
        rows = await session.scalars(
            select(InboundMessage.id)
            .where(
                InboundMessage.status == "pending",
                InboundMessage.attempts < MAX_INTAKE_ATTEMPTS,
                InboundMessage.received_at < datetime.now(UTC) - older_than,
            )
            .order_by(InboundMessage.id)
            .limit(limit)
        )
        return list(rows)


async def inbound_backlog(session: AsyncSession, mailbox_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Per mailbox: stored messages still waiting for intake, and those given up after the last
    attempt (kept, for an administrator to look at)."""
    given_up = InboundMessage.attempts >= MAX_INTAKE_ATTEMPTS
    rows = await session.execute(
        select(
            InboundMessage.mailbox_id,
            func.count().filter(~given_up),
            func.count().filter(given_up),
        )
        .where(InboundMessage.status == "pending", InboundMessage.mailbox_id.in_(mailbox_ids))
        .group_by(InboundMessage.mailbox_id)
    )
    return {mailbox_id: (waiting, failed) for mailbox_id, waiting, failed in rows}


# ---- IMAP polling ----------------------------------------------------------------------------------


async def mailboxes_due(runtime: Runtime) -> list[int]:
    """Enabled IMAP mailboxes whose poll interval has passed."""
    async with runtime.reading() as session:
        rows = await session.scalars(
            select(Mailbox.id).where(
                Mailbox.enabled,
                Mailbox.intake == "imap",
                func.coalesce(Mailbox.last_polled_at, datetime(1970, 1, 1, tzinfo=UTC))
                + func.make_interval(0, 0, 0, 0, 0, 0, Mailbox.poll_seconds)
                <= func.now(),
            )
        )
        return list(rows)


@dataclass
class PollResult:
    fetched: int = 0
    error: str | None = None


async def _record_poll(runtime: Runtime, mailbox_id: int, error: str | None, **position: Any) -> None:
    values: dict[str, Any] = {"last_polled_at": func.now(), **position}
    if error is None:
        values["last_error"] = None
    else:
        values |= {"last_error": error, "last_error_at": func.now()}
    async with runtime.transaction() as session:
        await session.execute(update(Mailbox).where(Mailbox.id == mailbox_id).values(**values))


def _imap_settings(runtime: Runtime, mailbox: Mailbox, password: str) -> dict[str, Any]:
    return {
        "host": mailbox.imap_host,
        "port": mailbox.imap_port,
        "security": mailbox.imap_security,
        "user": mailbox.imap_user,
        "password": password,
        "folder": mailbox.imap_folder,
        "context": tls_context(runtime.settings.mail_ca_file),
    }


async def _imap_password(runtime: Runtime, mailbox: Mailbox) -> str | None:
    """The mailbox's password from its environment variable; None (and the error recorded) when unset."""
    password = os.environ.get(mailbox.imap_secret_env or "", "")
    if mailbox.imap_secret_env and not password:
        await _record_poll(runtime, mailbox.id, f"the environment variable {mailbox.imap_secret_env} is not set")
        return None
    return password


async def _take_new(runtime: Runtime, mailbox: Mailbox, folder: ImapFolder, enqueue: Enqueue) -> int:
    """Store, then mark, each message above the last UID seen; the last UID moves only after the
    mark, so a crash in between fetches it again and the stored copy is found. Returns how many."""
    fetched = 0
    async with runtime.reading() as session:  # another connection (IDLE, a poll) may have moved it on
        position = (
            await session.execute(
                select(Mailbox.imap_uid_validity, Mailbox.imap_last_uid).where(Mailbox.id == mailbox.id)
            )
        ).first()
    last_uid = position.imap_last_uid if position and folder.uid_validity == position.imap_uid_validity else 0
    for uid in await folder.uids_after(last_uid):
        raw = await folder.fetch(uid)
        if raw is not None:
            async with runtime.transaction() as session:
                inbound_id = await store_inbound(
                    session,
                    mailbox_id=mailbox.id,
                    via="imap",
                    raw=raw,
                    imap_uid_validity=folder.uid_validity,
                    imap_uid=uid,
                )
            await enqueue(inbound_id)
            await folder.mark(uid, mark=mailbox.imap_mark, move_to=mailbox.imap_move_to)
            fetched += 1
        async with runtime.transaction() as session:
            same_folder = Mailbox.imap_uid_validity == folder.uid_validity
            await session.execute(
                update(Mailbox)
                .where(Mailbox.id == mailbox.id)
                .values(
                    imap_uid_validity=folder.uid_validity,
                    # Never backwards: a poll and the IDLE connection may take the same mail in.
                    imap_last_uid=when((same_folder, func.greatest(Mailbox.imap_last_uid, uid)), else_=uid),
                )
            )
    await _record_poll(runtime, mailbox.id, None, imap_uid_validity=folder.uid_validity)
    return fetched


async def poll_mailbox(runtime: Runtime, *, mailbox_id: int, enqueue: Enqueue) -> PollResult:
    """Fetch what arrived above the last UID seen (`_take_new`). A failure is recorded on the
    mailbox, never raised."""
    async with runtime.reading() as session:
        mailbox = await session.get(Mailbox, mailbox_id)
    if mailbox is None or not mailbox.enabled or mailbox.intake != "imap":
        return PollResult()
    password = await _imap_password(runtime, mailbox)
    if password is None:
        return PollResult(error=f"the environment variable {mailbox.imap_secret_env} is not set")
    result = PollResult()
    try:
        async with open_folder(**_imap_settings(runtime, mailbox, password)) as folder:
            result.fetched = await _take_new(runtime, mailbox, folder, enqueue)
    except Exception as error:  # noqa: BLE001 - a broken mailbox shows its error and does not stop the others
        result.error = _describe(error)
        log.warning("polling mailbox %s failed: %s", mailbox_id, result.error)
        await _record_poll(runtime, mailbox_id, result.error)
    return result


# ---- IMAP IDLE: new mail taken in as it arrives ------------------------------------------------------

IDLE_LEASE_SECONDS = 30  # a worker that dies gives its mailboxes up after this
IDLE_REFRESH_SECONDS = 25 * 60  # RFC 2177: re-issue IDLE before the server's 30-minute timeout
IDLE_UNSUPPORTED_RETRY = 600  # a server without IDLE is asked again after this (it may have been upgraded)
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def idle_lease_key(mailbox_id: int) -> str:
    return f"casegraph:mail-idle:{mailbox_id}"


class IdleUnsupported(Exception):
    """The server offers no IDLE: the mailbox is polled."""


async def idle_mailboxes(runtime: Runtime) -> dict[int, tuple]:
    """Enabled IMAP mailboxes that ask for IDLE, each with what its connection depends on (a change restarts it)."""
    async with runtime.reading() as session:
        rows = await session.scalars(
            select(Mailbox).where(Mailbox.enabled, Mailbox.intake == "imap", Mailbox.imap_idle)
        )
        return {
            m.id: (
                m.imap_host,
                m.imap_port,
                m.imap_security,
                m.imap_user,
                m.imap_secret_env,
                m.imap_folder,
                m.imap_mark,
                m.imap_move_to,
                m.poll_seconds,
            )
            for m in rows
        }


async def idle_session(runtime: Runtime, *, mailbox_id: int, enqueue: Enqueue, connected: Callable[[], None]) -> None:
    """One IDLE connection: take in what is new, then IDLE until the server reports news (or the
    poll interval passes, so the mailbox counts as polled and the poll job leaves it alone), and
    again. Returns when the mailbox no longer asks for IDLE; raises when the connection fails,
    IdleUnsupported when the server offers no IDLE."""
    async with runtime.reading() as session:
        mailbox = await session.get(Mailbox, mailbox_id)
    if mailbox is None or not (mailbox.enabled and mailbox.intake == "imap" and mailbox.imap_idle):
        return
    password = await _imap_password(runtime, mailbox)
    if password is None:
        raise ImapError(f"the environment variable {mailbox.imap_secret_env} is not set")
    async with open_folder(**_imap_settings(runtime, mailbox, password)) as folder:
        if not folder.offers_idle():
            raise IdleUnsupported
        connected()
        while True:
            await _take_new(runtime, mailbox, folder, enqueue)
            # Renewed a little before the poll interval ends, so the poll job does not find it due.
            await folder.wait_for_news(min(mailbox.poll_seconds * 0.8, IDLE_REFRESH_SECONDS))


class IdleKeeper:
    """Keeps one IDLE connection per mailbox that asks for it, in whichever worker process holds
    the mailbox's lease in Redis: never two for one mailbox. A connection that fails is opened
    again after a growing delay (its error shown on the mailbox meanwhile, and the poll job
    polling it as usual); a server without IDLE leaves the mailbox to the poll job."""

    def __init__(
        self,
        runtime: Runtime,
        enqueue: Enqueue,
        *,
        scan_seconds: float = 5.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        self.runtime, self.enqueue = runtime, enqueue
        self.scan_seconds, self.backoff_base, self.backoff_max = scan_seconds, backoff_base, backoff_max
        self.token = os.urandom(12).hex()  # this process's name on its leases
        self.running: dict[int, tuple[tuple, asyncio.Task]] = {}
        self.unsupported: dict[int, tuple[tuple, float]] = {}  # mailbox -> (its settings, when to ask again)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mail-idle-keeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for mailbox_id in list(self.running):
            await self._end(mailbox_id)

    async def _run(self) -> None:
        while True:
            try:
                await self.scan()
            except Exception:  # noqa: BLE001 - the database or Redis may be away for a moment
                log.warning("keeping IDLE connections failed; trying again", exc_info=True)
            await asyncio.sleep(self.scan_seconds)

    async def scan(self) -> None:
        """Start, keep (renewing its lease), restart or end each mailbox's IDLE loop."""
        wanted = await idle_mailboxes(self.runtime)
        redis = self.runtime.redis
        for mailbox_id in list(self.running):
            settings, task = self.running[mailbox_id]
            renewed = await redis.eval(_RENEW, 1, idle_lease_key(mailbox_id), self.token, IDLE_LEASE_SECONDS * 1000)
            if wanted.get(mailbox_id) != settings or task.done() or not renewed:
                await self._end(mailbox_id)
        now = asyncio.get_running_loop().time()
        for mailbox_id, settings in wanted.items():
            if mailbox_id in self.running:
                continue
            unsupported = self.unsupported.get(mailbox_id)
            if unsupported is not None and unsupported[0] == settings and unsupported[1] > now:
                continue
            if await redis.set(idle_lease_key(mailbox_id), self.token, nx=True, px=IDLE_LEASE_SECONDS * 1000):
                task = asyncio.create_task(self._loop(mailbox_id, settings), name=f"mail-idle:{mailbox_id}")
                self.running[mailbox_id] = (settings, task)

    async def _end(self, mailbox_id: int) -> None:
        _, task = self.running.pop(mailbox_id)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        with contextlib.suppress(Exception):
            await self.runtime.redis.eval(_RELEASE, 1, idle_lease_key(mailbox_id), self.token)

    async def _loop(self, mailbox_id: int, settings: tuple) -> None:
        failures = 0

        def connected() -> None:
            nonlocal failures
            failures = 0

        while True:
            try:
                await idle_session(self.runtime, mailbox_id=mailbox_id, enqueue=self.enqueue, connected=connected)
                return
            except IdleUnsupported:
                log.info("mailbox %s: the server offers no IDLE; polled instead", mailbox_id)
                self.unsupported[mailbox_id] = (settings, asyncio.get_running_loop().time() + IDLE_UNSUPPORTED_RETRY)
                return
            except Exception as error:  # noqa: BLE001 - shown on the mailbox; connected again after a delay
                failures += 1
                description = _describe(error)
                log.warning("IDLE on mailbox %s failed: %s", mailbox_id, description)
                with contextlib.suppress(Exception):
                    await _record_poll(self.runtime, mailbox_id, description)
            await asyncio.sleep(min(self.backoff_max, self.backoff_base * 2 ** (failures - 1)))


def _describe(error: Exception) -> str:
    if isinstance(error, ImapError):
        return str(error)
    if isinstance(error, ssl.SSLError):  # before OSError: it is one
        return f"TLS failed: {error.reason or type(error).__name__}"[:300]
    if isinstance(error, TimeoutError | AioImapException):
        return f"the server did not answer properly ({type(error).__name__})"
    if isinstance(error, OSError):
        return f"cannot connect: {error.strerror or error}"[:300]
    return failure_code(error)  # an unexpected fault: its text may hold internals


# ---- replies through the outbox --------------------------------------------------------------------

SEND_JOB = "mail_send"
MAX_SEND_ATTEMPTS = 6
RETRY_BASE_SECONDS = 30  # then doubled each attempt: 30 s, 1 min, 2 min, 4 min, 8 min


def _addresses(values: list[str] | None, field: str) -> list[str]:
    return [normalized_address(value, f"{field}.{index}") for index, value in enumerate(values or [])]


def tagged_subject(subject: str, reference: str) -> str:
    """The subject with the case's reference tag, so the customer's answer threads even without headers."""
    return subject if f"[{reference}]" in subject else f"{subject} [{reference}]"


async def _reply_mailbox(session: AsyncSession, case_id: int, mailbox_id: int | None) -> Mailbox:
    """The mailbox a reply leaves through: the one given, else the one the case's latest mail came to."""
    if mailbox_id is None:
        source = await session.scalar(
            select(Contact.source)
            .where(Contact.case_id == case_id, Contact.direction == "inbound", Contact.source.like("mailbox:%"))
            .order_by(Contact.occurred_at.desc(), Contact.id.desc())
            .limit(1)
        )
        if source is None:
            raise UserError(
                ErrorCode.REQUIRED, "no mail came in on this case: name the mailbox to send from", "mailboxId"
            )
        mailbox_id = int(source.partition(":")[2])
    mailbox = await session.get(Mailbox, mailbox_id)
    if mailbox is None:
        raise not_found("mailbox", "mailboxId")
    if not mailbox.relay_host:
        raise UserError(ErrorCode.INVALID, f"mailbox {mailbox.address} has no outgoing relay", "mailboxId")
    return mailbox


async def reply_to_case(
    session: AsyncSession,
    *,
    actor: Actor,
    case_id: int,
    to: list[str],
    subject: str | None = None,
    text: str | None = None,
    html: str | None = None,
    cc: list[str] | None = None,
    bcc: list[str] | None = None,
    attachment_ids: list[int] | None = None,
    mailbox_id: int | None = None,
    template_id: int | None = None,
) -> tuple[Any, int]:
    """Record an outbound email on the case and put it in the outbox; returns (contact, outbound id).
    It threads under the case's latest inbound mail, carries the case's reference tag, and ends
    with the signature (`replies.signature_for`). A canned reply (`template_id`) gives the body and,
    when none is given, the subject; the agent's own text or HTML, when given too, comes before it."""
    to, cc, bcc = _addresses(to, "to"), _addresses(cc, "cc"), _addresses(bcc, "bcc")
    if not to:
        raise UserError(ErrorCode.REQUIRED, "name at least one recipient", "to")
    if template_id is None and not (text or "").strip() and not (html or "").strip():
        raise UserError(ErrorCode.REQUIRED, "a reply needs a text or an HTML body", "text")
    customer_id, case_id = await contact_service.resolve_links(session, customer_id=None, case_id=case_id)
    case = await session.get(Case, case_id)
    subject = _plain(subject, "subject")
    mailbox = await _reply_mailbox(session, case_id, mailbox_id)
    if template_id is not None:
        canned = await replies.render_reply_template(
            session, template_id=template_id, case=case, actor=actor, mailbox=mailbox
        )
        subject = subject or canned.subject
        text, html = _with_canned(text, html, canned)
    subject = subject or f"Re: {case.subject}"
    text = text if (text or "").strip() else html_to_text(html or "")
    text, html = replies.signed(text, html, await replies.signature_for(session, actor=actor, mailbox=mailbox))
    in_reply_to, references = await _thread_of(session, case_id)
    files = []
    for index, attachment_id in enumerate(attachment_ids or []):
        found = await contact_service.read_attachment(session, attachment_id=attachment_id)
        if found is None:
            raise not_found("attachment", f"attachmentIds.{index}")
        files.append(found)
    outgoing = Outgoing(
        from_address=mailbox.relay_from or mailbox.address,
        from_name=mailbox.display_name,
        to=to,
        cc=cc,
        subject=tagged_subject(subject, case.reference),
        text=text,
        html=html,
        in_reply_to=in_reply_to,
        references=references,
        attachments=[(row.filename, row.content_type, data) for row, data in files],
    )
    contact, outbound_id = await _queue_email(
        session, actor=actor, case_id=case_id, customer_id=customer_id, mailbox=mailbox, outgoing=outgoing, bcc=bcc
    )
    if files:
        await contact_service.add_attachments(
            session,
            contact_id=contact.id,
            files=[_StoredFile(row.filename, row.content_type, data, False, None) for row, data in files],
        )
    return contact, outbound_id


def _with_canned(text: str | None, html: str | None, canned: replies.RenderedReply) -> tuple[str, str | None]:
    """The agent's own words first (a greeting, a personal line), then the canned reply."""
    own_text = (text or "").strip() or (html_to_text(html) if (html or "").strip() else "")
    body_text = f"{own_text}\n\n{canned.text}" if own_text else canned.text
    if canned.html is None and not (html or "").strip():
        return body_text, None
    own_html = html if (html or "").strip() else _paragraphs(text or "")
    canned_html = canned.html if canned.html is not None else _paragraphs(canned.text)
    return body_text, f"{own_html}\n{canned_html}" if own_html else canned_html


def _paragraphs(text: str) -> str:
    """Plain text as HTML, escaped, line breaks kept."""
    return "".join(
        f"<p>{html_escape.escape(block).replace(chr(10), '<br>')}</p>" for block in text.strip().split("\n\n") if block
    )


async def _thread_of(session: AsyncSession, case_id: int, up_to: int | None = None) -> tuple[str | None, list[str]]:
    """In-Reply-To and References for a message on the case: under its latest message (up to a contact)."""
    latest = (
        await session.execute(
            select(Contact.message_id, Contact.headers)
            .where(Contact.case_id == case_id, Contact.message_id.is_not(None))
            .where(Contact.id <= up_to if up_to is not None else True)
            .order_by(Contact.occurred_at.desc(), Contact.id.desc())
            .limit(1)
        )
    ).first()
    if latest is None:
        return None, []
    return latest.message_id, ((latest.headers.get("References") or "").split() + [latest.message_id])[-20:]


async def _queue_email(
    session: AsyncSession,
    *,
    actor: Actor,
    case_id: int,
    customer_id: int | None,
    mailbox: Mailbox,
    outgoing: Outgoing,
    bcc: list[str] | None = None,
    kind: str = "reply",
    direction: str = "outbound",
) -> tuple[Any, int]:
    """An email contact on the case (outbound to the customer, or internal to staff), and the message
    as it will be sent in the outbox."""
    sender = outgoing.from_address
    message_id = new_message_id(sender)
    headers = {"Message-ID": message_id, "Subject": outgoing.subject, "From": sender, "To": ", ".join(outgoing.to)}
    if outgoing.cc:
        headers["Cc"] = ", ".join(outgoing.cc)
    if outgoing.in_reply_to:
        headers |= {"In-Reply-To": outgoing.in_reply_to, "References": " ".join(outgoing.references)}
    if outgoing.auto_submitted:
        headers["Auto-Submitted"] = outgoing.auto_submitted
    contact, _ = await contact_service.insert_contact(
        session,
        data=ContactData(
            channel="email",
            direction=direction,
            subject=outgoing.subject,
            text=outgoing.text,
            html=outgoing.html,
            from_address=sender,
            to_addresses=outgoing.to + outgoing.cc,
            headers=headers,
            payload={"mail": {"mailboxId": mailbox.id, "kind": kind}},
        ),
        customer_id=customer_id,
        case_id=case_id,
        agent_id=actor.user_id,
    )
    outbound_id = await session.scalar(
        pg_insert(OutboundMessage)
        .values(
            contact_id=contact.id,
            mailbox_id=mailbox.id,
            kind=kind,
            raw=compose(outgoing, message_id=message_id),
            envelope_from=sender,
            # Bcc only in the envelope, never in a header.
            envelope_to=list(dict.fromkeys(outgoing.to + outgoing.cc + (bcc or []))),
        )
        .returning(OutboundMessage.id)
    )
    audit.record(
        session,
        actor=actor,
        action={"reply": "case.reply", "auto_response": "case.autoResponse"}.get(kind, f"case.{kind}"),
        entity_type="contact",
        entity_id=contact.id,
        after={
            "caseId": case_id,
            "mailboxId": mailbox.id,
            "to": outgoing.to,
            "cc": outgoing.cc,
            "bcc": bcc or [],
            "messageId": message_id,
        },
    )
    return contact, outbound_id


async def notification_mailbox(session: AsyncSession, *, case_id: int | None = None) -> Mailbox | None:
    """The mailbox a notice to a user leaves through: the one the case's latest mail came to when it
    has a relay, else the first enabled mailbox with one; None when no relay is configured."""
    if case_id is not None:
        source = await session.scalar(
            select(Contact.source)
            .where(Contact.case_id == case_id, Contact.direction == "inbound", Contact.source.like("mailbox:%"))
            .order_by(Contact.occurred_at.desc(), Contact.id.desc())
            .limit(1)
        )
        mailbox = await session.get(Mailbox, int(source.partition(":")[2])) if source else None
        if mailbox is not None and mailbox.relay_host:
            return mailbox
    return await session.scalar(
        select(Mailbox).where(Mailbox.enabled, Mailbox.relay_host.is_not(None)).order_by(Mailbox.id).limit(1)
    )


async def queue_notification(
    session: AsyncSession, *, mailbox: Mailbox, to: str, subject: str, text: str, kind: str
) -> int:
    """Put a notice to a user (not a contact with a customer) in the outbox; returns its outbound id."""
    sender = mailbox.relay_from or mailbox.address
    message_id = new_message_id(sender)
    outgoing = Outgoing(
        from_address=sender,
        from_name=mailbox.display_name,
        to=[to],
        subject=" ".join(subject.split())[:200],  # one header line, whatever the text it came from
        text=text,
        auto_submitted="auto-generated",
    )
    return await session.scalar(
        pg_insert(OutboundMessage)
        .values(
            mailbox_id=mailbox.id,
            kind=kind,
            raw=compose(outgoing, message_id=message_id),
            envelope_from=sender,
            envelope_to=[to],
        )
        .returning(OutboundMessage.id)
    )


async def queue_case_notification(
    session: AsyncSession, *, actor: Actor, case_id: int, to: list[str], subject: str, text: str
) -> int | None:
    """An internal mail to staff about a case (an SLA warning or breach), in the outbox of the mailbox
    the case's latest mail came to; None when the case came by no mailbox with a relay."""
    source = await session.scalar(
        select(Contact.source)
        .where(Contact.case_id == case_id, Contact.direction == "inbound", Contact.source.like("mailbox:%"))
        .order_by(Contact.occurred_at.desc(), Contact.id.desc())
        .limit(1)
    )
    mailbox = await session.get(Mailbox, int(source.partition(":")[2])) if source else None
    if mailbox is None or not mailbox.relay_host or not to:
        return None
    outgoing = Outgoing(
        from_address=mailbox.relay_from or mailbox.address,
        from_name=mailbox.display_name,
        to=to,
        subject=subject,
        text=text,
        auto_submitted="auto-generated",
    )
    _, outbound_id = await _queue_email(
        session,
        actor=actor,
        case_id=case_id,
        customer_id=None,
        mailbox=mailbox,
        outgoing=outgoing,
        kind="notification",
        direction="internal",
    )
    return outbound_id


@dataclass
class _StoredFile:
    filename: str | None
    content_type: str
    data: bytes
    inline: bool
    content_id: str | None


def send_enqueuer(arq_redis: ArqRedis) -> Callable[..., Awaitable[Any]]:
    """Enqueue the send job of an outbox entry, now or after a delay (a retry)."""

    async def enqueue(outbound_id: int, *, delay: float | None = None, attempt: int = 0) -> None:
        await arq_redis.enqueue_job(
            SEND_JOB, outbound_id, _job_id=f"mail-send:{outbound_id}:{attempt}", _defer_by=delay, _queue_name=JOB_QUEUE
        )

    return enqueue


def arq_of(runtime: Runtime) -> ArqRedis:
    """The runtime's Redis connections as an arq client (the API enqueues on them after a commit)."""
    return ArqRedis(connection_pool=runtime.redis.connection_pool, default_queue_name=JOB_QUEUE)


@dataclass
class SendResult:
    status: str
    response: str | None = None


async def send_outbound(
    runtime: Runtime, *, outbound_id: int, retry: Callable[..., Awaitable[Any]], retry_base: float = RETRY_BASE_SECONDS
) -> SendResult | None:
    """Send an outbox entry through its mailbox's relay. Accepted: sent. Refused for good (5xx): failed.
    Refused for now (4xx, relay unreachable): tried again after an exponentially growing delay, failed
    after the last attempt. The relay's answer is kept either way."""
    async with runtime.reading() as session:
        outbound = await session.get(OutboundMessage, outbound_id)
        mailbox = await session.get(Mailbox, outbound.mailbox_id) if outbound and outbound.mailbox_id else None
    if outbound is None or outbound.status != "queued":
        return None
    permanent, response = False, None
    if mailbox is None or not mailbox.relay_host:
        permanent, response = True, "the mailbox or its relay is gone"
    else:
        try:
            password = os.environ.get(mailbox.relay_secret_env or "") or None
            errors, response = await aiosmtplib.send(
                outbound.raw,
                sender=outbound.envelope_from,
                recipients=outbound.envelope_to,
                hostname=mailbox.relay_host,
                port=mailbox.relay_port,
                use_tls=mailbox.relay_security == "tls",
                start_tls=mailbox.relay_security == "starttls",
                tls_context=tls_context(runtime.settings.mail_ca_file) if mailbox.relay_security != "none" else None,
                username=mailbox.relay_user if password else None,
                password=password,
                timeout=60,
            )
            response = f"250 {response}"[:500]
            await _record_send(runtime, outbound_id, status="sent", response=response)
            return SendResult("sent", response)
        except aiosmtplib.SMTPResponseException as error:
            permanent, response = 500 <= error.code < 600, f"{error.code} {error.message}"[:500]
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            response = f"relay unreachable: {type(error).__name__}"
    attempts = outbound.attempts + 1
    if permanent or attempts >= MAX_SEND_ATTEMPTS:
        await _record_send(runtime, outbound_id, status="failed", response=response)
        return SendResult("failed", response)
    delay = retry_base * 2 ** (attempts - 1)
    await _record_send(runtime, outbound_id, status="queued", response=response, delay=delay)
    await retry(outbound_id, delay=delay, attempt=attempts)
    return SendResult("queued", response)


async def _record_send(
    runtime: Runtime, outbound_id: int, *, status: str, response: str | None, delay: float = 0
) -> None:
    async with runtime.transaction() as session:
        contact_id = await session.scalar(
            update(OutboundMessage)
            .where(OutboundMessage.id == outbound_id)
            .values(
                status=status,
                attempts=OutboundMessage.attempts + 1,
                last_response=response,
                sent_at=func.now() if status == "sent" else None,
                next_attempt_at=func.now() + timedelta(seconds=delay),
            )
            .returning(OutboundMessage.contact_id)
        )
        case_id = await session.scalar(select(Contact.case_id).where(Contact.id == contact_id))
        if case_id is not None:
            events.emit(session, "caseUpdated", case_id)


async def queued_outbound(runtime: Runtime, *, older_than: timedelta, limit: int = 500) -> list[tuple[int, int]]:
    """Outbox entries due for a while whose send job was lost: (id, attempts)."""
    async with runtime.reading() as session:
        rows = await session.execute(
            select(OutboundMessage.id, OutboundMessage.attempts)
            .where(OutboundMessage.status == "queued", OutboundMessage.next_attempt_at < datetime.now(UTC) - older_than)
            .order_by(OutboundMessage.next_attempt_at)
            .limit(limit)
        )
        return [tuple(row) for row in rows]

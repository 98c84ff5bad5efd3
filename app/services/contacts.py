"""Contacts: logged by agents, ingested from integrators (recognised and promoted in the same
transaction), and fixed by hand (associated, moved, split into a new case)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import BigInteger, Row, String, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.auth import STAFF_ROLES, Actor
from app.blobs import blobs
from app.contact_data import ContactData, stored_columns, validate
from app.errors import ErrorCode, UserError, not_found
from app.limits import IDS_PER_CALL, check_count
from app.models import Attachment, Case, CaseCustomer, Contact, Customer
from app.recognition.batch import BatchReads
from app.recognition.connector import LookupConnectors, connectors
from app.recognition.engine import CONFIG_VERSION, Recognition, load_rule_set, recognize
from app.recognition.outcome import Applied, Assessment, Decision, assess, decide, promotions_for, trace_document
from app.recognition.view import ContactView
from app.services import audit, queues, sla
from app.services import cases as case_service
from app.services import customers as customer_service
from app.services.cases import require_live_case
from app.services.customers import activity_forward, require_live_customer, touch_activity
from app.services.locking import case_links, erased_customer_refused, lock_case_graph, lock_customers, primary_of
from app.services.recognition import HeldBack, apply_outcome

if TYPE_CHECKING:
    from app.runtime import Runtime

log = logging.getLogger(__name__)
contacts = Contact.__table__
T = TypeVar("T")


async def resolve_links(
    session: AsyncSession, *, customer_id: int | None, case_id: int | None
) -> tuple[int | None, int | None]:
    """Check that the customer and case exist and belong together; a case alone brings its primary customer."""
    if customer_id is not None:
        customer = (
            await session.execute(select(Customer.number, Customer.status).where(Customer.id == customer_id))
        ).one_or_none()
        require_live_customer(customer, "customerId")
    if case_id is None:
        return customer_id, None
    # FOR SHARE: a concurrent caseMove/merge (FOR UPDATE) finishes first, so the links read below are current.
    case = await session.get(Case, case_id, with_for_update={"read": True})
    require_live_case(case, "caseId")
    links = (await case_links(session, [case_id]))[case_id]
    if customer_id is None:
        customer_id = primary_of(links)
    elif customer_id not in links:
        raise UserError(
            ErrorCode.CUSTOMER_NOT_ON_CASE,
            "the customer is not linked to this case; link them to the case first",
            "caseId",
        )
    return customer_id, case_id


async def insert_contact(
    session: AsyncSession,
    *,
    data: ContactData,
    customer_id: int | None,
    case_id: int | None,
    agent_id: int | None = None,
    recognition: dict[str, Any] | None = None,
    needs_review: bool = False,
) -> tuple[Contact, bool]:
    """Insert a contact, idempotent on (source, external id); returns (contact, created)."""
    values = {
        **stored_columns(data),
        "customer_id": customer_id,
        "case_id": case_id,
        "agent_id": agent_id,
        "recognition": recognition,
        "needs_review": needs_review,
    }
    statement = pg_insert(Contact).values(**values).returning(Contact)
    if data.external_id is not None:
        statement = statement.on_conflict_do_nothing(
            index_elements=["source", "external_id"], index_where=Contact.external_id.is_not(None)
        )
    async with erased_customer_refused():  # erased while this contact was on its way
        contact = (await session.execute(statement)).scalar_one_or_none()
    if contact is None:
        existing = await session.scalar(
            select(Contact).where(
                Contact.source.is_not_distinct_from(data.source), Contact.external_id == data.external_id
            )
        )
        assert existing is not None  # the conflicting row is committed or ours
        return existing, False
    if customer_id is not None:
        await touch_activity(session, customer_id=customer_id, occurred_at=values["occurred_at"])
    await after_recorded(session, [contact])
    publish_contact(session, contact)
    return contact, True


async def after_recorded(session: AsyncSession, contacts: list[Any]) -> None:
    """What new contacts on existing cases do besides being there, however they were recorded (one
    by one, ingested, in a batch): move their cases' status (queues) and answer them (the SLA's
    first response)."""
    on_cases = [contact for contact in contacts if contact.case_id is not None]
    if not on_cases:
        return
    await queues.after_contacts(session, [(c.case_id, c.direction, c.agent_id) for c in on_cases])
    answered = {c.case_id: c.occurred_at for c in on_cases if is_response(c)}
    for case_id, at in answered.items():
        await sla.record_first_response(session, case_id=case_id, at=at)


def _announce_ingested(session: AsyncSession, actor: Actor, contact: Any, trace: dict[str, Any]) -> None:
    """The events and the audit entry of an ingested contact, one by one or in a batch."""
    publish_contact(session, contact)
    audit.record(
        session,
        actor=actor,
        action="contact.ingest",
        entity_type="contact",
        entity_id=contact.id,
        after={
            "source": contact.source,
            "externalId": contact.external_id,
            "channel": contact.channel,
            "customerId": contact.customer_id,
            "caseId": contact.case_id,
            "needsReview": contact.needs_review,
            "matchedRule": trace.get("matchedRule"),
        },
    )


def is_response(contact: Any) -> bool:
    """What answers a case for its first-response target: an outbound contact on any channel (a reply,
    a call, a chat message), but not an automatic receipt."""
    mail = (contact.payload or {}).get("mail") or {}
    return contact.direction == "outbound" and mail.get("kind") != "auto_response"


def publish_contact(session: AsyncSession, contact: Contact) -> None:
    if contact.customer_id is not None:
        events.emit(session, "customerUpdated", contact.customer_id)
        events.emit(session, "contactReceived", f"customer:{contact.customer_id}", contactId=contact.id)
    if contact.case_id is not None:
        events.emit(session, "caseUpdated", contact.case_id)
        events.emit(session, "contactReceived", f"case:{contact.case_id}", contactId=contact.id)
    events.emit(session, "contactReceived", "all", contactId=contact.id)


def caller_source(actor: Actor) -> str:
    """The namespace of contactCreate's idempotency keys: each caller's own, so that no caller can
    claim (and later read back) another's external id."""
    return f"api:{actor.user_id}" if actor.user_id is not None else "api"


async def create_contact(
    session: AsyncSession,
    *,
    actor: Actor,
    data: ContactData,
    customer_id: int | None,
    case_id: int | None,
) -> Contact:
    """Log a contact on a customer and/or case; the caller's repeated external id returns its first contact."""
    validate(data)
    if data.external_id is not None:
        data.source = caller_source(actor)
    customer_id, case_id = await resolve_links(session, customer_id=customer_id, case_id=case_id)
    contact, created = await insert_contact(
        session,
        data=data,
        customer_id=customer_id,
        case_id=case_id,
        agent_id=actor.user_id if actor.role in STAFF_ROLES else None,
    )
    if created:
        audit.record(
            session,
            actor=actor,
            action="contact.create",
            entity_type="contact",
            entity_id=contact.id,
            after={"channel": contact.channel, "customerId": customer_id, "caseId": case_id},
        )
    return contact


# ---- fixing contacts by hand -----------------------------------------------------------------------


async def read_contact(
    session: AsyncSession, contact_id: int, *, lock: bool = False, field: str = "contactId"
) -> Row[Any]:
    query = select(contacts).where(contacts.c.id == contact_id)
    row = (await session.execute(query.with_for_update() if lock else query)).one_or_none()
    if row is None:
        raise not_found("contact", field)
    return row


async def associate_contact(
    session: AsyncSession, *, actor: Actor, contact_id: int, customer_id: int | None = None, case_id: int | None = None
) -> Row[Any]:
    """Link a contact to a customer and/or one case; the customer joins the case if the actor may link them.

    Given only a customer (re-assigning a mis-recognised contact), the contact stays on its case if
    that customer is on it, and otherwise leaves the case rather than joining the customer to it.
    """
    if customer_id is None and case_id is None:
        raise UserError(ErrorCode.REQUIRED, "give a customer, a case, or both", "customerId")
    contact = await read_contact(session, contact_id)
    customer_only = case_id is None
    case_id = case_id if case_id is not None else contact.case_id
    wanted = [c for c in (customer_id, contact.customer_id) if c is not None]
    if case_id is not None:
        customers, locked_cases, links = await lock_case_graph(session, [case_id], wanted)
        require_live_case(locked_cases[case_id], "caseId")
    else:
        customers, links = await lock_customers(session, wanted), {}
    contact = await read_contact(session, contact_id, lock=True)
    if customer_id is None:
        customer_id = contact.customer_id
        if customer_id is None or customers[customer_id].status in ("merged", "erased"):
            customer_id = primary_of(links[case_id])
    if customer_id is not None:
        require_live_customer(
            customers.get(customer_id) or (await lock_customers(session, [customer_id]))[customer_id], "customerId"
        )
    detached_from = None
    if customer_only and case_id is not None and customer_id not in links[case_id]:
        detached_from, case_id = case_id, None
    linked = False
    if case_id is not None and customer_id is not None and customer_id not in links[case_id]:
        await session.execute(
            insert(CaseCustomer.__table__).values(case_id=case_id, customer_id=customer_id, is_primary=False)
        )
        audit.record(
            session,
            actor=actor,
            action="case.customer.link",
            entity_type="case",
            entity_id=case_id,
            after={"customerId": customer_id, "primary": False, "via": "contactAssociate"},
        )
        linked = True
    await session.execute(
        update(Contact)
        .where(Contact.id == contact_id)
        .values(customer_id=customer_id, case_id=case_id, needs_review=False)
    )
    if customer_id is not None:
        await touch_activity(session, customer_id=customer_id, occurred_at=contact.occurred_at)
    audit.record(
        session,
        actor=actor,
        action="contact.associate",
        entity_type="contact",
        entity_id=contact_id,
        before={"customerId": contact.customer_id, "caseId": contact.case_id},
        after={
            "customerId": customer_id,
            "caseId": case_id,
            "linkedCustomerToCase": linked,
            "detachedFromCaseId": detached_from,
        },
    )
    events.emit_many(session, "customerUpdated", [c for c in (contact.customer_id, customer_id) if c is not None])
    events.emit_many(session, "caseUpdated", [c for c in (contact.case_id, case_id) if c is not None])
    return await read_contact(session, contact_id)


async def move_contacts(
    session: AsyncSession, *, actor: Actor, contact_ids: list[int], to_case_id: int
) -> list[Row[Any]]:
    """Move contacts to another case; each contact's customer must be linked to it."""
    check_count(contact_ids, "contactIds", IDS_PER_CALL)
    contact_ids = list(dict.fromkeys(contact_ids))
    if not contact_ids:
        raise UserError(ErrorCode.REQUIRED, "name at least one contact", "contactIds")
    before = {
        row.id: row for row in (await session.execute(select(contacts).where(contacts.c.id.in_(contact_ids)))).all()
    }
    for index, contact_id in enumerate(contact_ids):
        if contact_id not in before:
            raise not_found("contact", f"contactIds.{index}")
    customer_ids = {row.customer_id for row in before.values() if row.customer_id is not None}
    _, locked_cases, links = await lock_case_graph(session, [to_case_id], customer_ids, field="toCaseId")
    require_live_case(locked_cases[to_case_id], "toCaseId")
    rows = {
        row.id: row
        for row in (
            await session.execute(
                select(contacts).where(contacts.c.id.in_(contact_ids)).order_by(contacts.c.id).with_for_update()
            )
        ).all()
    }
    target_links = links[to_case_id]
    for index, contact_id in enumerate(contact_ids):
        customer_id = rows[contact_id].customer_id
        if customer_id is not None and customer_id not in target_links:
            raise UserError(
                ErrorCode.CUSTOMER_NOT_ON_CASE,
                "the contact's customer is not linked to the target case; link them to the case first",
                f"contactIds.{index}",
            )
    primary = primary_of(target_links)
    await session.execute(
        update(Contact)
        .where(Contact.id.in_(contact_ids))
        .values(case_id=to_case_id, customer_id=func.coalesce(Contact.customer_id, primary))
    )
    for contact_id in contact_ids:
        audit.record(
            session,
            actor=actor,
            action="contact.move",
            entity_type="contact",
            entity_id=contact_id,
            before={"caseId": rows[contact_id].case_id},
            after={"caseId": to_case_id},
        )
    events.emit_many(session, "caseUpdated", [to_case_id, *(r.case_id for r in rows.values() if r.case_id is not None)])
    events.emit_many(session, "customerUpdated", [c for c in [*customer_ids, primary] if c is not None])
    return [
        row
        for row in (
            await session.execute(select(contacts).where(contacts.c.id.in_(contact_ids)).order_by(contacts.c.id))
        ).all()
    ]


async def create_case_from_contact(
    session: AsyncSession,
    *,
    actor: Actor,
    contact_id: int,
    subject: str,
    customer_id: int | None = None,
    description: str | None = None,
    priority: str = "normal",
) -> Case:
    """Split a contact into a new case of its customer (or of the customer given)."""
    contact = await read_contact(session, contact_id)
    customer_id = customer_id if customer_id is not None else contact.customer_id
    if customer_id is None:
        raise UserError(
            ErrorCode.REQUIRED, "the contact has no customer; name the customer for the new case", "customerId"
        )
    customers = await lock_customers(session, {customer_id, *([contact.customer_id] if contact.customer_id else [])})
    require_live_customer(customers[customer_id], "customerId")
    contact = await read_contact(session, contact_id, lock=True)
    case = await case_service.create_case(
        session, actor=actor, subject=subject, customer_ids=[customer_id], description=description, priority=priority
    )
    await session.execute(
        update(Contact).where(Contact.id == contact_id).values(case_id=case.id, customer_id=customer_id)
    )
    await touch_activity(session, customer_id=customer_id, occurred_at=contact.occurred_at)
    audit.record(
        session,
        actor=actor,
        action="contact.split",
        entity_type="contact",
        entity_id=contact_id,
        before={"customerId": contact.customer_id, "caseId": contact.case_id},
        after={"customerId": customer_id, "caseId": case.id},
    )
    if contact.case_id is not None:
        events.emit(session, "caseUpdated", contact.case_id)
    if contact.customer_id is not None:
        events.emit(session, "customerUpdated", contact.customer_id)
    return case


# ---- ingest ----------------------------------------------------------------------------------------

# Built once (this is the integrators' hot path). The insert claims (source, external_id) first:
# a concurrent twin blocks on the unique index until we commit, then finds our row.
_claimed = (
    pg_insert(contacts)
    # One bind parameter per column stored_columns() fills (its keys, read from an empty contact).
    .values({name: bindparam(name) for name in stored_columns(ContactData(channel="", direction=""))})
    .on_conflict_do_nothing(index_elements=["source", "external_id"], index_where=text("external_id IS NOT NULL"))
    .returning(contacts.c.id)
    .cte("claimed")
)
_CLAIM = select(_claimed.c.id)
_EXISTING = select(contacts).where(
    contacts.c.source == bindparam("source"), contacts.c.external_id == bindparam("external_id")
)
_recorded = (
    update(contacts)
    .where(contacts.c.id == bindparam("contact_id"))
    .values(
        # A merge may have committed since recognition looked: follow tombstones as inserts do
        # (the functions come with migration 0003 and wait for a merge in progress).
        customer_id=func.casegraph_live_customer(bindparam("customer_id", type_=BigInteger)),
        case_id=func.casegraph_live_case(bindparam("case_id", type_=BigInteger)),
        candidate_customer_ids=bindparam("candidates"),
        needs_review=bindparam("needs_review"),
        recognition=bindparam("recognition"),
    )
    .returning(*contacts.c)
    .cte("recorded")
)
# One round trip: record the outcome on the contact and move the customer's last activity.
_RECORD = select(_recorded).add_cte(activity_forward(_recorded.c.customer_id, _recorded.c.occurred_at).cte("touched"))


@dataclass
class IngestResult:
    contact: Row[Any]  # the contacts row
    duplicate: bool
    customer_id: int | None
    case_id: int | None
    candidates: list[int] = field(default_factory=list)
    customer_created: bool = False
    case_created: bool = False


def _check_ingest(data: ContactData) -> None:
    validate(data)
    if not (data.source or "").strip():
        raise UserError(ErrorCode.REQUIRED, "source is required", "source")
    if not (data.external_id or "").strip():
        raise UserError(ErrorCode.REQUIRED, "externalId is required", "externalId")
    data.source, data.external_id = data.source.strip(), data.external_id.strip()


def failure_code(error: Exception) -> str:
    """What failed, as a code to store: an exception's text (SQL, parameters, internals) never is."""
    if isinstance(error, DBAPIError):
        return "DATABASE_ERROR"
    if isinstance(error, TimeoutError):
        return "TIMEOUT"
    return "INTERNAL_ERROR"


async def _assess_first(
    session: AsyncSession, *, view: ContactView, region: str, lookups: LookupConnectors
) -> Assessment | str:
    """Run the rules before the write, in a reading session of their own that gives its connection
    back while a connector waits for the back office; a failure comes back as its code."""
    try:
        async with AsyncSession(session.bind, expire_on_commit=False) as reading:
            version = await reading.scalar(CONFIG_VERSION)
            return await assess(
                reading, view=view, region=region, lookups=lookups, version=version, release_during_lookups=True
            )
    except Exception as error:  # noqa: BLE001 - the contact is stored and flagged, see ingest_contact
        log.exception("recognition failed for a contact from %s", view.channel)
        return failure_code(error)


async def ingest_contact(
    session: AsyncSession, *, actor: Actor, data: ContactData, region: str, lookups: LookupConnectors = connectors
) -> IngestResult:
    """Store an integrator's contact, recognised and promoted; a repeated (source, externalId) returns the first.

    The lookup first, then the short write: the rules (and any connector call) run before
    `session` executes anything, so its transaction holds no pooled connection while a back
    office is slow. Call it on a session that has not executed a statement yet."""
    _check_ingest(data)
    view = ContactView.of(data)
    assessment = await _assess_first(session, view=view, region=region, lookups=lookups)
    # Core statements go straight to the session's connection (same transaction, less overhead).
    connection = await session.connection()
    claimed = (await connection.execute(_CLAIM, stored_columns(data))).first()
    if claimed is None:
        existing = (await connection.execute(_EXISTING, {"source": data.source, "external_id": data.external_id})).one()
        return IngestResult(
            contact=existing,
            duplicate=True,
            customer_id=existing.customer_id,
            case_id=existing.case_id,
            candidates=list(existing.candidate_customer_ids or []),
        )
    contact_id = view.contact_id = claimed.id
    failure = assessment if isinstance(assessment, str) else None
    if failure is None:
        events_before, audit_before = events.pending_count(session), audit.pending_count(session)
        # A fault in applying the outcome must not lose the contact: undo its work back to a
        # savepoint, keep the contact, flag it. The savepoint is the connection's (the ORM's nested
        # transaction costs more than the rest of a typical ingest); on a fault the session forgets
        # every object, so nothing of the undone work is flushed later.
        await session.flush()
        savepoint = await connection.begin_nested()
        try:
            applied = await apply_outcome(session, actor=actor, view=view, assessment=assessment, region=region)
            trace = trace_document(assessment, applied)
            await session.flush()
            await savepoint.commit()
            recognition, decision = assessment.recognition, assessment.decision
        except Exception as error:  # noqa: BLE001 - stored and flagged, see above
            log.exception("recognition failed for contact %s", contact_id)
            await savepoint.rollback()
            session.expunge_all()
            events.discard_after(session, events_before)  # nothing of it was kept
            audit.discard_after(session, audit_before)
            failure = failure_code(error)
    if failure is not None:
        applied = Applied(customer_id=None, case_id=None)
        recognition = Recognition()
        decision = Decision(False, False, True, "recognition failed; flagged for an agent", {})
        trace = {"outcome": "error", "error": failure, "steps": [], "needsReview": True}

    contact = (
        await connection.execute(
            _RECORD,
            {
                "contact_id": contact_id,
                "customer_id": applied.customer_id,
                "case_id": applied.case_id,
                "candidates": recognition.candidates,
                "needs_review": decision.needs_review,
                "recognition": trace,
            },
        )
    ).one()
    if not applied.case_created:  # a case opened by this contact is as it should be
        await after_recorded(session, [contact])
    _announce_ingested(session, actor, contact, trace)
    return IngestResult(
        contact=contact,
        duplicate=False,
        customer_id=applied.customer_id,
        case_id=applied.case_id,
        candidates=recognition.candidates,
        customer_created=applied.customer_created,
        case_created=applied.case_created,
    )


# ---- attachments -----------------------------------------------------------------------------------


class File(Protocol):
    filename: str | None
    content_type: str
    data: bytes
    inline: bool
    content_id: str | None


async def add_attachments(session: AsyncSession, *, contact_id: int, files: Sequence[File]) -> None:
    """Attach files to a contact; each content is stored once, however many contacts carry it."""
    rows = [
        {
            "contact_id": contact_id,
            "sha256": await blobs.put(session, file.data),
            "filename": file.filename,
            "content_type": file.content_type,
            "size": len(file.data),
            "inline": file.inline,
            "content_id": file.content_id,
        }
        for file in files
    ]
    if rows:
        await session.execute(insert(Attachment), rows)


async def read_attachment(session: AsyncSession, *, attachment_id: int) -> tuple[Attachment, bytes] | None:
    """An attachment and its content, or None."""
    attachment = await session.get(Attachment, attachment_id)
    if attachment is None:
        return None
    data = await blobs.get(session, attachment.sha256)
    return None if data is None else (attachment, data)


# ---- ingest in batches -----------------------------------------------------------------------------

BATCH_LIMIT = 500

_CLAIM_MANY = (
    pg_insert(contacts)
    .on_conflict_do_nothing(index_elements=["source", "external_id"], index_where=text("external_id IS NOT NULL"))
    .returning(contacts.c.id, contacts.c.source, contacts.c.external_id)
)
_EXISTING_MANY = (
    text(
        "SELECT c.* FROM contacts c JOIN unnest(:sources, :external_ids) AS k(source, external_id) "
        "ON c.source = k.source AND c.external_id = k.external_id"
    )
    .bindparams(bindparam("sources", type_=ARRAY(String)), bindparam("external_ids", type_=ARRAY(String)))
    .columns(*contacts.c)
)
# Every contact's outcome in one statement, each customer's last activity moved with it (as _RECORD does for one).
_RECORD_MANY = (
    text(
        """
        WITH given AS (
          SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS g(
            id bigint, customer_id bigint, case_id bigint, candidates bigint[], needs_review boolean, recognition jsonb)
        ), recorded AS (
          UPDATE contacts c SET
            customer_id = casegraph_live_customer(g.customer_id),
            case_id = casegraph_live_case(g.case_id),
            candidate_customer_ids = g.candidates,
            needs_review = g.needs_review,
            recognition = g.recognition
          FROM given g WHERE c.id = g.id
          RETURNING c.*
        ), latest AS (
          SELECT customer_id, max(occurred_at) AS at FROM recorded
          WHERE customer_id IS NOT NULL GROUP BY customer_id
        ), touched AS (
          -- Rows locked by ascending id: two batches touching the same customers cannot deadlock.
          UPDATE customers u SET last_activity_at = t.at
          FROM (SELECT c.id, l.at FROM customers c JOIN latest l ON l.customer_id = c.id
                WHERE c.last_activity_at IS NULL OR c.last_activity_at < l.at
                ORDER BY c.id FOR NO KEY UPDATE OF c) t
          WHERE u.id = t.id AND (u.last_activity_at IS NULL OR u.last_activity_at < t.at)
        )
        SELECT * FROM recorded
        """
    )
    .bindparams(bindparam("rows", type_=JSONB))
    .columns(*contacts.c)
)


class BatchItemFailed(Exception):
    """An item of a batch failed: the batch is undone, and the item is tried again alone."""

    def __init__(self, position: int, error: Exception) -> None:
        super().__init__(f"item {position} failed: {error!r}")
        self.position, self.error = position, error


def check_ingest_items(items: Sequence[ContactData]) -> list[UserError | None]:
    """Each item's input checked (as contactIngest checks it): its UserError, or None."""
    checked: list[UserError | None] = []
    for data in items:
        try:
            _check_ingest(data)
        except UserError as error:
            checked.append(error)
        else:
            checked.append(None)
    return checked


@dataclass
class _Pending:
    """A claimed contact whose outcome is decided, waiting for the batch's one recording statement."""

    position: int
    contact_id: int
    applied: Applied
    recognition: Recognition
    decision: Decision
    trace: dict[str, Any]
    result: IngestResult | None = None


async def ingest_batch(
    session: AsyncSession,
    *,
    actor: Actor,
    items: Sequence[ContactData],
    region: str,
    lookups: LookupConnectors = connectors,
) -> list[IngestResult]:
    """Ingest checked contacts in one transaction, set-based: one claim, one read-ahead per kind of
    lookup, one recording statement. Each contact's outcome and trace are what ingesting them one
    by one, in this order, would give. An item that fails raises BatchItemFailed (the caller rolls
    back and tries it alone: ingest_contact then stores and flags it).

    New customers and cases are checked per contact as in ingest_contact and written together;
    promotions run per contact."""
    if not items:
        return []
    connection = await session.connection()
    columns = [stored_columns(data) for data in items]
    keys = [(data.source, data.external_id) for data in items]
    first_of: dict[tuple[str | None, str | None], int] = {}
    for position, key in enumerate(keys):
        first_of.setdefault(key, position)
    claim = [columns[position] for position in first_of.values()]
    claimed = {(row.source, row.external_id): row.id for row in await connection.execute(_CLAIM_MANY, claim)}
    existing: dict[tuple[str | None, str | None], Row[Any]] = {}
    if len(claimed) < len(first_of):
        missing = [key for key in first_of if key not in claimed]
        rows = await connection.execute(
            _EXISTING_MANY, {"sources": [k[0] for k in missing], "external_ids": [k[1] for k in missing]}
        )
        existing = {(row.source, row.external_id): row for row in rows}

    version = await connection.scalar(CONFIG_VERSION)
    rule_set = await load_rule_set(session, version=version)
    sla.remember_clock_settings(session)
    fresh = [position for key, position in first_of.items() if key in claimed]
    views = {position: ContactView.of(items[position]) for position in fresh}
    batch = await BatchReads.read_ahead(connection, views=list(views.values()), rule_set=rule_set, region=region)
    # The customers and cases the batch creates are written together, before a lookup or a recording reads them.
    held = HeldBack(
        customers=customer_service.NewCustomers(session, ids_at_once=len(fresh)),
        cases=case_service.CaseOpenings(
            session, ids_at_once=len(fresh), on_written=lambda case: batch.case_referenced(case.id, case.reference)
        ),
    )
    batch.write_pending = held.write
    # OPEN_CASE_OF_CUSTOMER reads which cases contacts stand on: then each outcome is recorded at once.
    record_each = any(rule["kind"] == "open_case_of_customer" for rule in rule_set.rules)
    # These rules read customers or cases from the database themselves.
    reads_live = record_each or any(rule["kind"] in ("external_reference", "field_match") for rule in rule_set.rules)

    decided: dict[int, _Pending] = {}
    pending: list[_Pending] = []
    recorded: dict[int, Row[Any]] = {}
    # Nothing read below depends on an audit entry: they are written together, at the end.
    session.autoflush = False
    for position in fresh:
        view = views[position]
        try:
            if reads_live:
                await held.write()
            recognition = await recognize(
                session, view=view, rule_set=rule_set, region=region, lookups=lookups, batch=batch
            )
            decision = decide(recognition, rule_set, view.channel)
            promotions, skipped = promotions_for(rule_set, view)
            assessment = Assessment(rule_set, recognition, decision, promotions, skipped)
            view.contact_id = claimed[keys[position]]
            applied = await apply_outcome(
                session,
                actor=actor,
                view=view,
                assessment=assessment,
                region=region,
                identifiers_locked=True,
                locked_customers=batch.locked_customers,
                held=held,
            )
            trace = trace_document(assessment, applied)
        except Exception as error:  # noqa: BLE001 - tried again alone by the caller
            raise BatchItemFailed(position, error) from error
        if applied.customer_created and applied.profile is not None:
            batch.customer_created(
                applied.customer_id, [(i["kind"], i["value"]) for i in applied.profile["identifiers"]]
            )
        elif any(p.policy == "add_identifier" and p.target == "customer" for p in promotions):
            batch.identifiers_changed()
        if applied.case_created:
            batch.case_created(applied.case_id, applied.case_reference, applied.customer_id)
        batch.contact_recorded(
            columns[position]["message_id"], columns[position]["occurred_at"], view.contact_id, applied.case_id
        )
        decided[position] = _Pending(position, view.contact_id, applied, recognition, decision, trace)
        pending.append(decided[position])
        if record_each:
            await held.write()
            recorded |= await _record_many(session, actor, pending)
            pending = []
    await held.write()
    recorded |= await _record_many(session, actor, pending)
    session.autoflush = True

    results: list[IngestResult] = []
    for position, key in enumerate(keys):
        first = first_of[key]
        if key not in claimed:
            row = existing[key]
            results.append(
                IngestResult(row, True, row.customer_id, row.case_id, list(row.candidate_customer_ids or []))
            )
        elif first != position:  # the same key twice in the batch: the second is a repeat of the first
            row = recorded[first]
            results.append(
                IngestResult(row, True, row.customer_id, row.case_id, list(row.candidate_customer_ids or []))
            )
        else:
            result = decided[position].result
            assert result is not None
            results.append(result)
    return results


async def _record_many(session: AsyncSession, actor: Actor, pending: list[_Pending]) -> dict[int, Row[Any]]:
    """Record decided outcomes on their contacts (one statement), with their events and audit entries."""
    if not pending:
        return {}
    connection = await session.connection()
    rows = await connection.execute(
        _RECORD_MANY,
        {
            "rows": [
                {
                    "id": p.contact_id,
                    "customer_id": p.applied.customer_id,
                    "case_id": p.applied.case_id,
                    "candidates": p.recognition.candidates,
                    "needs_review": p.decision.needs_review,
                    "recognition": p.trace,
                }
                for p in pending
            ]
        },
    )
    by_id = {row.id: row for row in rows}
    await after_recorded(session, [by_id[p.contact_id] for p in pending if not p.applied.case_created])
    recorded: dict[int, Row[Any]] = {}
    for p in pending:
        contact = by_id[p.contact_id]
        _announce_ingested(session, actor, contact, p.trace)
        p.result = IngestResult(
            contact=contact,
            duplicate=False,
            customer_id=p.applied.customer_id,
            case_id=p.applied.case_id,
            candidates=p.recognition.candidates,
            customer_created=p.applied.customer_created,
            case_created=p.applied.case_created,
        )
        recorded[p.position] = contact
    return recorded


async def isolating(
    positions: list[int],
    run_batch: Callable[[list[int]], Awaitable[list[T]]],
    run_alone: Callable[[int], Awaitable[T]],
    failed: Exception | None = None,
) -> list[T]:
    """Run items as one batch; when an item fails, the batch is undone and run again without it,
    and the failed item alone (so one bad item costs its batch a retry, never its outcome).
    `failed`: the batch was tried already, and failed so."""
    if not positions:
        return []
    try:
        if failed is not None:
            raise failed
        return await run_batch(positions)
    except BatchItemFailed as failed:
        log.warning("item %s of a batch failed; it is tried alone", positions[failed.position], exc_info=failed.error)
        cut = failed.position
        before = await isolating(positions[:cut], run_batch, run_alone)
        alone = await run_alone(positions[cut])
        return [*before, alone, *await isolating(positions[cut + 1 :], run_batch, run_alone)]
    except Exception:  # noqa: BLE001 - a fault of the batch as a whole: every item alone
        log.exception("a batch of %s items failed; each is tried alone", len(positions))
        return [await run_alone(position) for position in positions]


async def ingest_contacts(
    runtime: Runtime,
    *,
    actor: Actor,
    items: Sequence[ContactData],
    region: str,
    lookups: LookupConnectors = connectors,
) -> list[IngestResult | UserError]:
    """contactIngestBatch: up to BATCH_LIMIT contacts in one transaction, one result per item (its
    UserError when its input is refused, changing nothing for it). Outcomes are those of ingesting
    the items one by one in this order; a failing item is retried alone."""
    check_count(items, "contacts", BATCH_LIMIT)
    checked = check_ingest_items(items)
    valid = [position for position, error in enumerate(checked) if error is None]

    async def run_batch(positions: list[int]) -> list[IngestResult]:
        async with runtime.transaction() as session:
            return await ingest_batch(
                session, actor=actor, items=[items[p] for p in positions], region=region, lookups=lookups
            )

    async def run_alone(position: int) -> IngestResult:
        async with runtime.transaction() as session:
            return await ingest_contact(session, actor=actor, data=items[position], region=region, lookups=lookups)

    ingested = dict(zip(valid, await isolating(valid, run_batch, run_alone), strict=True))
    return [ingested[position] if error is None else error for position, error in enumerate(checked)]

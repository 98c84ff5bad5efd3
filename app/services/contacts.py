"""Contacts: logged by agents, ingested from integrators (recognised and promoted in the same
transaction), and fixed by hand (associated, moved, split into a new case)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import BigInteger, Row, bindparam, func, insert, select, text, update
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
from app.recognition.connector import LookupConnectors, connectors
from app.recognition.engine import CONFIG_VERSION, Recognition
from app.recognition.outcome import Applied, Assessment, Decision, assess, trace_document
from app.recognition.view import ContactView
from app.services import audit, queues
from app.services import cases as case_service
from app.services.cases import require_live_case
from app.services.customers import activity_forward, require_live_customer, touch_activity
from app.services.locking import case_links, erased_customer_refused, lock_case_graph, lock_customers, primary_of
from app.services.recognition import apply_outcome

log = logging.getLogger(__name__)
contacts = Contact.__table__


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
    if case_id is not None:
        await queues.after_contact(session, case_id=case_id, direction=contact.direction, agent_id=agent_id)
    publish_contact(session, contact)
    return contact, True


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
        events_before = events.pending_count(session)
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

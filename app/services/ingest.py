"""Integrator ingest: a contact stored with its recognition, creation and promotion in one
transaction, idempotent on (source, externalId); and the preview that writes nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import BigInteger, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.auth import Actor
from app.errors import ErrorCode, UserError
from app.models import Contact, Customer
from app.recognition.connector import LookupConnectors, connectors
from app.recognition.engine import CONFIG_VERSION, Recognition, load_rule_set, recognize
from app.recognition.promotion import (
    Applied,
    Decision,
    apply_outcome,
    decide,
    plan_outcome,
    promotions_for,
    trace_document,
)
from app.recognition.view import ContactView
from app.services import audit
from app.services.contacts import ContactData, header, publish_contact, sanitize_html, validate

log = logging.getLogger(__name__)

_contacts = Contact.__table__
# Built once (this is the integrators' hot path). The insert claims (source, external_id) first:
# a concurrent twin blocks on the unique index until we commit, then finds our row.
_CLAIM_COLUMNS = (
    "channel", "direction", "occurred_at", "subject", "text", "html", "from_address", "to_addresses",
    "headers", "message_id", "source", "external_id", "payload",
)
_claimed = (
    insert(_contacts)
    .values({name: bindparam(name) for name in _CLAIM_COLUMNS})
    .on_conflict_do_nothing(index_elements=["source", "external_id"], index_where=text("external_id IS NOT NULL"))
    .returning(_contacts.c.id)
    .cte("claimed")
)
# ...and reads the configuration version in the same round trip (see load_rule_set).
_CLAIM = select(_claimed.c.id, CONFIG_VERSION.scalar_subquery().label("config_version"))
_EXISTING = select(_contacts).where(_contacts.c.source == bindparam("source"), _contacts.c.external_id == bindparam("external_id"))
_customers = Customer.__table__
_recorded = (
    update(_contacts)
    .where(_contacts.c.id == bindparam("contact_id"))
    .values(
        # A merge may have committed since recognition looked: follow tombstones as inserts do
        # (the functions come with the maintenance migration and wait for a merge in progress).
        customer_id=func.casegraph_live_customer(bindparam("customer_id", type_=BigInteger)),
        case_id=func.casegraph_live_case(bindparam("case_id", type_=BigInteger)),
        candidate_customer_ids=bindparam("candidates"),
        needs_review=bindparam("needs_review"),
        recognition=bindparam("recognition"),
    )
    .returning(*_contacts.c)
    .cte("recorded")
)
# One round trip: record the outcome on the contact and move the customer's last activity.
_RECORD = select(_recorded).add_cte(
    update(_customers)
    .where(_customers.c.id == _recorded.c.customer_id)
    .where(_customers.c.last_activity_at.is_(None) | (_customers.c.last_activity_at < _recorded.c.occurred_at))
    .values(last_activity_at=_recorded.c.occurred_at)
    .cte("touched")
)


@dataclass
class IngestResult:
    contact: Any  # the contacts row
    duplicate: bool
    customer_id: int | None
    case_id: int | None
    candidates: list[int] = field(default_factory=list)
    customer_created: bool = False
    case_created: bool = False


@dataclass
class PreviewResult:
    customer_id: int | None
    case_id: int | None
    candidates: list[int]
    needs_review: bool
    customer_created: bool
    case_created: bool
    trace: dict[str, Any]


def _check_ingest(data: ContactData) -> None:
    _check_shapes(data)
    if not (data.source or "").strip():
        raise UserError(ErrorCode.REQUIRED, "source is required", "source")
    if not (data.external_id or "").strip():
        raise UserError(ErrorCode.REQUIRED, "externalId is required", "externalId")
    data.source, data.external_id = data.source.strip(), data.external_id.strip()


def _check_shapes(data: ContactData) -> None:
    validate(data)
    if not isinstance(data.headers, dict):
        raise UserError(ErrorCode.INVALID, "headers must be an object of header names to values", "headers")
    if not isinstance(data.payload, dict):
        raise UserError(ErrorCode.INVALID, "payload must be an object", "payload")


async def ingest_contact(
    session: AsyncSession, *, actor: Actor, data: ContactData, region: str, lookups: LookupConnectors = connectors
) -> IngestResult:
    """Store an integrator's contact, recognised and promoted; a repeated (source, externalId) returns the first."""
    _check_ingest(data)
    occurred_at = data.occurred_at or datetime.now(timezone.utc)
    # Core statements go straight to the session's connection (same transaction, less overhead).
    connection = await session.connection()
    claimed = (await connection.execute(
        _CLAIM,
        {
            "channel": data.channel, "direction": data.direction, "occurred_at": occurred_at,
            "subject": data.subject, "text": data.text, "html": sanitize_html(data.html),
            "from_address": data.from_address, "to_addresses": data.to_addresses, "headers": data.headers,
            "message_id": header(data.headers, "Message-ID"), "source": data.source,
            "external_id": data.external_id, "payload": data.payload,
        },
    )).first()
    if claimed is None:
        existing = (await connection.execute(_EXISTING, {"source": data.source, "external_id": data.external_id})).one()
        return IngestResult(
            contact=existing, duplicate=True, customer_id=existing.customer_id, case_id=existing.case_id,
            candidates=list(existing.candidate_customer_ids or []),
        )
    contact_id, config_version = claimed
    view = ContactView.of(data, contact_id=contact_id)
    applied: Applied | None = None
    recognition = Recognition()
    events_before = events.pending_count(session)
    # A fault in recognition must not lose the contact: undo its work back to a savepoint, keep
    # the contact, flag it. The savepoint is the connection's (the ORM's nested transaction costs
    # more than the rest of a typical ingest); on a fault the session forgets every object, so
    # nothing of the undone work is flushed later.
    await session.flush()
    savepoint = await connection.begin_nested()
    try:
        rule_set = await load_rule_set(session, version=config_version)
        recognition = await recognize(session, view=view, rule_set=rule_set, region=region, lookups=lookups)
        decision = decide(recognition, rule_set, data.channel)
        promotions, skipped = promotions_for(rule_set, view)
        applied = await apply_outcome(
            session, actor=actor, view=view, recognition=recognition, decision=decision, promotions=promotions, region=region
        )
        trace = trace_document(recognition, decision, applied, skipped)
        await session.flush()
        await savepoint.commit()
    except Exception as error:  # noqa: BLE001 - stored and flagged, see above
        log.exception("recognition failed for contact %s", contact_id)
        await savepoint.rollback()
        session.expunge_all()
        events.discard_after(session, events_before)  # nothing of it was kept
        applied = Applied(customer_id=None, case_id=None)
        recognition = Recognition()
        decision = Decision(False, False, True, "recognition failed; flagged for an agent", {})
        trace = {"outcome": "error", "error": f"{type(error).__name__}: {error}", "steps": [], "needsReview": True}

    contact = (
        await connection.execute(
            _RECORD,
            {
                "contact_id": contact_id, "customer_id": applied.customer_id, "case_id": applied.case_id,
                "candidates": recognition.candidates, "needs_review": decision.needs_review, "recognition": trace,
            },
        )
    ).one()
    publish_contact(session, contact)
    audit.record(
        session, actor=actor, action="contact.ingest", entity_type="contact", entity_id=contact.id,
        after={
            "source": contact.source, "externalId": contact.external_id, "channel": contact.channel,
            "customerId": contact.customer_id, "caseId": contact.case_id, "needsReview": contact.needs_review,
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


async def preview_recognition(
    session: AsyncSession, *, data: ContactData, region: str, lookups: LookupConnectors = connectors
) -> PreviewResult:
    """The same rules on the same input; reads only (the caller should not commit anything)."""
    _check_shapes(data)
    view = ContactView.of(data)
    rule_set = await load_rule_set(session)
    recognition = await recognize(session, view=view, rule_set=rule_set, region=region, lookups=lookups)
    decision = decide(recognition, rule_set, data.channel)
    promotions, skipped = promotions_for(rule_set, view)
    planned = plan_outcome(recognition, decision, promotions, region)
    trace = trace_document(recognition, decision, planned, skipped)
    trace["preview"] = True
    return PreviewResult(
        customer_id=recognition.customer_id,
        case_id=recognition.case_id,
        candidates=recognition.candidates,
        needs_review=decision.needs_review,
        customer_created=planned.customer_created,
        case_created=planned.case_created,
        trace=trace,
    )

"""GDPR: erase a customer's personal data (irreversibly) and export everything stored about them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.auth import Actor
from app.errors import ErrorCode, UserError
from app.models import AuditEvent, Case, CaseCustomer, Contact, Customer, CustomerIdentifier, CustomerMerge
from app.services import audit
from app.services.maintenance.locking import lock_customers

ERASED_CASE_SUBJECT = "[erased]"
ERASE_ROLES = ("supervisor",)


# Audit-event keys that hold ids, codes, counts and states, never what a person wrote or is called;
# the audit trail of an anonymised case or contact keeps only these.
NON_PERSONAL_AUDIT_KEYS = (
    "reference", "status", "priority", "severity", "reasonCode", "assigneeId", "parentId", "customerId", "customerIds",
    "caseId", "primary", "mergedInto", "mergedFrom", "contactsMoved", "customersLinked", "childrenMoved", "via",
    "ruleId", "rule", "channel", "direction", "needsReview", "matchedRule", "linkedCustomerToCase", "detachedFromCaseId",
)
_KEPT_KEYS = "ARRAY[" + ", ".join(f"'{key}'" for key in NON_PERSONAL_AUDIT_KEYS) + "]"


def _kept(column: str) -> str:
    return (
        f"CASE WHEN jsonb_typeof({column}) = 'object' THEN "
        f"(SELECT jsonb_object_agg(key, value) FROM jsonb_each({column}) WHERE key = ANY({_KEPT_KEYS})) END"
    )


def scrub_audit(entity_type: str, entity_ids_sql: str) -> str:
    """SQL that drops the personal keys from the audit events of the entities `entity_ids_sql` selects."""
    return (
        f"UPDATE audit_events SET before = {_kept('before')}, after = {_kept('after')} "
        f"WHERE entity_type = '{entity_type}' AND entity_id IN ({entity_ids_sql})"
    )


CONTACT_PERSONAL_DATA_CLEARED = (
    "subject = NULL, text = NULL, html = NULL, from_address = NULL, to_addresses = '[]', headers = '{}', "
    "payload = '{}', message_id = NULL, recognition = NULL"
)
# Cases that concern only the customers in :ids: their text may name the person.
_ONLY_THEIR_CASES = (
    "SELECT l.case_id FROM case_customers l WHERE l.customer_id = ANY(:ids) "
    "AND NOT EXISTS (SELECT 1 FROM case_customers o WHERE o.case_id = l.case_id AND o.customer_id <> ALL(:ids))"
)
_NAMES_THEM = "candidate_customer_ids && :ids AND candidate_customer_ids <> '{}'"
UNASSIGNED_CANDIDATE_CONTACTS = f"SELECT id FROM contacts WHERE customer_id IS NULL AND {_NAMES_THEM}"
# Contacts whose content is the person's: their own, unassigned ones they were a recognition
# candidate for, and unassigned ones (e.g. notes) on a case that concerns only them. Each branch
# reads its own index.
_THEIR_CONTACTS = (
    "SELECT id FROM contacts WHERE customer_id = ANY(:ids) "
    f"UNION {UNASSIGNED_CANDIDATE_CONTACTS} "
    f"UNION SELECT id FROM contacts WHERE customer_id IS NULL AND case_id IN ({_ONLY_THEIR_CASES})"
)


def ids_statement(statement: str) -> Any:
    """A statement whose :ids is a bigint[]."""
    return text(statement).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))


def anonymise_contacts(contact_ids_sql: str) -> Any:
    """Clear the personal data of the contacts `contact_ids_sql` selects, and of their audit events."""
    return ids_statement(
        f"WITH target AS ({contact_ids_sql}), scrubbed AS ({scrub_audit('contact', 'SELECT id FROM target')}) "
        f"UPDATE contacts SET {CONTACT_PERSONAL_DATA_CLEARED} WHERE id IN (SELECT id FROM target)"
    )


# Contacts that still name the customers in :ids as a recognition candidate (an unassigned one was
# anonymised above, one assigned to someone else keeps its content): the ids leave the list and the
# recognition trace, which may quote their identifiers, goes.
FORGET_CANDIDATES = ids_statement(
    "UPDATE contacts SET recognition = NULL, candidate_customer_ids = ARRAY("
    "SELECT u.id FROM unnest(candidate_customer_ids) WITH ORDINALITY AS u(id, position) "
    "WHERE u.id <> ALL(:ids) ORDER BY u.position) "
    f"WHERE {_NAMES_THEM}"
)

# Each statement takes :ids, the customers being anonymised (with tombstones merged into them).
_ANONYMISE = [
    ids_statement("DELETE FROM customer_identifiers WHERE customer_id = ANY(:ids)"),
    anonymise_contacts(_THEIR_CONTACTS),
    FORGET_CANDIDATES,
    # Case statistics (status, priority, times, counts) stay; text that may name the person goes
    # when the case concerns no one else.
    ids_statement(scrub_audit("case", _ONLY_THEIR_CASES)),
    ids_statement(
        f"UPDATE cases SET subject = '{ERASED_CASE_SUBJECT}', description = NULL, fields = '{{}}', "
        f"anonymised_at = coalesce(anonymised_at, now()) WHERE id IN ({_ONLY_THEIR_CASES})"
    ),
    ids_statement("UPDATE audit_events SET before = NULL, after = NULL WHERE entity_type = 'customer' AND entity_id = ANY(:ids)"),
    ids_statement(
        "UPDATE customer_merge_entries SET identifier_value = NULL WHERE identifier_value IS NOT NULL "
        "AND merge_id IN (SELECT id FROM customer_merges WHERE survivor_id = ANY(:ids) OR duplicate_ids && :ids)"
    ),
    ids_statement(
        "UPDATE customer_merges SET survivor_before = '{}', survivor_after = '{}', duplicates_before = '{}' "
        "WHERE survivor_id = ANY(:ids) OR duplicate_ids && :ids"
    ),
    ids_statement(
        "UPDATE customers SET name = NULL, fields = '{}', status = 'erased', archived_at = NULL, updated_at = now() "
        "WHERE id = ANY(:ids)"
    ),
]


async def anonymise_customers(session: AsyncSession, *, customer_ids: list[int]) -> list[int]:
    """Anonymise customers (and tombstones merged into them), set-based; returns every id anonymised."""
    tombstones = list(
        await session.scalars(select(Customer.id).where(Customer.merged_into_id.in_(customer_ids)))
    )
    ids = sorted(set(customer_ids) | set(tombstones))
    for statement in _ANONYMISE:
        await session.execute(statement, {"ids": ids})
    return ids


async def lock_with_tombstones(session: AsyncSession, customer_id: int) -> dict[int, Any]:
    """Lock a customer and the tombstones merged into it in one ascending-id call (the global order).

    The tombstones are read before locking; a merge committed in between adds one, so read again.
    """
    for _ in range(5):
        tombstones = set(await session.scalars(select(Customer.id).where(Customer.merged_into_id == customer_id)))
        rows = await lock_customers(session, [customer_id, *tombstones])
        current = set(await session.scalars(select(Customer.id).where(Customer.merged_into_id == customer_id)))
        if current <= set(rows):
            return rows
    raise UserError(ErrorCode.CONFLICT, "the customer changed concurrently; try again", "customerId")


async def erase_customer(session: AsyncSession, *, actor: Actor, customer_id: int, reason: str) -> Any:
    """Erase a customer's personal data, keeping non-personal case statistics; irreversible."""
    if not actor.has_role(*ERASE_ROLES):
        raise UserError(ErrorCode.FORBIDDEN, "erasing a customer requires the supervisor or admin role", "customerId")
    if not reason or not reason.strip():
        raise UserError(ErrorCode.REQUIRED, "give the reason for the erasure", "reason")
    rows = await lock_with_tombstones(session, customer_id)
    customer = rows[customer_id]
    if customer.status == "erased":
        raise UserError(ErrorCode.ERASED, f"customer {customer.number} was already erased", "customerId")
    if customer.status == "merged":
        raise UserError(ErrorCode.MERGED, f"customer {customer.number} was merged; erase the customer it lives on", "customerId")
    case_ids = list(await session.scalars(select(CaseCustomer.case_id).where(CaseCustomer.customer_id == customer_id)))
    erased = await anonymise_customers(session, customer_ids=[customer_id])
    # The audit event names only ids and the reason given, never the erased data.
    audit.record(
        session, actor=actor, action="customer.erase", entity_type="customer", entity_id=customer_id,
        after={"reason": reason.strip(), "customerIds": erased, "caseCount": len(case_ids)},
    )
    events.emit_many(session, "customerUpdated", erased)
    events.emit_many(session, "caseUpdated", case_ids)
    return (await session.execute(select(Customer.__table__).where(Customer.id == customer_id))).one()


def _plain(row: Any, columns: list[str]) -> dict[str, Any]:
    out = {}
    for column in columns:
        value = getattr(row, column)
        out[str(column)] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


async def export_customer(session: AsyncSession, *, customer_id: int) -> dict[str, Any] | None:
    """Everything stored about a customer (and profiles merged into it) as one JSON-ready document; None if unknown."""
    customer = (await session.execute(select(Customer.__table__).where(Customer.id == customer_id))).one_or_none()
    if customer is None:
        return None
    profile_ids = [customer_id, *await session.scalars(select(Customer.id).where(Customer.merged_into_id == customer_id))]
    customer_columns = [c.name for c in Customer.__table__.columns]
    profiles = (await session.execute(select(Customer.__table__).where(Customer.id.in_(profile_ids)).order_by(Customer.id))).all()
    identifiers = (
        await session.execute(
            select(CustomerIdentifier.__table__).where(CustomerIdentifier.customer_id.in_(profile_ids)).order_by(CustomerIdentifier.id)
        )
    ).all()
    cases = (
        await session.execute(
            select(Case.__table__, CaseCustomer.customer_id.label("link_customer_id"), CaseCustomer.is_primary)
            .join(CaseCustomer, CaseCustomer.case_id == Case.id)
            .where(CaseCustomer.customer_id.in_(profile_ids))
            .order_by(Case.id)
        )
    ).all()
    contacts = (
        await session.execute(select(Contact.__table__).where(Contact.customer_id.in_(profile_ids)).order_by(Contact.id))
    ).all()
    events = (
        await session.execute(
            select(AuditEvent.__table__)
            .where(AuditEvent.entity_type == "customer", AuditEvent.entity_id.in_(profile_ids))
            .order_by(AuditEvent.id)
        )
    ).all()
    merges = (
        await session.execute(
            select(CustomerMerge.id, CustomerMerge.survivor_id, CustomerMerge.duplicate_ids, CustomerMerge.created_at, CustomerMerge.undone_at)
            .where(CustomerMerge.survivor_id.in_(profile_ids))
            .order_by(CustomerMerge.id)
        )
    ).all()
    case_columns = [c.name for c in Case.__table__.columns]
    contact_columns = [c.name for c in Contact.__table__.columns]
    return {
        "customer": _plain(customer, customer_columns),
        "mergedProfiles": [_plain(p, customer_columns) for p in profiles if p.id != customer_id],
        "identifiers": [_plain(i, ["id", "customer_id", "kind", "value", "created_at"]) for i in identifiers],
        "cases": [{**_plain(c, case_columns), "customer_id": c.link_customer_id, "is_primary": c.is_primary} for c in cases],
        "contacts": [_plain(c, contact_columns) for c in contacts],
        "auditEvents": [
            _plain(e, ["id", "occurred_at", "actor_name", "action", "entity_type", "entity_id", "before", "after"]) for e in events
        ],
        "merges": [_plain(m, ["id", "survivor_id", "duplicate_ids", "created_at", "undone_at"]) for m in merges],
    }

"""Archive, retention and GDPR: customers and cases leave the working set by hand or by rules,
expire after retention (deleted or anonymised), and a customer's personal data can be erased or
exported.

Rules are data (archive_rules). The sweep walks each rule's candidates through a partial index
in keyset batches, each batch its own transaction, so its cost follows the eligible rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Row, TextClause, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from app import events, limits
from app.auth import SYSTEM, Actor
from app.errors import ErrorCode, UserError, not_found
from app.limits import check_json_object, check_text
from app.models import (
    ARCHIVE_ENTITIES,
    EXPIRY_ACTIONS,
    ArchiveRule,
    AuditEvent,
    Case,
    CaseCustomer,
    Contact,
    Customer,
    CustomerIdentifier,
    CustomerMerge,
    Task,
)
from app.services import audit
from app.services.cases import read_case, require_live_case
from app.services.customers import require_live_customer
from app.services.locking import lock_case_graph, lock_customers, lock_with_tombstones, tombstones_of

if TYPE_CHECKING:
    from app.runtime import Runtime

PREVIEW_SAMPLE = 20
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
_IDS = ARRAY(BigInteger)


def _ids(statement: str) -> TextClause:
    """A statement whose :ids is a bigint[]."""
    return text(statement).bindparams(bindparam("ids", type_=_IDS))


# ---- what anonymising removes (shared by erasure and the expiry sweep) -------------------------------

ERASED_CASE_SUBJECT = "[erased]"

# Audit-event keys that hold ids, codes, counts and states, never what a person wrote or is called;
# the audit trail of an anonymised case or contact keeps only these.
NON_PERSONAL_AUDIT_KEYS = (
    "reference",
    "status",
    "priority",
    "severity",
    "reasonCode",
    "assigneeId",
    "parentId",
    "customerId",
    "customerIds",
    "caseId",
    "primary",
    "mergedInto",
    "mergedFrom",
    "contactsMoved",
    "customersLinked",
    "childrenMoved",
    "via",
    "ruleId",
    "rule",
    "channel",
    "direction",
    "needsReview",
    "matchedRule",
    "linkedCustomerToCase",
    "detachedFromCaseId",
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


def anonymise_contacts(contact_ids_sql: str) -> TextClause:
    """Clear the personal data of the contacts `contact_ids_sql` selects, and of their audit events."""
    return _ids(
        f"WITH target AS ({contact_ids_sql}), scrubbed AS ({scrub_audit('contact', 'SELECT id FROM target')}) "
        f"UPDATE contacts SET {CONTACT_PERSONAL_DATA_CLEARED} WHERE id IN (SELECT id FROM target)"
    )


# Contacts that still name the customers in :ids as a recognition candidate (an unassigned one was
# anonymised above, one assigned to someone else keeps its content): the ids leave the list and the
# recognition trace, which may quote their identifiers, goes.
FORGET_CANDIDATES = _ids(
    "UPDATE contacts SET recognition = NULL, candidate_customer_ids = ARRAY("
    "SELECT u.id FROM unnest(candidate_customer_ids) WITH ORDINALITY AS u(id, position) "
    "WHERE u.id <> ALL(:ids) ORDER BY u.position) "
    f"WHERE {_NAMES_THEM}"
)

# Each statement takes :ids, the customers being anonymised (with tombstones merged into them).
_ANONYMISE = [
    _ids("DELETE FROM customer_identifiers WHERE customer_id = ANY(:ids)"),
    anonymise_contacts(_THEIR_CONTACTS),
    FORGET_CANDIDATES,
    # Case statistics (status, priority, times, counts) stay; text that may name the person goes
    # when the case concerns no one else.
    _ids(scrub_audit("case", _ONLY_THEIR_CASES)),
    _ids(
        f"UPDATE cases SET subject = '{ERASED_CASE_SUBJECT}', description = NULL, fields = '{{}}', "
        f"anonymised_at = coalesce(anonymised_at, now()) WHERE id IN ({_ONLY_THEIR_CASES})"
    ),
    # Their tasks' text goes and their open tasks are called off (no reminder to call an erased person).
    _ids(
        scrub_audit("task", f"SELECT id FROM tasks WHERE customer_id = ANY(:ids) OR case_id IN ({_ONLY_THEIR_CASES})")
    ),
    _ids(
        f"UPDATE tasks SET subject = '{ERASED_CASE_SUBJECT}', notes = NULL, updated_at = now(), "
        "status = CASE WHEN status = 'open' THEN 'cancelled' ELSE status END, "
        "cancelled_at = CASE WHEN status = 'open' THEN now() ELSE cancelled_at END "
        f"WHERE customer_id = ANY(:ids) OR case_id IN ({_ONLY_THEIR_CASES})"
    ),
    _ids(
        "UPDATE audit_events SET before = NULL, after = NULL WHERE entity_type = 'customer' AND entity_id = ANY(:ids)"
    ),
    _ids(
        "UPDATE customer_merge_entries SET identifier_value = NULL WHERE identifier_value IS NOT NULL "
        "AND merge_id IN (SELECT id FROM customer_merges WHERE survivor_id = ANY(:ids) OR duplicate_ids && :ids)"
    ),
    _ids(
        "UPDATE customer_merges SET survivor_before = '{}', survivor_after = '{}', duplicates_before = '{}' "
        "WHERE survivor_id = ANY(:ids) OR duplicate_ids && :ids"
    ),
    _ids(
        "UPDATE customers SET name = NULL, fields = '{}', status = 'erased', archived_at = NULL, updated_at = now() "
        "WHERE id = ANY(:ids)"
    ),
]


# ---- archiving by hand ---------------------------------------------------------------------------


async def archive_customer(session: AsyncSession, *, actor: Actor, customer_id: int) -> Row[Any]:
    """Take a customer out of default listings and recognition; they stay readable by id."""
    return await _change_customer_status(
        session,
        actor=actor,
        customer_id=customer_id,
        action="customer.archive",
        current="active",
        new="archived",
        archived_at=func.now(),
    )


async def restore_customer(session: AsyncSession, *, actor: Actor, customer_id: int) -> Row[Any]:
    """Bring an archived customer back; the restore counts as activity, so rules do not re-archive at once."""
    return await _change_customer_status(
        session,
        actor=actor,
        customer_id=customer_id,
        action="customer.restore",
        current="archived",
        new="active",
        archived_at=None,
        last_activity_at=func.now(),
    )


async def _change_customer_status(
    session: AsyncSession, *, actor: Actor, customer_id: int, action: str, current: str, new: str, **values: Any
) -> Row[Any]:
    customer = (await lock_customers(session, [customer_id]))[customer_id]
    require_live_customer(customer, "customerId")
    if customer.status != current:
        raise UserError(
            ErrorCode.WRONG_STATUS, f"customer {customer.number} is {customer.status}, not {current}", "customerId"
        )
    await session.execute(update(Customer).where(Customer.id == customer_id).values(status=new, **values))
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="customer",
        entity_id=customer_id,
        before={"status": current},
        after={"status": new},
    )
    events.emit(session, "customerUpdated", customer_id)
    return (await session.execute(select(Customer.__table__).where(Customer.id == customer_id))).one()


async def archive_case(session: AsyncSession, *, actor: Actor, case_id: int) -> Row[Any]:
    """Take a case out of default listings; it stays readable by id."""
    return await _set_case_archived(session, actor=actor, case_id=case_id, archived=True)


async def restore_case(session: AsyncSession, *, actor: Actor, case_id: int) -> Row[Any]:
    """Bring an archived case back into the working set."""
    return await _set_case_archived(session, actor=actor, case_id=case_id, archived=False)


async def _set_case_archived(session: AsyncSession, *, actor: Actor, case_id: int, archived: bool) -> Row[Any]:
    _, locked, links = await lock_case_graph(session, [case_id])
    case = locked[case_id]
    require_live_case(case, "caseId")
    if (case.archived_at is not None) == archived:
        state = "already archived" if archived else "not archived"
        raise UserError(ErrorCode.WRONG_STATUS, f"case {case.reference} is {state}", "caseId")
    await session.execute(update(Case).where(Case.id == case_id).values(archived_at=func.now() if archived else None))
    action = "case.archive" if archived else "case.restore"
    audit.record(session, actor=actor, action=action, entity_type="case", entity_id=case_id)
    events.emit(session, "caseUpdated", case_id)
    events.emit_many(session, "customerUpdated", links[case_id])
    return await read_case(session, case_id)


# ---- rules -------------------------------------------------------------------------------------


async def create_archive_rule(
    session: AsyncSession,
    *,
    actor: Actor,
    name: str,
    entity: str,
    inactivity_days: int,
    exempt_when: dict[str, Any] | None = None,
    retention_days: int | None = None,
    expiry_action: str = "anonymise",
) -> ArchiveRule:
    """Add an archive rule."""
    if not name or not name.strip():
        raise UserError(ErrorCode.REQUIRED, "a rule needs a name", "name")
    check_text(name, "name", limits.NAME)
    if entity not in ARCHIVE_ENTITIES:
        raise UserError(ErrorCode.INVALID, f"entity must be one of {', '.join(ARCHIVE_ENTITIES)}", "entity")
    if inactivity_days < 0:
        raise UserError(ErrorCode.INVALID, "inactivityDays must not be negative", "inactivityDays")
    if retention_days is not None and retention_days < 0:
        raise UserError(ErrorCode.INVALID, "retentionDays must not be negative", "retentionDays")
    if expiry_action not in EXPIRY_ACTIONS:
        raise UserError(ErrorCode.INVALID, f"expiryAction must be one of {', '.join(EXPIRY_ACTIONS)}", "expiryAction")
    if exempt_when is not None:
        check_json_object(exempt_when, "exemptWhen")
    if await session.scalar(select(ArchiveRule.id).where(ArchiveRule.name == name.strip())):
        raise UserError(ErrorCode.DUPLICATE, f"a rule named {name.strip()!r} exists", "name")
    rule = ArchiveRule(
        name=name.strip(),
        entity=entity,
        inactivity_days=inactivity_days,
        exempt_when=exempt_when or None,
        retention_days=retention_days,
        expiry_action=expiry_action,
    )
    session.add(rule)
    await session.flush()
    await session.refresh(rule)
    audit.record(
        session,
        actor=actor,
        action="archiveRule.create",
        entity_type="archive_rule",
        entity_id=rule.id,
        after={
            "name": rule.name,
            "entity": entity,
            "inactivityDays": inactivity_days,
            "exemptWhen": exempt_when,
            "retentionDays": retention_days,
            "expiryAction": expiry_action,
        },
    )
    return rule


async def delete_archive_rule(session: AsyncSession, *, actor: Actor, rule_id: int) -> None:
    """Remove an archive rule; what it archived stays archived."""
    rule = await session.get(ArchiveRule, rule_id)
    if rule is None:
        raise not_found("archive rule", "id")
    await session.execute(delete(ArchiveRule).where(ArchiveRule.id == rule_id))
    audit.record(
        session,
        actor=actor,
        action="archiveRule.delete",
        entity_type="archive_rule",
        entity_id=rule_id,
        before={"name": rule.name},
    )


async def list_archive_rules(session: AsyncSession) -> list[ArchiveRule]:
    return list(await session.scalars(select(ArchiveRule).order_by(ArchiveRule.id)))


# ---- candidates ----------------------------------------------------------------------------------
# Per (entity, phase): the table, the sort time and the condition, each matching one partial index
# (declared on the models), so every query reads only the candidates, whatever the table size.


@dataclass(frozen=True)
class _Candidates:
    table: str
    at: str
    where: str


def _candidates_of(model: type, index_name: str, at: str) -> _Candidates:
    """The rows in one partial index (its predicate, declared on the model) that have been there since before :cutoff."""
    table = model.__table__
    index = next(i for i in table.indexes if i.name == index_name)
    return _Candidates(table.name, at, f"{index.dialect_options['postgresql']['where']} AND {at} < :cutoff")


_CANDIDATES = {
    ("customer", "archive"): _candidates_of(
        Customer, "ix_customers_inactive", "coalesce(last_activity_at, created_at)"
    ),
    ("customer", "expire"): _candidates_of(Customer, "ix_customers_archived_at", "archived_at"),
    ("case", "archive"): _candidates_of(Case, "ix_cases_inactive", "updated_at"),
    # An anonymised case stays archived; it has nothing left to expire.
    ("case", "expire"): _candidates_of(Case, "ix_cases_archived_at", "archived_at"),
}
_EXEMPT = "coalesce(CAST(:exempt AS jsonb) IS NOT NULL AND fields @> CAST(:exempt AS jsonb), false)"


def _batch_query(c: _Candidates) -> str:
    # Exempt rows are returned too, so the keyset moves past them.
    return (
        f"SELECT id, {c.at} AS at, {_EXEMPT} AS exempt FROM {c.table} WHERE {c.where} "
        f"AND ({c.at}, id) > (:after_at, :after_id) ORDER BY {c.at}, id LIMIT :batch"
    )


def _count_query(c: _Candidates) -> str:
    return f"SELECT count(*) FROM {c.table} WHERE {c.where} AND NOT {_EXEMPT}"


def _sample_query(c: _Candidates) -> str:
    return f"SELECT id FROM {c.table} WHERE {c.where} AND NOT {_EXEMPT} ORDER BY {c.at}, id LIMIT :sample"


def _cutoff(rule: ArchiveRule, phase: str, now: datetime) -> datetime | None:
    days = rule.inactivity_days if phase == "archive" else rule.retention_days
    return None if days is None else now - timedelta(days=days)


def _exempt_statement(query: str) -> TextClause:
    return text(query).bindparams(bindparam("exempt", type_=JSONB))


async def _candidates(
    session: AsyncSession,
    rule: ArchiveRule,
    phase: str,
    now: datetime,
    after: tuple[datetime, int],
    batch: int,
    lock: bool = False,
) -> list[Row[Any]]:
    cutoff = _cutoff(rule, phase, now)
    if cutoff is None:
        return []
    query = _batch_query(_CANDIDATES[(rule.entity, phase)]) + (" FOR UPDATE SKIP LOCKED" if lock else "")
    params = {"exempt": rule.exempt_when, "cutoff": cutoff, "after_at": after[0], "after_id": after[1], "batch": batch}
    return list((await session.execute(_exempt_statement(query), params)).all())


@dataclass
class RulePreview:
    rule: ArchiveRule
    archive_count: int
    expire_count: int
    archive_sample: list[int] = field(default_factory=list)
    expire_sample: list[int] = field(default_factory=list)


async def preview_archive_rule(session: AsyncSession, *, rule_id: int, now: datetime | None = None) -> RulePreview:
    """What a rule would archive and expire if it ran now (counts and the first ids)."""
    rule = await session.get(ArchiveRule, rule_id)
    if rule is None:
        raise not_found("archive rule", "id")
    now = now or datetime.now(UTC)
    preview = RulePreview(rule=rule, archive_count=0, expire_count=0)
    for phase in ("archive", "expire"):
        cutoff = _cutoff(rule, phase, now)
        if cutoff is None:
            continue
        candidates = _CANDIDATES[(rule.entity, phase)]
        params = {"exempt": rule.exempt_when, "cutoff": cutoff, "sample": PREVIEW_SAMPLE}
        setattr(preview, f"{phase}_count", await session.scalar(_exempt_statement(_count_query(candidates)), params))
        setattr(
            preview,
            f"{phase}_sample",
            list(await session.scalars(_exempt_statement(_sample_query(candidates)), params)),
        )
    return preview


# ---- applying a batch ------------------------------------------------------------------------------

_AUDIT_BATCH = _ids(
    "INSERT INTO audit_events (actor_user_id, actor_name, action, entity_type, entity_id, after) "
    "SELECT :actor_id, :actor_name, :action, :entity_type, id, CAST(:after AS jsonb) FROM unnest(:ids) AS id"
).bindparams(bindparam("after", type_=JSONB))

_ARCHIVE = {
    "customer": _ids(
        "UPDATE customers SET status = 'archived', archived_at = now(), updated_at = now() "
        "WHERE id = ANY(:ids) AND status = 'active'"
    ),
    "case": _ids("UPDATE cases SET archived_at = now() WHERE id = ANY(:ids) AND archived_at IS NULL"),
}

_DELETE_CASES = [
    # A deleted record's audit trail stays (who did what, when) without its content.
    _ids(
        "UPDATE audit_events SET before = NULL, after = NULL WHERE entity_type = 'contact' "
        "AND entity_id IN (SELECT id FROM contacts WHERE case_id = ANY(:ids))"
    ),
    _ids("DELETE FROM contacts WHERE case_id = ANY(:ids)"),
    _ids("UPDATE cases SET parent_id = NULL WHERE parent_id = ANY(:ids)"),
    _ids(
        "UPDATE audit_events SET before = NULL, after = NULL WHERE entity_type = 'case' "
        "AND entity_id IN (SELECT id FROM cases WHERE merged_into_id = ANY(:ids))"
    ),
    _ids("DELETE FROM cases WHERE merged_into_id = ANY(:ids)"),
    _ids("UPDATE audit_events SET before = NULL, after = NULL WHERE entity_type = 'case' AND entity_id = ANY(:ids)"),
    _ids("DELETE FROM cases WHERE id = ANY(:ids)"),
]
_ANONYMISE_CASES = [
    anonymise_contacts("SELECT id FROM contacts WHERE case_id = ANY(:ids)"),
    _ids(scrub_audit("case", "SELECT unnest(CAST(:ids AS bigint[]))")),
    _ids(
        "UPDATE cases SET subject = '[anonymised]', description = NULL, fields = '{}', anonymised_at = now() WHERE id = ANY(:ids)"
    ),
]
# Deleting customers: their contacts go; cases that concern only them go; other cases they were
# primary on hand the role to their lowest remaining customer.
_ORPHAN_CASES = _ids(
    "SELECT DISTINCT l.case_id FROM case_customers l WHERE l.customer_id = ANY(:ids) "
    "AND NOT EXISTS (SELECT 1 FROM case_customers o WHERE o.case_id = l.case_id AND o.customer_id <> ALL(:ids))"
)
_DELETE_CUSTOMER_CONTACTS = [
    _ids(
        "UPDATE audit_events SET before = NULL, after = NULL WHERE entity_type = 'contact' "
        "AND entity_id IN (SELECT id FROM contacts WHERE customer_id = ANY(:ids))"
    ),
    _ids("DELETE FROM contacts WHERE customer_id = ANY(:ids)"),
    # Unassigned contacts they were a recognition candidate for are theirs too; others forget them.
    anonymise_contacts(UNASSIGNED_CANDIDATE_CONTACTS),
    FORGET_CANDIDATES,
]
_DELETE_CUSTOMER_LINKS = _ids("DELETE FROM case_customers WHERE customer_id = ANY(:ids) RETURNING case_id, is_primary")
_PROMOTE_NEXT_PRIMARY = text(
    "UPDATE case_customers l SET is_primary = true FROM (SELECT DISTINCT ON (c.case_id) c.case_id, c.customer_id "
    "FROM case_customers c WHERE c.case_id = ANY(:cases) ORDER BY c.case_id, c.customer_id) n "
    "WHERE l.case_id = n.case_id AND l.customer_id = n.customer_id"
).bindparams(bindparam("cases", type_=_IDS))
_DELETE_CUSTOMERS = [
    _ids(
        "UPDATE audit_events SET before = NULL, after = NULL WHERE entity_type = 'customer' AND entity_id = ANY(:ids)"
    ),
    _ids("DELETE FROM customers WHERE id = ANY(:ids)"),
]


async def _expire(session: AsyncSession, rule: ArchiveRule, ids: list[int]) -> list[int]:
    """Apply the rule's expiry action; returns every id it touched."""
    if rule.entity == "case":
        for statement in _DELETE_CASES if rule.expiry_action == "delete" else _ANONYMISE_CASES:
            await session.execute(statement, {"ids": ids})
        return ids
    if rule.expiry_action == "anonymise":
        return await anonymise_customers(session, customer_ids=ids)
    tombstones = list(await session.scalars(tombstones_of(ids)))
    ids = sorted(set(ids) | set(tombstones))
    orphans = list(await session.scalars(_ORPHAN_CASES, {"ids": ids}))
    if orphans:
        for statement in _DELETE_CASES:
            await session.execute(statement, {"ids": orphans})
    for statement in _DELETE_CUSTOMER_CONTACTS:
        await session.execute(statement, {"ids": ids})
    lost = (await session.execute(_DELETE_CUSTOMER_LINKS, {"ids": ids})).all()
    lost_primary = sorted({case_id for case_id, was_primary in lost if was_primary})
    if lost_primary:
        await session.execute(_PROMOTE_NEXT_PRIMARY, {"cases": lost_primary})
    for statement in _DELETE_CUSTOMERS:
        await session.execute(statement, {"ids": ids})
    return ids


async def apply_rule_batch(
    session: AsyncSession,
    *,
    actor: Actor,
    rule: ArchiveRule,
    phase: str,
    now: datetime,
    after: tuple[datetime, int],
    batch_size: int,
) -> tuple[int, tuple[datetime, int] | None]:
    """Archive (or expire) one batch of a rule's candidates; returns (rows changed, next keyset or None when done)."""
    rows = await _candidates(session, rule, phase, now, after, batch_size, lock=True)
    ids = [r.id for r in rows if not r.exempt]
    if ids:
        if phase == "archive":
            await session.execute(_ARCHIVE[rule.entity], {"ids": ids})
            touched = ids
        else:
            touched = await _expire(session, rule, ids)
        action = f"{rule.entity}.{'archive' if phase == 'archive' else rule.expiry_action}"
        await session.execute(
            _AUDIT_BATCH,
            {
                "actor_id": actor.user_id,
                "actor_name": actor.name,
                "action": action,
                "entity_type": rule.entity,
                "ids": ids,
                "after": {"ruleId": rule.id, "rule": rule.name},
            },
        )
        events.emit_many(session, "customerUpdated" if rule.entity == "customer" else "caseUpdated", touched)
    next_key = (rows[-1].at, rows[-1].id) if len(rows) == batch_size else None
    return len(ids), next_key


@dataclass
class SweepResult:
    archived: int = 0
    expired: int = 0
    batches: int = 0


async def sweep(
    runtime: Runtime, *, actor: Actor = SYSTEM, batch_size: int = 1000, now: datetime | None = None
) -> SweepResult:
    """Apply every enabled archive rule, each batch in its own transaction (the daily job)."""
    now = now or datetime.now(UTC)
    result = SweepResult()
    async with runtime.reading() as session:
        rules = [r for r in await list_archive_rules(session) if r.enabled]
    for rule in rules:
        for phase in ("archive", "expire"):
            after: tuple[datetime, int] | None = (_EPOCH, 0)
            while after is not None:
                async with runtime.transaction() as session:
                    changed, after = await apply_rule_batch(
                        session, actor=actor, rule=rule, phase=phase, now=now, after=after, batch_size=batch_size
                    )
                result.batches += 1
                if phase == "archive":
                    result.archived += changed
                else:
                    result.expired += changed
    return result


# ---- GDPR: erasure and export -------------------------------------------------------------------


async def anonymise_customers(session: AsyncSession, *, customer_ids: list[int]) -> list[int]:
    """Anonymise customers (and tombstones merged into them), set-based; returns every id anonymised."""
    tombstones = list(await session.scalars(tombstones_of(customer_ids)))
    ids = sorted(set(customer_ids) | set(tombstones))
    for statement in _ANONYMISE:
        await session.execute(statement, {"ids": ids})
    return ids


async def erase_customer(session: AsyncSession, *, actor: Actor, customer_id: int, reason: str) -> Row[Any]:
    """Erase a customer's personal data, keeping non-personal case statistics; irreversible."""
    if not reason or not reason.strip():
        raise UserError(ErrorCode.REQUIRED, "give the reason for the erasure", "reason")
    check_text(reason, "reason", limits.DESCRIPTION)
    rows = await lock_with_tombstones(session, customer_id)
    require_live_customer(rows[customer_id], "customerId")
    case_ids = list(await session.scalars(select(CaseCustomer.case_id).where(CaseCustomer.customer_id == customer_id)))
    erased = await anonymise_customers(session, customer_ids=[customer_id])
    # The audit event names only ids and the reason given, never the erased data.
    audit.record(
        session,
        actor=actor,
        action="customer.erase",
        entity_type="customer",
        entity_id=customer_id,
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
    profile_ids = [customer_id, *await session.scalars(tombstones_of([customer_id]))]
    customer_columns = [c.name for c in Customer.__table__.columns]
    profiles = (
        await session.execute(select(Customer.__table__).where(Customer.id.in_(profile_ids)).order_by(Customer.id))
    ).all()
    identifiers = (
        await session.execute(
            select(CustomerIdentifier.__table__)
            .where(CustomerIdentifier.customer_id.in_(profile_ids))
            .order_by(CustomerIdentifier.id)
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
        await session.execute(
            select(Contact.__table__).where(Contact.customer_id.in_(profile_ids)).order_by(Contact.id)
        )
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
            select(
                CustomerMerge.id,
                CustomerMerge.survivor_id,
                CustomerMerge.duplicate_ids,
                CustomerMerge.created_at,
                CustomerMerge.undone_at,
            )
            .where(CustomerMerge.survivor_id.in_(profile_ids))
            .order_by(CustomerMerge.id)
        )
    ).all()
    tasks = (
        await session.execute(select(Task.__table__).where(Task.customer_id.in_(profile_ids)).order_by(Task.id))
    ).all()
    case_columns = [c.name for c in Case.__table__.columns]
    contact_columns = [c.name for c in Contact.__table__.columns]
    return {
        "customer": _plain(customer, customer_columns),
        "mergedProfiles": [_plain(p, customer_columns) for p in profiles if p.id != customer_id],
        "identifiers": [_plain(i, ["id", "customer_id", "kind", "value", "created_at"]) for i in identifiers],
        "cases": [
            {**_plain(c, case_columns), "customer_id": c.link_customer_id, "is_primary": c.is_primary} for c in cases
        ],
        "contacts": [_plain(c, contact_columns) for c in contacts],
        "tasks": [_plain(t, [c.name for c in Task.__table__.columns]) for t in tasks],
        "auditEvents": [
            _plain(e, ["id", "occurred_at", "actor_name", "action", "entity_type", "entity_id", "before", "after"])
            for e in events
        ],
        "merges": [_plain(m, ["id", "survivor_id", "duplicate_ids", "created_at", "undone_at"]) for m in merges],
    }

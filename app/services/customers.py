"""Customers: their identifiers, last activity, merges (journaled, undoable) and likely duplicates.

A merge moves every row in one set-based statement (UPDATE … RETURNING old values INTO the
journal), so it costs in proportion to the rows that move, whatever the size of the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, Row, String, Update, bindparam, delete, exists, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app import events, limits
from app.auth import Actor
from app.errors import ErrorCode, UserError, not_found
from app.identifiers import normalize_identifier
from app.limits import check_json_object, check_text
from app.models import FIELD_STRATEGIES, Customer, CustomerIdentifier, CustomerMerge
from app.pagination import Page, decode_cursor
from app.services import audit, forms, search
from app.services.held import HeldRows
from app.services.locking import lock_customers
from app.services.search import DuplicateCandidate


@dataclass(frozen=True)
class IdentifierInput:
    kind: str
    value: str


def snapshot(customer: Customer) -> dict[str, Any]:
    return {"number": customer.number, "name": customer.name, "fields": customer.fields, "status": customer.status}


# customerCreate's input lists, by identifier kind.
_INPUT_LISTS = {"email": "emails", "phone": "phones", "account_id": "accountIds"}


def normalize_identifiers(identifiers: list[IdentifierInput], *, region: str) -> list[tuple[str, str]]:
    """Validate and normalise, dropping exact repeats; raises INVALID on the offending field."""
    if len(identifiers) > limits.IDENTIFIERS_PER_CUSTOMER:
        over = _INPUT_LISTS.get(identifiers[limits.IDENTIFIERS_PER_CUSTOMER].kind, "identifiers")
        raise UserError(
            ErrorCode.INVALID, f"a customer has at most {limits.IDENTIFIERS_PER_CUSTOMER} identifiers", over
        )
    seen: dict[tuple[str, str], None] = {}  # a set that keeps the order given
    positions: dict[str, int] = {}
    for index, item in enumerate(identifiers):
        position = positions[item.kind] = positions.get(item.kind, -1) + 1
        value = normalize_identifier(
            item.kind,
            item.value,
            region=region,
            field=f"{_INPUT_LISTS.get(item.kind, 'identifiers')}.{position}",
            kind_field=f"identifiers.{index}.kind",
        )
        seen[(item.kind, value)] = None
    return list(seen)


def require_live_customer(customer: Customer | Row[Any] | None, field: str) -> None:
    """A customer that exists in its own right: NOT_FOUND, MERGED or ERASED otherwise (archived is live)."""
    if customer is None:
        raise not_found("customer", field)
    if customer.status == "merged":
        raise UserError(ErrorCode.MERGED, f"customer {customer.number} was merged into another customer", field)
    if customer.status == "erased":
        raise UserError(ErrorCode.ERASED, f"customer {customer.number} was erased", field)


async def get_customer_for_update(session: AsyncSession, customer_id: int, field: str = "id") -> Customer:
    customer = await session.get(Customer, customer_id, with_for_update=True)
    require_live_customer(customer, field)
    return customer


def activity_forward(customer_id: Any, occurred_at: Any) -> Update:
    """Last activity only moves forward: the statement that sets it to `occurred_at` when that is later.

    The arguments may be values or column expressions (ingest runs it as a CTE over the contact it records).
    """
    table = Customer.__table__
    return (
        update(table)
        .where(table.c.id == customer_id)
        .where(or_(table.c.last_activity_at.is_(None), table.c.last_activity_at < occurred_at))
        .values(last_activity_at=occurred_at)
    )


async def touch_activity(session: AsyncSession, *, customer_id: int, occurred_at: Any) -> None:
    """Move the customer's last activity forward to `occurred_at` (never back)."""
    await session.execute(activity_forward(customer_id, occurred_at))


# The customer and its identifiers in one statement (ingest creates a profile per new sender).
_NEW_CUSTOMER = select(Customer).from_statement(
    text("""
        WITH created AS (
            INSERT INTO customers (name, fields) VALUES (:name, :fields) RETURNING *
        ), identified AS (
            INSERT INTO customer_identifiers (customer_id, kind, value)
            SELECT created.id, given.kind, given.value FROM created, unnest(:kinds, :values) AS given(kind, value)
        )
        SELECT * FROM created
    """).bindparams(
        bindparam("fields", type_=JSONB),
        bindparam("kinds", type_=ARRAY(String)),
        bindparam("values", type_=ARRAY(String)),
    )
)


async def create_customer(
    session: AsyncSession,
    *,
    actor: Actor,
    name: str | None,
    identifiers: list[IdentifierInput],
    fields: dict[str, Any] | None,
    region: str,
    enforce_form: bool = True,
) -> Customer:
    """Create a customer with its identifiers; the customer form checks the fields unless the data
    comes from a contact (promoted as received, for an agent to complete)."""
    row = await _checked_customer(
        session, name=name, identifiers=identifiers, fields=fields, region=region, enforce_form=enforce_form
    )
    customer = (await session.execute(_NEW_CUSTOMER, row)).scalar_one()
    _announce_created(session, actor=actor, customer=customer, row=row)
    return customer


async def _checked_customer(
    session: AsyncSession,
    *,
    name: str | None,
    identifiers: list[IdentifierInput],
    fields: dict[str, Any] | None,
    region: str,
    enforce_form: bool,
) -> dict[str, Any]:
    """A new customer's row as it is written, checked and normalised."""
    check_text(name, "name", limits.NAME)
    pairs = normalize_identifiers(identifiers, region=region)
    if enforce_form:
        fields = await forms.checked_fields(session, template_id=None, values=fields, stored=None, region=region)
    return {
        "name": (name or "").strip() or None,
        "fields": check_json_object(fields, "fields") if fields is not None else {},
        "kinds": [kind for kind, _ in pairs],
        "values": [value for _, value in pairs],
    }


def _announce_created(session: AsyncSession, *, actor: Actor, customer: Customer, row: dict[str, Any]) -> None:
    audit.record(
        session,
        actor=actor,
        action="customer.create",
        entity_type="customer",
        entity_id=customer.id,
        after={
            **snapshot(customer),
            "identifiers": [f"{k}:{v}" for k, v in zip(row["kinds"], row["values"], strict=True)],
        },
    )
    events.emit(session, "customerUpdated", customer.id)


# Customers with their ids given, and their identifiers, in one statement; numbers follow the order given.
_NEW_CUSTOMERS = select(Customer).from_statement(
    text("""
        WITH given AS (
            SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
                AS g(id bigint, name text, fields jsonb, kinds text[], "values" text[], position bigint)
        ), created AS (
            INSERT INTO customers (id, name, fields) SELECT id, name, fields FROM given ORDER BY position
            RETURNING *
        ), identified AS (
            INSERT INTO customer_identifiers (customer_id, kind, value)
            SELECT given.id, i.kind, i.value FROM given, unnest(given.kinds, given."values") AS i(kind, value)
        )
        SELECT * FROM created
    """).bindparams(bindparam("rows", type_=JSONB))
)


class NewCustomers(HeldRows):
    """The customers a batch of ingests creates, written together in one statement (see HeldRows)."""

    def __init__(self, session: AsyncSession, *, ids_at_once: int) -> None:
        super().__init__(session, sequence="customers_id_seq", statement=_NEW_CUSTOMERS, ids_at_once=ids_at_once)

    async def create(
        self, *, actor: Actor, name: str | None, identifiers: list[IdentifierInput], fields: dict[str, Any], region: str
    ) -> int:
        """Check a customer as create_customer does (fields as received) and give it its id."""
        row = await _checked_customer(
            self.session, name=name, identifiers=identifiers, fields=fields, region=region, enforce_form=False
        )
        return await self.hold(actor, row)

    async def announce(self, actor: Actor, row: dict[str, Any], written: Customer) -> None:
        _announce_created(self.session, actor=actor, customer=written, row=row)


@dataclass(frozen=True)
class CreatedCustomer:
    customer: Customer
    possible_duplicates: list[DuplicateCandidate]


async def create_customer_avoiding_duplicates(
    session: AsyncSession,
    *,
    actor: Actor,
    name: str | None,
    identifiers: list[IdentifierInput],
    fields: dict[str, Any] | None,
    region: str,
    if_no_duplicates: bool = False,
) -> CreatedCustomer:
    """Create a customer and say which existing ones it may duplicate (the same email, phone or account
    id); with `if_no_duplicates`, create nothing when there are any (POSSIBLE_DUPLICATE naming them)."""
    check_text(name, "name", limits.NAME)
    pairs = normalize_identifiers(identifiers, region=region)
    duplicates = await search.likely_duplicates(
        session, identifiers=pairs, name=name, similar_names_alone=False, limit=limits.IDS_PER_CALL
    )
    if duplicates and if_no_duplicates:
        numbers = dict(
            (
                await session.execute(
                    select(Customer.id, Customer.number).where(Customer.id.in_([d.customer_id for d in duplicates]))
                )
            ).all()
        )
        listed = "; ".join(f"{numbers[d.customer_id]} ({', '.join(d.reasons)})" for d in duplicates)
        raise UserError(ErrorCode.POSSIBLE_DUPLICATE, f"possible duplicates: {listed}", "ifNoDuplicates")
    customer = await create_customer(
        session, actor=actor, name=name, identifiers=identifiers, fields=fields, region=region
    )
    return CreatedCustomer(customer=customer, possible_duplicates=duplicates)


async def update_customer(
    session: AsyncSession,
    *,
    actor: Actor,
    customer_id: int,
    name: str | None = None,
    fields: dict[str, Any] | None = None,
    replace_fields: bool = False,
    region: str | None = None,
    enforce_form: bool = True,
) -> Customer:
    """Rename a customer and/or merge (or replace) its custom fields; the customer form checks the
    fields written unless they come from a contact."""
    customer = await get_customer_for_update(session, customer_id)
    before = snapshot(customer)
    if name is not None:
        if not name.strip():
            raise UserError(ErrorCode.REQUIRED, "name must not be empty", "name")
        check_text(name, "name", limits.NAME)
        customer.name = name.strip()
    if fields is not None:
        if enforce_form:
            fields = await forms.checked_fields(
                session, template_id=None, values=fields, stored=customer.fields, region=region
            )
        check_json_object(fields, "fields")
        customer.fields = dict(fields) if replace_fields else {**customer.fields, **fields}
    await session.flush()
    await session.refresh(customer, ["updated_at"])
    audit.record(
        session,
        actor=actor,
        action="customer.update",
        entity_type="customer",
        entity_id=customer.id,
        before=before,
        after=snapshot(customer),
    )
    events.emit(session, "customerUpdated", customer.id)
    return customer


async def add_identifier(
    session: AsyncSession, *, actor: Actor, customer_id: int, kind: str, value: str, region: str
) -> CustomerIdentifier:
    """Add an identifier; the same one twice on one customer is DUPLICATE (others may share it)."""
    customer = await get_customer_for_update(session, customer_id, "customerId")
    normalized = normalize_identifier(kind, value, region=region, field="value")
    held = await session.scalar(select(func.count()).where(CustomerIdentifier.customer_id == customer.id))
    if held >= limits.IDENTIFIERS_PER_CUSTOMER:
        raise UserError(
            ErrorCode.INVALID,
            f"{customer.number} already has {limits.IDENTIFIERS_PER_CUSTOMER} identifiers, the most a customer has",
            "customerId",
        )
    identifier = (
        await session.execute(
            insert(CustomerIdentifier)
            .values(customer_id=customer.id, kind=kind, value=normalized)
            .on_conflict_do_nothing()
            .returning(CustomerIdentifier)
        )
    ).scalar_one_or_none()
    if identifier is None:
        raise UserError(ErrorCode.DUPLICATE, f"{customer.number} already has {kind} {normalized}", "value")
    audit.record(
        session,
        actor=actor,
        action="customer.identifier.add",
        entity_type="customer",
        entity_id=customer.id,
        after={"kind": kind, "value": normalized},
    )
    events.emit(session, "customerUpdated", customer.id)
    return identifier


async def remove_identifier(session: AsyncSession, *, actor: Actor, identifier_id: int) -> Customer:
    identifier = await session.get(CustomerIdentifier, identifier_id)
    if identifier is None:
        raise not_found("identifier", "id")
    customer = await get_customer_for_update(session, identifier.customer_id)
    await session.execute(delete(CustomerIdentifier).where(CustomerIdentifier.id == identifier_id))
    audit.record(
        session,
        actor=actor,
        action="customer.identifier.remove",
        entity_type="customer",
        entity_id=customer.id,
        before={"kind": identifier.kind, "value": identifier.value},
    )
    events.emit(session, "customerUpdated", customer.id)
    return customer


async def list_customers(
    session: AsyncSession,
    *,
    first: int,
    after: str | None,
    search: str | None = None,
    identifier: IdentifierInput | None = None,
    status: str | None = None,
    region: str = "GB",
) -> Page[Customer]:
    """Customers newest first; by name substring, by one identifier, and/or by status."""
    query = select(Customer)
    if status:
        query = query.where(Customer.status == status)
    else:
        query = query.where(Customer.status == "active")
    check_text(search, "filter.search", limits.SEARCH)
    if search:
        query = query.where(Customer.name.ilike(f"%{_escape_like(search)}%"))
    if identifier is not None:
        value = normalize_identifier(identifier.kind, identifier.value, region=region, field="filter.identifier")
        query = query.where(
            exists().where(
                CustomerIdentifier.customer_id == Customer.id,
                CustomerIdentifier.kind == identifier.kind,
                CustomerIdentifier.value == value,
            )
        )
    if after:
        (last_id,) = decode_cursor(after, int)
        query = query.where(Customer.id < last_id)
    rows = (await session.scalars(query.order_by(Customer.id.desc()).limit(first + 1))).all()
    return Page.from_overfetch(list(rows), first)


async def customer_id_by_number(session: AsyncSession, *, number: str) -> int | None:
    """The customer with this number; a merged customer's number resolves to the survivor."""
    return await session.scalar(select(_live_customer(Customer.id)).where(Customer.number == number.strip().upper()))


async def live_customer_id(session: AsyncSession, *, customer_id: int) -> int | None:
    """Follow merge tombstones to the customer a merged id now lives on (the id itself if not merged)."""
    return await session.scalar(select(_live_customer(Customer.id)).where(Customer.id == customer_id))


def _live_customer(customer_id: Any) -> Any:
    # The database function (migrations 0003, 0004) is the one implementation of tombstone
    # following; a read follows erased customers too and takes no lock.
    return func.casegraph_live_customer(customer_id, False, False)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# ---- merges ------------------------------------------------------------------------------------

# An undo refused for conflicts names this many of the conflicting rows.
CONFLICT_SAMPLE = 5


@dataclass(frozen=True)
class FieldPick:
    """Take `field` ("name" or "fields.<key>") from the customer `customer_id`."""

    field: str
    customer_id: int


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def merged_values(
    survivor: Row[Any], duplicates: list[Row[Any]], *, strategy: str, picks: list[FieldPick]
) -> tuple[str | None, dict[str, Any]]:
    """The survivor's name and custom fields after the merge, by strategy then explicit picks."""
    name, fields = survivor.name, dict(survivor.fields)
    if strategy == "fill_empty":
        for duplicate in duplicates:
            if _is_empty(name) and not _is_empty(duplicate.name):
                name = duplicate.name
            for key, value in duplicate.fields.items():
                if _is_empty(fields.get(key)) and not _is_empty(value):
                    fields[key] = value
    by_id = {row.id: row for row in [survivor, *duplicates]}
    for index, pick in enumerate(picks):
        source = by_id.get(pick.customer_id)
        if source is None:
            raise UserError(
                ErrorCode.INVALID,
                "a pick must name the survivor or one of the duplicates",
                f"fieldPicks.{index}.customerId",
            )
        if pick.field == "name":
            name = source.name
        elif pick.field.startswith("fields.") and pick.field[len("fields.") :] in source.fields:
            fields[pick.field[len("fields.") :]] = source.fields[pick.field[len("fields.") :]]
        else:
            raise UserError(
                ErrorCode.INVALID,
                f"{pick.field!r} is not 'name' or a custom field of that customer",
                f"fieldPicks.{index}.field",
            )
    return name, fields


# The journal statements. :m is the merge id, :s the survivor, :dups the duplicates' ids.
_JOURNAL_IDENTIFIERS = text("""
INSERT INTO customer_merge_entries (merge_id, kind, row_id, from_customer_id, dropped, identifier_kind, identifier_value)
SELECT :m, 'identifier', i.id, i.customer_id,
       EXISTS (SELECT 1 FROM customer_identifiers s WHERE s.customer_id = :s AND s.kind = i.kind AND s.value = i.value)
       OR row_number() OVER (PARTITION BY i.kind, i.value ORDER BY i.id) > 1,
       i.kind, i.value
FROM customer_identifiers i WHERE i.customer_id = ANY(:dups)
""")
_DROP_IDENTIFIERS = text("""
DELETE FROM customer_identifiers i USING customer_merge_entries e
WHERE e.merge_id = :m AND e.kind = 'identifier' AND e.dropped AND i.id = e.row_id
""")
_MOVE_IDENTIFIERS = text("""
UPDATE customer_identifiers i SET customer_id = :s FROM customer_merge_entries e
WHERE e.merge_id = :m AND e.kind = 'identifier' AND NOT e.dropped AND i.id = e.row_id
""")
# Per case, one link survives: the survivor's own if it has one, else the lowest duplicate's.
_JOURNAL_CASE_LINKS = text("""
INSERT INTO customer_merge_entries (merge_id, kind, row_id, from_customer_id, was_primary, dropped)
SELECT :m, 'case_link', l.case_id, l.customer_id, l.is_primary,
       EXISTS (SELECT 1 FROM case_customers s WHERE s.case_id = l.case_id AND s.customer_id = :s)
       OR row_number() OVER (PARTITION BY l.case_id ORDER BY l.customer_id) > 1
FROM case_customers l WHERE l.customer_id = ANY(:dups)
""")
_DROP_CASE_LINKS = text("""
DELETE FROM case_customers l USING customer_merge_entries e
WHERE e.merge_id = :m AND e.kind = 'case_link' AND e.dropped AND l.case_id = e.row_id AND l.customer_id = e.from_customer_id
""")
_MOVE_CASE_LINKS = text("""
UPDATE case_customers l SET customer_id = :s FROM customer_merge_entries e
WHERE e.merge_id = :m AND e.kind = 'case_link' AND NOT e.dropped AND l.case_id = e.row_id AND l.customer_id = e.from_customer_id
""")
# A dropped primary link hands the primary role to the survivor's link on that case.
_PROMOTE_SURVIVOR_LINKS = text("""
WITH promoted AS (
    UPDATE case_customers l SET is_primary = true
    WHERE l.customer_id = :s AND NOT l.is_primary AND l.case_id IN (
        SELECT e.row_id FROM customer_merge_entries e
        WHERE e.merge_id = :m AND e.kind = 'case_link' AND e.dropped AND e.was_primary)
    RETURNING l.case_id
)
INSERT INTO customer_merge_entries (merge_id, kind, row_id, from_customer_id)
SELECT :m, 'case_primary', case_id, :s FROM promoted
""")
_MOVE_CONTACTS = text("""
WITH moved AS (
    UPDATE contacts c SET customer_id = :s WHERE c.customer_id = ANY(:dups)
    RETURNING c.id, old.customer_id AS from_id
)
INSERT INTO customer_merge_entries (merge_id, kind, row_id, from_customer_id)
SELECT :m, 'contact', id, from_id FROM moved
""")
# Other contacts' recognition candidates: a duplicate's id becomes the survivor's (once, in the
# position of its first mention). The GIN index on non-empty lists finds them.
_CANDIDATES_AFTER_MERGE = """ARRAY(
    SELECT x.id FROM (
        SELECT CASE WHEN u.id = ANY(:dups) THEN :s ELSE u.id END AS id, min(u.position) AS position
        FROM unnest({column}) WITH ORDINALITY AS u(id, position) GROUP BY 1
    ) x ORDER BY x.position)"""
_MOVE_CANDIDATES = text(f"""
WITH moved AS (
    UPDATE contacts c SET candidate_customer_ids = {_CANDIDATES_AFTER_MERGE.format(column="c.candidate_customer_ids")}
    WHERE c.candidate_customer_ids && CAST(:dups AS bigint[]) AND c.candidate_customer_ids <> '{{}}'
    RETURNING c.id, old.candidate_customer_ids AS previous
)
INSERT INTO customer_merge_entries (merge_id, kind, row_id, from_customer_id, previous_candidate_ids)
SELECT :m, 'candidates', id, :s, previous FROM moved
""")
_MOVE_TOMBSTONES = text("""
WITH moved AS (
    UPDATE customers c SET merged_into_id = :s WHERE c.merged_into_id = ANY(:dups)
    RETURNING c.id, old.merged_into_id AS from_id
)
INSERT INTO customer_merge_entries (merge_id, kind, row_id, from_customer_id)
SELECT :m, 'tombstone', id, from_id FROM moved
""")


def _customer_state(row: Row[Any]) -> dict[str, Any]:
    return {
        "name": row.name,
        "fields": row.fields,
        "status": row.status,
        "archivedAt": row.archived_at.isoformat() if row.archived_at else None,
        "lastActivityAt": row.last_activity_at.isoformat() if row.last_activity_at else None,
    }


async def merge_customers(
    session: AsyncSession,
    *,
    actor: Actor,
    survivor_id: int,
    duplicate_ids: list[int],
    field_strategy: str = "survivor_wins",
    field_picks: list[FieldPick] | None = None,
) -> CustomerMerge:
    """Merge duplicates into a survivor; everything that referred to them moves, journaled for undo."""
    limits.check_count(duplicate_ids, "duplicateIds", limits.IDS_PER_CALL)
    limits.check_count(field_picks or [], "fieldPicks", limits.IDS_PER_CALL)
    duplicate_ids = list(dict.fromkeys(duplicate_ids))
    if not duplicate_ids:
        raise UserError(ErrorCode.REQUIRED, "name at least one duplicate", "duplicateIds")
    if survivor_id in duplicate_ids:
        raise UserError(ErrorCode.SELF_MERGE, "a customer cannot be merged into itself", "duplicateIds")
    if field_strategy not in FIELD_STRATEGIES:
        raise UserError(
            ErrorCode.INVALID, f"fieldStrategy must be one of {', '.join(FIELD_STRATEGIES)}", "fieldStrategy"
        )
    fields = {survivor_id: "survivorId", **{d: f"duplicateIds.{i}" for i, d in enumerate(duplicate_ids)}}
    rows = await lock_customers(session, [survivor_id, *duplicate_ids], fields=fields)
    survivor = rows[survivor_id]
    require_live_customer(survivor, "survivorId")
    duplicates = [rows[i] for i in duplicate_ids]
    for index, duplicate in enumerate(duplicates):
        require_live_customer(duplicate, f"duplicateIds.{index}")
    name, fields = merged_values(survivor, duplicates, strategy=field_strategy, picks=field_picks or [])
    activity = max((r.last_activity_at for r in [survivor, *duplicates] if r.last_activity_at), default=None)

    merge = CustomerMerge(
        survivor_id=survivor_id,
        duplicate_ids=duplicate_ids,
        field_strategy="picks" if field_picks else field_strategy,
        survivor_before=_customer_state(survivor),
        survivor_after={"name": name, "fields": fields},
        duplicates_before={str(d.id): _customer_state(d) for d in duplicates},
        actor_user_id=actor.user_id,
        actor_name=actor.name,
    )
    session.add(merge)
    await session.flush()
    params = {"m": merge.id, "s": survivor_id, "dups": duplicate_ids}
    await session.execute(_JOURNAL_IDENTIFIERS, params)
    await session.execute(_DROP_IDENTIFIERS, params)
    await session.execute(_MOVE_IDENTIFIERS, params)
    await session.execute(_JOURNAL_CASE_LINKS, params)
    await session.execute(_DROP_CASE_LINKS, params)
    await session.execute(_MOVE_CASE_LINKS, params)
    await session.execute(_PROMOTE_SURVIVOR_LINKS, params)
    moved_contacts = (await session.execute(_MOVE_CONTACTS, params)).rowcount
    await session.execute(_MOVE_CANDIDATES, params)
    await session.execute(_MOVE_TOMBSTONES, params)
    await session.execute(
        update(Customer).where(Customer.id == survivor_id).values(name=name, fields=fields, last_activity_at=activity)
    )
    await session.execute(
        update(Customer).where(Customer.id.in_(duplicate_ids)).values(status="merged", merged_into_id=survivor_id)
    )
    counts = dict(
        (
            await session.execute(
                text("SELECT kind, count(*) FROM customer_merge_entries WHERE merge_id = :m GROUP BY kind"), params
            )
        ).all()
    )
    merge.counts = {**counts, "contact": moved_contacts}
    touched_cases = list(
        await session.scalars(
            text("SELECT DISTINCT row_id FROM customer_merge_entries WHERE merge_id = :m AND kind = 'case_link'"),
            params,
        )
    )
    tombstones = list(
        await session.scalars(
            text("SELECT row_id FROM customer_merge_entries WHERE merge_id = :m AND kind = 'tombstone'"), params
        )
    )
    audit.record(
        session,
        actor=actor,
        action="customer.merge",
        entity_type="customer",
        entity_id=survivor_id,
        before={"name": survivor.name, "fields": survivor.fields},
        after={
            "mergeId": merge.id,
            "duplicateIds": duplicate_ids,
            "name": name,
            "fields": fields,
            "moved": merge.counts,
        },
    )
    for duplicate in duplicates:
        audit.record(
            session,
            actor=actor,
            action="customer.merged",
            entity_type="customer",
            entity_id=duplicate.id,
            before={"status": duplicate.status},
            after={"status": "merged", "mergedInto": survivor_id, "mergeId": merge.id},
        )
    await session.flush()
    events.emit_many(session, "customerUpdated", [survivor_id, *duplicate_ids, *tombstones])
    events.emit_many(session, "caseUpdated", touched_cases)
    return merge


# Undo: each check lists journal rows whose record changed since the merge in a way that blocks it.
_CONFLICT_CHECKS = {
    "contacts moved since": """
        SELECT e.row_id FROM customer_merge_entries e LEFT JOIN contacts c ON c.id = e.row_id
        WHERE e.merge_id = :m AND e.kind = 'contact' AND c.customer_id IS DISTINCT FROM :s""",
    "case links changed since": """
        SELECT e.row_id FROM customer_merge_entries e
        LEFT JOIN case_customers l ON l.case_id = e.row_id AND l.customer_id = :s
        WHERE e.merge_id = :m AND e.kind = 'case_link' AND NOT e.dropped AND l.case_id IS NULL""",
    "case primaries changed since": """
        SELECT e.row_id FROM customer_merge_entries e
        LEFT JOIN case_customers l ON l.case_id = e.row_id AND l.customer_id = :s
        WHERE e.merge_id = :m AND e.kind = 'case_primary' AND l.is_primary IS NOT TRUE""",
    "cases deleted since": """
        SELECT e.row_id FROM customer_merge_entries e LEFT JOIN cases k ON k.id = e.row_id
        WHERE e.merge_id = :m AND e.kind = 'case_link' AND e.dropped AND k.id IS NULL""",
    "identifiers removed or moved since": """
        SELECT e.row_id FROM customer_merge_entries e LEFT JOIN customer_identifiers i ON i.id = e.row_id
        WHERE e.merge_id = :m AND e.kind = 'identifier' AND NOT e.dropped AND i.customer_id IS DISTINCT FROM :s""",
    "tombstones re-pointed since": """
        SELECT e.row_id FROM customer_merge_entries e LEFT JOIN customers c ON c.id = e.row_id
        WHERE e.merge_id = :m AND e.kind = 'tombstone' AND c.merged_into_id IS DISTINCT FROM :s""",
}

_UNDO_STATEMENTS = [
    # Duplicates come back first: the link trigger would otherwise send re-inserted links to the survivor.
    """UPDATE customers c SET status = d.value->>'status', merged_into_id = NULL,
              archived_at = (d.value->>'archivedAt')::timestamptz,
              last_activity_at = (d.value->>'lastActivityAt')::timestamptz
       FROM customer_merges m, jsonb_each(m.duplicates_before) d
       WHERE m.id = :m AND c.id = d.key::bigint""",
    """UPDATE contacts c SET customer_id = e.from_customer_id FROM customer_merge_entries e
       WHERE e.merge_id = :m AND e.kind = 'contact' AND c.id = e.row_id""",
    """UPDATE case_customers l SET is_primary = false FROM customer_merge_entries e
       WHERE e.merge_id = :m AND e.kind = 'case_primary' AND l.case_id = e.row_id AND l.customer_id = :s""",
    """UPDATE case_customers l SET customer_id = e.from_customer_id FROM customer_merge_entries e
       WHERE e.merge_id = :m AND e.kind = 'case_link' AND NOT e.dropped AND l.case_id = e.row_id AND l.customer_id = :s""",
    """INSERT INTO case_customers (case_id, customer_id, is_primary)
       SELECT e.row_id, e.from_customer_id, e.was_primary FROM customer_merge_entries e
       WHERE e.merge_id = :m AND e.kind = 'case_link' AND e.dropped""",
    """UPDATE customer_identifiers i SET customer_id = e.from_customer_id FROM customer_merge_entries e
       WHERE e.merge_id = :m AND e.kind = 'identifier' AND NOT e.dropped AND i.id = e.row_id""",
    """INSERT INTO customer_identifiers (id, customer_id, kind, value)
       SELECT e.row_id, e.from_customer_id, e.identifier_kind, e.identifier_value FROM customer_merge_entries e
       WHERE e.merge_id = :m AND e.kind = 'identifier' AND e.dropped""",
    """UPDATE customers c SET merged_into_id = e.from_customer_id FROM customer_merge_entries e
       WHERE e.merge_id = :m AND e.kind = 'tombstone' AND c.id = e.row_id""",
    # A candidate list rewritten since (e.g. by a new recognition) is newer than the journal: it stays.
    f"""UPDATE contacts c SET candidate_customer_ids = e.previous_candidate_ids FROM customer_merge_entries e
       WHERE e.merge_id = :m AND e.kind = 'candidates' AND c.id = e.row_id
         AND c.candidate_customer_ids = {_CANDIDATES_AFTER_MERGE.format(column="e.previous_candidate_ids")}""",
    """UPDATE customers c SET name = m.survivor_before->>'name', fields = m.survivor_before->'fields',
              last_activity_at = GREATEST((m.survivor_before->>'lastActivityAt')::timestamptz,
                                          (SELECT max(occurred_at) FROM contacts WHERE customer_id = :s))
       FROM customer_merges m WHERE m.id = :m AND c.id = :s""",
]


async def undo_merge(session: AsyncSession, *, actor: Actor, merge_id: int) -> CustomerMerge:
    """Put back exactly what a merge moved, unless something changed since in a conflicting way."""
    merge = await session.get(CustomerMerge, merge_id, with_for_update=True)
    if merge is None:
        raise not_found("merge", "mergeId")
    if merge.undone_at is not None:
        raise UserError(ErrorCode.ALREADY_UNDONE, "this merge was already undone", "mergeId")
    params = {"m": merge.id, "s": merge.survivor_id, "dups": merge.duplicate_ids}
    tombstones = list(
        await session.scalars(
            text("SELECT row_id FROM customer_merge_entries WHERE merge_id = :m AND kind = 'tombstone'"), params
        )
    )
    rows = await lock_customers(session, [merge.survivor_id, *merge.duplicate_ids, *tombstones], "mergeId")
    conflicts = _record_conflicts(merge, rows)
    for label, query in _CONFLICT_CHECKS.items():
        ids = list(await session.scalars(text(query), params))
        if ids:
            sample = ", ".join(str(i) for i in ids[:CONFLICT_SAMPLE])
            conflicts.append(f"{len(ids)} {label} (ids {sample}{', …' if len(ids) > CONFLICT_SAMPLE else ''})")
    if conflicts:
        raise UserError(ErrorCode.CONFLICT, "cannot undo: " + "; ".join(conflicts), "mergeId")
    touched_cases = list(
        await session.scalars(
            text("SELECT DISTINCT row_id FROM customer_merge_entries WHERE merge_id = :m AND kind = 'case_link'"),
            params,
        )
    )
    for statement in _UNDO_STATEMENTS:
        await session.execute(text(statement), params)
    merge.undone_at = await session.scalar(text("SELECT now()"))
    merge.undone_by = actor.name
    audit.record(
        session,
        actor=actor,
        action="customer.merge.undo",
        entity_type="customer",
        entity_id=merge.survivor_id,
        after={"mergeId": merge.id, "duplicateIds": merge.duplicate_ids},
    )
    for duplicate_id in merge.duplicate_ids:
        audit.record(
            session,
            actor=actor,
            action="customer.unmerged",
            entity_type="customer",
            entity_id=duplicate_id,
            before={"status": "merged", "mergedInto": merge.survivor_id},
            after={"status": merge.duplicates_before[str(duplicate_id)]["status"], "mergeId": merge.id},
        )
    await session.flush()
    events.emit_many(session, "customerUpdated", [merge.survivor_id, *merge.duplicate_ids, *tombstones])
    events.emit_many(session, "caseUpdated", touched_cases)
    return merge


def _record_conflicts(merge: CustomerMerge, rows: dict[int, Row[Any]]) -> list[str]:
    conflicts = []
    survivor = rows[merge.survivor_id]
    if survivor.status in ("merged", "erased"):
        conflicts.append(f"survivor {survivor.number} is now {survivor.status}")
    elif survivor.name != merge.survivor_after["name"] or survivor.fields != merge.survivor_after["fields"]:
        conflicts.append(f"survivor {survivor.number}'s name or fields changed since")
    for duplicate_id in merge.duplicate_ids:
        duplicate = rows[duplicate_id]
        if duplicate.status != "merged" or duplicate.merged_into_id != merge.survivor_id:
            conflicts.append(f"duplicate {duplicate.number} is now {duplicate.status}")
    return conflicts


async def get_merge(session: AsyncSession, *, merge_id: int) -> CustomerMerge | None:
    return await session.get(CustomerMerge, merge_id)


async def find_duplicates(
    session: AsyncSession, *, customer_id: int, limit: int = 20
) -> list[DuplicateCandidate] | None:
    """Likely duplicates of a customer: shared identifiers and similar names, best first, with reasons; None if unknown."""
    customer = await session.get(Customer, customer_id)
    if customer is None:
        return None
    identifiers = (
        await session.execute(
            select(CustomerIdentifier.kind, CustomerIdentifier.value).where(
                CustomerIdentifier.customer_id == customer_id
            )
        )
    ).all()
    return await search.likely_duplicates(
        session, identifiers=[tuple(i) for i in identifiers], name=customer.name, exclude_id=customer_id, limit=limit
    )

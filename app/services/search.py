"""Search: customers by anything an agent hears on the phone, cases by their words, and the one
definition of which customers match a set of identifiers and a name (duplicates at creation).

What was typed is read once (`read_customer_query`): an email, a phone number, an account id or
external reference, a customer number, a case reference, a name. Each reading that applies is one
index lookup; the hits are ranked exact identifier first, then a phone matched without its
country code, then name similarity, and each result says which readings matched it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import phonenumbers
from sqlalchemy import func, text, tuple_
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from app import limits
from app.errors import ErrorCode, UserError
from app.identifiers import identifier_holders, normalize_email
from app.models import CASE_STATUSES, PRIORITIES, CustomerIdentifier
from app.pagination import Page, decode_cursor

# Name hits considered before filtering and paging: the best this many by similarity.
NAME_CANDIDATES = 200
# A phone typed without its country code: at least this many digits, or it matches too much.
MIN_NATIONAL_DIGITS = 6
SEARCHABLE_CUSTOMER_STATUSES = ("active", "archived")

_CUSTOMER_NUMBER = re.compile(r"^C-?(\d{1,18})$", re.IGNORECASE)
_CASE_REFERENCE = re.compile(r"^CASE-?(\d{1,18})$", re.IGNORECASE)
_PHONE_CHARACTERS = re.compile(r"^[\d\s+().\-/]+$")


@dataclass(frozen=True)
class CustomerQuery:
    """The readings of one search box: each is None (or empty) where it does not apply."""

    text: str
    email: str | None = None
    phones: tuple[str, ...] = ()
    national_digits: str | None = None
    customer_number: str | None = None
    case_reference: str | None = None
    name: str | None = None


def human_key(prefix: str, digits: str) -> str:
    number = int(digits)
    return f"{prefix}{number:06d}" if number < 1_000_000 else f"{prefix}{number}"


def require_query(query: str | None, field: str = "query") -> str:
    """The query stripped; REQUIRED when empty, INVALID when longer than a search term may be."""
    limits.check_text(query, field, limits.SEARCH)
    stripped = (query or "").strip()
    if not stripped:
        raise UserError(ErrorCode.REQUIRED, "type something to search for", field)
    return stripped


def read_customer_query(query: str, *, region: str) -> CustomerQuery:
    """Every reading of what was typed that could find a customer."""
    email = None
    if "@" in query:
        try:
            email = normalize_email(query)
        except UserError:
            email = None
    phones: list[str] = []
    national = None
    if _PHONE_CHARACTERS.match(query) and sum(c.isdigit() for c in query) >= MIN_NATIONAL_DIGITS:
        phones = _phone_readings(query, region)
        digits = "".join(c for c in query if c.isdigit())
        if not query.lstrip().startswith("+") and not digits.startswith("00"):
            national = digits.lstrip("0")
            if len(national) < MIN_NATIONAL_DIGITS:
                national = None
    number = _CUSTOMER_NUMBER.match(query)
    reference = _CASE_REFERENCE.match(query)
    name = None
    if any(c.isalpha() for c in query) and email is None and number is None and reference is None:
        name = " ".join(query.split())
    return CustomerQuery(
        text=query,
        email=email,
        phones=tuple(phones),
        national_digits=national,
        customer_number=human_key("C-", number.group(1)) if number else None,
        case_reference=human_key("CASE-", reference.group(1)) if reference else None,
        name=name,
    )


def _phone_readings(query: str, region: str) -> list[str]:
    """The E.164 forms the typed number can have: as dialled from the deployment's region."""
    try:
        number = phonenumbers.parse(query, region)
    except phonenumbers.NumberParseException:
        return []
    if not phonenumbers.is_possible_number(number):
        return []
    return [phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)]


@dataclass(frozen=True)
class CustomerFilters:
    statuses: tuple[str, ...] = ("active",)
    created_after: datetime | None = None
    created_before: datetime | None = None
    active_after: datetime | None = None
    active_before: datetime | None = None


@dataclass(frozen=True)
class Match:
    """One reason a customer was found: how (email, phone, …, name), on what value, how closely."""

    how: str
    value: str
    score: float


@dataclass
class CustomerHit:
    customer: Any
    rank: int
    matches: list[Match] = field(default_factory=list)

    @property
    def matched_by(self) -> list[str]:
        return list(dict.fromkeys(m.how for m in self.matches))


# Tiers of the rank: exact identifiers (and keys) first, then a national phone number, then names.
_TIERS = {"name": 0, "phone_national": 1}
_EXACT_TIER = 2


def _customer_hits(reading: CustomerQuery) -> tuple[list[str], dict[str, Any]]:
    """The SELECTs (customer_id, how, value, score) of each reading that applies, and their parameters."""
    parts = [
        # An account id or external reference is whatever was typed, exactly.
        "SELECT customer_id, kind, value, 1.0 FROM customer_identifiers "
        "WHERE kind IN ('account_id', 'external_ref') AND value = :text"
    ]
    params: dict[str, Any] = {"text": reading.text}
    if reading.email:
        parts.append(
            "SELECT customer_id, kind, value, 1.0 FROM customer_identifiers WHERE kind = 'email' AND value = :email"
        )
        params["email"] = reading.email
    if reading.phones:
        parts.append(
            "SELECT customer_id, kind, value, 1.0 FROM customer_identifiers WHERE kind = 'phone' AND value = ANY(:phones)"
        )
        params["phones"] = list(reading.phones)
    if reading.national_digits:
        # The stored number ends with the digits typed, after a country code of one to three digits.
        parts.append(
            "SELECT customer_id, 'phone_national', value, 0.9 FROM customer_identifiers "
            "WHERE kind = 'phone' AND reverse(value) ~>=~ :reversed_national AND reverse(value) ~<~ :reversed_next "
            "AND length(value) - length(:national) BETWEEN 2 AND 4"
        )
        params["national"] = reading.national_digits
        # A prefix range on the reversed value (an index range scan in any plan, unlike LIKE with a parameter).
        reversed_national = reading.national_digits[::-1]
        params["reversed_national"] = reversed_national
        params["reversed_next"] = reversed_national[:-1] + chr(ord(reversed_national[-1]) + 1)
    if reading.customer_number:
        parts.append("SELECT id, 'customer_number', number, 1.0 FROM customers WHERE number = :number")
        params["number"] = reading.customer_number
    if reading.case_reference:
        parts.append(
            "SELECT l.customer_id, 'case_reference', k.reference, 1.0 FROM cases k "
            "JOIN case_customers l ON l.case_id = k.id WHERE k.reference = :reference"
        )
        params["reference"] = reading.case_reference
    if reading.name:
        # Trigrams are per word: the order of the words does not matter, a typo costs a few trigrams.
        parts.append(
            "(SELECT id, 'name', name, similarity(casegraph_fold(name), casegraph_fold(:name)) AS score "
            "FROM customers WHERE casegraph_fold(name) % casegraph_fold(:name) AND status <> 'erased' "
            f"ORDER BY score DESC, id LIMIT {NAME_CANDIDATES})"
        )
        params["name"] = reading.name
    return parts, params


async def search_customers(
    session: AsyncSession,
    *,
    query: str | None,
    filters: CustomerFilters = CustomerFilters(),
    first: int,
    after: str | None = None,
    region: str,
) -> Page[CustomerHit]:
    """Customers matching what was typed, best first, each with why it matched."""
    typed = require_query(query)
    for index, status in enumerate(filters.statuses):
        if status not in SEARCHABLE_CUSTOMER_STATUSES:
            raise UserError(
                ErrorCode.INVALID,
                "search finds active and archived customers (merged ones as their survivor)",
                f"filters.status.{index}",
            )
    reading = read_customer_query(typed, region=region)
    if not any(c.isalnum() for c in typed):
        return Page(rows=[], cursors=[], has_next=False)
    parts, params = _customer_hits(reading)
    conditions = ["c.status = ANY(:statuses)"]
    params.update(statuses=list(filters.statuses), limit=first + 1)
    for column, op, value, name in (
        ("c.created_at", ">=", filters.created_after, "created_after"),
        ("c.created_at", "<", filters.created_before, "created_before"),
        ("c.last_activity_at", ">=", filters.active_after, "active_after"),
        ("c.last_activity_at", "<", filters.active_before, "active_before"),
    ):
        if value is not None:
            conditions.append(f"{column} {op} :{name}")
            params[name] = value
    if after:
        params["after_rank"], params["after_id"] = decode_cursor(after, int, int)
        conditions.append("(r.rank < :after_rank OR (r.rank = :after_rank AND c.id > :after_id))")
    statement = text(f"""
        WITH hits(customer_id, how, value, score) AS ({" UNION ALL ".join(parts)}),
        live AS (
            -- A merged customer is found as the customer it now lives on.
            SELECT CASE WHEN found.status = 'merged' THEN casegraph_live_customer(hits.customer_id, false, false)
                        ELSE hits.customer_id END AS id, how, value, score,
                   CASE how {" ".join(f"WHEN '{h}' THEN {t}" for h, t in _TIERS.items())} ELSE {_EXACT_TIER} END AS tier
            FROM hits JOIN customers found ON found.id = hits.customer_id
        ),
        ranked AS (
            SELECT id, (max(tier) * 1000000 + round(max(score) * 999999))::bigint AS rank,
                   jsonb_agg(jsonb_build_object('how', how, 'value', value, 'score', score)
                             ORDER BY tier DESC, score DESC) AS matches
            FROM live WHERE id IS NOT NULL GROUP BY id
        )
        SELECT c.*, r.rank, r.matches FROM ranked r JOIN customers c ON c.id = r.id
        WHERE {" AND ".join(conditions)}
        ORDER BY r.rank DESC, c.id LIMIT :limit
    """)
    rows = (await session.execute(statement, params)).all()
    hits = [
        CustomerHit(
            customer=row,
            rank=row.rank,
            matches=_distinct_matches(row.matches),
        )
        for row in rows
    ]
    return Page.from_overfetch(hits, first, lambda hit: (hit.rank, hit.customer.id))


def _distinct_matches(matches: list[dict[str, Any]]) -> list[Match]:
    seen: dict[tuple[str, str], Match] = {}
    for m in matches:
        seen.setdefault((m["how"], m["value"]), Match(m["how"], m["value"], round(float(m["score"]), 3)))
    return list(seen.values())


# ---- cases ---------------------------------------------------------------------------------------

# Contacts' words count for less than the case's own (their vector weights already favour a subject).
CONTACT_WEIGHT = 0.5
# Matches ranked, from the cases and from the contacts each: a query of common words stops
# collecting there rather than ranking every row that holds them (more words narrow it).
CASE_CANDIDATES = 5000
HEADLINE_OPTIONS = "StartSel=<mark>, StopSel=</mark>, MaxWords=30, MinWords=10, MaxFragments=2"


@dataclass(frozen=True)
class CaseFilters:
    statuses: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    assignee_id: int | None = None
    customer_id: int | None = None
    pool_id: int | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    include_archived: bool = False


@dataclass
class CaseHit:
    case: Any
    rank: int
    by_reference: bool
    snippet: str | None


async def search_cases(
    session: AsyncSession,
    *,
    query: str | None,
    filters: CaseFilters = CaseFilters(),
    first: int,
    after: str | None = None,
) -> Page[CaseHit]:
    """Cases whose subject, description or contacts hold the words typed, best first, with highlighted
    snippets; a case reference typed in finds that case alone."""
    typed = require_query(query)
    _check_values(filters.statuses, CASE_STATUSES, "filters.status")
    _check_values(filters.priorities, PRIORITIES, "filters.priority")
    reference = _CASE_REFERENCE.match(typed)
    conditions = ["k.merged_into_id IS NULL"]
    params: dict[str, Any] = {"limit": first + 1}
    if not filters.include_archived:
        conditions.append("k.archived_at IS NULL")
    for column, values, name in (
        ("k.status", filters.statuses, "statuses"),
        ("k.priority", filters.priorities, "priorities"),
    ):
        if values:
            conditions.append(f"{column} = ANY(:{name})")
            params[name] = list(values)
    for condition, value, name in (
        ("k.assignee_id = :assignee_id", filters.assignee_id, "assignee_id"),
        ("k.pool_id = :pool_id", filters.pool_id, "pool_id"),
        (
            "EXISTS (SELECT 1 FROM case_customers l WHERE l.case_id = k.id AND l.customer_id = "
            "casegraph_live_customer(:customer_id, false, false))",
            filters.customer_id,
            "customer_id",
        ),
        ("k.created_at >= :created_after", filters.created_after, "created_after"),
        ("k.created_at < :created_before", filters.created_before, "created_before"),
        ("k.updated_at >= :updated_after", filters.updated_after, "updated_after"),
        ("k.updated_at < :updated_before", filters.updated_before, "updated_before"),
    ):
        if value is not None:
            conditions.append(condition)
            params[name] = value
    if after:
        params["after_rank"], params["after_id"] = decode_cursor(after, int, int)
        conditions.append("(r.rank < :after_rank OR (r.rank = :after_rank AND k.id > :after_id))")
    if reference:
        params["reference"] = human_key("CASE-", reference.group(1))
        matches = "SELECT id AS case_id, 1000000::bigint AS rank FROM cases WHERE reference = :reference"
        snippet = "NULL::text"
    else:
        if not any(c.isalnum() for c in typed):
            return Page(rows=[], cursors=[], has_next=False)
        params["q"] = typed
        matches = f"""
            SELECT case_id, round(max(rank) * 999999)::bigint AS rank FROM (
                SELECT m.case_id, ts_rank(m.vector, q.query) AS rank FROM q, LATERAL (
                    SELECT v.case_id, v.vector FROM case_search_vectors v
                    WHERE v.vector @@ q.query LIMIT {CASE_CANDIDATES}) m
                UNION ALL
                SELECT m.case_id, {CONTACT_WEIGHT} * ts_rank(m.vector, q.query) FROM q, LATERAL (
                    SELECT v.case_id, v.vector FROM contact_search_vectors v
                    WHERE v.vector @@ q.query LIMIT {CASE_CANDIDATES}) m
            ) found GROUP BY case_id"""
        snippet = f"""(SELECT ts_headline(casegraph_text_search_config(), _escape_html(part), q.query, '{HEADLINE_OPTIONS}')
                FROM q, LATERAL (
                    SELECT concat_ws(' … ', page.subject, page.description) AS part
                    WHERE to_tsvector(casegraph_text_search_config(), concat_ws(' ', page.subject, page.description)) @@ q.query
                    UNION ALL
                    (SELECT concat_ws(' … ', c.subject, left(c.text, 10000)) FROM contact_search_vectors v
                     JOIN contacts c ON c.id = v.contact_id
                     WHERE v.case_id = page.id AND v.vector @@ q.query ORDER BY c.occurred_at DESC LIMIT 1)
                    LIMIT 1
                ) best)"""
    statement = text(
        f"""
        WITH q AS (SELECT websearch_to_tsquery(casegraph_text_search_config(), :q) AS query),
        r AS ({matches}),
        page AS (
            SELECT k.*, r.rank FROM r JOIN cases k ON k.id = r.case_id
            WHERE {" AND ".join(conditions)}
            ORDER BY r.rank DESC, k.id LIMIT :limit
        )
        SELECT page.*, {snippet} AS snippet FROM page ORDER BY page.rank DESC, page.id
    """.replace("_escape_html(part)", "replace(replace(replace(part, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')")
    )
    if reference:
        params.setdefault("q", "")
    rows = (await session.execute(statement, params)).all()
    hits = [CaseHit(case=row, rank=row.rank, by_reference=bool(reference), snippet=row.snippet) for row in rows]
    return Page.from_overfetch(hits, first, lambda hit: (hit.rank, hit.case.id))


def _check_values(values: tuple[str, ...], allowed: tuple[str, ...], field_name: str) -> None:
    for index, value in enumerate(values):
        if value not in allowed:
            raise UserError(ErrorCode.INVALID, f"unknown value {value!r}", f"{field_name}.{index}")


# ---- likely duplicates: one definition for customerDuplicates, customerCreate and recognition -------

# Identifiers that make two profiles possibly one person (an external ref is the back office's key).
DUPLICATE_KINDS = ("email", "phone", "account_id")
# Statuses of the customers a new or existing profile may duplicate (merged and erased ones cannot).
DUPLICATE_STATUSES = ("active", "archived")


@dataclass(frozen=True)
class DuplicateCandidate:
    customer_id: int
    score: float
    reasons: list[str]


# `%` on the folded names uses their trigram index (threshold pg_trgm.similarity_threshold, 0.3).
_SIMILAR_NAMES = text("""
SELECT c.id, similarity(casegraph_fold(c.name), casegraph_fold(:name)) AS similarity FROM customers c
WHERE casegraph_fold(c.name) % casegraph_fold(:name) AND c.id <> :exclude AND c.status = ANY(:statuses)
ORDER BY similarity DESC, c.id LIMIT :limit
""")
_NAME_SIMILARITY = text("""
SELECT c.id, similarity(casegraph_fold(c.name), casegraph_fold(:name)) FROM customers c WHERE c.id = ANY(:ids)
""")


async def likely_duplicates(
    session: AsyncSession,
    *,
    identifiers: list[tuple[str, str]],
    name: str | None,
    exclude_id: int | None = None,
    similar_names_alone: bool = True,
    limit: int = 20,
) -> list[DuplicateCandidate]:
    """Customers that may be the same person: sharing an email, phone or account id (strong), and a
    similar name (adds to it; counts alone only with `similar_names_alone`). Best first, with reasons."""
    pairs = [(kind, value) for kind, value in identifiers if kind in DUPLICATE_KINDS]
    params = {"exclude": exclude_id or 0, "statuses": list(DUPLICATE_STATUSES)}
    scores: dict[int, float] = {}
    reasons: dict[int, list[str]] = {}
    if pairs:
        shared_list = func.array_agg(
            aggregate_order_by(
                CustomerIdentifier.kind + " " + CustomerIdentifier.value,
                CustomerIdentifier.kind,
                CustomerIdentifier.value,
            )
        )
        holders = identifier_holders(
            tuple_(CustomerIdentifier.kind, CustomerIdentifier.value).in_(pairs), statuses=DUPLICATE_STATUSES
        ).where(CustomerIdentifier.customer_id != params["exclude"])
        for other_id, shared in await session.execute(holders.add_columns(shared_list)):
            # One shared identifier is strong evidence, each further one adds a little.
            scores[other_id] = min(0.6 + 0.1 * (len(shared) - 1), 0.8)
            reasons[other_id] = [f"shares {item}" for item in shared]
    if name and name.strip():
        if similar_names_alone:
            similar = (await session.execute(_SIMILAR_NAMES, {**params, "name": name, "limit": limit})).all()
        elif scores:
            similar = [
                (i, s)
                for i, s in await session.execute(_NAME_SIMILARITY, {"name": name, "ids": list(scores)})
                if s is not None and s >= 0.3
            ]
        else:
            similar = []
        for other_id, similarity in similar:
            scores[other_id] = scores.get(other_id, 0.0) + 0.4 * similarity
            reasons.setdefault(other_id, []).append(f"similar name ({similarity:.2f})")
    ranked = sorted(scores, key=lambda i: (-scores[i], i))[:limit]
    return [DuplicateCandidate(customer_id=i, score=round(min(scores[i], 1.0), 3), reasons=reasons[i]) for i in ranked]

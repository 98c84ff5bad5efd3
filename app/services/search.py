"""Search: customers by anything an agent hears on the phone, cases by their words, and the one
definition of which customers match a set of identifiers and a name (duplicates at creation).

What was typed is read once (`read_customer_query`): an email, a phone number, an account id or
external reference, a customer number, a case reference, a name. Each reading that applies is one
index lookup; the hits are ranked exact identifier first, then a phone matched without its
country code, then name similarity, and each result says which readings matched it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import phonenumbers
from sqlalchemy import func, or_, select, text, true, tuple_
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from app import limits
from app.auth import SYSTEM, Actor
from app.errors import ErrorCode, UserError, errors_at, not_found
from app.identifiers import SIMILAR_NAME, identifier_holders, name_similarities, normalize_email
from app.models import (
    CASE_STATUSES,
    PRIORITIES,
    SEARCH_SORTS,
    SEARCH_TARGETS,
    CustomerIdentifier,
    FormField,
    GroupMember,
    Pool,
    SearchScreen,
    User,
    UserGroup,
)
from app.pagination import Page, decode_cursor
from app.services import audit, forms
from app.settings import get_settings

# Name hits considered before filtering and paging: the best this many by similarity (ten pages of
# ten; the holders of a common name beyond them are never read).
NAME_CANDIDATES = 100
# Customers found by one searchable custom field's value, before filtering and paging.
FIELD_CANDIDATES = 200
MAX_FIELD_FILTERS = 20
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
    # (label, {key: value} as JSON) of each searchable custom field the text is a valid value of.
    field_values: tuple[tuple[str, str], ...] = ()
    # For each word of the name (initials aside), the words of customers' names alike it; None when
    # the name is only initials (then it is compared whole).
    name_words: tuple[tuple[str, ...], ...] | None = None


def human_key(prefix: str, digits: str) -> str:
    number = int(digits)
    return f"{prefix}{number:06d}" if number < 1_000_000 else f"{prefix}{number}"


def require_query(query: str | None, field: str = "query", *, filtered: bool = False) -> str | None:
    """The query stripped; INVALID when longer than a search term may be. Empty is REQUIRED unless
    the search is `filtered` by a searchable custom field (an index lookup): then it is None."""
    limits.check_text(query, field, limits.SEARCH)
    stripped = (query or "").strip()
    if not stripped:
        if filtered:
            return None
        raise UserError(
            ErrorCode.REQUIRED, "type something to search for, or filter by a searchable custom field", field
        )
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


# A typed word stands for at most this many name words alike it (by trigrams, at pg_trgm's
# similarity threshold), the most alike first; a name counts at most this many words.
ALIKE_NAME_WORDS = 20
MAX_NAME_WORDS = 5

_ALIKE_NAME_WORDS = text("""
SELECT typed.word, ARRAY(
    SELECT d.word FROM customer_name_words d WHERE d.word % typed.word
    ORDER BY similarity(d.word, typed.word) DESC, d.word LIMIT :alike) AS alike
FROM unnest(casegraph_name_words(:name)) WITH ORDINALITY AS typed(word, position)
ORDER BY typed.position
""")


async def alike_name_words(session: AsyncSession, name: str) -> tuple[tuple[str, ...], ...] | None:
    """For each word of a typed name (folded; initials aside), the words customers' names hold that
    are alike it (a typo, an accent) or begin with it; None when the name is only initials."""
    alike: dict[str, tuple[str, ...]] = {}
    for word, words in await session.execute(_ALIKE_NAME_WORDS, {"name": name, "alike": ALIKE_NAME_WORDS}):
        if len(word) > 1 and len(alike) < MAX_NAME_WORDS:
            alike.setdefault(word, tuple(w for w in words if w.startswith(word) or _is_typo_of(w, word)))
    return tuple(alike.values()) or None


def _is_typo_of(word: str, typed: str) -> bool:
    """Whether `typed` is `word` with a typo or two: as many edits (a letter added, dropped, changed,
    or two swapped) as its length allows, none up to two letters, one up to five, two beyond. Trigrams
    alone also find other names ("mary" is as alike "martin" as "maria"), each a customer to rank."""
    allowed = 0 if len(typed) <= 2 else 1 if len(typed) <= 5 else 2
    if abs(len(word) - len(typed)) > allowed:
        return False
    # Optimal string alignment distance, row by row.
    before, previous = None, list(range(len(word) + 1))
    for i, t in enumerate(typed, 1):
        current = [i]
        for j, w in enumerate(word, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (t != w))
            if i > 1 and j > 1 and t == word[j - 2] and typed[i - 2] == w:
                cost = min(cost, before[j - 2] + 1)
            current.append(cost)
        before, previous = previous, current
    return previous[-1] <= allowed


@dataclass(frozen=True)
class FieldFilter:
    """A searchable custom field holding this value (as the field stores it once normalised)."""

    key: str
    value: Any


@dataclass(frozen=True)
class CustomerFilters:
    statuses: tuple[str, ...] = ("active",)
    created_after: datetime | None = None
    created_before: datetime | None = None
    active_after: datetime | None = None
    active_before: datetime | None = None
    fields: tuple[FieldFilter, ...] = ()


# ---- custom fields -------------------------------------------------------------------------------
#
# A searchable custom field is matched with `fields @> {"key": value}`, through the one GIN index
# (jsonb_path_ops) customers and cases have on `fields`, rather than an expression index per key:
# marking a field searchable then costs no DDL (no index built while the table is locked, nothing
# for migrations to miss), the same index serves every key, type and template, and the value is
# compared as the record stores it (normalised by the field's type). Keys that are not searchable
# are refused as filters, so the index is the only way a custom field is searched.


def _field_documents(definitions: list[Any], value: Any, region: str) -> list[str]:
    """`{key: value}` as JSON for each definition the value is valid for (a key defined by several
    case templates may have several types)."""
    documents = []
    for definition in definitions:
        try:
            normalised = forms.searchable_value(definition, value, region=region)
        except ValueError:
            continue
        document = orjson.dumps({definition.key: normalised}).decode()
        if document not in documents:
            documents.append(document)
    return documents


async def field_conditions(
    session: AsyncSession, *, target: str, filters: tuple[FieldFilter, ...], alias: str, region: str
) -> tuple[list[str], dict[str, Any]]:
    """SQL conditions on `alias.fields` for custom-field filters; NOT_SEARCHABLE for a key no form
    marks searchable, INVALID for a value the field cannot hold."""
    if not filters:
        return [], {}
    searchable = await forms.searchable_fields(session, target=target)
    conditions: list[str] = []
    params: dict[str, Any] = {}
    for index, wanted in enumerate(filters):
        where = f"filters.fields.{index}"
        definitions = searchable.get(wanted.key)
        if not definitions:
            raise UserError(
                ErrorCode.NOT_SEARCHABLE, f"{wanted.key!r} is not a searchable {target} field", f"{where}.key"
            )
        documents = _field_documents(definitions, wanted.value, region)
        if not documents:
            raise UserError(
                ErrorCode.INVALID, f"{wanted.value!r} cannot be a value of {wanted.key!r}", f"{where}.value"
            )
        alternatives = []
        for n, document in enumerate(documents):
            params[f"field_{index}_{n}"] = document
            alternatives.append(f"{alias}.fields @> CAST(:field_{index}_{n} AS jsonb)")
        conditions.append(f"({' OR '.join(alternatives)})")
    return conditions, params


def _typed_field_values(searchable: dict[str, list[Any]], typed: str, region: str) -> tuple[tuple[str, str], ...]:
    """The searchable custom fields what was typed could be the value of, each as (label, document)."""
    found = []
    for key, definitions in searchable.items():
        for document in _field_documents(definitions, typed, region):
            found.append((f"{key}: {typed}", document))
    return tuple(found)


def _sort_key(sort: str, *, created: str, activity: str) -> str | None:
    """A bigint that orders results for a sort other than relevance (None for relevance): the time
    in microseconds, negated for the oldest first."""
    if sort not in SEARCH_SORTS:
        raise UserError(ErrorCode.INVALID, f"unknown sort {sort!r}", "sort")
    column = {"newest": created, "oldest": created, "last_activity": activity}.get(sort)
    if column is None:
        return None
    micros = f"(extract(epoch FROM {column}) * 1000000)::bigint"
    return f"-{micros}" if sort == "oldest" else micros


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
    for index, (label, document) in enumerate(reading.field_values):
        parts.append(
            f"(SELECT id, 'custom_field', CAST(:field_label_{index} AS text), 1.0 FROM customers "
            f"WHERE fields @> CAST(:field_value_{index} AS jsonb) AND status <> 'erased' LIMIT {FIELD_CANDIDATES})"
        )
        params[f"field_label_{index}"] = label
        params[f"field_value_{index}"] = document
    if reading.name and reading.name_words is None:
        # Initials only: the name compared whole (its trigram index).
        parts.append(
            "(SELECT id, 'name', name, similarity(casegraph_fold(name), casegraph_fold(:name)) AS score "
            "FROM customers WHERE casegraph_fold(name) % casegraph_fold(:name) AND status <> 'erased' "
            f"ORDER BY score DESC, id LIMIT {NAME_CANDIDATES})"
        )
        params["name"] = reading.name
    elif reading.name and all(reading.name_words or ()):
        # The distinct names holding a word alike every word typed, in any order (their words'
        # index intersects them among names, not customers), ranked by the trigram similarity of
        # the whole name (a typo costs a few trigrams); then their holders, best name first, read
        # until there are enough: however many share a common name, the rest are never read.
        holds = " AND ".join(
            f"casegraph_name_words(f.name) && CAST(:name_words_{i} AS text[])" for i in range(len(reading.name_words))
        )
        parts.append(
            "(SELECT c.id, 'name', c.name, n.score FROM ("
            "SELECT f.name AS folded, similarity(f.name, casegraph_fold(:name)) AS score "
            f"FROM customer_full_names f WHERE {holds} ORDER BY score DESC, folded) n "
            "CROSS JOIN LATERAL (SELECT id, name FROM customers WHERE casegraph_fold(name) = n.folded "
            f"AND status <> 'erased' ORDER BY id LIMIT {NAME_CANDIDATES}) c "
            f"ORDER BY n.score DESC, n.folded, c.id LIMIT {NAME_CANDIDATES})"
        )
        params["name"] = reading.name
        params.update({f"name_words_{i}": list(words) for i, words in enumerate(reading.name_words)})
    return parts, params


async def search_customers(
    session: AsyncSession,
    *,
    query: str | None,
    filters: CustomerFilters = CustomerFilters(),
    first: int,
    after: str | None = None,
    region: str,
    sort: str = "relevance",
) -> Page[CustomerHit]:
    """Customers matching what was typed, best first (or in the order asked), each with why it
    matched; without a query, the customers a searchable custom field filter selects."""
    typed = require_query(query, filtered=bool(filters.fields))
    for index, status in enumerate(filters.statuses):
        if status not in SEARCHABLE_CUSTOMER_STATUSES:
            raise UserError(
                ErrorCode.INVALID,
                "search finds active and archived customers (merged ones as their survivor)",
                f"filters.status.{index}",
            )
    order = _sort_key(sort, created="c.created_at", activity="coalesce(c.last_activity_at, c.created_at)")
    field_filters, params = await field_conditions(
        session, target="customer", filters=filters.fields, alias="c", region=region
    )
    conditions = ["c.status = ANY(:statuses)", *field_filters]
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
    if typed is None:
        rank = order or _sort_key("newest", created="c.created_at", activity="")
        source, matches = "customers c", "'[]'::jsonb"
    else:
        if not any(c.isalnum() for c in typed):
            return Page(rows=[], cursors=[], has_next=False)
        searchable = await forms.searchable_fields(session, target="customer")
        reading = replace(
            read_customer_query(typed, region=region), field_values=_typed_field_values(searchable, typed, region)
        )
        if reading.name:
            reading = replace(reading, name_words=await alike_name_words(session, reading.name))
        parts, hit_params = _customer_hits(reading)
        params.update(hit_params)
        rank, matches = order or "r.rank", "r.matches"
        source = f"""(
            WITH hits(customer_id, how, value, score) AS ({" UNION ALL ".join(parts)}),
            live AS (
                -- A merged customer is found as the customer it now lives on.
                SELECT CASE WHEN found.status = 'merged' THEN casegraph_live_customer(hits.customer_id, false, false)
                            ELSE hits.customer_id END AS id, how, value, score,
                       CASE how {" ".join(f"WHEN '{h}' THEN {t}" for h, t in _TIERS.items())} ELSE {_EXACT_TIER} END AS tier
                FROM hits JOIN customers found ON found.id = hits.customer_id
            )
            SELECT id, (max(tier) * 1000000 + round(max(score) * 999999))::bigint AS rank,
                   jsonb_agg(jsonb_build_object('how', how, 'value', value, 'score', score)
                             ORDER BY tier DESC, score DESC) AS matches
            FROM live WHERE id IS NOT NULL GROUP BY id
        ) r JOIN customers c ON c.id = r.id"""
    if after:
        params["after_rank"], params["after_id"] = decode_cursor(after, int, int)
        conditions.append(f"({rank} < :after_rank OR ({rank} = :after_rank AND c.id > :after_id))")
    statement = text(f"""
        SELECT c.*, {rank} AS rank, {matches} AS matches FROM {source}
        WHERE {" AND ".join(conditions)}
        ORDER BY {rank} DESC, c.id LIMIT :limit
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
# collecting there rather than ranking every row that holds them (more words narrow it), so its
# cost does not grow with the number of cases. Snippets are made for the returned page only.
CASE_CANDIDATES = 1000
# Matches come from the newest RECENT_CASES cases and RECENT_CONTACTS contacts first (their own
# indexes, migrations 0024 and 0022): two common words typed together then intersect postings as
# long as those rows are many, not as all ever kept, and the candidates kept are the newest rather
# than the first ones stored. Only when fewer than ENOUGH_RECENT of them match (five pages) are the
# older ones searched as well: that reads every posting of each word typed, so it is kept for the
# searches the recent rows cannot answer.
RECENT_CASES = 50_000
RECENT_CONTACTS = 250_000
ENOUGH_RECENT = 50
# The rank of a case whose searchable custom field holds what was typed: above any text rank
# (ts_rank stays far below it).
FIELD_MATCH_RANK = 100.0
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
    fields: tuple[FieldFilter, ...] = ()


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
    region: str = "",
    sort: str = "relevance",
) -> Page[CaseHit]:
    """Cases whose subject, description or contacts hold the words typed, best first (or in the order
    asked), with highlighted snippets; a case reference typed in finds that case alone. Without a
    query, the cases a searchable custom field filter selects."""
    typed = require_query(query, filtered=bool(filters.fields))
    _check_values(filters.statuses, CASE_STATUSES, "filters.status")
    _check_values(filters.priorities, PRIORITIES, "filters.priority")
    order = _sort_key(sort, created="k.created_at", activity="k.updated_at")
    reference = _CASE_REFERENCE.match(typed) if typed else None
    field_filters, params = await field_conditions(
        session, target="case", filters=filters.fields, alias="k", region=region
    )
    conditions = ["k.merged_into_id IS NULL", *field_filters]
    params["limit"] = first + 1
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
    # Without words to rank by, the newest first.
    rank = order or ("r.rank" if typed is not None else _sort_key("newest", created="k.created_at", activity=""))
    if after:
        params["after_rank"], params["after_id"] = decode_cursor(after, int, int)
        conditions.append(f"({rank} < :after_rank OR ({rank} = :after_rank AND k.id > :after_id))")
    recent_matches = ""
    if typed is None:
        matches = f"SELECT k.id AS case_id, 0::bigint AS rank FROM cases k WHERE {' AND '.join(field_filters)}"
        snippet = "NULL::text"
    elif reference:
        params["reference"] = human_key("CASE-", reference.group(1))
        matches = "SELECT id AS case_id, 1000000::bigint AS rank FROM cases WHERE reference = :reference"
        snippet = "NULL::text"
    else:
        if not any(c.isalnum() for c in typed):
            return Page(rows=[], cursors=[], has_next=False)
        params["q"] = typed
        # A searchable custom field holding exactly what was typed (an order number) ranks above words.
        searchable = await forms.searchable_fields(session, target="case")
        by_field = ""
        for index, (_, document) in enumerate(_typed_field_values(searchable, typed, region)):
            params[f"typed_field_{index}"] = document
            by_field += f"""
                UNION ALL
                (SELECT id, {FIELD_MATCH_RANK} FROM cases
                 WHERE fields @> CAST(:typed_field_{index} AS jsonb) LIMIT {FIELD_CANDIDATES})"""
        matches = f"""
            SELECT case_id, round(max(rank) * 999999)::bigint AS rank FROM (
                SELECT m.case_id, ts_rank(m.vector, q.query) AS rank FROM q, case_matches m
                UNION ALL
                SELECT m.case_id, {CONTACT_WEIGHT} * ts_rank(m.vector, q.query) FROM q, contact_matches m{by_field}
            ) found GROUP BY case_id"""
        recent_matches = _recent_first("case", "case_search_vectors") + _recent_first(
            "contact", "contact_search_vectors"
        )
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
        WITH q AS (SELECT websearch_to_tsquery(casegraph_text_search_config(), :q) AS query),{recent_matches}
        r AS ({matches}),
        -- In relevance order the cases are read one by one down the ranked matches until the page
        -- is full, not all of them before sorting.
        ranked AS MATERIALIZED (SELECT * FROM r ORDER BY rank DESC, case_id),
        page AS (
            SELECT k.*, {rank} AS rank FROM ranked r JOIN cases k ON k.id = r.case_id
            WHERE {" AND ".join(conditions)}
            ORDER BY {rank} DESC, r.case_id LIMIT :limit
        )
        SELECT page.*, {snippet} AS snippet FROM page ORDER BY page.rank DESC, page.id
    """.replace("_escape_html(part)", "replace(replace(replace(part, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')")
    )
    if typed is None or reference:
        params.setdefault("q", "")
    rows = (await session.execute(statement, params)).all()
    hits = [CaseHit(case=row, rank=row.rank, by_reference=bool(reference), snippet=row.snippet) for row in rows]
    return Page.from_overfetch(hits, first, lambda hit: (hit.rank, hit.case.id))


def _recent_first(kind: str, full_index: str) -> str:
    """The `{kind}_matches` of a case search: up to CASE_CANDIDATES rows of the recent index that
    match, and the full index's too when fewer than ENOUGH_RECENT do."""
    return f"""
        recent_{kind}_matches AS MATERIALIZED (
            SELECT v.case_id, v.vector FROM q, recent_{full_index} v
            WHERE v.vector @@ q.query LIMIT {CASE_CANDIDATES}),
        {kind}_matches AS (
            SELECT * FROM recent_{kind}_matches
            UNION ALL
            -- The recent ones match here again: a case's rank is its best match, so that is harmless.
            (SELECT v.case_id, v.vector FROM q, {full_index} v
             WHERE (SELECT count(*) FROM recent_{kind}_matches) < {ENOUGH_RECENT} AND v.vector @@ q.query
             LIMIT {CASE_CANDIDATES})),"""


async def _trim_recent(session: AsyncSession, index: str, key: str, keep: int) -> int:
    statement = (
        f"DELETE FROM {index} WHERE {key} < (SELECT {key} FROM {index} ORDER BY {key} DESC OFFSET :keep LIMIT 1)"
    )
    return (await session.execute(text(statement), {"keep": keep - 1})).rowcount


async def trim_recent_contacts(session: AsyncSession, *, keep: int | None = None) -> int:
    """Keep the newest `keep` (RECENT_CONTACTS) contacts in the recent index; returns how many became old."""
    return await _trim_recent(
        session, "recent_contact_search_vectors", "contact_id", RECENT_CONTACTS if keep is None else keep
    )


async def trim_recent_cases(session: AsyncSession, *, keep: int | None = None) -> int:
    """Keep the newest `keep` (RECENT_CASES) cases in the recent index; returns how many became old."""
    return await _trim_recent(session, "recent_case_search_vectors", "case_id", RECENT_CASES if keep is None else keep)


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


# `%` on the folded names uses their trigram index (its threshold is SIMILAR_NAME).
_SIMILAR_NAMES = text("""
SELECT c.id, similarity(casegraph_fold(c.name), casegraph_fold(:name)) AS similarity FROM customers c
WHERE casegraph_fold(c.name) % casegraph_fold(:name) AND c.id <> :exclude AND c.status = ANY(:statuses)
ORDER BY similarity DESC, c.id LIMIT :limit
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
    similar name (adds to it; counts alone only with `similar_names_alone`). Best first, with reasons.

    A customer sharing an identifier always has its name compared, however many others have a
    similar name: a similar name with a shared identifier is the strongest sign there is."""
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
    similar: dict[int, float] = {}
    if name and name.strip():
        if scores:
            for other_id, similarity in (await name_similarities(session, list(scores), name)).items():
                if similarity >= SIMILAR_NAME:
                    similar[other_id] = similarity
        if similar_names_alone:
            for other_id, similarity in await session.execute(_SIMILAR_NAMES, {**params, "name": name, "limit": limit}):
                similar.setdefault(other_id, similarity)
    for other_id, similarity in similar.items():
        scores[other_id] = scores.get(other_id, 0.0) + 0.4 * similarity
        reasons.setdefault(other_id, []).append(f"similar name ({similarity:.2f})")
    ranked = sorted(scores, key=lambda i: (-scores[i], i))[:limit]
    return [DuplicateCandidate(customer_id=i, score=round(min(scores[i], 1.0), 3), reasons=reasons[i]) for i in ranked]


# ---- filters as documents: what a caller passes and what a saved screen stores ----------------------

# The filters each search takes, by their name in GraphQL and in the configuration file.
CUSTOMER_FILTERS = (
    "status",
    "createdAfter",
    "createdBefore",
    "createdWithinDays",
    "lastActivityAfter",
    "lastActivityBefore",
    "lastActivityWithinDays",
    "fields",
)
CASE_FILTERS = (
    "status",
    "priority",
    "assigneeId",
    "customerId",
    "poolId",
    "createdAfter",
    "createdBefore",
    "createdWithinDays",
    "updatedAfter",
    "updatedBefore",
    "updatedWithinDays",
    "includeArchived",
    "fields",
)
# A saved screen's "the last N days" reaches back at most ten years.
MAX_WITHIN_DAYS = 3650


def _mapping(document: Any, allowed: tuple[str, ...], field: str) -> dict[str, Any]:
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise UserError(ErrorCode.INVALID, "filters are a mapping", field)
    for key in document:
        if key not in allowed:
            raise UserError(
                ErrorCode.UNKNOWN_FILTER, f"no filter {key!r}; there are {', '.join(allowed)}", f"{field}.{key}"
            )
    return document


def _moment(value: Any, field: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise UserError(ErrorCode.INVALID, "a date and time in ISO 8601 (2026-01-31T09:00:00Z)", field) from None
    if moment.tzinfo is None:
        raise UserError(ErrorCode.INVALID, "a date and time needs its UTC offset", field)
    return moment


def _since(after: datetime | None, within_days: Any, field: str) -> datetime | None:
    """The later of an absolute lower bound and "within the last N days" (counted from now)."""
    if within_days is None:
        return after
    if isinstance(within_days, bool) or not isinstance(within_days, int) or not 1 <= within_days <= MAX_WITHIN_DAYS:
        raise UserError(ErrorCode.INVALID, f"a number of days from 1 to {MAX_WITHIN_DAYS}", field)
    since = datetime.now(UTC) - timedelta(days=within_days)
    return since if after is None else max(after, since)


def _words(value: Any, allowed: tuple[str, ...], field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise UserError(ErrorCode.INVALID, "a list of values", field)
    words = tuple(str(v).lower() for v in value)
    _check_values(words, allowed, field)
    return words


def _db_id(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not limits.is_int64(value):
        raise UserError(ErrorCode.INVALID, "an id", field)
    return value


def _field_filters(value: Any, field: str) -> tuple[FieldFilter, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise UserError(ErrorCode.INVALID, "a list of {key, value}", field)
    limits.check_count(value, field, MAX_FIELD_FILTERS)
    found: list[FieldFilter] = []
    for index, item in enumerate(value):
        where = f"{field}.{index}"
        if not isinstance(item, dict) or set(item) - {"key", "value"}:
            raise UserError(ErrorCode.INVALID, "a custom field filter is {key, value}", where)
        if not isinstance(item.get("key"), str) or not item["key"]:
            raise UserError(ErrorCode.REQUIRED, "which custom field", f"{where}.key")
        if item.get("value") is None or (isinstance(item["value"], str) and not item["value"].strip()):
            raise UserError(ErrorCode.REQUIRED, "the value to look for", f"{where}.value")
        found.append(FieldFilter(item["key"], item["value"]))
    return tuple(found)


def customer_filters(document: Any, field: str = "filters") -> CustomerFilters:
    """A filters document (GraphQL's names, values as in JSON) as the search takes it."""
    d = _mapping(document, CUSTOMER_FILTERS, field)
    return CustomerFilters(
        statuses=_words(d.get("status"), SEARCHABLE_CUSTOMER_STATUSES, f"{field}.status") or ("active",),
        created_after=_since(
            _moment(d.get("createdAfter"), f"{field}.createdAfter"),
            d.get("createdWithinDays"),
            f"{field}.createdWithinDays",
        ),
        created_before=_moment(d.get("createdBefore"), f"{field}.createdBefore"),
        active_after=_since(
            _moment(d.get("lastActivityAfter"), f"{field}.lastActivityAfter"),
            d.get("lastActivityWithinDays"),
            f"{field}.lastActivityWithinDays",
        ),
        active_before=_moment(d.get("lastActivityBefore"), f"{field}.lastActivityBefore"),
        fields=_field_filters(d.get("fields"), f"{field}.fields"),
    )


def case_filters(document: Any, field: str = "filters") -> CaseFilters:
    """A filters document (GraphQL's names, database ids, values as in JSON) as the search takes it."""
    d = _mapping(document, CASE_FILTERS, field)
    include_archived = d.get("includeArchived", False)
    if not isinstance(include_archived, bool):
        raise UserError(ErrorCode.INVALID, "true or false", f"{field}.includeArchived")
    return CaseFilters(
        statuses=_words(d.get("status"), CASE_STATUSES, f"{field}.status"),
        priorities=_words(d.get("priority"), PRIORITIES, f"{field}.priority"),
        assignee_id=_db_id(d.get("assigneeId"), f"{field}.assigneeId"),
        customer_id=_db_id(d.get("customerId"), f"{field}.customerId"),
        pool_id=_db_id(d.get("poolId"), f"{field}.poolId"),
        created_after=_since(
            _moment(d.get("createdAfter"), f"{field}.createdAfter"),
            d.get("createdWithinDays"),
            f"{field}.createdWithinDays",
        ),
        created_before=_moment(d.get("createdBefore"), f"{field}.createdBefore"),
        updated_after=_since(
            _moment(d.get("updatedAfter"), f"{field}.updatedAfter"),
            d.get("updatedWithinDays"),
            f"{field}.updatedWithinDays",
        ),
        updated_before=_moment(d.get("updatedBefore"), f"{field}.updatedBefore"),
        include_archived=include_archived,
        fields=_field_filters(d.get("fields"), f"{field}.fields"),
    )


def merged_filters(stored: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """A screen's filters with the caller's on top: a filter given replaces the screen's, custom
    field filters are combined by key (the caller's value for a key the screen also filters)."""
    merged = {**stored, **given}
    if "fields" in stored and "fields" in given:
        by_key = {f.get("key"): f for f in stored["fields"] or [] if isinstance(f, dict)}
        by_key.update({f.get("key"): f for f in given["fields"] or [] if isinstance(f, dict)})
        merged["fields"] = list(by_key.values())
    return merged


# ---- saved search screens ---------------------------------------------------------------------------

# What a result list can show (a UI's columns); custom fields as `fields.<key>` of the target's forms.
CUSTOMER_COLUMNS = (
    "number",
    "name",
    "status",
    "identifiers",
    "createdAt",
    "lastActivityAt",
    "openCases",
    "latestContact",
    "matchedBy",
)
CASE_COLUMNS = (
    "reference",
    "subject",
    "status",
    "reasonCode",
    "priority",
    "severity",
    "pool",
    "assignee",
    "customers",
    "template",
    "createdAt",
    "updatedAt",
    "snippet",
)
MAX_COLUMNS = 50


@dataclass(frozen=True)
class ScreenInput:
    """A screen's definition as given; its filters a document as `customer_filters`/`case_filters` read."""

    name: str
    target: str
    group_id: int | None = None
    description: str | None = None
    query: str | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    sort: str = "relevance"
    position: int | None = None


def _screen_snapshot(screen: SearchScreen) -> dict[str, Any]:
    return {
        "name": screen.name,
        "description": screen.description,
        "target": screen.target,
        "groupId": screen.group_id,
        "query": screen.query,
        "filters": screen.filters,
        "columns": screen.columns,
        "sort": screen.sort,
        "position": screen.position,
    }


async def _checked_columns(session: AsyncSession, target: str, columns: Any) -> list[str]:
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise UserError(ErrorCode.INVALID, "columns are a list of names", "columns")
    limits.check_count(columns, "columns", MAX_COLUMNS)
    known = CUSTOMER_COLUMNS if target == "customer" else CASE_COLUMNS
    form = FormField.template_id.is_(None) if target == "customer" else FormField.template_id.is_not(None)
    keys = set(await session.scalars(select(FormField.key).where(form))) if columns else set()
    seen: set[str] = set()
    for index, column in enumerate(columns):
        where = f"columns.{index}"
        if column in seen:
            raise UserError(ErrorCode.DUPLICATE, f"the column {column!r} appears twice", where)
        seen.add(column)
        custom = column.removeprefix("fields.") if column.startswith("fields.") else None
        if custom is None and column not in known:
            raise UserError(
                ErrorCode.UNKNOWN_COLUMN,
                f"no {target} column {column!r}; there are {', '.join(known)} and fields.<key>",
                where,
            )
        if custom is not None and custom not in keys:
            raise UserError(ErrorCode.UNKNOWN_COLUMN, f"no {target} form has a field {custom!r}", where)
    return list(columns)


async def _checked_screen(session: AsyncSession, given: ScreenInput, *, exclude_id: int | None) -> ScreenInput:
    """The definition as it is to be stored, or the first thing wrong with it (named by its place)."""
    if given.target not in SEARCH_TARGETS:
        raise UserError(ErrorCode.INVALID, f"a screen searches {' or '.join(SEARCH_TARGETS)}", "target")
    if not isinstance(given.name, str) or not given.name.strip():
        raise UserError(ErrorCode.REQUIRED, "a screen needs a name", "name")
    limits.check_text(given.name, "name", limits.NAME)
    limits.check_text(given.description, "description", limits.HELP_TEXT)
    limits.check_text(given.query, "query", limits.SEARCH)
    if given.group_id is not None and await session.get(UserGroup, given.group_id) is None:
        raise not_found("group", "groupId")
    if given.sort not in SEARCH_SORTS:
        raise UserError(ErrorCode.INVALID, f"sort is one of {', '.join(SEARCH_SORTS)}", "sort")
    filters = given.filters or {}
    checked = customer_filters(filters) if given.target == "customer" else case_filters(filters)
    if given.target == "case":
        if "customerId" in filters:
            raise UserError(ErrorCode.UNKNOWN_FILTER, "a screen lists cases of any customer", "filters.customerId")
        if checked.pool_id is not None and await session.get(Pool, checked.pool_id) is None:
            raise not_found("pool", "filters.poolId")
        if checked.assignee_id is not None and await session.get(User, checked.assignee_id) is None:
            raise not_found("user", "filters.assigneeId")
    if checked.fields:
        # Each key must be searchable and each value one it can hold, as when the screen is run.
        await field_conditions(
            session, target=given.target, filters=checked.fields, alias="x", region=get_settings().default_phone_region
        )
    # Without a query, the caller types one when running the screen (or it filters by a custom field).
    query = (given.query or "").strip() or None
    name = given.name.strip()
    clash = select(SearchScreen.id).where(
        SearchScreen.target == given.target,
        SearchScreen.name == name,
        SearchScreen.group_id.is_(None) if given.group_id is None else SearchScreen.group_id == given.group_id,
    )
    if exclude_id is not None:
        clash = clash.where(SearchScreen.id != exclude_id)
    if await session.scalar(clash) is not None:
        raise UserError(ErrorCode.DUPLICATE, f"the {given.target} screen {name!r} exists for this group", "name")
    return replace(
        given,
        name=name,
        query=query,
        filters={k: v for k, v in filters.items() if v is not None},
        columns=await _checked_columns(session, given.target, given.columns),
    )


async def create_screen(session: AsyncSession, *, actor: Actor, screen: ScreenInput) -> SearchScreen:
    """Save a search screen for a group, or for everyone (no group)."""
    checked = await _checked_screen(session, screen, exclude_id=None)
    position = checked.position
    if position is None:
        position = await session.scalar(
            select(func.coalesce(func.max(SearchScreen.position) + 1, 0)).where(SearchScreen.target == checked.target)
        )
    row = SearchScreen(
        name=checked.name,
        description=checked.description,
        target=checked.target,
        group_id=checked.group_id,
        query=checked.query,
        filters=checked.filters,
        columns=checked.columns,
        sort=checked.sort,
        position=position,
    )
    session.add(row)
    await session.flush()
    await session.refresh(row)
    audit.record(
        session,
        actor=actor,
        action="search_screen.create",
        entity_type="search_screen",
        entity_id=row.id,
        after=_screen_snapshot(row),
    )
    return row


async def update_screen(
    session: AsyncSession, *, actor: Actor, screen_id: int, changes: dict[str, Any]
) -> SearchScreen:
    """Change a screen: `changes` holds the ScreenInput fields given (the others stay)."""
    row = await session.get(SearchScreen, screen_id, with_for_update=True)
    if row is None:
        raise not_found("search screen", "id")
    before = _screen_snapshot(row)
    current = ScreenInput(
        name=row.name,
        target=row.target,
        group_id=row.group_id,
        description=row.description,
        query=row.query,
        filters=row.filters,
        columns=row.columns,
        sort=row.sort,
        position=row.position,
    )
    checked = await _checked_screen(session, replace(current, **changes), exclude_id=screen_id)
    for name in ("name", "target", "group_id", "description", "query", "filters", "columns", "sort", "position"):
        setattr(row, name, getattr(checked, name))
    await session.flush()
    await session.refresh(row)
    audit.record(
        session,
        actor=actor,
        action="search_screen.update",
        entity_type="search_screen",
        entity_id=screen_id,
        before=before,
        after=_screen_snapshot(row),
    )
    return row


async def delete_screen(session: AsyncSession, *, actor: Actor, screen_id: int) -> None:
    row = await session.get(SearchScreen, screen_id)
    if row is None:
        raise not_found("search screen", "id")
    before = _screen_snapshot(row)
    await session.delete(row)
    await session.flush()
    audit.record(
        session,
        actor=actor,
        action="search_screen.delete",
        entity_type="search_screen",
        entity_id=screen_id,
        before=before,
    )


def _visible_to(actor: Actor) -> Any:
    """Agents see the screens of their groups and everyone's; supervisors and admins see all."""
    if actor.has_role("supervisor"):
        return true()
    mine = select(GroupMember.group_id).where(GroupMember.user_id == actor.user_id)
    return or_(SearchScreen.group_id.is_(None), SearchScreen.group_id.in_(mine))


async def list_screens(
    session: AsyncSession, *, actor: Actor, target: str | None = None, group_id: int | None = None
) -> list[SearchScreen]:
    """The screens the actor may run, everyone's and their groups', in order; of one target or group if asked."""
    query = select(SearchScreen).where(_visible_to(actor))
    if target is not None:
        query = query.where(SearchScreen.target == target)
    if group_id is not None:
        query = query.where(SearchScreen.group_id == group_id)
    return list(await session.scalars(query.order_by(SearchScreen.position, SearchScreen.name, SearchScreen.id)))


async def visible_screen(session: AsyncSession, *, actor: Actor, screen_id: int) -> SearchScreen | None:
    """A screen the actor may run; None for another group's (it is not theirs to see)."""
    return await session.scalar(select(SearchScreen).where(SearchScreen.id == screen_id, _visible_to(actor)))


@dataclass(frozen=True)
class SearchRequest:
    """What a search was asked: a query, a filters document (`customer_filters`/`case_filters`), a sort."""

    query: str | None
    filters: dict[str, Any]
    sort: str | None


async def search_request(
    session: AsyncSession, *, actor: Actor, target: str, screen_id: int | None, request: SearchRequest
) -> SearchRequest:
    """The search to run: the caller's query, filters and sort over those of the screen it runs, if any
    (a query or sort left out is the screen's; filters as `merged_filters`)."""
    if screen_id is None:
        return request
    screen = await visible_screen(session, actor=actor, screen_id=screen_id)
    if screen is None:
        raise not_found("search screen", "screenId")
    if screen.target != target:
        raise UserError(ErrorCode.INVALID, f"this screen searches {screen.target}s", "screenId")
    return SearchRequest(
        query=request.query if request.query is not None and request.query.strip() else screen.query,
        filters=merged_filters(screen.filters, request.filters),
        sort=request.sort or screen.sort,
    )


# ---- the searchScreens section of the configuration file ------------------------------------------

SCREEN_SECTION = "searchScreens"


async def export_screens(session: AsyncSession) -> dict[str, Any]:
    """The screens as plain data, naming their group, pool and assignee."""
    groups = dict((await session.execute(select(UserGroup.id, UserGroup.name))).all())
    pools = dict((await session.execute(select(Pool.id, Pool.name))).all())
    users = dict((await session.execute(select(User.id, User.name))).all())
    documents = []
    for screen in await list_screens(session, actor=SYSTEM):
        filters = dict(screen.filters)
        if "poolId" in filters:
            filters["pool"] = pools[filters.pop("poolId")]
        if "assigneeId" in filters:
            filters["assignee"] = users[filters.pop("assigneeId")]
        document: dict[str, Any] = {"name": screen.name, "target": screen.target}
        if screen.group_id is not None:
            document["group"] = groups[screen.group_id]
        for key, value in (
            ("description", screen.description),
            ("query", screen.query),
            ("filters", filters),
            ("columns", screen.columns),
        ):
            if value:
                document[key] = value
        document["sort"] = screen.sort
        documents.append(document)
    return {SCREEN_SECTION: documents}


async def _screen_from_document(session: AsyncSession, item: Any, position: int) -> ScreenInput:
    if not isinstance(item, dict):
        raise UserError(ErrorCode.INVALID, "a screen is a mapping", None)
    unknown = set(item) - {"name", "target", "group", "description", "query", "filters", "columns", "sort"}
    if unknown:
        raise UserError(ErrorCode.INVALID, f"unknown keys: {', '.join(sorted(map(str, unknown)))}", None)
    filters = item.get("filters") or {}
    if not isinstance(filters, dict):
        raise UserError(ErrorCode.INVALID, "filters are a mapping", "filters")
    filters = dict(filters)
    for name, key, model in (("pool", "poolId", Pool), ("assignee", "assigneeId", User)):
        if name in filters:
            found = await session.scalar(select(model.id).where(model.name == str(filters[name])))
            if found is None:
                raise UserError(ErrorCode.NOT_FOUND, f"no {name} named {filters[name]!r}", f"filters.{name}")
            filters[key] = found
            del filters[name]
    group_id = None
    if item.get("group") is not None:
        group_id = await session.scalar(select(UserGroup.id).where(UserGroup.name == str(item["group"])))
        if group_id is None:
            raise UserError(ErrorCode.NOT_FOUND, f"no group named {item['group']!r}", "group")
    return ScreenInput(
        name=item.get("name"),
        target=str(item.get("target", "")).lower(),
        group_id=group_id,
        description=item.get("description"),
        query=item.get("query"),
        filters=filters,
        columns=item.get("columns") or [],
        sort=str(item.get("sort", "relevance")).lower(),
        position=position,
    )


async def import_screens(session: AsyncSession, data: dict[str, Any], actor: Actor) -> dict[str, int]:
    """Make the screens those of the file (matched by group, target and name): every one is checked
    before any is written, so a refusal names the first bad screen and changes nothing."""
    items = data[SCREEN_SECTION] or []
    if not isinstance(items, list):
        raise UserError(ErrorCode.INVALID, f"{SCREEN_SECTION} must be a list", SCREEN_SECTION)
    existing = {(s.group_id, s.target, s.name): s for s in await list_screens(session, actor=SYSTEM)}
    planned: list[tuple[ScreenInput, SearchScreen | None]] = []
    seen: set[tuple[int | None, str, str]] = set()
    for index, item in enumerate(items):
        with errors_at(f"{SCREEN_SECTION}.{index}"):
            screen = await _screen_from_document(session, item, index)
            match = existing.get((screen.group_id, screen.target, (screen.name or "").strip()))
            checked = await _checked_screen(session, screen, exclude_id=match.id if match else None)
            key = (checked.group_id, checked.target, checked.name)
            if key in seen:
                raise UserError(ErrorCode.DUPLICATE, f"the screen {checked.name!r} appears twice", "name")
            seen.add(key)
            planned.append((checked, match))
    for key, screen in existing.items():
        if key not in seen:
            await delete_screen(session, actor=actor, screen_id=screen.id)
    for checked, match in planned:
        if match is None:
            await create_screen(session, actor=actor, screen=checked)
        else:
            await update_screen(session, actor=actor, screen_id=match.id, changes=_changes(checked))
    return {SCREEN_SECTION: len(planned)}


def _changes(screen: ScreenInput) -> dict[str, Any]:
    return {name: getattr(screen, name) for name in ScreenInput.__dataclass_fields__}


async def screen_target(session: AsyncSession, *, screen_id: int) -> str:
    """What a screen searches (its filters are read by that target's names); NOT_FOUND if there is none."""
    target = await session.scalar(select(SearchScreen.target).where(SearchScreen.id == screen_id))
    if target is None:
        raise not_found("search screen", "id")
    return target


async def check_pool_unused(session: AsyncSession, *, pool_id: int) -> None:
    """A pool a screen filters by stays (the screen would silently list every pool's cases)."""
    screen = await session.scalar(
        select(SearchScreen.name).where(SearchScreen.filters.contains({"poolId": pool_id})).limit(1)
    )
    if screen is not None:
        raise UserError(ErrorCode.IN_USE, f"the search screen {screen!r} filters by this pool", "id")

"""The recognition engine: reads only. Case rules first, in order (a recognised case gives its
primary customer), then customer rules; the first rule with exactly one match wins. Several
customers sharing an identifier give candidates, never a guess. Every rule tried is traced."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import regex
from sqlalchemy import BigInteger, bindparam, cast, exists, func, literal, or_, select, text, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.errors import UserError
from app.identifiers import identifier_holders, name_similarities, normalize_identifier
from app.models import (
    OPEN_CASE_STATUSES,
    Case,
    CaseCustomer,
    Contact,
    Customer,
    CustomerIdentifier,
    RecognitionConfig,
    User,
)
from app.recognition.config import check_rule_config
from app.recognition.connector import ConnectorUnavailable, LookupConnectors, connectors
from app.recognition.patterns import PatternTimeout, find_all
from app.recognition.view import ContactView, address_of, display_name

# More matches than this are reported as "more than N" rather than listed.
MAX_CANDIDATES = 20
_MESSAGE_ID = regex.compile(r"<[^<>\s]+>")


@dataclass
class RuleSet:
    """The enabled recognition, promotion and routing rules and the per-channel no-match policies."""

    rules: list[dict[str, Any]]
    promotions: list[dict[str, Any]]
    policies: dict[str, dict[str, Any]]
    routing: list[dict[str, Any]]
    # Each rule's configuration as checked, or the error it gives: checked once, not per contact.
    _checked: dict[int, dict[str, Any] | UserError] = field(default_factory=dict, repr=False)

    def for_channel(self, rules: list[dict[str, Any]], channel: str) -> list[dict[str, Any]]:
        return [r for r in rules if not r["channels"] or channel in r["channels"]]

    def config_of(self, rule: dict[str, Any]) -> dict[str, Any] | UserError:
        """A recognition rule's configuration with its defaults, or the UserError it is refused with."""
        if rule["id"] not in self._checked:
            try:
                self._checked[rule["id"]] = check_rule_config(rule["kind"], rule["config"])
            except UserError as error:
                self._checked[rule["id"]] = error
        return self._checked[rule["id"]]


_RULE_SET = text(
    """
    SELECT
      (SELECT version FROM recognition_config),
      (SELECT coalesce(json_agg(r ORDER BY r.position, r.id), '[]') FROM recognition_rules r WHERE r.enabled),
      (SELECT coalesce(json_agg(p ORDER BY p.position, p.id), '[]') FROM promotion_rules p WHERE p.enabled),
      (SELECT coalesce(json_agg(n), '[]') FROM no_match_policies n),
      (SELECT coalesce(json_agg(r ORDER BY r.position, r.id), '[]') FROM routing_rules r WHERE r.enabled)
    """
)
CONFIG_VERSION = select(RecognitionConfig.version)
# The rule set as of one configuration version (read in the same statement as the rules), per process.
_cached: dict[int, RuleSet] = {}


async def load_rule_set(session: AsyncSession, *, version: int | None = None) -> RuleSet:
    """The configuration: from memory when `version` (read in this transaction) is the cached one,
    else from the database in one round trip. Either way an edit applies to the next contact."""
    if version is not None and version in _cached:
        return _cached[version]
    loaded_version, rules, promotions, policies, routing = (await (await session.connection()).execute(_RULE_SET)).one()
    decode = lambda v: orjson.loads(v) if isinstance(v, str | bytes) else v  # noqa: E731
    rule_set = RuleSet(
        rules=decode(rules),
        promotions=decode(promotions),
        policies={p["channel"]: p for p in decode(policies)},
        routing=decode(routing),
    )
    if loaded_version is not None:
        _cached.clear()
        _cached[loaded_version] = rule_set
    return rule_set


@dataclass
class Recognition:
    customer_id: int | None = None
    case_id: int | None = None
    candidates: list[int] = field(default_factory=list)
    matched_rule: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    # Identifiers the rules read from the contact (normalised), for a new or partial profile.
    observed_identifiers: list[tuple[str, str]] = field(default_factory=list)
    name_hint: str | None = None
    lookup: dict[str, Any] = field(default_factory=dict)
    elapsed_ms: float = 0.0

    @property
    def outcome(self) -> str:
        if self.case_id is not None or self.customer_id is not None:
            return "matched"
        return "ambiguous" if self.candidates else "no_match"


@dataclass
class Step:
    """One rule's result: the ids it matched, and the trace entry explaining it."""

    ids: list[int]
    outcome: str
    reason: str
    looked_at: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


async def recognize(
    session: AsyncSession,
    *,
    view: ContactView,
    rule_set: RuleSet,
    region: str,
    lookups: LookupConnectors = connectors,
    release_during_lookups: bool = False,
    batch: Any = None,
) -> Recognition:
    """Find the contact's case and customer by the rules; writes nothing. With
    `release_during_lookups` (a reading session only), the session gives its connection back to
    the pool while a connector waits for the back office. With `batch` (a `BatchReads` read ahead
    for a batch of contacts), the lookups are answered from it where it holds the answer."""
    started = time.perf_counter()
    result = Recognition(name_hint=display_name(view.counterpart))
    rules = rule_set.for_channel(rule_set.rules, view.channel)
    context = _Context(
        rule_set=rule_set,
        session=session,
        conn=await session.connection(),
        view=view,
        region=region,
        lookups=lookups,
        result=result,
        release_during_lookups=release_during_lookups,
    )
    context.reads = batch.reads_for(context) if batch is not None else Reads(context)

    for rule in rules:
        if rule["target"] != "case" or rule["kind"] == "open_case_of_customer":
            continue
        step = await context.run(rule)
        if len(step.ids) == 1:
            result.case_id = step.ids[0]
            result.matched_rule = rule["name"]
            result.customer_id = await context.reads.primary_active_customer(result.case_id)
            break

    if result.case_id is None:
        candidates: dict[int, None] = {}
        for rule in rules:
            if rule["target"] != "customer":
                continue
            step = await context.run(rule)
            if len(step.ids) == 1:
                result.customer_id = step.ids[0]
                result.matched_rule = rule["name"]
                candidates.clear()
                break
            if len(step.ids) > 1:
                candidates.update(dict.fromkeys(step.ids))
        result.candidates = list(candidates)
        if len(result.candidates) > 1 and result.name_hint:
            # The profile most like the sender's name first, compared as likely duplicates are.
            result.candidates = await context.reads.by_name(result.candidates, result.name_hint)

        if result.customer_id is not None:
            for rule in rules:
                if rule["kind"] != "open_case_of_customer":
                    continue
                step = await context.run(rule)
                if len(step.ids) == 1:
                    result.case_id = step.ids[0]
                    result.matched_rule = f"{result.matched_rule}, {rule['name']}"
                    break

    result.elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
    return result


@dataclass
class _Context:
    rule_set: RuleSet
    session: AsyncSession
    conn: AsyncConnection
    view: ContactView
    region: str
    lookups: LookupConnectors
    result: Recognition
    release_during_lookups: bool = False
    reads: Reads = None  # type: ignore[assignment]  # set by recognize

    async def run(self, rule: dict[str, Any]) -> Step:
        config = self.rule_set.config_of(rule)
        if isinstance(config, UserError):
            step = Step([], "error", f"invalid configuration: {config.message}")
        else:
            try:
                step = await _KINDS[rule["kind"]](self, config)
            except PatternTimeout:
                step = Step([], "error", "the pattern took too long to match and was abandoned")
            except ConnectorUnavailable as error:
                step = Step(
                    [],
                    "unavailable",
                    f"lookup connector unavailable: {error}; skipped",
                    extra={"failure": error.failure},
                )
        entry = {
            "rule": rule["name"],
            "kind": rule["kind"],
            "target": rule["target"],
            "outcome": step.outcome,
            "reason": step.reason,
        }
        if step.looked_at is not None:
            entry["lookedAt"] = step.looked_at
        if step.ids:
            entry["matches"] = step.ids
        entry.update(step.extra)
        self.result.steps.append(entry)
        return step

    async def consult(self, config: dict[str, Any], body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Call a connector; raises ConnectorUnavailable."""
        if not self.release_during_lookups:
            return await self.lookups.call(config, body)
        await self.session.rollback()  # reads only: ends the snapshot, the pool gets the connection back
        try:
            return await self.lookups.call(config, body)
        finally:
            self.conn = await self.session.connection()

    async def unknown_sender(self, case_id: int, what: str, looked_at: Any, key: str) -> Step | None:
        """A refusal when the sender is neither an identifier (email, phone) of one of the case's
        customers nor an agent: a stranger quoting a reference or a thread stays off the case."""
        sender = (self.view.from_address or "").strip()
        pairs = sender_pairs(self.view, self.region)
        if pairs and await self.reads.sender_belongs_to_case(case_id, pairs):
            return None
        return Step(
            [],
            "refused",
            f"{what} points at case {case_id} but the sender {sender.lower() or '(none)'} is neither "
            "an identifier of one of its customers nor an agent",
            looked_at,
            {key: case_id},
        )

    def observe(self, kind: str, value: str) -> None:
        if (kind, value) not in self.result.observed_identifiers:
            self.result.observed_identifiers.append((kind, value))

    # Case rules

    async def reference_in_text(self, config: dict[str, Any]) -> Step:
        references = references_in(self.view, config)
        if not references:
            return Step([], "no_match", f"no reference found in {' or '.join(config['fields'])}")
        rows = await self.reads.cases_by_reference(references)
        ids = list(
            dict.fromkeys(
                [row.id if row.merged_into_id is None else await self.reads.live_case(row.id) for row in rows]
            )
        )
        found = [row.reference for row in rows]
        if not ids:
            return Step([], "no_match", f"no case has reference {', '.join(references)}", references)
        if len(ids) > 1:
            return Step([], "ambiguous", f"several cases referenced: {', '.join(found)}", references)
        if config["require_known_sender"]:
            refusal = await self.unknown_sender(ids[0], f"the reference {found[0]}", references, "referencedCaseId")
            if refusal is not None:
                return refusal
        return Step(ids, "match", f"reference {found[0]} found", references)

    async def thread(self, config: dict[str, Any]) -> Step:
        message_ids, forms = message_id_forms(self.view)
        if not message_ids:
            return Step([], "no_match", "no In-Reply-To or References header")
        case_id = await self.reads.thread_case(forms, self.view.contact_id or 0)
        if case_id is None:
            return Step([], "no_match", "no stored message is referenced by this thread", message_ids)
        case_id = await self.reads.live_case(case_id)
        if config["require_known_sender"]:
            refusal = await self.unknown_sender(case_id, "the thread", message_ids, "threadCaseId")
            if refusal is not None:
                return refusal
        return Step([case_id], "match", "replies to a message stored on the case", message_ids)

    async def external_reference(self, config: dict[str, Any]) -> Step:
        if "path" in config:
            value = self.view.value_at(config["path"])
            values = [value] if value not in (None, "") and not isinstance(value, dict | list) else []
        else:
            values = []
            for name in config["fields"]:
                values += [v.strip() for v in find_all(config["pattern"], getattr(self.view, name) or "") if v.strip()]
            values = list(dict.fromkeys(values))[:10]
        if not values:
            return Step([], "no_match", "no external reference found")
        field_name = config["case_field"]
        ids = list(
            await self.session.scalars(
                select(Case.id)
                .where(
                    or_(
                        *[
                            Case.fields.op("@>")(cast(literal(orjson.dumps({field_name: v}).decode()), JSONB))
                            for v in values
                        ]
                    ),
                    Case.merged_into_id.is_(None),
                    Case.archived_at.is_(None),
                )
                .limit(MAX_CANDIDATES + 1)
            )
        )
        if not ids and "connector" in config:
            answer, cached = await self.consult(
                config["connector"], {"reference": values[0], "field": field_name, "channel": self.view.channel}
            )
            reference = answer.get("caseReference")
            if isinstance(reference, str) and reference.strip():
                case = await self.session.scalar(select(Case.id).where(Case.reference == reference.strip().upper()))
                if case is not None:
                    return Step(
                        [case], "match", f"the back office maps {values[0]} to {reference}", values, {"cached": cached}
                    )
            return Step(
                [], "no_match", f"no case has {field_name} = {values[0]}, nor does the back office know it", values
            )
        if not ids:
            return Step([], "no_match", f"no case has {field_name} = {', '.join(map(str, values))}", values)
        if len(ids) > 1:
            return Step([], "ambiguous", f"several cases have {field_name} = {', '.join(map(str, values))}", values)
        return Step(ids, "match", f"the case's {field_name} is {values[0]}", values)

    async def open_case_of_customer(self, config: dict[str, Any]) -> Step:
        customer_id = self.result.customer_id
        touched = select(Contact.id).where(
            Contact.case_id == Case.id, Contact.occurred_at > func.now() - func.make_interval(0, 0, 0, config["days"])
        )
        if config["same_channel"]:
            touched = touched.where(Contact.channel == self.view.channel)
        ids = list(
            await self.session.scalars(
                select(Case.id)
                .join(CaseCustomer, CaseCustomer.case_id == Case.id)
                .where(
                    CaseCustomer.customer_id == customer_id,
                    Case.status.in_(OPEN_CASE_STATUSES),
                    Case.merged_into_id.is_(None),
                    Case.archived_at.is_(None),
                    touched.exists(),
                )
                .limit(2)
            )
        )
        scope = f"within {config['days']} days" + (f" on {self.view.channel}" if config["same_channel"] else "")
        if not ids:
            return Step([], "no_match", f"the customer has no open case touched {scope}")
        if len(ids) > 1:
            return Step([], "ambiguous", f"the customer has several open cases touched {scope}")
        return Step(ids, "match", f"the customer's only open case touched {scope}")

    # Customer rules

    async def identifier(self, config: dict[str, Any]) -> Step:
        kind = config["kind"]
        values, refused = identifier_values(self.view, config, self.region)
        for value in values:
            self.observe(kind, value)
        if not values:
            reason = (
                f"no {kind} in {config['source']}" if not refused else f"{', '.join(refused)} is not a valid {kind}"
            )
            return Step([], "no_match", reason)
        ids = await self.reads.holders([(kind, v) for v in values])
        return _customer_step(ids, f"{kind} {', '.join(values)}", values)

    async def field_match(self, config: dict[str, Any]) -> Step:
        value = self.view.value_at(config["path"])
        if value in (None, "") or isinstance(value, dict | list):
            return Step([], "no_match", f"no value at {config['path']}")
        document = orjson.dumps({config["field"]: value}).decode()
        ids = list(
            await self.session.scalars(
                select(Customer.id)
                .where(Customer.fields.op("@>")(cast(literal(document), JSONB)), Customer.status == "active")
                .order_by(Customer.id)
                .limit(MAX_CANDIDATES + 1)
            )
        )
        return _customer_step(ids, f"field {config['field']} = {value}", value)

    async def lookup(self, config: dict[str, Any]) -> Step:
        view = self.view
        summary = {
            "channel": view.channel,
            "direction": view.direction,
            "from": view.counterpart,
            "to": view.to_addresses,
            "payload": view.payload,
        }
        answer, cached = await self.consult(config, summary)
        self.result.lookup = answer
        view.lookup = answer
        if isinstance(answer.get("name"), str) and answer["name"].strip():
            self.result.name_hint = answer["name"].strip()
        pairs: list[tuple[str, str]] = []
        offered = list(answer.get("identifiers") or []) if isinstance(answer.get("identifiers"), list) else []
        if answer.get("externalReference"):
            offered.append({"kind": "external_ref", "value": answer["externalReference"]})
        for item in offered:
            if not isinstance(item, dict):
                continue
            try:
                pair = (
                    str(item.get("kind")),
                    normalize_identifier(str(item.get("kind")), str(item.get("value") or ""), region=self.region),
                )
            except UserError:
                continue
            if pair not in pairs:
                pairs.append(pair)
                self.observe(*pair)
        if not pairs:
            return Step([], "no_match", "the back office does not know this contact", extra={"cached": cached})
        ids = await self.reads.holders(pairs)
        step = _customer_step(
            ids,
            "the back office's identifiers " + ", ".join(f"{k} {v}" for k, v in pairs),
            [f"{k}:{v}" for k, v in pairs],
        )
        step.extra["cached"] = cached
        return step


def sender_pairs(view: ContactView, region: str) -> list[tuple[str, str]]:
    """The sender's identifiers (email, phone) as the known-sender check reads them."""
    sender = (view.from_address or "").strip()
    pairs: list[tuple[str, str]] = []
    for kind in ("email", "phone"):
        try:
            pairs.append(
                (kind, normalize_identifier(kind, address_of(sender) if kind == "email" else sender, region=region))
            )
        except UserError:
            continue
    return pairs


def references_in(view: ContactView, config: dict[str, Any]) -> list[str]:
    """The case references a REFERENCE_IN_TEXT rule finds in a contact (up to 10); raises PatternTimeout."""
    key = (config["pattern"], tuple(config["fields"]))
    if key not in view.references:
        references: list[str] = []
        for name in config["fields"]:
            references += [r.strip().upper() for r in find_all(config["pattern"], getattr(view, name) or "")]
        view.references[key] = list(dict.fromkeys(r for r in references if r))[:10]
    return list(view.references[key])


def identifier_values(view: ContactView, config: dict[str, Any], region: str) -> tuple[list[str], list[str]]:
    """What an IDENTIFIER rule reads from a contact: the normalised values, and the raw ones refused."""
    kind = config["kind"]
    raw = view.value_at(config["source"])
    values: list[str] = []
    refused: list[str] = []
    for item in (str(v) for v in (raw if isinstance(raw, list) else [raw]) if v not in (None, "")):
        try:
            values.append(
                normalize_identifier(
                    kind, address_of(item) if kind == "email" else item, region=config.get("region", region)
                )
            )
        except UserError:
            refused.append(item)
    return values, refused


def message_id_forms(view: ContactView) -> tuple[list[str], list[str]]:
    """The Message-IDs a contact replies to (its In-Reply-To and References, the last 20), and the
    forms they are looked up in (with and without angle brackets)."""
    raw = " ".join(v for v in (view.header("In-Reply-To"), view.header("References")) if v)
    message_ids = _MESSAGE_ID.findall(raw) or ([raw.strip()] if raw.strip() else [])
    message_ids = message_ids[-20:]
    return message_ids, message_ids + [m.strip("<>") for m in message_ids]


class Reads:
    """Recognition's lookups, one query each. A batch of contacts answers most of them from what
    it read for all its contacts at once (`app.recognition.batch`)."""

    def __init__(self, context: _Context) -> None:
        self.context = context

    async def holders(self, pairs: list[tuple[str, str]]) -> list[int]:
        return await customers_with(self.context.conn, pairs)

    async def by_name(self, ids: list[int], name: str) -> list[int]:
        """`ids` by how similar their names are to `name`, the most similar first (ties keep their order)."""
        similarity = await name_similarities(self.context.conn, ids, name)
        return sorted(ids, key=lambda i: -similarity.get(i, 0.0))

    async def cases_by_reference(self, references: list[str]) -> list[Any]:
        return list((await self.context.conn.execute(_CASES_BY_REFERENCE, {"references": references})).all())

    async def thread_case(self, forms: list[str], own_id: int) -> int | None:
        return await self.context.conn.scalar(_THREAD_CASE, {"message_ids": forms, "own_id": own_id})

    async def live_case(self, case_id: int) -> int:
        return await _live_case(self.context.conn, case_id)

    async def primary_active_customer(self, case_id: int) -> int | None:
        return await _primary_active_customer(self.context.conn, case_id)

    async def sender_belongs_to_case(self, case_id: int, sender: list[tuple[str, str]]) -> bool:
        return await _sender_belongs_to_case(self.context.session, case_id, sender)


_KINDS = {
    "reference_in_text": _Context.reference_in_text,
    "thread": _Context.thread,
    "external_reference": _Context.external_reference,
    "open_case_of_customer": _Context.open_case_of_customer,
    "identifier": _Context.identifier,
    "field_match": _Context.field_match,
    "lookup": _Context.lookup,
}


def _customer_step(ids: list[int], what: str, looked_at: Any) -> Step:
    if not ids:
        return Step([], "no_match", f"no active customer has {what}", looked_at)
    if len(ids) == 1:
        return Step(ids, "match", f"one active customer has {what}", looked_at)
    many = f"more than {MAX_CANDIDATES}" if len(ids) > MAX_CANDIDATES else str(len(ids))
    return Step(
        ids[:MAX_CANDIDATES], "ambiguous", f"{many} active customers share {what}: an agent must choose", looked_at
    )


# Hot-path statements are built once: building and cache-keying a statement per call costs more
# than running it.
def _active_holders(condition):
    return identifier_holders(condition, statuses=("active",), limit=MAX_CANDIDATES + 1)


_HOLDERS_OF_ONE = _active_holders(
    (CustomerIdentifier.kind == bindparam("kind")) & (CustomerIdentifier.value == bindparam("value"))
)
# Archived cases have left the working set: they are not recognised (issue: archiving).
_CASES_BY_REFERENCE = select(Case.id, Case.reference, Case.merged_into_id).where(
    Case.reference.in_(bindparam("references", expanding=True)), Case.archived_at.is_(None)
)
_THREAD_CASE = (
    select(Contact.case_id)
    .join(Case, Case.id == Contact.case_id)
    .where(
        Contact.message_id.in_(bindparam("message_ids", expanding=True)),
        Contact.id != bindparam("own_id"),
        Case.archived_at.is_(None),
    )
    .order_by(Contact.occurred_at.desc(), Contact.id.desc())
    .limit(1)
)
_PRIMARY_ACTIVE_CUSTOMER = (
    select(CaseCustomer.customer_id)
    .join(Customer, Customer.id == CaseCustomer.customer_id)
    .where(CaseCustomer.case_id == bindparam("case_id"), CaseCustomer.is_primary, Customer.status == "active")
)


async def customers_with(conn: AsyncConnection, pairs: list[tuple[str, str]]) -> list[int]:
    """Active customers holding any of the identifiers: an index lookup on (kind, value)."""
    if len(pairs) == 1:
        return list(await conn.scalars(_HOLDERS_OF_ONE, {"kind": pairs[0][0], "value": pairs[0][1]}))
    return list(
        await conn.scalars(_active_holders(tuple_(CustomerIdentifier.kind, CustomerIdentifier.value).in_(pairs)))
    )


# A merged case's contacts go to the case it was merged into: the database function (migrations
# 0003, 0004) is the one implementation of tombstone following. The engine only reads, so it
# takes no lock (one held here could deadlock with the writes that follow in the ingest).
_LIVE_CASE = select(func.casegraph_live_case(bindparam("case_id", type_=BigInteger), False))


async def _live_case(conn: AsyncConnection, case_id: int) -> int:
    return await conn.scalar(_LIVE_CASE, {"case_id": case_id})


async def _primary_active_customer(conn: AsyncConnection, case_id: int) -> int | None:
    return await conn.scalar(_PRIMARY_ACTIVE_CUSTOMER, {"case_id": case_id})


async def _sender_belongs_to_case(session: AsyncSession, case_id: int, sender: list[tuple[str, str]]) -> bool:
    """Is one of the sender's identifiers held by a customer of the case, or its email an agent's?"""
    customer = exists().where(
        CaseCustomer.case_id == case_id,
        CustomerIdentifier.customer_id == CaseCustomer.customer_id,
        tuple_(CustomerIdentifier.kind, CustomerIdentifier.value).in_(sender),
    )
    emails = [value for kind, value in sender if kind == "email"]
    agent = exists().where(func.lower(User.email).in_(emails), User.active, User.role != "integrator")
    return bool(await session.scalar(select(or_(customer, agent))))

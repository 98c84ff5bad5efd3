"""What happens after recognition: the channel's no-match policy, and promotion of contact data
to the customer and the case (FILL_EMPTY, OVERWRITE, ADD_IDENTIFIER), each step recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.errors import UserError
from app.identifiers import normalize_identifier
from app.models import Case, Customer
from app.recognition.engine import Recognition, RuleSet, customers_with
from app.recognition.view import ContactView
from app.services import cases as case_service
from app.services import customers as customer_service

MAX_SUBJECT = 200
_LOCK_IDENTIFIER = select(func.pg_advisory_xact_lock(func.hashtextextended(bindparam("key"), 0)))


@dataclass
class Promotion:
    rule: str
    target: str
    field: str
    policy: str
    value: Any

    def entry(self, result: str, reason: str | None = None) -> dict[str, Any]:
        entry = {"rule": self.rule, "target": self.target, "field": self.field, "policy": self.policy.upper(), "value": self.value, "result": result}
        if reason:
            entry["reason"] = reason
        return entry


@dataclass
class Decision:
    """What the no-match policy decided for this contact."""

    create_customer: bool
    create_case: bool
    needs_review: bool
    reason: str
    policy: dict[str, Any]


@dataclass
class Applied:
    customer_id: int | None
    case_id: int | None
    customer_created: bool = False
    case_created: bool = False
    promoted: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] | None = None


def promotions_for(rule_set: RuleSet, view: ContactView) -> tuple[list[Promotion], list[dict[str, Any]]]:
    """The promotion rules' values read from this contact; rules with nothing to read are traced as skipped."""
    found: list[Promotion] = []
    skipped: list[dict[str, Any]] = []
    for rule in rule_set.for_channel(rule_set.promotions, view.channel):
        value = view.value_at(rule["source"])
        promotion = Promotion(rule["name"], rule["target"], rule["field"], rule["policy"], value)
        if value in (None, "", [], {}):
            skipped.append(promotion.entry("skipped", f"nothing at {rule['source']}"))
        else:
            found.append(promotion)
    return found, skipped


def decide(recognition: Recognition, rule_set: RuleSet, channel: str) -> Decision:
    policy = rule_set.policies.get(channel) or {"channel": channel, "create_customer": False, "create_case": False, "flag_for_review": True}
    summary = {k: policy[k] for k in ("channel", "create_customer", "create_case", "flag_for_review")}
    if recognition.case_id is not None:
        return Decision(False, False, False, "a case was recognised", summary)
    if recognition.customer_id is not None:
        create_case = bool(policy["create_case"])
        reason = f"customer recognised, no case: the {channel} policy " + ("opens a new case" if create_case else "opens no case")
        return Decision(False, create_case, False, reason, summary)
    if recognition.candidates:
        return Decision(False, False, True, "several customers match: an agent must choose; nothing created", summary)
    if policy["create_customer"]:
        return Decision(True, bool(policy["create_case"]), bool(policy["flag_for_review"]), f"no match: the {channel} policy creates the customer", summary)
    return Decision(
        False, False, bool(policy["flag_for_review"]),
        f"no match: the {channel} policy creates nothing" + (" and flags the contact for an agent" if policy["flag_for_review"] else ""),
        summary,
    )


def new_profile(recognition: Recognition, promotions: list[Promotion], region: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A customer profile from the contact: what the rules read plus the promoted data."""
    identifiers = list(recognition.observed_identifiers)
    fields: dict[str, Any] = {}
    lookup_fields = recognition.lookup.get("fields")
    if isinstance(lookup_fields, dict):
        fields.update(lookup_fields)
    name = recognition.name_hint
    trace: list[dict[str, Any]] = []
    for promotion in promotions:
        if promotion.target != "customer":
            continue
        if promotion.policy == "add_identifier":
            for raw in promotion.value if isinstance(promotion.value, list) else [promotion.value]:
                try:
                    pair = (promotion.field, normalize_identifier(promotion.field, str(raw), region=region))
                except UserError as error:
                    trace.append(promotion.entry("skipped", error.message))
                    continue
                if pair not in identifiers:
                    identifiers.append(pair)
                trace.append(promotion.entry("applied"))
        elif promotion.field == "name":
            if promotion.policy == "overwrite" or not name:
                name = str(promotion.value).strip() or name
            trace.append(promotion.entry("applied"))
        else:
            key = promotion.field.removeprefix("fields.")
            if promotion.policy == "overwrite" or fields.get(key) in (None, ""):
                fields[key] = promotion.value
            trace.append(promotion.entry("applied"))
    profile = {"name": name, "identifiers": [{"kind": k, "value": v} for k, v in identifiers], "fields": fields}
    return profile, trace


def _case_values(promotions: list[Promotion], current_subject: str | None, current_fields: dict[str, Any]) -> tuple[str | None, dict[str, Any], list[dict[str, Any]]]:
    subject: str | None = None
    changes: dict[str, Any] = {}
    trace: list[dict[str, Any]] = []
    for promotion in promotions:
        if promotion.target != "case":
            continue
        if promotion.field == "subject":
            value = str(promotion.value).strip()[:MAX_SUBJECT]
            if value and (promotion.policy == "overwrite" or not current_subject) and value != current_subject:
                subject = value
                trace.append(promotion.entry("applied"))
            else:
                trace.append(promotion.entry("unchanged"))
            continue
        key = promotion.field.removeprefix("fields.")
        current = current_fields.get(key)
        if current != promotion.value and (promotion.policy == "overwrite" or current in (None, "")):
            changes[key] = promotion.value
            trace.append(promotion.entry("applied"))
        else:
            trace.append(promotion.entry("unchanged", "the case already has a value" if current not in (None, "") else None))
    return subject, changes, trace


async def _promote_to_customer(
    session: AsyncSession, *, actor: Actor, customer_id: int, promotions: list[Promotion], region: str
) -> list[dict[str, Any]]:
    mine = [p for p in promotions if p.target == "customer"]
    if not mine:
        return []
    customer = await session.get(Customer, customer_id)
    assert customer is not None
    name: str | None = None
    changes: dict[str, Any] = {}
    trace: list[dict[str, Any]] = []
    for promotion in mine:
        if promotion.policy == "add_identifier":
            for raw in promotion.value if isinstance(promotion.value, list) else [promotion.value]:
                try:
                    await customer_service.add_identifier(
                        session, actor=actor, customer_id=customer_id, kind=promotion.field, value=str(raw), region=region
                    )
                except UserError as error:
                    trace.append(promotion.entry("unchanged" if error.code.value == "DUPLICATE" else "skipped", error.message))
                else:
                    trace.append(promotion.entry("applied"))
        elif promotion.field == "name":
            value = str(promotion.value).strip()
            if value and (promotion.policy == "overwrite" or not customer.name) and value != customer.name:
                name = value
                trace.append(promotion.entry("applied"))
            else:
                trace.append(promotion.entry("unchanged"))
        else:
            key = promotion.field.removeprefix("fields.")
            current = customer.fields.get(key)
            if current != promotion.value and (promotion.policy == "overwrite" or current in (None, "")):
                changes[key] = promotion.value
                trace.append(promotion.entry("applied"))
            else:
                trace.append(promotion.entry("unchanged", "the customer already has a value" if current not in (None, "") else None))
    if name is not None or changes:
        await customer_service.update_customer(session, actor=actor, customer_id=customer_id, name=name, fields=changes or None)
    return trace


async def apply_outcome(
    session: AsyncSession,
    *,
    actor: Actor,
    view: ContactView,
    recognition: Recognition,
    decision: Decision,
    promotions: list[Promotion],
    region: str,
) -> Applied:
    """Create what the policy says, then promote the contact's data to the customer and the case."""
    applied = Applied(customer_id=recognition.customer_id, case_id=recognition.case_id)
    if decision.create_customer:
        await _settle_concurrent_newcomers(session, recognition, decision)
    if recognition.customer_id is not None and applied.customer_id is None:
        applied.customer_id = recognition.customer_id
    if decision.create_customer:
        profile, trace = new_profile(recognition, promotions, region)
        customer = await customer_service.create_customer(
            session,
            actor=actor,
            name=profile["name"],
            identifiers=[customer_service.IdentifierInput(i["kind"], i["value"]) for i in profile["identifiers"]],
            fields=profile["fields"],
            region=region,
        )
        applied.customer_id, applied.customer_created, applied.profile = customer.id, True, profile
        applied.promoted += trace
    elif applied.customer_id is not None:
        applied.promoted += await _promote_to_customer(
            session, actor=actor, customer_id=applied.customer_id, promotions=promotions, region=region
        )
    elif decision.needs_review and not recognition.candidates:
        # Nothing is created: the agent gets the data as a partially completed profile to confirm.
        applied.profile, trace = new_profile(recognition, promotions, region)
        applied.promoted += [{**entry, "result": "proposed"} if entry["result"] == "applied" else entry for entry in trace]

    if decision.create_case and applied.customer_id is not None and applied.case_id is None:
        promoted_subject, fields, trace = _case_values(promotions, None, {})
        subject = promoted_subject or (view.subject or "").strip()[:MAX_SUBJECT] or f"{view.channel} contact from {view.counterpart or 'unknown sender'}"
        case = await case_service.create_case(session, actor=actor, subject=subject, customer_ids=[applied.customer_id], fields=fields)
        applied.case_id, applied.case_created = case.id, True
        applied.promoted += trace
    elif applied.case_id is not None and any(p.target == "case" for p in promotions):
        case = await session.get(Case, applied.case_id)
        assert case is not None
        subject, fields, trace = _case_values(promotions, case.subject, case.fields)
        if subject is not None or fields:
            await case_service.update_case(session, actor=actor, case_id=case.id, subject=subject, fields=fields or None)
        applied.promoted += trace
    return applied


async def _settle_concurrent_newcomers(session: AsyncSession, recognition: Recognition, decision: Decision) -> None:
    """Two contacts from the same new sender at the same moment must not create two profiles.

    Lock the identifiers the new profile would carry (in a fixed order, so two transactions
    cannot deadlock), then look again: a profile committed meanwhile is recognised instead."""
    pairs = sorted(set(recognition.observed_identifiers))
    if not pairs:
        return
    for kind, value in pairs:
        await session.execute(_LOCK_IDENTIFIER, {"key": f"customer-identifier:{kind}:{value}"})
    ids = await customers_with(await session.connection(), pairs)
    if not ids:
        return
    decision.create_customer = False
    if len(ids) == 1:
        recognition.customer_id = ids[0]
        decision.reason = "a profile with these identifiers was created meanwhile by another contact: recognised"
        recognition.steps.append({"rule": None, "kind": "recheck", "target": "customer", "outcome": "match", "reason": decision.reason, "matches": ids})
    else:
        recognition.candidates = ids
        decision.create_case, decision.needs_review = False, True
        decision.reason = "profiles with these identifiers were created meanwhile: an agent must choose"


def plan_outcome(recognition: Recognition, decision: Decision, promotions: list[Promotion], region: str) -> Applied:
    """What `apply_outcome` would do, computed without writing (for the preview)."""
    applied = Applied(customer_id=recognition.customer_id, case_id=recognition.case_id)
    if decision.create_customer or (decision.needs_review and not recognition.candidates and recognition.customer_id is None):
        applied.profile, trace = new_profile(recognition, promotions, region)
        applied.promoted += [{**e, "result": "proposed"} if e["result"] == "applied" else e for e in trace]
        applied.customer_created = decision.create_customer
    elif applied.customer_id is not None:
        applied.promoted += [p.entry("proposed") for p in promotions if p.target == "customer"]
    has_customer = applied.customer_id is not None or decision.create_customer
    applied.case_created = decision.create_case and has_customer and applied.case_id is None
    if applied.case_created or applied.case_id is not None:
        applied.promoted += [p.entry("proposed") for p in promotions if p.target == "case"]
    return applied


def trace_document(
    recognition: Recognition, decision: Decision, applied: Applied, skipped: list[dict[str, Any]]
) -> dict[str, Any]:
    """The recognition trace stored on the contact and exposed as Contact.recognition."""
    document: dict[str, Any] = {
        "outcome": recognition.outcome,
        "matchedRule": recognition.matched_rule,
        "steps": recognition.steps,
        "customerId": applied.customer_id,
        "caseId": applied.case_id,
        "candidates": recognition.candidates,
        "needsReview": decision.needs_review,
        "policy": {**decision.policy, "decision": decision.reason},
        "created": {"customer": applied.customer_created, "case": applied.case_created},
        "promoted": applied.promoted + skipped,
        "elapsedMs": recognition.elapsed_ms,
    }
    if applied.profile is not None:
        document["partialProfile" if not applied.customer_created else "newProfile"] = applied.profile
    if recognition.lookup:
        document["lookup"] = recognition.lookup
    return document

"""What recognition decides should happen: the channel's no-match policy, and which contact data
promotes to the customer and the case (FILL_EMPTY, OVERWRITE, ADD_IDENTIFIER), each step traced.
Reads and decides only; `app.services.recognition.apply_outcome` carries a decision out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.contact_data import ContactData, validate
from app.errors import UserError
from app.identifiers import normalize_identifier
from app.models import NO_ROW_POLICY
from app.recognition.connector import LookupConnectors, connectors
from app.recognition.engine import Recognition, RuleSet, load_rule_set, recognize
from app.recognition.routing import route
from app.recognition.view import ContactView

MAX_SUBJECT = 200
# Where a promotion writes the record's own text: the customer's name, the case's subject.
TITLE_FIELDS = {"customer": "name", "case": "subject"}


@dataclass
class Promotion:
    rule: str
    target: str
    field: str
    policy: str
    value: Any

    def entry(self, result: str, reason: str | None = None) -> dict[str, Any]:
        entry = {
            "rule": self.rule,
            "target": self.target,
            "field": self.field,
            "policy": self.policy.upper(),
            "value": self.value,
            "result": result,
        }
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
class Assessment:
    """A contact recognised against one rule set: what matched, what the policy decided, what promotes."""

    rule_set: RuleSet
    recognition: Recognition
    decision: Decision
    promotions: list[Promotion]
    skipped: list[dict[str, Any]]


@dataclass
class Applied:
    customer_id: int | None
    case_id: int | None
    customer_created: bool = False
    case_created: bool = False
    promoted: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    case_reference: str | None = None  # of the case created
    routed: dict[str, Any] | None = None  # the routing rule that sent the case created to a pool


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
    policy = rule_set.policies.get(channel) or {"channel": channel, **NO_ROW_POLICY}
    summary = {k: policy[k] for k in ("channel", "create_customer", "create_case", "flag_for_review")}
    if recognition.case_id is not None:
        return Decision(False, False, False, "a case was recognised", summary)
    if recognition.customer_id is not None:
        create_case = bool(policy["create_case"])
        reason = f"customer recognised, no case: the {channel} policy " + (
            "opens a new case" if create_case else "opens no case"
        )
        return Decision(False, create_case, False, reason, summary)
    if recognition.candidates:
        return Decision(False, False, True, "several customers match: an agent must choose; nothing created", summary)
    if policy["create_customer"]:
        return Decision(
            True,
            bool(policy["create_case"]),
            bool(policy["flag_for_review"]),
            f"no match: the {channel} policy creates the customer",
            summary,
        )
    return Decision(
        False,
        False,
        bool(policy["flag_for_review"]),
        f"no match: the {channel} policy creates nothing"
        + (" and flags the contact for an agent" if policy["flag_for_review"] else ""),
        summary,
    )


def new_profile(
    recognition: Recognition, promotions: list[Promotion], region: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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


def promoted_values(
    promotions: list[Promotion], target: str, current_title: str | None, current_fields: dict[str, Any]
) -> tuple[str | None, dict[str, Any], list[dict[str, Any]]]:
    """The new title (customer name / case subject) and custom fields the promotions give an
    existing record, with a trace entry each; identifiers are not handled here."""
    title: str | None = None
    changes: dict[str, Any] = {}
    trace: list[dict[str, Any]] = []
    for promotion in promotions:
        if promotion.target != target or promotion.policy == "add_identifier":
            continue
        if promotion.field == TITLE_FIELDS[target]:
            value = str(promotion.value).strip()
            if target == "case":
                value = value[:MAX_SUBJECT]
            if value and (promotion.policy == "overwrite" or not current_title) and value != current_title:
                title = value
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
            reason = f"the {target} already has a value" if current not in (None, "") else None
            trace.append(promotion.entry("unchanged", reason))
    return title, changes, trace


def new_case_subject(view: ContactView, promoted_subject: str | None) -> str:
    """A new case's subject: promoted, else the contact's, else a description of the contact."""
    return (
        promoted_subject
        or (view.subject or "").strip()[:MAX_SUBJECT]
        or f"{view.channel} contact from {view.counterpart or 'unknown sender'}"
    )


def plan_outcome(assessment: Assessment, view: ContactView, region: str) -> Applied:
    """What `apply_outcome` would do, computed without writing (for the preview)."""
    recognition, decision, promotions = assessment.recognition, assessment.decision, assessment.promotions
    applied = Applied(customer_id=recognition.customer_id, case_id=recognition.case_id)
    if decision.create_customer or (
        decision.needs_review and not recognition.candidates and recognition.customer_id is None
    ):
        applied.profile, trace = new_profile(recognition, promotions, region)
        applied.promoted += [{**e, "result": "proposed"} if e["result"] == "applied" else e for e in trace]
        applied.customer_created = decision.create_customer
    elif applied.customer_id is not None:
        applied.promoted += [p.entry("proposed") for p in promotions if p.target == "customer"]
    has_customer = applied.customer_id is not None or decision.create_customer
    applied.case_created = decision.create_case and has_customer and applied.case_id is None
    if applied.case_created:
        applied.routed = route(assessment.rule_set, view)
    if applied.case_created or applied.case_id is not None:
        applied.promoted += [p.entry("proposed") for p in promotions if p.target == "case"]
    return applied


def trace_document(assessment: Assessment, applied: Applied) -> dict[str, Any]:
    """The recognition trace stored on the contact and exposed as Contact.recognition."""
    recognition, decision = assessment.recognition, assessment.decision
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
        "routed": applied.routed,
        "promoted": applied.promoted + assessment.skipped,
        "elapsedMs": recognition.elapsed_ms,
    }
    if applied.profile is not None:
        document["partialProfile" if not applied.customer_created else "newProfile"] = applied.profile
    if recognition.lookup:
        document["lookup"] = recognition.lookup
    return document


async def assess(
    session: AsyncSession,
    *,
    view: ContactView,
    region: str,
    lookups: LookupConnectors = connectors,
    version: int | None = None,
    release_during_lookups: bool = False,
) -> Assessment:
    """Run the rules on a contact and decide what should happen; writes nothing."""
    rule_set = await load_rule_set(session, version=version)
    recognition = await recognize(
        session,
        view=view,
        rule_set=rule_set,
        region=region,
        lookups=lookups,
        release_during_lookups=release_during_lookups,
    )
    decision = decide(recognition, rule_set, view.channel)
    promotions, skipped = promotions_for(rule_set, view)
    return Assessment(rule_set, recognition, decision, promotions, skipped)


@dataclass
class PreviewResult:
    customer_id: int | None
    case_id: int | None
    candidates: list[int]
    needs_review: bool
    customer_created: bool
    case_created: bool
    trace: dict[str, Any]


async def preview_recognition(
    session: AsyncSession, *, data: ContactData, region: str, lookups: LookupConnectors = connectors
) -> PreviewResult:
    """What ingesting this contact would do now: the same rules on the same input, reading only
    (`session` is a reading session: its connection goes back to the pool during lookups)."""
    validate(data)
    view = ContactView.of(data)
    assessment = await assess(session, view=view, region=region, lookups=lookups, release_during_lookups=True)
    planned = plan_outcome(assessment, view, region)
    trace = trace_document(assessment, planned)
    trace["preview"] = True
    recognition = assessment.recognition
    return PreviewResult(
        customer_id=recognition.customer_id,
        case_id=recognition.case_id,
        candidates=recognition.candidates,
        needs_review=assessment.decision.needs_review,
        customer_created=planned.customer_created,
        case_created=planned.case_created,
        trace=trace,
    )

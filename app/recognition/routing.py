"""Routing: which pool a case a contact opens waits in. Routing rules are tried in position order;
the first whose conditions all hold sends the case to its pool. With none, a mail's case goes to
its mailbox's pool (see mail.place_in_pool), any other stays out of the queues."""

from __future__ import annotations

from typing import Any

from app.errors import ErrorCode, UserError
from app.limits import NAME, PATTERN, check_text
from app.models import ROUTING_OPERATORS
from app.recognition.config import PROMOTION_SOURCE_ROOTS, check_source
from app.recognition.engine import RuleSet
from app.recognition.patterns import MATCH_TIMEOUT_SECONDS, check_pattern, compile_pattern
from app.recognition.view import ContactView

MAX_CONDITIONS = 20


def check_conditions(conditions: object) -> list[dict[str, Any]]:
    """The conditions with their values checked; INVALID / INVALID_PATTERN on `conditions.<n>.<key>`."""
    if conditions is None:
        return []
    if not isinstance(conditions, list) or len(conditions) > MAX_CONDITIONS:
        raise UserError(ErrorCode.INVALID, f"conditions must be a list of at most {MAX_CONDITIONS}", "conditions")
    checked = []
    for index, condition in enumerate(conditions):
        where = f"conditions.{index}"
        if not isinstance(condition, dict):
            raise UserError(ErrorCode.INVALID, "a condition is an object: source, operator, value", where)
        operator = str(condition.get("operator", "")).lower()
        if operator not in ROUTING_OPERATORS:
            raise UserError(
                ErrorCode.INVALID, f"operator must be one of {', '.join(ROUTING_OPERATORS)}", f"{where}.operator"
            )
        item = {"source": check_source(condition.get("source"), f"{where}.source", PROMOTION_SOURCE_ROOTS)}
        item["operator"] = operator
        value = condition.get("value")
        if operator == "matches":
            check_text(value if isinstance(value, str) else None, f"{where}.value", PATTERN)
            item["value"] = check_pattern(value, f"{where}.value", groups=None)
        elif operator != "exists":
            if not isinstance(value, str) or not value.strip():
                raise UserError(ErrorCode.REQUIRED, f"{operator} needs a value", f"{where}.value")
            check_text(value.strip(), f"{where}.value", NAME)
            item["value"] = value.strip()
        checked.append(item)
    return checked


def _texts(value: Any) -> list[str]:
    """What a source holds, as the texts to compare: a list is any of its items."""
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if v not in (None, "", [], {})]


def holds(view: ContactView, condition: dict[str, Any]) -> bool:
    """Equals and contains ignore case; a pattern that takes too long to match does not hold."""
    texts = _texts(view.value_at(condition["source"]))
    operator = condition["operator"]
    if operator == "exists":
        return bool(texts)
    if operator == "matches":
        pattern = compile_pattern(condition["value"])
        try:
            return any(pattern.search(text, timeout=MATCH_TIMEOUT_SECONDS) for text in texts)
        except TimeoutError:
            return False
    wanted = condition["value"].casefold()
    if operator == "equals":
        return any(text.casefold() == wanted for text in texts)
    return any(wanted in text.casefold() for text in texts)


def route(rule_set: RuleSet, view: ContactView) -> dict[str, Any] | None:
    """The first enabled routing rule for the contact's channel whose conditions all hold, as the
    trace shows it: {"rule", "poolId"}; None when no rule sends the case anywhere."""
    for rule in rule_set.for_channel(rule_set.routing, view.channel):
        if all(holds(view, condition) for condition in rule["conditions"]):
            return {"rule": rule["name"], "poolId": rule["pool_id"]}
    return None

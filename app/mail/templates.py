"""Templates of system messages (auto-responses, SLA notices, task reminders): Jinja2 in its immutable sandbox, so a template
written by an administrator can read the variables it is given and nothing else."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.errors import ErrorCode, UserError

log = logging.getLogger(__name__)

MAX_TEMPLATE_CHARS = 20_000
# What an auto-response template can use; the README documents the same list.
AUTO_RESPONSE_VARIABLES = {
    "reference": "the case's reference, the submission id (CASE-000123)",
    "subject": "the subject of the customer's mail",
    "sender": "the customer's address",
    "customer_name": "the customer's name, when known",
    "mailbox_address": "the address the mail came to",
    "mailbox_name": "the mailbox's display name",
}

_environment = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
# HTML templates: every variable escaped, so a customer's name cannot add markup.
_html_environment = ImmutableSandboxedEnvironment(autoescape=True, keep_trailing_newline=True)


def template_error(source: str) -> str | None:
    """Why a template cannot be used, or None."""
    if len(source) > MAX_TEMPLATE_CHARS:
        return f"a template has at most {MAX_TEMPLATE_CHARS} characters"
    try:
        _environment.parse(source)
    except TemplateError as error:
        return f"not a valid template: {error}"
    return None


def render(source: str, variables: dict[str, Any]) -> str | None:
    """The rendered template, or None when it fails (a sandbox refusal, an error in it): logged, never raised."""
    try:
        return _environment.from_string(source).render(**variables)
    except Exception:  # noqa: BLE001 - a bad template must not stop the intake
        log.warning("a template failed to render", exc_info=True)
        return None


def render_html(source: str, variables: dict[str, Any]) -> str | None:
    """An HTML template rendered with its variables escaped, or None when it fails."""
    try:
        return _html_environment.from_string(source).render(**variables)
    except Exception:  # noqa: BLE001 - refused by the caller, never half-rendered
        log.warning("an HTML template failed to render", exc_info=True)
        return None


def checked_auto_response(value: Any, where: str = "autoResponse") -> tuple[str | None, str | None]:
    """An auto-response's (subject, text) templates, both given and valid; (None, None) for none."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise UserError(ErrorCode.INVALID, f"{where} must be a mapping of subject and text", where)
    subject, text = value.get("subject"), value.get("text")
    for name, template in (("subject", subject), ("text", text)):
        if not isinstance(template, str) or not template.strip():
            raise UserError(ErrorCode.REQUIRED, f"an auto-response needs a {name} template", f"{where}.{name}")
        problem = template_error(template)
        if problem is not None:
            raise UserError(ErrorCode.INVALID, problem, f"{where}.{name}")
    if "\n" in subject.strip() or "\r" in subject:
        raise UserError(ErrorCode.INVALID, "the subject template must be one line", f"{where}.subject")
    return subject.strip(), text


@dataclass(frozen=True)
class SystemMessage:
    """A system message's default subject and text templates, and the variables they may use."""

    subject: str
    text: str
    variables: dict[str, str]


_SLA_VARIABLES = {
    "reference": "the case's reference (CASE-000123)",
    "subject": "the case's subject",
    "passed": 'what passed, one line each ("response deadline (2026-11-23T10:00:00+00:00)")',
    "escalated": "whether the case was escalated to the recipient's group",
}
_SLA_TEXT = (
    "Case {{ reference }}: {{ passed | join('; ') }} passed."
    "{% if escalated %} It was escalated to your group.{% endif %}\n"
)
SYSTEM_MESSAGES = {
    "sla_warning": SystemMessage("[{{ reference }}] SLA warning", _SLA_TEXT, _SLA_VARIABLES),
    "sla_breach": SystemMessage("[{{ reference }}] SLA breached", _SLA_TEXT, _SLA_VARIABLES),
    "task_reminder": SystemMessage(
        "Reminder: {{ subject }}",
        "Reminder: {{ kind }} - {{ subject }}\n"
        "{% if due %}Due: {{ due }}\n{% endif %}"
        "{% if customer %}Customer: {{ customer }}\n{% endif %}"
        "{% if case %}Case: {{ case }}\n{% endif %}"
        "{% if notes %}\n{{ notes }}\n{% endif %}",
        {
            "subject": "the task's subject",
            "kind": "call, email, meeting, chat or other",
            "due": "when it is due (UTC), if it has a due time",
            "customer": "the customer's number and name, if the task is on a customer",
            "case": "the case's reference and subject, if the task is on a case",
            "notes": "the task's notes",
        },
    ),
}

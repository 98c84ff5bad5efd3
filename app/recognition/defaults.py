"""The rule set and no-match policies a fresh install ships with (migration 0002 seeds a frozen copy)."""

from __future__ import annotations

from typing import Any

CASE_REFERENCE_PATTERN = r"(?i)\b(CASE-\d{6,})\b"

DEFAULT_RULES: list[dict[str, Any]] = [
    {
        "name": "Case reference in subject or text",
        "target": "case",
        "kind": "reference_in_text",
        "config": {"pattern": CASE_REFERENCE_PATTERN, "fields": ["subject", "text"], "require_known_sender": True},
        "position": 1,
        "channels": [],
        "enabled": True,
    },
    {
        "name": "Email thread",
        "target": "case",
        "kind": "thread",
        "config": {"require_known_sender": True},
        "position": 2,
        "channels": ["email"],
        "enabled": True,
    },
    {
        "name": "Sender email",
        "target": "customer",
        "kind": "identifier",
        "config": {"kind": "email", "source": "from"},
        "position": 3,
        "channels": [],
        "enabled": True,
    },
    {
        "name": "Sender phone",
        "target": "customer",
        "kind": "identifier",
        "config": {"kind": "phone", "source": "from"},
        "position": 4,
        "channels": [],
        "enabled": True,
    },
]


def _policy(create_customer: bool, create_case: bool, flag_for_review: bool) -> dict[str, bool]:
    return {"create_customer": create_customer, "create_case": create_case, "flag_for_review": flag_for_review}


# Email and web forms carry an address to build a profile from; calls and chats are flagged for an agent.
DEFAULT_POLICIES: dict[str, dict[str, bool]] = {
    "email": _policy(True, True, False),
    "web": _policy(True, True, False),
    "phone": _policy(False, False, True),
    "chat": _policy(False, False, True),
    "sms": _policy(False, False, True),
    "social": _policy(False, False, True),
    "note": _policy(False, False, False),
}

"""The rule set and no-match policies a fresh install ships with (also seeded by migration 0002)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import NoMatchPolicy, RecognitionConfig, RecognitionRule

CASE_REFERENCE_PATTERN = r"(?i)\b(CASE-\d{6,})\b"

DEFAULT_RULES: list[dict[str, Any]] = [
    {
        "name": "Case reference in subject or text",
        "target": "case",
        "kind": "reference_in_text",
        "config": {"pattern": CASE_REFERENCE_PATTERN, "fields": ["subject", "text"]},
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

# channel: (create_customer, create_case, flag_for_review)
DEFAULT_POLICIES: dict[str, tuple[bool, bool, bool]] = {
    "email": (True, True, False),
    "web": (True, True, False),
    "phone": (False, False, True),
    "chat": (False, False, True),
    "sms": (False, False, True),
    "social": (False, False, True),
    "note": (False, False, False),
}


def default_policy_rows() -> list[dict[str, Any]]:
    return [
        {"channel": channel, "create_customer": c, "create_case": k, "flag_for_review": r}
        for channel, (c, k, r) in DEFAULT_POLICIES.items()
    ]


async def seed_defaults(conn: AsyncConnection) -> None:
    """Insert the default rules and policies (into empty tables)."""
    await conn.execute(insert(RecognitionRule.__table__), DEFAULT_RULES)
    await conn.execute(insert(NoMatchPolicy.__table__), default_policy_rows())
    # A fresh version (never a reused one): a process's cached rule set must not survive a reset.
    await conn.execute(
        insert(RecognitionConfig.__table__).values(id=1, version=func.nextval("recognition_config_version_seq"))
    )

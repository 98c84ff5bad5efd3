"""A contact as it arrives (from the API, an integrator or a mailbox) before it is stored: its
data, validation and header access. Below both the services and recognition, which read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import nh3

from app import limits
from app.errors import ErrorCode, UserError
from app.limits import check_json_object, check_text
from app.models import CHANNELS, DIRECTIONS


@dataclass
class ContactData:
    channel: str
    direction: str
    occurred_at: datetime | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    from_address: str | None = None
    to_addresses: list[str] = field(default_factory=list)
    headers: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    external_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


def sanitize_html(html: str | None) -> str | None:
    return nh3.clean(html) if html else None


def header(headers: dict[str, Any], name: str) -> str | None:
    """A header's value, matched case-insensitively as mail headers are."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return str(value).strip() if value is not None else None
    return None


def stored_columns(data: ContactData) -> dict[str, Any]:
    """The contacts-table columns that come from the contact itself: HTML sanitised, Message-ID read
    from the headers, the time defaulting to now."""
    return {
        "channel": data.channel,
        "direction": data.direction,
        "occurred_at": data.occurred_at or datetime.now(UTC),
        "subject": data.subject,
        "text": data.text,
        "html": sanitize_html(data.html),
        "from_address": data.from_address,
        "to_addresses": data.to_addresses,
        "headers": data.headers,
        "message_id": header(data.headers, "Message-ID"),
        "source": data.source,
        "external_id": data.external_id,
        "payload": data.payload,
    }


def validate(data: ContactData) -> None:
    """Channel and direction are known; headers and payload are JSON objects; every text within its limit."""
    if data.channel not in CHANNELS:
        raise UserError(ErrorCode.INVALID, f"channel must be one of {', '.join(CHANNELS)}", "channel")
    if data.direction not in DIRECTIONS:
        raise UserError(ErrorCode.INVALID, f"direction must be one of {', '.join(DIRECTIONS)}", "direction")
    check_json_object(data.headers, "headers")
    check_json_object(data.payload, "payload")
    check_text(header(data.headers, "Message-ID"), "headers.Message-ID", limits.MESSAGE_ID)
    for value, name, limit in (
        (data.subject, "subject", limits.SUBJECT),
        (data.text, "text", limits.TEXT),
        (data.html, "html", limits.HTML),
        (data.from_address, "from", limits.ADDRESS),
        (data.source, "source", limits.SOURCE),
        (data.external_id, "externalId", limits.EXTERNAL_ID),
    ):
        check_text(value, name, limit)
    limits.check_count(data.to_addresses, "to", limits.RECIPIENTS)
    for index, address in enumerate(data.to_addresses):
        check_text(address, f"to.{index}", limits.ADDRESS)

"""What the rules look at: one contact's data, and how a source path reads from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

from app.contact_data import ContactData, header


@dataclass
class ContactView:
    channel: str
    direction: str
    from_address: str | None
    to_addresses: list[str]
    subject: str | None
    text: str | None
    headers: dict[str, Any]
    payload: dict[str, Any]
    # The contact being recognised, once stored: a thread rule must not find the contact itself.
    contact_id: int | None = None
    lookup: dict[str, Any] = field(default_factory=dict)
    # The case references found in it, by pattern and fields: a batch reads them ahead, then the rule.
    references: dict[tuple[str, tuple[str, ...]], list[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, data: ContactData, contact_id: int | None = None) -> ContactView:
        return cls(
            channel=data.channel,
            direction=data.direction,
            from_address=data.from_address,
            to_addresses=list(data.to_addresses or []),
            subject=data.subject,
            text=data.text,
            headers=dict(data.headers or {}),
            payload=dict(data.payload or {}),
            contact_id=contact_id,
        )

    @property
    def counterpart(self) -> str | None:
        """The customer's address: the sender of an inbound contact, the first recipient of an outbound one."""
        if self.direction == "outbound":
            return self.to_addresses[0] if self.to_addresses else None
        return self.from_address

    def header(self, name: str) -> str | None:
        return header(self.headers, name)

    def value_at(self, source: str) -> Any:
        """The value a source path names: from, to, subject, text, payload.<path>, headers.<name>, lookup.<path>."""
        head, _, rest = source.partition(".")
        if head == "from":
            return self.counterpart
        if head == "to":
            return list(self.to_addresses)
        if head == "subject":
            return self.subject
        if head == "text":
            return self.text
        if head == "headers":
            return self.header(rest)
        root = self.payload if head == "payload" else self.lookup if head == "lookup" else None
        return dig(root, rest) if root is not None else None


def dig(root: Any, path: str) -> Any:
    value = root
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def address_of(value: str) -> str:
    """The bare address of 'Name <address>' (or the value itself)."""
    return _parsed(value)[1] or value


def display_name(value: str | None) -> str | None:
    if not value:
        return None
    name, address = _parsed(value)
    return name.strip() or None if address else None


# Parsing an address is slow and a batch reads the same senders again and again.
@lru_cache(maxsize=4096)
def _parsed(value: str) -> tuple[str, str]:
    return parseaddr(value)

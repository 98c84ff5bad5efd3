"""Building an outgoing message. Every value reaching a header was checked to be one line before."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate


@dataclass
class Outgoing:
    from_address: str
    from_name: str | None
    to: list[str]
    subject: str
    text: str | None = None
    html: str | None = None
    cc: list[str] = field(default_factory=list)
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    auto_submitted: str | None = None  # RFC 3834: "auto-replied" for an auto-response
    attachments: list[tuple[str | None, str, bytes]] = field(default_factory=list)  # name, type, content


def new_message_id(from_address: str) -> str:
    """Casegraph's own Message-ID, in the sending mailbox's domain; a customer's answer names it in In-Reply-To."""
    return f"<cg.{secrets.token_hex(12)}@{from_address.rpartition('@')[2]}>"


def compose(message: Outgoing, *, message_id: str) -> bytes:
    mail = EmailMessage(policy=SMTP)
    user, _, domain = message.from_address.rpartition("@")
    mail["From"] = Address(display_name=message.from_name or "", username=user, domain=domain)
    mail["To"] = ", ".join(message.to)
    if message.cc:
        mail["Cc"] = ", ".join(message.cc)
    mail["Subject"] = message.subject
    mail["Message-ID"] = message_id
    mail["Date"] = formatdate()
    if message.in_reply_to:
        mail["In-Reply-To"] = message.in_reply_to
    if message.references:
        mail["References"] = " ".join(message.references)
    if message.auto_submitted:
        mail["Auto-Submitted"] = message.auto_submitted
    mail.set_content(message.text or "")
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    for filename, content_type, data in message.attachments:
        maintype, _, subtype = content_type.partition("/")
        mail.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
    return mail.as_bytes()

"""Mail: supervised mailboxes, their IMAP and relay settings, and their polling state."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from app.models import IMAP_MARKS, MAIL_INTAKES, MAIL_SECURITY, OUTBOUND_STATUSES
from app.services.mail import idle_lease_key
from app.services.replies import SIGNATURE_VARIABLES
from schema.enums import values_enum
from schema.errors import UserError
from schema.ids import to_global_id
from schema.node import Node, load_later

if TYPE_CHECKING:
    from schema.contacts import Contact
    from schema.queues import Pool

MailIntake = values_enum(
    "MailIntake", MAIL_INTAKES, "How a mailbox's mail arrives: polled over IMAP, or pushed to the SMTP/LMTP listener."
)
MailSecurity = values_enum("MailSecurity", MAIL_SECURITY)
ImapMark = values_enum("ImapMark", IMAP_MARKS, "What is done on the server to a message once it is stored.")

SECRET_ENV = (
    "The CASEGRAPH_SECRET_* environment variable holding the password; the password itself is never stored or shown."
)


@strawberry.type
class ImapSettings:
    host: str | None
    port: int | None
    security: MailSecurity = strawberry.field(
        description="TLS (port 993), STARTTLS (port 143, upgraded before logging in; refused when the server cannot) "
        "or NONE. Certificates are always verified, against the system's and CASEGRAPH_MAIL_CA_FILE."
    )
    user: str | None
    secret_env: str | None = strawberry.field(description=SECRET_ENV)
    folder: str
    mark: ImapMark
    move_to: str | None = strawberry.field(description="The folder a message is moved to when mark is MOVE.")
    idle: bool = strawberry.field(
        description="Keep a connection in IDLE so new mail is taken in as it arrives, where the server offers it; "
        "polled every pollSeconds otherwise, and whenever the IDLE connection is down."
    )
    poll_seconds: int


@strawberry.type(description="The SMTP relay the mailbox's replies leave through.")
class RelaySettings:
    host: str | None
    port: int | None
    security: MailSecurity
    user: str | None
    secret_env: str | None = strawberry.field(description=SECRET_ENV)
    from_address: str | None


AUTO_RESPONSE_HELP = (
    "Jinja2 templates (sandboxed) of the receipt sent when a mail opens a case; variables: reference, subject, "
    "sender, customer_name, mailbox_address, mailbox_name. The case's reference tag is added to the subject "
    "when missing. Never sent to automatic mail, at most 3 a day to one address."
)


@strawberry.type(description=AUTO_RESPONSE_HELP)
class AutoResponse:
    subject: str
    text: str

    @classmethod
    def of(cls, owner: Any) -> AutoResponse | None:
        if owner.auto_response_subject is None:
            return None
        return cls(subject=owner.auto_response_subject, text=owner.auto_response_text)


@strawberry.input(description=AUTO_RESPONSE_HELP)
class AutoResponseInput:
    subject: str
    text: str


def auto_response_settings(value: AutoResponseInput | None) -> dict[str, str] | None:
    return None if value is None else {"subject": value.subject, "text": value.text}


SIGNATURE_HELP = (
    "The signature of replies sent from this mailbox, a Jinja2 template (sandboxed); variables: "
    + ", ".join(SIGNATURE_VARIABLES)
    + ". Null: each agent's own signature. Appended once to the text and HTML of replies, never to auto-responses."
)


@strawberry.type(description="Where polling stands and how it last went, and the intake's backlog.")
class MailboxStatus:
    mailbox_db_id: strawberry.Private[int]
    last_polled_at: datetime | None
    last_uid: int
    last_error: str | None = strawberry.field(description="Why the last poll failed; null once a poll succeeds.")
    last_error_at: datetime | None

    @strawberry.field(description="Whether a worker holds this mailbox's IDLE connection (and is not only polling it).")
    async def idling(self, info: strawberry.Info) -> bool:
        return bool(await info.context.runtime.redis.exists(idle_lease_key(self.mailbox_db_id)))

    @strawberry.field(description="Stored messages waiting for the intake job (or for its next attempt).")
    async def waiting_messages(self, info: strawberry.Info) -> int:
        return (await info.context.loaders.inbound_backlog.load(self.mailbox_db_id))[0]

    @strawberry.field(description="Stored messages the intake gave up on after its last attempt; kept byte for byte.")
    async def failed_messages(self, info: strawberry.Info) -> int:
        return (await info.context.loaders.inbound_backlog.load(self.mailbox_db_id))[1]


@strawberry.type(description="A supervised mail address.")
class Mailbox(Node):
    db_id: strawberry.Private[int]
    pool_db_id: strawberry.Private[int | None]
    address: str
    display_name: str | None
    intake: MailIntake
    enabled: bool
    imap: ImapSettings
    relay: RelaySettings
    auto_response: AutoResponse | None = strawberry.field(description="Its own receipt; the pool's when null.")
    signature: str | None = strawberry.field(description=SIGNATURE_HELP)
    status: MailboxStatus

    @strawberry.field
    def pool(self, info: strawberry.Info) -> Annotated[Pool, strawberry.lazy("schema.queues")] | None:
        return load_later(info.context.loaders.pool, self.pool_db_id)

    @classmethod
    def from_row(cls, row: Any) -> Mailbox:
        return cls(
            id=to_global_id("Mailbox", row.id),
            db_id=row.id,
            pool_db_id=row.pool_id,
            address=row.address,
            display_name=row.display_name,
            intake=MailIntake(row.intake),
            enabled=row.enabled,
            imap=ImapSettings(
                host=row.imap_host,
                port=row.imap_port,
                security=MailSecurity(row.imap_security),
                user=row.imap_user,
                secret_env=row.imap_secret_env,
                folder=row.imap_folder,
                mark=ImapMark(row.imap_mark),
                move_to=row.imap_move_to,
                idle=row.imap_idle,
                poll_seconds=row.poll_seconds,
            ),
            relay=RelaySettings(
                host=row.relay_host,
                port=row.relay_port,
                security=MailSecurity(row.relay_security),
                user=row.relay_user,
                secret_env=row.relay_secret_env,
                from_address=row.relay_from,
            ),
            auto_response=AutoResponse.of(row),
            signature=row.signature_template,
            status=MailboxStatus(
                mailbox_db_id=row.id,
                last_polled_at=row.last_polled_at,
                last_uid=row.imap_last_uid,
                last_error=row.last_error,
                last_error_at=row.last_error_at,
            ),
        )


@strawberry.input(description="IMAP settings; given on an update, they replace the mailbox's whole IMAP settings.")
class ImapSettingsInput:
    host: str | None = None
    port: int | None = strawberry.field(default=None, description="993 with TLS, 143 without, by default.")
    security: MailSecurity = MailSecurity.TLS
    user: str | None = None
    secret_env: str | None = strawberry.field(default=None, description=SECRET_ENV)
    folder: str = "INBOX"
    mark: ImapMark = ImapMark.FLAG
    move_to: str | None = None
    idle: bool = False
    poll_seconds: int = 60


@strawberry.input(description="Relay settings; given on an update, they replace the mailbox's whole relay settings.")
class RelaySettingsInput:
    host: str | None = None
    port: int | None = strawberry.field(
        default=None, description="465 with TLS, 587 with STARTTLS, 25 otherwise, by default."
    )
    security: MailSecurity = MailSecurity.STARTTLS
    user: str | None = None
    secret_env: str | None = strawberry.field(default=None, description=SECRET_ENV)
    from_address: str | None = None


@strawberry.input
class MailboxCreateInput:
    address: str
    intake: MailIntake
    display_name: str | None = None
    pool_id: strawberry.ID | None = None
    enabled: bool = True
    imap: ImapSettingsInput | None = None
    relay: RelaySettingsInput | None = None
    auto_response: AutoResponseInput | None = None
    signature: str | None = strawberry.field(default=None, description=SIGNATURE_HELP)


@strawberry.input
class MailboxUpdateInput:
    id: strawberry.ID
    address: str | None = None
    intake: MailIntake | None = None
    display_name: str | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    pool_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="null takes it out of its pool."
    )
    enabled: bool | None = None
    imap: ImapSettingsInput | None = None
    relay: RelaySettingsInput | None = None
    auto_response: AutoResponseInput | None = strawberry.field(default=strawberry.UNSET, description="null removes it.")
    signature: str | None = strawberry.field(default=strawberry.UNSET, description="null removes it.")


@strawberry.input
class MailboxDeleteInput:
    id: strawberry.ID


@strawberry.type
class MailboxPayload:
    mailbox: Mailbox | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class MailboxDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


DeliveryStatus = values_enum("DeliveryStatus", OUTBOUND_STATUSES, "Where an outgoing email stands.")


@strawberry.type(description="How an outgoing email's delivery to the relay went.")
class Delivery:
    status: DeliveryStatus
    attempts: int
    last_response: str | None = strawberry.field(description="The relay's last answer (or why it was not reached).")
    next_attempt_at: datetime | None = strawberry.field(description="When it is tried again, while QUEUED.")
    sent_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Delivery:
        return cls(
            status=DeliveryStatus(row.status),
            attempts=row.attempts,
            last_response=row.last_response,
            next_attempt_at=row.next_attempt_at if row.status == "queued" else None,
            sent_at=row.sent_at,
        )


@strawberry.input
class CaseReplyInput:
    case_id: strawberry.ID
    to: list[str]
    cc: list[str] = strawberry.field(default_factory=list)
    bcc: list[str] = strawberry.field(default_factory=list, description="Only in the envelope, never in a header.")
    subject: str | None = strawberry.field(
        default=None, description="'Re: <case subject>' by default; the case's reference tag is added when missing."
    )
    text: str | None = None
    html: str | None = strawberry.field(
        default=None, description="Sanitised when shown; the text is derived from it when not given."
    )
    attachment_ids: list[strawberry.ID] = strawberry.field(
        default_factory=list, description="Attachments of the case's contacts to send along."
    )
    mailbox_id: strawberry.ID | None = strawberry.field(
        default=None, description="The mailbox to send from; by default the one the case's latest mail came to."
    )
    template_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="A canned reply (replyTemplates) filled in for the case: its text (and HTML) is the body and its "
        "subject the subject when none is given. Text or HTML given too comes before it (a personal line); "
        "to change the canned words, read replyPreview and send the edited text without templateId.",
    )


@strawberry.type
class CaseReplyPayload:
    contact: Annotated[Contact, strawberry.lazy("schema.contacts")] | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)

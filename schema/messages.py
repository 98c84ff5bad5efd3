"""Message templates: the system's own mails, as edited or by default."""

from __future__ import annotations

import strawberry

from app.mail.templates import SYSTEM_MESSAGES
from app.models import MESSAGE_KINDS
from schema.enums import values_enum
from schema.errors import UserError

MessageKind = values_enum(
    "MessageKind", MESSAGE_KINDS, "A system message: an SLA warning or breach notice, or a task reminder."
)


@strawberry.type(description="A variable a message template can use.")
class TemplateVariable:
    name: str
    description: str


@strawberry.type(description="A system message's subject and text templates (Jinja2, sandboxed).")
class MessageTemplate:
    kind: MessageKind
    subject: str
    text: str
    edited: bool = strawberry.field(description="False: the default words.")
    variables: list[TemplateVariable]

    @classmethod
    def of(cls, kind: str, edited: object | None) -> MessageTemplate:
        default = SYSTEM_MESSAGES[kind]
        return cls(
            kind=MessageKind(kind),
            subject=edited.subject if edited is not None else default.subject,
            text=edited.text if edited is not None else default.text,
            edited=edited is not None,
            variables=[TemplateVariable(name=n, description=d) for n, d in default.variables.items()],
        )


@strawberry.input
class MessageTemplateSetInput:
    kind: MessageKind
    subject: str
    text: str


@strawberry.input
class MessageTemplateResetInput:
    kind: MessageKind


@strawberry.type
class MessageTemplatePayload:
    message_template: MessageTemplate | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)

"""Canned replies (text modules) agents answer cases with, and the signatures of replies."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from app.services.replies import REPLY_VARIABLES
from schema.errors import UserError
from schema.node import Node, load_later

if TYPE_CHECKING:
    from schema.auth import User
    from schema.queues import Pool

REPLY_TEMPLATE_HELP = (
    "A canned reply: Jinja2 templates (sandboxed) an agent answers a case with, through caseReply(templateId). "
    "Variables: " + "; ".join(f"{name}: {meaning}" for name, meaning in REPLY_VARIABLES.items()) + "."
)


@strawberry.type(description=REPLY_TEMPLATE_HELP)
class ReplyTemplate(Node):
    db_id: strawberry.Private[int]
    pool_db_id: strawberry.Private[int | None]
    name: str
    subject: str | None = strawberry.field(description="The reply's subject when the agent gives none.")
    text: str
    html: str | None = strawberry.field(description="The HTML body (variables escaped); from the text when null.")
    updated_at: datetime

    @strawberry.field(description="The pool it is offered in; null: every pool.")
    def pool(self, info: strawberry.Info) -> Annotated[Pool, strawberry.lazy("schema.queues")] | None:
        return load_later(info.context.loaders.pool, self.pool_db_id)

    @classmethod
    def from_row(cls, row: Any) -> ReplyTemplate:
        return super().from_row(row, pool_db_id=row.pool_id)


@strawberry.type(description="A canned reply filled in for a case, as caseReply would send it (before the signature).")
class ReplyPreview:
    subject: str | None
    text: str
    html: str | None


@strawberry.input
class ReplyTemplateCreateInput:
    name: str
    text: str
    pool_id: strawberry.ID | None = strawberry.field(default=None, description="Null: offered in every pool.")
    subject: str | None = None
    html: str | None = None


@strawberry.input
class ReplyTemplateUpdateInput:
    id: strawberry.ID
    name: str | None = None
    text: str | None = None
    pool_id: strawberry.ID | None = strawberry.field(default=strawberry.UNSET, description="null: every pool.")
    subject: str | None = strawberry.field(default=strawberry.UNSET, description="null removes it.")
    html: str | None = strawberry.field(default=strawberry.UNSET, description="null removes it.")


@strawberry.input
class ReplyTemplateDeleteInput:
    id: strawberry.ID


@strawberry.type
class ReplyTemplatePayload:
    reply_template: ReplyTemplate | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ReplyTemplateDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UserSignaturePayload:
    user: Annotated[User, strawberry.lazy("schema.auth")] | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)

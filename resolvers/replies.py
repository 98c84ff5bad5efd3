"""Canned replies (supervisors maintain them, agents use them) and reply signatures."""

from __future__ import annotations

from typing import Any

import strawberry

from app.errors import not_found
from app.models import Case
from app.services import mail as mail_service
from app.services import replies as service
from resolvers.mutation_helpers import mutate
from schema.auth import User, UserSignatureSetInput
from schema.ids import db_id, decode_id, optional_db_id
from schema.permissions import allow
from schema.replies import (
    ReplyPreview,
    ReplyTemplate,
    ReplyTemplateCreateInput,
    ReplyTemplateDeleteInput,
    ReplyTemplateDeletePayload,
    ReplyTemplatePayload,
    ReplyTemplateUpdateInput,
    UserSignaturePayload,
)


def _payload(template: Any) -> dict[str, Any]:
    return {"reply_template": ReplyTemplate.from_row(template)}


@strawberry.type
class ReplyQuery:
    @strawberry.field(
        permission_classes=[allow("Query.replyTemplates")],
        description="Canned replies by name; given a pool, the global ones and that pool's.",
    )
    async def reply_templates(self, info: strawberry.Info, pool_id: strawberry.ID | None = None) -> list[ReplyTemplate]:
        pool = decode_id(pool_id, "Pool") if pool_id is not None else None
        if pool_id is not None and pool is None:
            return []
        async with info.context.runtime.reading() as session:
            return [ReplyTemplate.from_row(t) for t in await service.list_reply_templates(session, pool_id=pool)]

    @strawberry.field(
        permission_classes=[allow("Query.replyPreview")],
        description="A canned reply filled in for a case, for the agent to read (or edit and send as text).",
    )
    async def reply_preview(
        self, info: strawberry.Info, template_id: strawberry.ID, case_id: strawberry.ID
    ) -> ReplyPreview | None:
        template, case_db_id = decode_id(template_id, "ReplyTemplate"), decode_id(case_id, "Case")
        if template is None or case_db_id is None:
            return None
        async with info.context.runtime.reading() as session:
            case = await session.get(Case, case_db_id)
            if case is None:
                raise not_found("case", "caseId")
            mailbox = await mail_service.notification_mailbox(session, case_id=case.id)
            rendered = await service.render_reply_template(
                session, template_id=template, case=case, actor=info.context.actor, mailbox=mailbox
            )
        return ReplyPreview(subject=rendered.subject, text=rendered.text, html=rendered.html)


@strawberry.type
class ReplyMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.replyTemplateCreate")])
    async def reply_template_create(
        self, info: strawberry.Info, input: ReplyTemplateCreateInput
    ) -> ReplyTemplatePayload:
        return await mutate(
            info,
            ReplyTemplatePayload,
            lambda session: service.create_reply_template(
                session,
                actor=info.context.actor,
                name=input.name,
                text=input.text,
                pool_id=optional_db_id(input.pool_id, "Pool", "poolId"),
                subject=input.subject,
                html=input.html,
            ),
            _payload,
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.replyTemplateUpdate")])
    async def reply_template_update(
        self, info: strawberry.Info, input: ReplyTemplateUpdateInput
    ) -> ReplyTemplatePayload:
        def work(session: Any) -> Any:
            changes: dict[str, Any] = {}
            for name in ("name", "text"):
                if getattr(input, name) is not None:
                    changes[name] = getattr(input, name)
            for name in ("subject", "html"):
                if getattr(input, name) is not strawberry.UNSET:
                    changes[name] = getattr(input, name)
            if input.pool_id is not strawberry.UNSET:
                changes["pool_id"] = optional_db_id(input.pool_id, "Pool", "poolId")
            return service.update_reply_template(
                session, actor=info.context.actor, template_id=db_id(input.id, "ReplyTemplate", "id"), **changes
            )

        return await mutate(info, ReplyTemplatePayload, work, _payload)

    @strawberry.mutation(permission_classes=[allow("Mutation.replyTemplateDelete")])
    async def reply_template_delete(
        self, info: strawberry.Info, input: ReplyTemplateDeleteInput
    ) -> ReplyTemplateDeletePayload:
        return await mutate(
            info,
            ReplyTemplateDeletePayload,
            lambda session: service.delete_reply_template(
                session, actor=info.context.actor, template_id=db_id(input.id, "ReplyTemplate", "id")
            ),
            lambda _: {"deleted_id": input.id},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.userSignatureSet")],
        description="Set the signature appended to a user's email replies: agents their own, supervisors anyone's.",
    )
    async def user_signature_set(self, info: strawberry.Info, input: UserSignatureSetInput) -> UserSignaturePayload:
        actor = info.context.actor

        def work(session: Any) -> Any:
            user_id = actor.user_id if input.user_id is None else db_id(input.user_id, "User", "userId")
            return service.set_signature(session, actor=actor, user_id=user_id, signature=input.signature)

        return await mutate(info, UserSignaturePayload, work, lambda user: {"user": User.from_row(user)})

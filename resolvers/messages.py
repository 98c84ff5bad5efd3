"""Message templates (supervisors edit the system's own mails)."""

from __future__ import annotations

import strawberry

from app.models import MESSAGE_KINDS
from app.services import messages as service
from resolvers.mutation_helpers import mutate
from schema.messages import MessageTemplate, MessageTemplatePayload, MessageTemplateResetInput, MessageTemplateSetInput
from schema.permissions import allow


@strawberry.type
class MessageQuery:
    @strawberry.field(
        permission_classes=[allow("Query.messageTemplates")],
        description="Every system message, as edited or by default, with the variables it can use.",
    )
    async def message_templates(self, info: strawberry.Info) -> list[MessageTemplate]:
        async with info.context.runtime.reading() as session:
            edited = await service.edited(session)
        return [MessageTemplate.of(kind, edited.get(kind)) for kind in MESSAGE_KINDS]


@strawberry.type
class MessageMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.messageTemplateSet")])
    async def message_template_set(
        self, info: strawberry.Info, input: MessageTemplateSetInput
    ) -> MessageTemplatePayload:
        return await mutate(
            info,
            MessageTemplatePayload,
            lambda session: service.set_template(
                session, actor=info.context.actor, kind=input.kind.value, subject=input.subject, text=input.text
            ),
            lambda template: {"message_template": MessageTemplate.of(template.kind, template)},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.messageTemplateReset")], description="Back to the default words."
    )
    async def message_template_reset(
        self, info: strawberry.Info, input: MessageTemplateResetInput
    ) -> MessageTemplatePayload:
        return await mutate(
            info,
            MessageTemplatePayload,
            lambda session: service.reset_template(session, actor=info.context.actor, kind=input.kind.value),
            lambda _: {"message_template": MessageTemplate.of(input.kind.value, None)},
        )

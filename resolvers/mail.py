"""Mail: supervised mailboxes (administered by admins)."""

from __future__ import annotations

import logging
from typing import Any

import strawberry

from app.services import mail as service
from resolvers.mutation_helpers import mutate
from schema.contacts import Contact
from schema.ids import db_id, decode_id, optional_db_id
from schema.mail import (
    CaseReplyInput,
    CaseReplyPayload,
    ImapSettingsInput,
    Mailbox,
    MailboxCreateInput,
    MailboxDeleteInput,
    MailboxDeletePayload,
    MailboxPayload,
    MailboxUpdateInput,
    RelaySettingsInput,
    auto_response_settings,
)
from schema.permissions import allow

log = logging.getLogger(__name__)


def _settings(group: ImapSettingsInput | RelaySettingsInput | None) -> dict[str, Any] | None:
    """An input group as the service's settings mapping (enums as their values)."""
    if group is None:
        return None
    values = {name: getattr(group, name) for name in group.__dataclass_fields__}
    return {name: getattr(value, "value", value) for name, value in values.items()}


def _payload(mailbox: Any) -> dict[str, Any]:
    return {"mailbox": Mailbox.from_row(mailbox)}


@strawberry.type
class MailQuery:
    @strawberry.field(
        permission_classes=[allow("Query.mailboxes")], description="Every supervised mailbox, by address."
    )
    async def mailboxes(self, info: strawberry.Info) -> list[Mailbox]:
        async with info.context.runtime.reading() as session:
            return [Mailbox.from_row(m) for m in await service.list_mailboxes(session)]

    @strawberry.field(permission_classes=[allow("Query.mailbox")])
    async def mailbox(self, info: strawberry.Info, id: strawberry.ID) -> Mailbox | None:
        mailbox_id = decode_id(id, "Mailbox")
        if mailbox_id is None:
            return None
        async with info.context.runtime.reading() as session:
            row = await service.get_mailbox(session, mailbox_id)
        return None if row is None else Mailbox.from_row(row)


@strawberry.type
class MailMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.mailboxCreate")])
    async def mailbox_create(self, info: strawberry.Info, input: MailboxCreateInput) -> MailboxPayload:
        return await mutate(
            info,
            MailboxPayload,
            lambda session: service.create_mailbox(
                session,
                actor=info.context.actor,
                address=input.address,
                intake=input.intake.value,
                display_name=input.display_name,
                pool_id=optional_db_id(input.pool_id, "Pool", "poolId"),
                enabled=input.enabled,
                imap=_settings(input.imap),
                relay=_settings(input.relay),
                auto_response=auto_response_settings(input.auto_response),
                signature=input.signature,
            ),
            _payload,
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.mailboxUpdate")])
    async def mailbox_update(self, info: strawberry.Info, input: MailboxUpdateInput) -> MailboxPayload:
        def work(session: Any) -> Any:
            changes: dict[str, Any] = {}
            if input.display_name is not strawberry.UNSET:
                changes["display_name"] = input.display_name
            if input.pool_id is not strawberry.UNSET:
                changes["pool_id"] = optional_db_id(input.pool_id, "Pool", "poolId")
            if input.auto_response is not strawberry.UNSET:
                changes["auto_response"] = auto_response_settings(input.auto_response)
            if input.signature is not strawberry.UNSET:
                changes["signature"] = input.signature
            return service.update_mailbox(
                session,
                actor=info.context.actor,
                mailbox_id=db_id(input.id, "Mailbox", "id"),
                address=input.address,
                intake=input.intake.value if input.intake else None,
                enabled=input.enabled,
                imap=_settings(input.imap),
                relay=_settings(input.relay),
                **changes,
            )

        return await mutate(info, MailboxPayload, work, _payload)

    @strawberry.mutation(
        permission_classes=[allow("Mutation.mailboxDelete")], description="Remove a mailbox; the mail it took in stays."
    )
    async def mailbox_delete(self, info: strawberry.Info, input: MailboxDeleteInput) -> MailboxDeletePayload:
        return await mutate(
            info,
            MailboxDeletePayload,
            lambda session: service.delete_mailbox(
                session, actor=info.context.actor, mailbox_id=db_id(input.id, "Mailbox", "id")
            ),
            lambda _: {"deleted_id": input.id},
        )


@strawberry.type
class CaseReplyMutation:
    @strawberry.mutation(
        permission_classes=[allow("Mutation.caseReply")],
        description="Answer a case by email: an outbound contact on the case, sent from the outbox by the worker.",
    )
    async def case_reply(self, info: strawberry.Info, input: CaseReplyInput) -> CaseReplyPayload:
        runtime = info.context.runtime

        def work(session: Any) -> Any:
            return service.reply_to_case(
                session,
                actor=info.context.actor,
                case_id=db_id(input.case_id, "Case", "caseId"),
                to=input.to,
                cc=input.cc,
                bcc=input.bcc,
                subject=input.subject,
                text=input.text,
                html=input.html,
                attachment_ids=[
                    db_id(a, "Attachment", f"attachmentIds.{n}") for n, a in enumerate(input.attachment_ids)
                ],
                mailbox_id=optional_db_id(input.mailbox_id, "Mailbox", "mailboxId"),
                template_id=optional_db_id(input.template_id, "ReplyTemplate", "templateId"),
            )

        async def shape(result: Any) -> dict[str, Any]:
            contact, outbound_id = result
            # Committed: now the worker may send it (the sweeper sends it if this enqueue is lost).
            try:
                await service.send_enqueuer(service.arq_of(runtime))(outbound_id)
            except Exception:  # noqa: BLE001 - the reply is in the outbox either way
                log.warning("enqueueing reply %s failed; the sweeper will", outbound_id, exc_info=True)
            return {"contact": Contact.from_row(contact)}

        return await mutate(info, CaseReplyPayload, work, shape)

"""Forms: the customer form, case templates with their forms, and dictionaries (read by everyone
who fills in a form, kept by supervisors)."""

from __future__ import annotations

import strawberry

from app.services import forms as service
from app.services import templates as template_service
from app.services.forms import EntryInput
from resolvers.mutation_helpers import mutate
from schema.forms import (
    CaseTemplate,
    CaseTemplateCreateInput,
    CaseTemplateDeleteInput,
    CaseTemplateDeletePayload,
    CaseTemplatePayload,
    CaseTemplateUpdateInput,
    Dictionary,
    DictionaryCreateInput,
    DictionaryDeleteInput,
    DictionaryDeletePayload,
    DictionaryEntryInput,
    DictionaryPayload,
    DictionaryUpdateInput,
    FormField,
    FormFieldCreateInput,
    FormFieldDeleteInput,
    FormFieldDeletePayload,
    FormFieldPayload,
    FormFieldUpdateInput,
)
from schema.ids import db_id, decode_id, optional_db_id
from schema.permissions import allow


def _given(**values) -> dict:
    """The optional inputs that were given (null among them: it clears); one left out changes nothing."""
    return {name: value for name, value in values.items() if value is not strawberry.UNSET}


def _maybe_id(global_id, type_name: str, field: str):
    """A global id as a database id; null and left out stay what they are."""
    return global_id if global_id is None or global_id is strawberry.UNSET else db_id(global_id, type_name, field)


def _entries(entries: list[DictionaryEntryInput] | None) -> list[EntryInput] | None:
    return None if entries is None else [EntryInput(value=e.value, label=e.label, active=e.active) for e in entries]


async def load_case_template(info: strawberry.Info, template_id: int) -> CaseTemplate | None:
    return await info.context.loaders.case_template.load(template_id)


async def load_dictionary(info: strawberry.Info, dictionary_id: int) -> Dictionary | None:
    return await info.context.loaders.dictionary.load(dictionary_id)


@strawberry.type
class FormQuery:
    @strawberry.field(
        permission_classes=[allow("Query.customerForm")], description="The fields of the customer profile, in order."
    )
    async def customer_form(self, info: strawberry.Info) -> list[FormField]:
        async with info.context.runtime.reading() as session:
            return [FormField.from_row(f) for f in await service.form_fields(session, template_id=None)]

    @strawberry.field(
        permission_classes=[allow("Query.caseTemplates")],
        description="Case templates by name; active ones unless includeInactive.",
    )
    async def case_templates(self, info: strawberry.Info, include_inactive: bool = False) -> list[CaseTemplate]:
        async with info.context.runtime.reading() as session:
            rows = await template_service.list_templates(session, include_inactive=include_inactive)
        return [CaseTemplate.from_row(t) for t in rows]

    @strawberry.field(permission_classes=[allow("Query.caseTemplate")])
    async def case_template(self, info: strawberry.Info, id: strawberry.ID) -> CaseTemplate | None:
        template_id = decode_id(id, "CaseTemplate")
        return None if template_id is None else await load_case_template(info, template_id)

    @strawberry.field(
        permission_classes=[allow("Query.dictionaries")],
        description="Dictionaries by name: all of them, or those a pool keeps.",
    )
    async def dictionaries(self, info: strawberry.Info, pool_id: strawberry.ID | None = None) -> list[Dictionary]:
        async with info.context.runtime.reading() as session:
            if pool_id is None:
                rows = await service.list_dictionaries(session)
            else:
                rows = await service.list_dictionaries(session, pool_id=decode_id(pool_id, "Pool") or -1)
        return [Dictionary.from_row(d) for d in rows]


@strawberry.type
class FormMutation:
    @strawberry.mutation(permission_classes=[allow("Mutation.dictionaryCreate")])
    async def dictionary_create(self, info: strawberry.Info, input: DictionaryCreateInput) -> DictionaryPayload:
        return await mutate(
            info,
            DictionaryPayload,
            lambda session: service.create_dictionary(
                session,
                actor=info.context.actor,
                name=input.name,
                description=input.description,
                pool_id=optional_db_id(input.pool_id, "Pool", "poolId"),
                entries=_entries(input.entries),
            ),
            lambda row: {"dictionary": Dictionary.from_row(row)},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.dictionaryUpdate")])
    async def dictionary_update(self, info: strawberry.Info, input: DictionaryUpdateInput) -> DictionaryPayload:
        return await mutate(
            info,
            DictionaryPayload,
            lambda session: service.update_dictionary(
                session,
                actor=info.context.actor,
                dictionary_id=db_id(input.id, "Dictionary", "id"),
                name=input.name,
                entries=_entries(input.entries),
                **_given(description=input.description, pool_id=_maybe_id(input.pool_id, "Pool", "poolId")),
            ),
            lambda row: {"dictionary": Dictionary.from_row(row)},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.dictionaryDelete")],
        description="Delete a dictionary no dropdown uses (IN_USE otherwise).",
    )
    async def dictionary_delete(self, info: strawberry.Info, input: DictionaryDeleteInput) -> DictionaryDeletePayload:
        return await mutate(
            info,
            DictionaryDeletePayload,
            lambda session: service.delete_dictionary(
                session, actor=info.context.actor, dictionary_id=db_id(input.id, "Dictionary", "id")
            ),
            lambda _: {"deleted_id": input.id},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.formFieldCreate")],
        description="Add a field to the customer form or to a case template's form.",
    )
    async def form_field_create(self, info: strawberry.Info, input: FormFieldCreateInput) -> FormFieldPayload:
        return await mutate(
            info,
            FormFieldPayload,
            lambda session: service.create_field(
                session,
                actor=info.context.actor,
                template_id=optional_db_id(input.template_id, "CaseTemplate", "templateId"),
                key=input.key,
                label=input.label,
                type=input.type.value,
                mandatory=input.mandatory,
                help_text=input.help_text,
                position=input.position,
                dictionary_id=optional_db_id(input.dictionary_id, "Dictionary", "dictionaryId"),
                pattern=input.pattern,
                pattern_message=input.pattern_message,
                searchable=input.searchable,
            ),
            lambda row: {"form_field": FormField.from_row(row)},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.formFieldUpdate")],
        description="Change a field's definition; records already stored are left as they are.",
    )
    async def form_field_update(self, info: strawberry.Info, input: FormFieldUpdateInput) -> FormFieldPayload:
        return await mutate(
            info,
            FormFieldPayload,
            lambda session: service.update_field(
                session,
                actor=info.context.actor,
                field_id=db_id(input.id, "FormField", "id"),
                label=input.label,
                type=input.type.value if input.type else None,
                mandatory=input.mandatory,
                position=input.position,
                searchable=input.searchable,
                **_given(
                    help_text=input.help_text,
                    dictionary_id=_maybe_id(input.dictionary_id, "Dictionary", "dictionaryId"),
                    pattern=input.pattern,
                    pattern_message=input.pattern_message,
                ),
            ),
            lambda row: {"form_field": FormField.from_row(row)},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.formFieldDelete")],
        description="Remove a field from its form; records keep what they hold under its key.",
    )
    async def form_field_delete(self, info: strawberry.Info, input: FormFieldDeleteInput) -> FormFieldDeletePayload:
        return await mutate(
            info,
            FormFieldDeletePayload,
            lambda session: service.delete_field(
                session, actor=info.context.actor, field_id=db_id(input.id, "FormField", "id")
            ),
            lambda _: {"deleted_id": input.id},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.caseTemplateCreate")])
    async def case_template_create(self, info: strawberry.Info, input: CaseTemplateCreateInput) -> CaseTemplatePayload:
        return await mutate(
            info,
            CaseTemplatePayload,
            lambda session: template_service.create_template(
                session,
                actor=info.context.actor,
                name=input.name,
                description=input.description,
                subject=input.subject,
                priority=input.priority.value if input.priority else None,
                pool_id=optional_db_id(input.pool_id, "Pool", "poolId"),
                fields=input.fields,
                active=input.active,
            ),
            lambda row: {"case_template": CaseTemplate.from_row(row)},
        )

    @strawberry.mutation(permission_classes=[allow("Mutation.caseTemplateUpdate")])
    async def case_template_update(self, info: strawberry.Info, input: CaseTemplateUpdateInput) -> CaseTemplatePayload:
        return await mutate(
            info,
            CaseTemplatePayload,
            lambda session: template_service.update_template(
                session,
                actor=info.context.actor,
                template_id=db_id(input.id, "CaseTemplate", "id"),
                name=input.name,
                fields=input.fields,
                active=input.active,
                region=info.context.phone_region,
                **_given(
                    description=input.description,
                    subject=input.subject,
                    priority=input.priority.value if input.priority else input.priority,
                    pool_id=_maybe_id(input.pool_id, "Pool", "poolId"),
                ),
            ),
            lambda row: {"case_template": CaseTemplate.from_row(row)},
        )

    @strawberry.mutation(
        permission_classes=[allow("Mutation.caseTemplateDelete")],
        description="Delete a template and its form; IN_USE once cases were opened from it (deactivate it).",
    )
    async def case_template_delete(
        self, info: strawberry.Info, input: CaseTemplateDeleteInput
    ) -> CaseTemplateDeletePayload:
        return await mutate(
            info,
            CaseTemplateDeletePayload,
            lambda session: template_service.delete_template(
                session, actor=info.context.actor, template_id=db_id(input.id, "CaseTemplate", "id")
            ),
            lambda _: {"deleted_id": input.id},
        )

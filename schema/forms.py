"""Forms: dictionaries, case templates and the field definitions UIs render forms from, with the
inputs and payloads of keeping them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from schema.enums import FieldType, Priority
from schema.errors import UserError
from schema.node import Node, load_later

if TYPE_CHECKING:
    from schema.queues import Pool


@strawberry.type(description="One value of a dictionary: records store the value, forms show the label.")
class DictionaryEntry:
    value: str
    label: str
    active: bool = strawberry.field(description="Inactive values are no longer offered; records keep them.")


@strawberry.type(description="A named list of values for dropdowns: global, or kept by one pool.")
class Dictionary(Node):
    db_id: strawberry.Private[int]
    pool_id: strawberry.Private[int | None]
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="The pool that keeps it; null for a global dictionary.")
    def pool(self, info: strawberry.Info) -> Annotated[Pool, strawberry.lazy("schema.queues")] | None:
        return load_later(info.context.loaders.pool, self.pool_id)

    @strawberry.field(description="Its values in order; the active ones unless includeInactive.")
    async def entries(self, info: strawberry.Info, include_inactive: bool = False) -> list[DictionaryEntry]:
        entries = await info.context.loaders.dictionary_entries.load(self.db_id)
        return [e for e in entries if include_inactive or e.active]


@strawberry.type(description="One field of a form: the customer profile's or a case template's.")
class FormField(Node):
    db_id: strawberry.Private[int]
    template_id: strawberry.Private[int | None]
    dictionary_id: strawberry.Private[int | None]
    key: str = strawberry.field(description="The key of the value in the record's `fields`.")
    label: str
    type: FieldType
    mandatory: bool
    help_text: str | None
    position: int
    pattern: str | None = strawberry.field(description="FIXED_FORMAT: the whole value matches this regular expression.")
    pattern_message: str | None = strawberry.field(
        description="FIXED_FORMAT: what a value that does not match is told."
    )
    searchable: bool = strawberry.field(
        description="Customer and case searches filter and match by its values (others are refused as filters)."
    )

    @classmethod
    def from_row(cls, row: Any) -> FormField:
        return super().from_row(row, type=FieldType(row.type))

    @strawberry.field(description="DROPDOWN: the dictionary its values come from.")
    def dictionary(self, info: strawberry.Info) -> Dictionary | None:
        return load_later(info.context.loaders.dictionary, self.dictionary_id)

    @strawberry.field(description="DROPDOWN: the values offered (its dictionary's active entries, in order).")
    async def options(self, info: strawberry.Info) -> list[DictionaryEntry]:
        if self.dictionary_id is None:
            return []
        return [e for e in await info.context.loaders.dictionary_entries.load(self.dictionary_id) if e.active]


@strawberry.type(
    description="A kind of case: the defaults a new case takes and the form its fields are filled in with."
)
class CaseTemplate(Node):
    db_id: strawberry.Private[int]
    pool_id: strawberry.Private[int | None]
    name: str
    description: str | None
    subject: str | None = strawberry.field(description="The subject of a new case that gives none.")
    priority: Priority | None = strawberry.field(description="The priority of a new case that gives none.")
    fields: JSON = strawberry.field(description="Default fields; a new case's own fields win key by key.")
    active: bool = strawberry.field(description="Inactive templates open no new cases.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> CaseTemplate:
        return super().from_row(row, priority=Priority(row.priority) if row.priority else None)

    @strawberry.field(description="The pool a new case waits in unless it names one.")
    def pool(self, info: strawberry.Info) -> Annotated[Pool, strawberry.lazy("schema.queues")] | None:
        return load_later(info.context.loaders.pool, self.pool_id)

    @strawberry.field(description="The form of its cases, in order.")
    async def form(self, info: strawberry.Info) -> list[FormField]:
        return await info.context.loaders.template_form.load(self.db_id)


@strawberry.input
class DictionaryEntryInput:
    value: str
    label: str | None = strawberry.field(default=None, description="The value when left out.")
    active: bool = True


@strawberry.input
class DictionaryCreateInput:
    name: str
    description: str | None = None
    pool_id: strawberry.ID | None = strawberry.field(default=None, description="Null for a global dictionary.")
    entries: list[DictionaryEntryInput] = strawberry.field(default_factory=list)


@strawberry.input
class DictionaryUpdateInput:
    id: strawberry.ID
    name: str | None = None
    description: str | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    pool_id: strawberry.ID | None = strawberry.field(default=strawberry.UNSET, description="null makes it global.")
    entries: list[DictionaryEntryInput] | None = strawberry.field(
        default=None,
        description="The whole list, in order: a value left out is removed (deactivate it to keep it shown).",
    )


@strawberry.input
class FormFieldCreateInput:
    template_id: strawberry.ID | None = strawberry.field(
        default=None, description="The case template whose form it joins; null for the customer form."
    )
    key: str
    label: str
    type: FieldType
    mandatory: bool = False
    help_text: str | None = None
    position: int | None = strawberry.field(default=None, description="Last when left out.")
    dictionary_id: strawberry.ID | None = strawberry.field(default=None, description="DROPDOWN: its values.")
    pattern: str | None = strawberry.field(default=None, description="FIXED_FORMAT: a regular expression.")
    pattern_message: str | None = None
    searchable: bool = strawberry.field(default=False, description="Searches filter and match by its values.")


@strawberry.input
class FormFieldUpdateInput:
    id: strawberry.ID
    label: str | None = None
    type: FieldType | None = None
    mandatory: bool | None = None
    help_text: str | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    position: int | None = None
    dictionary_id: strawberry.ID | None = strawberry.UNSET
    pattern: str | None = strawberry.UNSET
    pattern_message: str | None = strawberry.UNSET
    searchable: bool | None = None


@strawberry.input
class CaseTemplateCreateInput:
    name: str
    description: str | None = None
    subject: str | None = None
    priority: Priority | None = None
    pool_id: strawberry.ID | None = None
    fields: JSON | None = None
    active: bool = True


@strawberry.input
class CaseTemplateUpdateInput:
    id: strawberry.ID
    name: str | None = None
    description: str | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    subject: str | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    priority: Priority | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    pool_id: strawberry.ID | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    fields: JSON | None = strawberry.field(default=None, description="Replaces the default fields.")
    active: bool | None = None


@strawberry.input
class DictionaryDeleteInput:
    id: strawberry.ID


@strawberry.input
class FormFieldDeleteInput:
    id: strawberry.ID


@strawberry.input
class CaseTemplateDeleteInput:
    id: strawberry.ID


@strawberry.type
class DictionaryPayload:
    dictionary: Dictionary | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class FormFieldPayload:
    form_field: FormField | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CaseTemplatePayload:
    case_template: CaseTemplate | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DictionaryDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class FormFieldDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CaseTemplateDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)

"""Cases, and the inputs and payloads of creating, updating, closing, reopening, moving, linking and merging them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from app.models import CATEGORY_OF_STATUS
from schema.auth import User
from schema.customers import Customer
from schema.enums import CaseStatus, Priority, StatusCategory
from schema.errors import UserError
from schema.node import Node, load_case, load_customer, load_customers, load_later, load_user
from schema.pagination import Connection
from schema.permissions import allow
from schema.tasks import Task, TaskStatus, tasks_connection

if TYPE_CHECKING:
    from schema.contacts import Contact
    from schema.forms import CaseTemplate
    from schema.queues import Pool
    from schema.reasons import ReasonCode


@strawberry.type
class Case(Node):
    db_id: strawberry.Private[int]
    parent_id: strawberry.Private[int | None]
    assignee_id: strawberry.Private[int | None]
    pool_id: strawberry.Private[int | None]
    template_id: strawberry.Private[int | None]
    merged_into_id: strawberry.Private[int | None]
    reference: str
    subject: str
    description: str | None
    status: CaseStatus
    reason_code: str | None = strawberry.field(description="The code of why the case is in its status (see reason).")
    priority: Priority
    severity: str | None
    fields: JSON
    archived_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    waiting_since: datetime | None = strawberry.field(
        description="Since when the case waits in its pool for an agent; null while an agent has it."
    )

    @classmethod
    def from_row(cls, row: Any) -> Case:
        return super().from_row(row, status=CaseStatus(row.status), priority=Priority(row.priority))

    @strawberry.field(description="The stage of work the status belongs to.")
    def status_category(self) -> StatusCategory:
        return StatusCategory(CATEGORY_OF_STATUS[self.status.value])

    @strawberry.field(description="Why the case is in its status, with the code's current description.")
    def reason(self, info: strawberry.Info) -> Annotated[ReasonCode, strawberry.lazy("schema.reasons")] | None:
        return load_later(info.context.loaders.reason_code, self.reason_code)

    @strawberry.field(description="The template the case was opened from; its form is the case's form.")
    def template(self, info: strawberry.Info) -> Annotated[CaseTemplate, strawberry.lazy("schema.forms")] | None:
        return load_later(info.context.loaders.case_template, self.template_id)

    @strawberry.field(description="The pool (queue) the case waits in.")
    def pool(self, info: strawberry.Info) -> Annotated[Pool, strawberry.lazy("schema.queues")] | None:
        return load_later(info.context.loaders.pool, self.pool_id)

    @strawberry.field(description="Every customer this case concerns, the primary one first.")
    async def customers(self, info: strawberry.Info) -> list[Customer]:
        links = await info.context.loaders.case_links.load(self.db_id)
        return await load_customers(info, [link.customer_id for link in links])

    @strawberry.field
    async def primary_customer(self, info: strawberry.Info) -> Customer | None:
        links = await info.context.loaders.case_links.load(self.db_id)
        primary = next((link.customer_id for link in links if link.is_primary), None)
        return await load_customer(info, primary)

    @strawberry.field(
        permission_classes=[allow("Case.contacts")], description="The contacts on this case, newest first."
    )
    async def contacts(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Contact, strawberry.lazy("schema.contacts")]]:
        from schema.contacts import Contact  # contacts refer to cases: imported when first used

        page = await info.context.loaders.case_contacts_page(self.db_id, first, after)
        return Connection.from_page(page, Contact.from_row)

    @strawberry.field(
        permission_classes=[allow("Case.tasks")],
        description="The tasks on this case, soonest due first (undated last).",
    )
    async def tasks(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        status: TaskStatus | None = None,
    ) -> Connection[Task]:
        return await tasks_connection(info, "case", self.db_id, first, after, status)

    @strawberry.field
    async def parent(self, info: strawberry.Info) -> Case | None:
        return await load_case(info, self.parent_id)

    @strawberry.field
    async def assignee(self, info: strawberry.Info) -> User | None:
        return await load_user(info, self.assignee_id)

    @strawberry.field(description="For a merged case: the case it was merged into.")
    async def merged_into(self, info: strawberry.Info) -> Case | None:
        return await load_case(info, self.merged_into_id)


@strawberry.input
class CaseCreateInput:
    subject: str | None = strawberry.field(default=None, description="Required unless the template has one.")
    customer_ids: list[strawberry.ID] = strawberry.field(description="The first customer is the primary one.")
    description: str | None = None
    priority: Priority | None = strawberry.field(default=None, description="The template's, else NORMAL.")
    severity: str | None = None
    fields: JSON | None = strawberry.field(
        default=None, description="Checked against the template's form; merged over its default fields."
    )
    parent_id: strawberry.ID | None = None
    pool_id: strawberry.ID | None = strawberry.field(
        default=None, description="The case waits there for an agent (the template's pool when left out)."
    )
    template_id: strawberry.ID | None = strawberry.field(
        default=None, description="Open the case from a template: its defaults fill what is left out."
    )


@strawberry.input
class CaseUpdateInput:
    id: strawberry.ID
    subject: str | None = None
    description: str | None = None
    status: CaseStatus | None = None
    priority: Priority | None = None
    severity: str | None = None
    fields: JSON | None = strawberry.field(
        default=None, description="Merged into the existing fields; those written are checked against the case's form."
    )
    assignee_id: strawberry.ID | None = None
    parent_id: strawberry.ID | None = None
    reason_code: str | None = strawberry.field(
        default=None, description="With a status change: an active reason code of the new status's category."
    )


@strawberry.input
class CaseFilter:
    status: CaseStatus | None = None
    customer_id: strawberry.ID | None = None
    assignee_id: strawberry.ID | None = None


@strawberry.input
class CaseCloseInput:
    case_id: strawberry.ID
    reason_code: str


@strawberry.input
class CaseReopenInput:
    case_id: strawberry.ID
    reason_code: str | None = None


@strawberry.input
class CaseMoveInput:
    case_id: strawberry.ID
    from_customer_id: strawberry.ID
    to_customer_id: strawberry.ID


@strawberry.input
class CaseCustomerLinkInput:
    case_id: strawberry.ID
    customer_id: strawberry.ID
    primary: bool = strawberry.field(default=False, description="Make this customer the case's primary customer.")


@strawberry.input
class CaseCustomerUnlinkInput:
    case_id: strawberry.ID
    customer_id: strawberry.ID


@strawberry.input
class CaseMergeInput:
    source_case_id: strawberry.ID
    target_case_id: strawberry.ID


@strawberry.type
class CasePayload:
    case: Case | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CaseMergePayload:
    case: Case | None = strawberry.field(
        default=None, description="The target case, now holding the source's contacts."
    )
    source: Case | None = strawberry.field(default=None, description="The source case, now a tombstone.")
    errors: list[UserError] = strawberry.field(default_factory=list)

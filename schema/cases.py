"""Cases: inputs and payloads of creating, updating, closing, reopening, moving, linking and merging."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from schema.enums import CaseStatus, Priority
from schema.errors import UserError
from schema.types import Case


@strawberry.input
class CaseCreateInput:
    subject: str
    customer_ids: list[strawberry.ID] = strawberry.field(description="The first customer is the primary one.")
    description: str | None = None
    priority: Priority = Priority.NORMAL
    severity: str | None = None
    fields: JSON | None = None
    parent_id: strawberry.ID | None = None


@strawberry.input
class CaseUpdateInput:
    id: strawberry.ID
    subject: str | None = None
    description: str | None = None
    status: CaseStatus | None = None
    priority: Priority | None = None
    severity: str | None = None
    fields: JSON | None = None
    assignee_id: strawberry.ID | None = None
    parent_id: strawberry.ID | None = None


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
    case: Case | None = strawberry.field(default=None, description="The target case, now holding the source's contacts.")
    source: Case | None = strawberry.field(default=None, description="The source case, now a tombstone.")
    errors: list[UserError] = strawberry.field(default_factory=list)

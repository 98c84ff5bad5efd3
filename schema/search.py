"""Search results and filters: customers by what an agent hears, cases by their words."""

from __future__ import annotations

from datetime import datetime

import strawberry

from schema.cases import Case
from schema.customers import Customer
from schema.enums import CaseStatus, CustomerStatus, Priority, values_enum

CustomerMatchKind = values_enum(
    "CustomerMatchKind",
    ("email", "phone", "phone_national", "account_id", "external_ref", "customer_number", "case_reference", "name"),
    description="What a customer search result matched: PHONE_NATIONAL is a number typed without its country code.",
)


@strawberry.type(description="One reason a customer was found.")
class CustomerMatch:
    kind: CustomerMatchKind
    value: str = strawberry.field(description="The identifier, number, reference or name that matched.")
    score: float = strawberry.field(description="1 for an exact match; the name similarity (0..1) for a name.")


@strawberry.type
class CustomerSearchResult:
    customer: Customer
    matched_by: list[CustomerMatchKind] = strawberry.field(description="The kinds of match, the strongest first.")
    matches: list[CustomerMatch]


@strawberry.input
class CustomerSearchFilters:
    status: list[CustomerStatus] | None = strawberry.field(
        default=None, description="ACTIVE and/or ARCHIVED; only ACTIVE when not given."
    )
    created_after: datetime | None = None
    created_before: datetime | None = None
    last_activity_after: datetime | None = None
    last_activity_before: datetime | None = None


@strawberry.type
class CaseSearchResult:
    case: Case
    snippet: str | None = strawberry.field(
        description="Where the words were found, HTML-escaped, the words in <mark>…</mark>; null for a reference."
    )
    by_reference: bool = strawberry.field(description="The query was this case's reference.")


@strawberry.input
class CaseSearchFilters:
    status: list[CaseStatus] | None = None
    priority: list[Priority] | None = None
    assignee_id: strawberry.ID | None = None
    customer_id: strawberry.ID | None = None
    pool_id: strawberry.ID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    include_archived: bool = False

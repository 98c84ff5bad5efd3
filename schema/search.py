"""Search results and filters: customers by what an agent hears, cases by their words."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from app.models import SEARCH_SORTS, SEARCH_TARGETS
from schema.cases import Case
from schema.customers import Customer
from schema.enums import CaseStatus, CustomerStatus, Priority, values_enum
from schema.errors import UserError
from schema.ids import to_global_id
from schema.node import Node

CustomerMatchKind = values_enum(
    "CustomerMatchKind",
    (
        "email",
        "phone",
        "phone_national",
        "account_id",
        "external_ref",
        "customer_number",
        "case_reference",
        "custom_field",
        "name",
    ),
    description="What a customer search result matched: PHONE_NATIONAL is a number typed without its country code, "
    "CUSTOM_FIELD the value of a searchable custom field.",
)
SearchTarget = values_enum("SearchTarget", SEARCH_TARGETS, description="What a search screen finds.")
SearchSort = values_enum(
    "SearchSort",
    SEARCH_SORTS,
    description="RELEVANCE: best match first (the newest without a query); LAST_ACTIVITY: a customer's last "
    "activity, a case's last update.",
)


@strawberry.input(description="A searchable custom field holding a value (compared as the field stores it).")
class CustomFieldFilter:
    key: str
    value: JSON


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
    created_within_days: int | None = strawberry.field(
        default=None, description="Created in the last N days (counted when the search runs: for saved screens)."
    )
    last_activity_after: datetime | None = None
    last_activity_before: datetime | None = None
    last_activity_within_days: int | None = strawberry.field(default=None, description="Active in the last N days.")
    fields: list[CustomFieldFilter] | None = strawberry.field(
        default=None, description="Searchable fields of the customer form, all of them matching."
    )


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
    created_within_days: int | None = strawberry.field(
        default=None, description="Created in the last N days (counted when the search runs: for saved screens)."
    )
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    updated_within_days: int | None = strawberry.field(default=None, description="Updated in the last N days.")
    include_archived: bool | None = strawberry.field(default=None, description="False when not given.")
    fields: list[CustomFieldFilter] | None = strawberry.field(
        default=None, description="Searchable fields of the case templates' forms, all of them matching."
    )


@strawberry.type(
    description="A saved search: what it finds, its filters, the columns a result list shows and its order; "
    "a group's or everyone's. Run it with customerSearch(screenId:) or caseSearch(screenId:)."
)
class SearchScreen(Node):
    db_id: strawberry.Private[int]
    name: str
    description: str | None
    target: SearchTarget
    group_id: strawberry.ID | None = strawberry.field(description="The group whose members see it; null for everyone.")
    query: str | None = strawberry.field(description="What it searches for; null when the caller types it.")
    filters: JSON = strawberry.field(
        description="Its filters as CustomerSearchFilters or CaseSearchFilters take them (enum names, global ids)."
    )
    columns: list[str] = strawberry.field(
        description="What a result list shows, in order (fields.<key> for custom fields)."
    )
    sort: SearchSort
    position: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> SearchScreen:
        return super().from_row(
            row,
            target=SearchTarget(row.target),
            sort=SearchSort(row.sort),
            filters=_filters_as_input(row.filters),
            group_id=None if row.group_id is None else strawberry.ID(to_global_id("UserGroup", row.group_id)),
        )


def _filters_as_input(stored: dict[str, Any]) -> dict[str, Any]:
    """A screen's stored filters as the search inputs take them, so a UI can pass them back."""
    shown = dict(stored)
    for key in ("status", "priority"):
        if key in shown:
            shown[key] = [value.upper() for value in shown[key]]
    for key, type_name in (("poolId", "Pool"), ("assigneeId", "User")):
        if key in shown:
            shown[key] = to_global_id(type_name, shown[key])
    return shown


@strawberry.input
class SearchScreenCreateInput:
    name: str
    target: SearchTarget
    group_id: strawberry.ID | None = strawberry.field(default=None, description="Null: everyone sees it.")
    description: str | None = None
    query: str | None = None
    customer_filters: CustomerSearchFilters | None = strawberry.field(
        default=None, description="For a CUSTOMER screen."
    )
    case_filters: CaseSearchFilters | None = strawberry.field(
        default=None, description="For a CASE screen (without customerId: a screen serves any customer)."
    )
    columns: list[str] = strawberry.field(default_factory=list)
    sort: SearchSort = SearchSort.RELEVANCE  # type: ignore[attr-defined]
    position: int | None = strawberry.field(default=None, description="Last when left out.")


@strawberry.input(description="What is given replaces what the screen had; filters given replace all of its filters.")
class SearchScreenUpdateInput:
    id: strawberry.ID
    name: str | None = None
    group_id: strawberry.ID | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    query: str | None = strawberry.UNSET
    customer_filters: CustomerSearchFilters | None = None
    case_filters: CaseSearchFilters | None = None
    columns: list[str] | None = None
    sort: SearchSort | None = None
    position: int | None = None


@strawberry.input
class SearchScreenDeleteInput:
    id: strawberry.ID


@strawberry.type
class SearchScreenPayload:
    search_screen: SearchScreen | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SearchScreenDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)

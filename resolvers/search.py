"""Search: customerSearch and caseSearch, and the saved search screens they can run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.errors import ErrorCode, UserError
from app.pagination import page_size
from app.services import search as service
from resolvers.mutation_helpers import mutate
from schema.cases import Case
from schema.customers import Customer
from schema.ids import db_id, decode_id, optional_db_id
from schema.pagination import Connection
from schema.permissions import allow
from schema.search import (
    CaseSearchFilters,
    CaseSearchResult,
    CustomerMatch,
    CustomerMatchKind,
    CustomerSearchFilters,
    CustomerSearchResult,
    CustomFieldFilter,
    SearchScreen,
    SearchScreenCreateInput,
    SearchScreenDeleteInput,
    SearchScreenDeletePayload,
    SearchScreenPayload,
    SearchScreenUpdateInput,
    SearchSort,
    SearchTarget,
)


def _customer_result(hit: service.CustomerHit) -> CustomerSearchResult:
    return CustomerSearchResult(
        customer=Customer.from_row(hit.customer),
        matched_by=[CustomerMatchKind(how) for how in hit.matched_by],
        matches=[CustomerMatch(kind=CustomerMatchKind(m.how), value=m.value, score=m.score) for m in hit.matches],
    )


def _case_result(hit: service.CaseHit) -> CaseSearchResult:
    return CaseSearchResult(case=Case.from_row(hit.case), snippet=hit.snippet, by_reference=hit.by_reference)


def _moment(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _field_filters(fields: list[CustomFieldFilter] | None) -> list[dict[str, Any]] | None:
    return None if fields is None else [{"key": f.key, "value": f.value} for f in fields]


def _given(document: dict[str, Any]) -> dict[str, Any]:
    """The filters given (left out or null: not given, so a screen's filter stays)."""
    return {key: value for key, value in document.items() if value is not None}


def customer_filter_document(f: CustomerSearchFilters | None) -> dict[str, Any]:
    if f is None:
        return {}
    return _given(
        {
            "status": [s.value for s in f.status] if f.status else None,
            "createdAfter": _moment(f.created_after),
            "createdBefore": _moment(f.created_before),
            "createdWithinDays": f.created_within_days,
            "lastActivityAfter": _moment(f.last_activity_after),
            "lastActivityBefore": _moment(f.last_activity_before),
            "lastActivityWithinDays": f.last_activity_within_days,
            "fields": _field_filters(f.fields),
        }
    )


def case_filter_document(f: CaseSearchFilters | None) -> dict[str, Any]:
    if f is None:
        return {}
    return _given(
        {
            "status": [s.value for s in f.status] if f.status else None,
            "priority": [p.value for p in f.priority] if f.priority else None,
            "assigneeId": optional_db_id(f.assignee_id, "User", "filters.assigneeId"),
            "customerId": optional_db_id(f.customer_id, "Customer", "filters.customerId"),
            "poolId": optional_db_id(f.pool_id, "Pool", "filters.poolId"),
            "createdAfter": _moment(f.created_after),
            "createdBefore": _moment(f.created_before),
            "createdWithinDays": f.created_within_days,
            "updatedAfter": _moment(f.updated_after),
            "updatedBefore": _moment(f.updated_before),
            "updatedWithinDays": f.updated_within_days,
            "includeArchived": f.include_archived,
            "fields": _field_filters(f.fields),
        }
    )


async def _with_screen(
    info: strawberry.Info, session, screen_id: strawberry.ID | None, target: str, query, filters, sort
) -> service.SearchRequest:
    return await service.search_request(
        session,
        actor=info.context.actor,
        target=target,
        screen_id=optional_db_id(screen_id, "SearchScreen", "screenId"),
        request=service.SearchRequest(query=query, filters=filters, sort=sort.value if sort is not None else None),
    )


@strawberry.type
class SearchQuery:
    @strawberry.field(
        permission_classes=[allow("Query.customerSearch")],
        description="Customers by an email, a phone number in any format, an account id or external reference, "
        "a customer number, a case reference, a searchable custom field's value or a name (typos, accents and "
        "word order forgiven); best first. With screenId, the screen's query, filters and sort apply under "
        "the ones given.",
    )
    async def customer_search(
        self,
        info: strawberry.Info,
        query: str | None = None,
        filters: CustomerSearchFilters | None = None,
        first: int | None = None,
        after: str | None = None,
        screen_id: strawberry.ID | None = None,
        sort: SearchSort | None = None,
    ) -> Connection[CustomerSearchResult]:
        async with info.context.runtime.reading() as session:
            request = await _with_screen(
                info, session, screen_id, "customer", query, customer_filter_document(filters), sort
            )
            page = await service.search_customers(
                session,
                query=request.query,
                filters=service.customer_filters(request.filters),
                first=page_size(first),
                after=after,
                region=info.context.phone_region,
                sort=request.sort or "relevance",
            )
        return Connection.from_page(page, _customer_result)

    @strawberry.field(
        permission_classes=[allow("Query.caseSearch")],
        description="Cases by the words of their subject, description and contacts, best first, with snippets; "
        "a case reference finds that case. With screenId, the screen's query, filters and sort apply under "
        "the ones given.",
    )
    async def case_search(
        self,
        info: strawberry.Info,
        query: str | None = None,
        filters: CaseSearchFilters | None = None,
        first: int | None = None,
        after: str | None = None,
        screen_id: strawberry.ID | None = None,
        sort: SearchSort | None = None,
    ) -> Connection[CaseSearchResult]:
        async with info.context.runtime.reading() as session:
            request = await _with_screen(info, session, screen_id, "case", query, case_filter_document(filters), sort)
            page = await service.search_cases(
                session,
                query=request.query,
                filters=service.case_filters(request.filters),
                first=page_size(first),
                after=after,
                region=info.context.phone_region,
                sort=request.sort or "relevance",
            )
        return Connection.from_page(page, _case_result)

    @strawberry.field(
        permission_classes=[allow("Query.searchScreens")],
        description="The search screens the caller may run (everyone's and their groups'; all for supervisors), "
        "in order; of one target or group if asked.",
    )
    async def search_screens(
        self, info: strawberry.Info, target: SearchTarget | None = None, group_id: strawberry.ID | None = None
    ) -> list[SearchScreen]:
        async with info.context.runtime.reading() as session:
            rows = await service.list_screens(
                session,
                actor=info.context.actor,
                target=target.value if target is not None else None,
                group_id=optional_db_id(group_id, "UserGroup", "groupId"),
            )
        return [SearchScreen.from_row(row) for row in rows]

    @strawberry.field(
        permission_classes=[allow("Query.searchScreen")], description="A search screen the caller may run."
    )
    async def search_screen(self, info: strawberry.Info, id: strawberry.ID) -> SearchScreen | None:
        screen_id = decode_id(id, "SearchScreen")
        if screen_id is None:
            return None
        async with info.context.runtime.reading() as session:
            row = await service.visible_screen(session, actor=info.context.actor, screen_id=screen_id)
        return None if row is None else SearchScreen.from_row(row)


def _screen_filters(target: str | None, customer: CustomerSearchFilters | None, case: CaseSearchFilters | None):
    """The filters document of the input that matches the screen's target; INVALID for the other one."""
    if target == "customer" and case is not None:
        raise UserError(ErrorCode.INVALID, "a CUSTOMER screen takes customerFilters", "caseFilters")
    if target == "case" and customer is not None:
        raise UserError(ErrorCode.INVALID, "a CASE screen takes caseFilters", "customerFilters")
    if customer is not None:
        return customer_filter_document(customer)
    if case is not None:
        return case_filter_document(case)
    return None


@strawberry.type
class SearchMutation:
    @strawberry.mutation(
        permission_classes=[allow("Mutation.searchScreenCreate")],
        description="Save a search screen for a group, or for everyone.",
    )
    async def search_screen_create(self, info: strawberry.Info, input: SearchScreenCreateInput) -> SearchScreenPayload:
        async def work(session):
            target = input.target.value
            return await service.create_screen(
                session,
                actor=info.context.actor,
                screen=service.ScreenInput(
                    name=input.name,
                    target=target,
                    group_id=optional_db_id(input.group_id, "UserGroup", "groupId"),
                    description=input.description,
                    query=input.query,
                    filters=_screen_filters(target, input.customer_filters, input.case_filters) or {},
                    columns=input.columns,
                    sort=input.sort.value,
                    position=input.position,
                ),
            )

        return await mutate(info, SearchScreenPayload, work, lambda row: {"search_screen": SearchScreen.from_row(row)})

    @strawberry.mutation(
        permission_classes=[allow("Mutation.searchScreenUpdate")],
        description="Change a search screen; what is left out stays.",
    )
    async def search_screen_update(self, info: strawberry.Info, input: SearchScreenUpdateInput) -> SearchScreenPayload:
        async def work(session):
            screen_id = db_id(input.id, "SearchScreen", "id")
            target = await service.screen_target(session, screen_id=screen_id)
            changes: dict[str, Any] = {}
            for name, value in (
                ("name", input.name),
                ("columns", input.columns),
                ("sort", input.sort.value if input.sort is not None else None),
                ("position", input.position),
                ("filters", _screen_filters(target, input.customer_filters, input.case_filters)),
            ):
                if value is not None:
                    changes[name] = value
            for name, value in (("description", input.description), ("query", input.query)):
                if value is not strawberry.UNSET:
                    changes[name] = value
            if input.group_id is not strawberry.UNSET:
                changes["group_id"] = optional_db_id(input.group_id, "UserGroup", "groupId")
            return await service.update_screen(session, actor=info.context.actor, screen_id=screen_id, changes=changes)

        return await mutate(info, SearchScreenPayload, work, lambda row: {"search_screen": SearchScreen.from_row(row)})

    @strawberry.mutation(
        permission_classes=[allow("Mutation.searchScreenDelete")], description="Delete a search screen."
    )
    async def search_screen_delete(
        self, info: strawberry.Info, input: SearchScreenDeleteInput
    ) -> SearchScreenDeletePayload:
        return await mutate(
            info,
            SearchScreenDeletePayload,
            lambda session: service.delete_screen(
                session, actor=info.context.actor, screen_id=db_id(input.id, "SearchScreen", "id")
            ),
            lambda _: {"deleted_id": input.id},
        )

"""Search: customerSearch and caseSearch."""

from __future__ import annotations

import strawberry

from app.pagination import page_size
from app.services import search as service
from schema.cases import Case
from schema.customers import Customer
from schema.ids import optional_db_id
from schema.pagination import Connection
from schema.permissions import allow
from schema.search import (
    CaseSearchFilters,
    CaseSearchResult,
    CustomerMatch,
    CustomerMatchKind,
    CustomerSearchFilters,
    CustomerSearchResult,
)


def _customer_result(hit: service.CustomerHit) -> CustomerSearchResult:
    return CustomerSearchResult(
        customer=Customer.from_row(hit.customer),
        matched_by=[CustomerMatchKind(how) for how in hit.matched_by],
        matches=[CustomerMatch(kind=CustomerMatchKind(m.how), value=m.value, score=m.score) for m in hit.matches],
    )


def _case_result(hit: service.CaseHit) -> CaseSearchResult:
    return CaseSearchResult(case=Case.from_row(hit.case), snippet=hit.snippet, by_reference=hit.by_reference)


@strawberry.type
class SearchQuery:
    @strawberry.field(
        permission_classes=[allow("Query.customerSearch")],
        description="Customers by an email, a phone number in any format, an account id or external reference, "
        "a customer number, a case reference or a name (typos, accents and word order forgiven); best first.",
    )
    async def customer_search(
        self,
        info: strawberry.Info,
        query: str,
        filters: CustomerSearchFilters | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[CustomerSearchResult]:
        f = filters or CustomerSearchFilters()
        async with info.context.runtime.reading() as session:
            page = await service.search_customers(
                session,
                query=query,
                filters=service.CustomerFilters(
                    statuses=tuple(s.value for s in f.status) if f.status else ("active",),
                    created_after=f.created_after,
                    created_before=f.created_before,
                    active_after=f.last_activity_after,
                    active_before=f.last_activity_before,
                ),
                first=page_size(first),
                after=after,
                region=info.context.phone_region,
            )
        return Connection.from_page(page, _customer_result)

    @strawberry.field(
        permission_classes=[allow("Query.caseSearch")],
        description="Cases by the words of their subject, description and contacts, best first, with snippets; "
        "a case reference finds that case.",
    )
    async def case_search(
        self,
        info: strawberry.Info,
        query: str,
        filters: CaseSearchFilters | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[CaseSearchResult]:
        f = filters or CaseSearchFilters()
        async with info.context.runtime.reading() as session:
            page = await service.search_cases(
                session,
                query=query,
                filters=service.CaseFilters(
                    statuses=tuple(s.value for s in f.status or ()),
                    priorities=tuple(p.value for p in f.priority or ()),
                    assignee_id=optional_db_id(f.assignee_id, "User", "filters.assigneeId"),
                    customer_id=optional_db_id(f.customer_id, "Customer", "filters.customerId"),
                    pool_id=optional_db_id(f.pool_id, "Pool", "filters.poolId"),
                    created_after=f.created_after,
                    created_before=f.created_before,
                    updated_after=f.updated_after,
                    updated_before=f.updated_before,
                    include_archived=f.include_archived,
                ),
                first=page_size(first),
                after=after,
            )
        return Connection.from_page(page, _case_result)

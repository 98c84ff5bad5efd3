"""Searchable custom fields: customers and cases found by a field's value, typed or as a filter,
through the GIN index on `fields`; fields not marked searchable are refused as filters."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import text

from app.services import forms
from app.services import search as search_service
from app.services.search import FieldFilter, read_customer_query
from tests.support import gid, make_case, make_customer, scalar

FIELD_CREATE = """mutation($input: FormFieldCreateInput!) {
  formFieldCreate(input: $input) { formField { id key searchable } errors { field code } } }"""
FIELD_UPDATE = """mutation($input: FormFieldUpdateInput!) {
  formFieldUpdate(input: $input) { formField { key searchable } errors { field code } } }"""
CUSTOMER_SEARCH = """
query($query: String, $filters: CustomerSearchFilters) {
  customerSearch(query: $query, filters: $filters) {
    edges { node { matchedBy matches { kind value } customer { id } } }
  }
}
"""
CASE_SEARCH = """
query($query: String, $filters: CaseSearchFilters) {
  caseSearch(query: $query, filters: $filters) { edges { node { case { id } } } }
}
"""


@pytest.fixture
async def customer_form(gql) -> None:
    for field in (
        {"key": "contract", "label": "Contract", "type": "TEXT", "searchable": True},
        {"key": "backupEmail", "label": "Backup email", "type": "EMAIL", "searchable": True},
        {"key": "seats", "label": "Seats", "type": "NUMBER", "searchable": True},
        {"key": "notes", "label": "Notes", "type": "TEXT"},
    ):
        created = (await gql(FIELD_CREATE, {"input": field}))["formFieldCreate"]
        assert created["errors"] == [] and created["formField"]["searchable"] == field.get("searchable", False)


async def found(gql, document: str, **variables) -> list[str]:
    data = await gql(document, variables)
    edges = next(iter(data.values()))["edges"]
    return [e["node"]["customer" if "customer" in e["node"] else "case"]["id"] for e in edges]


async def test_a_typed_value_of_a_searchable_field_finds_its_customer(gql, customer_form, runtime):
    ada = await make_customer(runtime, "Ada Lovelace", fields={"contract": "K-778899", "notes": "K-555"})
    await make_customer(runtime, "Grace Hopper", fields={"contract": "K-111111"})
    data = await gql(CUSTOMER_SEARCH, {"query": "K-778899"})
    [hit] = [e["node"] for e in data["customerSearch"]["edges"]]
    assert hit["customer"]["id"] == gid("Customer", ada)
    assert hit["matchedBy"] == ["CUSTOM_FIELD"] and hit["matches"][0]["value"] == "contract: K-778899"
    # A field that is not searchable is never matched.
    assert await found(gql, CUSTOMER_SEARCH, query="K-555") == []


async def test_filters_by_searchable_fields_compare_values_as_stored(gql, customer_form, runtime):
    ada = await make_customer(runtime, "Ada Lovelace", fields={"backupEmail": "Ada.B@Example.com", "seats": 12})
    await make_customer(runtime, "Ada Byron", fields={"backupEmail": "byron@example.com", "seats": 3})
    # No query: the filter alone selects, the value normalised as the field stores it.
    email = {"fields": [{"key": "backupEmail", "value": " Ada.B@EXAMPLE.COM"}]}
    assert await found(gql, CUSTOMER_SEARCH, filters=email) == [gid("Customer", ada)]
    # A number given as text or as a number; with a query, both must match.
    for seats in ("12", 12):
        filters = {"fields": [{"key": "seats", "value": seats}]}
        assert await found(gql, CUSTOMER_SEARCH, query="Ada", filters=filters) == [gid("Customer", ada)]


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ([{"key": "notes", "value": "x"}], "NOT_SEARCHABLE", "filters.fields.0.key"),
        ([{"key": "nowhere", "value": "x"}], "NOT_SEARCHABLE", "filters.fields.0.key"),
        ([{"key": "seats", "value": "many"}], "INVALID", "filters.fields.0.value"),
        ([{"key": "seats", "value": ""}], "REQUIRED", "filters.fields.0.value"),
    ],
)
async def test_bad_field_filters_are_refused_with_a_code(gql, customer_form, fields, code, field):
    body = (await gql.post(CUSTOMER_SEARCH, {"query": "Ada", "filters": {"fields": fields}})).json()
    assert body["data"] is None
    assert (body["errors"][0]["extensions"]["code"], body["errors"][0]["extensions"]["field"]) == (code, field)


async def test_no_query_and_no_field_filter_is_refused(gql, customer_form):
    body = (await gql.post(CUSTOMER_SEARCH, {"filters": {"status": ["ACTIVE"]}})).json()
    assert body["errors"][0]["extensions"]["code"] == "REQUIRED"


async def test_a_field_made_searchable_later_becomes_a_filter(gql, customer_form, runtime):
    ada = await make_customer(runtime, "Ada", fields={"notes": "vip"})
    filters = {"fields": [{"key": "notes", "value": "vip"}]}
    assert (await gql.post(CUSTOMER_SEARCH, {"filters": filters})).json()["errors"]
    field_id = (await gql("{ customerForm { id key } }"))["customerForm"][3]["id"]
    await gql(FIELD_UPDATE, {"input": {"id": field_id, "searchable": True}})
    assert await found(gql, CUSTOMER_SEARCH, filters=filters) == [gid("Customer", ada)]


async def test_case_fields_of_any_template_filter_case_search(gql, runtime):
    template = (
        await gql('mutation { caseTemplateCreate(input: {name: "Orders"}) { caseTemplate { id } errors { code } } }')
    )["caseTemplateCreate"]["caseTemplate"]["id"]
    field = {"templateId": template, "key": "orderNo", "label": "Order", "type": "TEXT", "searchable": True}
    assert (await gql(FIELD_CREATE, {"input": field}))["formFieldCreate"]["errors"] == []
    customer = await make_customer(runtime, "Ada")
    wanted, other = await make_case(runtime, [customer], "Parcel lost"), await make_case(runtime, [customer], "Parcel")
    async with runtime.engine.begin() as conn:
        await conn.execute(text('UPDATE cases SET fields = \'{"orderNo": "A-1"}\' WHERE id = :i'), {"i": wanted})
        await conn.execute(text('UPDATE cases SET fields = \'{"orderNo": "A-2"}\' WHERE id = :i'), {"i": other})
    filters = {"fields": [{"key": "orderNo", "value": "A-1"}]}
    assert await found(gql, CASE_SEARCH, filters=filters) == [gid("Case", wanted)]
    assert await found(gql, CASE_SEARCH, query="parcel", filters=filters) == [gid("Case", wanted)]
    # Typed, the value finds its case before cases that merely hold the words.
    assert (await found(gql, CASE_SEARCH, query="A-2"))[0] == gid("Case", other)
    body = (await gql.post(CASE_SEARCH, {"filters": {"fields": [{"key": "contract", "value": "x"}]}})).json()
    assert body["errors"][0]["extensions"]["code"] == "NOT_SEARCHABLE"


async def test_a_field_filter_uses_the_index_on_a_large_table(gql, customer_form, runtime):
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO customers (name, fields) SELECT 'Person ' || g, "
                "jsonb_build_object('contract', 'K-' || g, 'seats', g % 50) FROM generate_series(1, 30000) g"
            )
        )
        await conn.execute(text("ANALYZE customers"))
    assert await scalar(runtime, "SELECT count(*) FROM customers") == 30000
    async with runtime.reading() as session:
        conditions, params = await search_service.field_conditions(
            session, target="customer", filters=(FieldFilter("contract", "K-12345"),), alias="c", region="GB"
        )
        page = await search_service.search_customers(
            session,
            query=None,
            filters=search_service.CustomerFilters(fields=(FieldFilter("contract", "K-12345"),)),
            first=10,
            region="GB",
        )
        assert [row.customer.name for row in page.rows] == ["Person 12345"]
        # Planned as the search runs it, without steering the planner: the GIN index, no scan of the table.
        plan = "\n".join(
            r[0]
            for r in await session.execute(
                text(f"EXPLAIN SELECT c.id FROM customers c WHERE c.status = 'active' AND {' AND '.join(conditions)}"),
                params,
            )
        )
    assert "ix_customers_fields" in plan and "Seq Scan" not in plan, plan
    # What was typed, read as a searchable field's value: the same index.
    async with runtime.reading() as session:
        searchable = await forms.searchable_fields(session, target="customer")
        reading = replace(
            read_customer_query("K-12345", region="GB"),
            field_values=search_service._typed_field_values(searchable, "K-12345", "GB"),
        )
        parts, params = search_service._customer_hits(reading)
        [typed_part] = [p for p in parts if "custom_field" in p]
        plan = "\n".join(r[0] for r in await session.execute(text(f"EXPLAIN {typed_part}"), params))
    assert "ix_customers_fields" in plan and "Seq Scan" not in plan, plan

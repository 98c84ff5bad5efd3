"""Customers, cases and contacts through the GraphQL API, including refused input."""

from sqlalchemy import func, select

from app.models import AuditEvent, Contact, Customer, CustomerIdentifier
from tests.conftest import GraphQLClient

CUSTOMER_CREATE = """
mutation($input: CustomerCreateInput!) {
  customerCreate(input: $input) {
    customer { id number name fields identifiers { id kind value } }
    errors { field code message }
  }
}
"""
CASE_CREATE = """
mutation($input: CaseCreateInput!) {
  caseCreate(input: $input) {
    case { id reference subject priority status primaryCustomer { id } customers { id } }
    errors { field code message }
  }
}
"""
CONTACT_CREATE = """
mutation($input: ContactCreateInput!) {
  contactCreate(input: $input) {
    contact { id channel subject html customer { id } case { reference } }
    errors { field code message }
  }
}
"""


async def new_customer(gql, **fields) -> dict:
    data = await gql(CUSTOMER_CREATE, {"input": {"name": "Grace Hopper"} | fields})
    assert data["customerCreate"]["errors"] == []
    return data["customerCreate"]["customer"]


async def new_case(gql, customer_ids: list[str], subject: str = "Broken router") -> dict:
    data = await gql(CASE_CREATE, {"input": {"subject": subject, "customerIds": customer_ids}})
    assert data["caseCreate"]["errors"] == []
    return data["caseCreate"]["case"]


async def count(runtime, model) -> int:
    async with runtime.reading() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_case_for_two_customers_first_is_primary(gql):
    ann = await new_customer(gql, emails=["ann@example.com"])
    bob = await new_customer(gql, emails=["bob@example.com"])

    case = await new_case(gql, [bob["id"], ann["id"]])

    assert case["reference"] == "CASE-000001"
    assert case["status"] == "NEW" and case["priority"] == "NORMAL"
    assert case["primaryCustomer"]["id"] == bob["id"]
    assert [c["id"] for c in case["customers"]] == [bob["id"], ann["id"]]
    found = await gql("query($r: String!) { caseByReference(reference: $r) { id } }", {"r": "case-000001"})
    assert found["caseByReference"]["id"] == case["id"]


async def test_contact_on_case_without_customer_takes_the_primary_and_sanitises_html(gql):
    ann = await new_customer(gql)
    case = await new_case(gql, [ann["id"]])

    data = await gql(
        CONTACT_CREATE,
        {
            "input": {
                "channel": "EMAIL",
                "direction": "INBOUND",
                "caseId": case["id"],
                "subject": "Still broken",
                "html": "<p>Hi<script>alert(1)</script></p>",
            }
        },
    )

    contact = data["contactCreate"]["contact"]
    assert contact["customer"]["id"] == ann["id"]
    assert contact["case"]["reference"] == case["reference"]
    assert contact["html"] == "<p>Hi</p>"


async def test_invalid_email_is_refused_on_its_field_and_nothing_is_stored(gql, runtime):
    data = await gql(CUSTOMER_CREATE, {"input": {"name": "X", "emails": ["ok@example.com", "not-an-email"]}})

    assert data["customerCreate"]["customer"] is None
    [error] = data["customerCreate"]["errors"]
    assert (error["field"], error["code"]) == ("emails.1", "INVALID")
    assert await count(runtime, Customer) == 0
    async with runtime.reading() as session:
        assert await session.scalar(select(func.count()).where(AuditEvent.entity_type == "customer")) == 0


async def test_invalid_phone_is_refused(gql):
    data = await gql(CUSTOMER_CREATE, {"input": {"phones": ["12"]}})
    [error] = data["customerCreate"]["errors"]
    assert (error["field"], error["code"]) == ("phones.0", "INVALID")


async def test_duplicate_identifier_on_the_same_customer_is_refused_but_others_may_share_it(gql, runtime):
    ann = await new_customer(gql, phones=["+44 20 7946 0018"])
    bob = await new_customer(gql)
    add = """mutation($input: CustomerIdentifierAddInput!) {
      customerIdentifierAdd(input: $input) { identifier { value } errors { field code } } }"""

    again = await gql(add, {"input": {"customerId": ann["id"], "kind": "PHONE", "value": "020 7946 0018"}})
    shared = await gql(add, {"input": {"customerId": bob["id"], "kind": "PHONE", "value": "020 7946 0018"}})

    assert again["customerIdentifierAdd"]["errors"] == [{"field": "value", "code": "DUPLICATE"}]
    assert shared["customerIdentifierAdd"]["identifier"]["value"] == "+442079460018"
    assert await count(runtime, CustomerIdentifier) == 2


async def test_identifier_remove(gql):
    ann = await new_customer(gql, emails=["a@example.com", "b@example.com"])
    remove = """mutation($id: ID!) { customerIdentifierRemove(input: {id: $id}) {
      customer { identifiers { value } } errors { code } } }"""

    data = await gql(remove, {"id": ann["identifiers"][0]["id"]})

    assert [i["value"] for i in data["customerIdentifierRemove"]["customer"]["identifiers"]] == ["b@example.com"]


async def test_contact_on_a_case_its_customer_is_not_on_is_refused(gql, runtime):
    ann = await new_customer(gql)
    bob = await new_customer(gql)
    case = await new_case(gql, [ann["id"]])

    data = await gql(
        CONTACT_CREATE,
        {"input": {"channel": "PHONE", "direction": "INBOUND", "customerId": bob["id"], "caseId": case["id"]}},
    )

    assert data["contactCreate"]["errors"][0]["code"] == "CUSTOMER_NOT_ON_CASE"
    assert await count(runtime, Contact) == 0


async def test_unknown_ids_are_null_on_queries_and_not_found_on_mutations(gql):
    ann = await new_customer(gql)
    gone = ann["id"].replace("=", "")[:-2] + "99"  # not a valid id at all
    queried = await gql(
        'query($a: ID!, $b: ID!) { customer(id: $a) { id } case(id: $b) { id } customerByNumber(number: "C-999") { id } }',
        {"a": gone, "b": ann["id"]},  # a customer id asked as a case is unknown too
    )
    assert queried == {"customer": None, "case": None, "customerByNumber": None}

    updated = await gql(
        'mutation($id: ID!) { customerUpdate(input: {id: $id, name: "X"}) { customer { id } errors { field code } } }',
        {"id": "Q3VzdG9tZXI6OTk5OQ=="},  # Customer:9999
    )
    assert updated["customerUpdate"] == {"customer": None, "errors": [{"field": "id", "code": "NOT_FOUND"}]}


async def test_customer_update_merges_fields_and_writes_an_audit_event(gql, runtime):
    ann = await new_customer(gql, fields={"tier": "gold"})

    data = await gql(
        'mutation($id: ID!) { customerUpdate(input: {id: $id, name: "Ann B", fields: {vip: true}}) { customer { name fields } } }',
        {"id": ann["id"]},
    )

    assert data["customerUpdate"]["customer"] == {"name": "Ann B", "fields": {"tier": "gold", "vip": True}}
    async with runtime.reading() as session:
        actions = (
            await session.scalars(
                select(AuditEvent.action).where(AuditEvent.entity_type == "customer").order_by(AuditEvent.id)
            )
        ).all()
        actor = await session.scalar(select(AuditEvent.actor_name).where(AuditEvent.action == "customer.update"))
    assert actions == ["customer.create", "customer.update"]
    assert actor == "admin"


async def test_customers_listing_filters_and_pages(gql):
    for name in ["Ann", "Bob", "Annette"]:
        await new_customer(gql, name=name, emails=[f"{name.lower()}@example.com"])
    query = """query($after: String, $f: CustomerFilter) { customers(first: 1, after: $after, filter: $f) {
        totalCount edges { node { name } } pageInfo { hasNextPage endCursor } } }"""

    first = (await gql(query, {"f": {"search": "ann"}}))["customers"]
    second = (await gql(query, {"f": {"search": "ann"}, "after": first["pageInfo"]["endCursor"]}))["customers"]
    by_email = (await gql(query, {"f": {"identifier": {"kind": "EMAIL", "value": "BOB@example.com"}}}))["customers"]

    assert [e["node"]["name"] for e in first["edges"] + second["edges"]] == ["Annette", "Ann"]
    assert first["pageInfo"]["hasNextPage"] and not second["pageInfo"]["hasNextPage"]
    assert [e["node"]["name"] for e in by_email["edges"]] == ["Bob"]


async def test_cases_listing_by_customer_and_status(gql):
    ann = await new_customer(gql)
    bob = await new_customer(gql)
    await new_case(gql, [ann["id"]], "one")
    second = await new_case(gql, [bob["id"], ann["id"]], "two")
    await gql(
        "mutation($id: ID!) { caseUpdate(input: {id: $id, status: OPEN}) { errors { code } } }", {"id": second["id"]}
    )
    query = "query($f: CaseFilter) { cases(filter: $f) { edges { node { subject } } } }"

    of_ann = await gql(query, {"f": {"customerId": ann["id"]}})
    open_ = await gql(query, {"f": {"status": "OPEN"}})

    assert [e["node"]["subject"] for e in of_ann["cases"]["edges"]] == ["two", "one"]
    assert [e["node"]["subject"] for e in open_["cases"]["edges"]] == ["two"]


async def test_case_cannot_become_its_own_ancestor(gql):
    ann = await new_customer(gql)
    parent = await new_case(gql, [ann["id"]], "parent")
    child = (
        await gql(CASE_CREATE, {"input": {"subject": "child", "customerIds": [ann["id"]], "parentId": parent["id"]}})
    )["caseCreate"]["case"]

    data = await gql(
        "mutation($id: ID!, $p: ID!) { caseUpdate(input: {id: $id, parentId: $p}) { errors { field code } } }",
        {"id": parent["id"], "p": child["id"]},
    )

    assert data["caseUpdate"]["errors"] == [{"field": "parentId", "code": "CIRCULAR"}]  # as caseMerge answers


async def test_contact_create_is_idempotent_on_external_id(gql, runtime):
    ann = await new_customer(gql)
    body = {
        "input": {
            "channel": "SMS",
            "direction": "INBOUND",
            "customerId": ann["id"],
            "externalId": "sms-1",
            "text": "hi",
        }
    }

    first = await gql(CONTACT_CREATE, body)
    again = await gql(CONTACT_CREATE, body)

    assert first["contactCreate"]["contact"]["id"] == again["contactCreate"]["contact"]["id"]
    assert await count(runtime, Contact) == 1


async def test_node_and_me(gql):
    ann = await new_customer(gql)
    data = await gql(
        "query($id: ID!) { node(id: $id) { __typename ... on Customer { number } } me { name role } }",
        {"id": ann["id"]},
    )
    assert data == {
        "node": {"__typename": "Customer", "number": ann["number"]},
        "me": {"name": "admin", "role": "ADMIN"},
    }


async def test_numbers_and_references_keep_every_digit_past_a_million(gql, runtime):
    from sqlalchemy import text

    async with runtime.engine.begin() as conn:
        await conn.execute(text("SELECT setval('customer_number_seq', 999999)"))
    first = await new_customer(gql)
    second = await new_customer(gql)
    case = await new_case(gql, [second["id"]])

    assert (first["number"], second["number"]) == ("C-1000000", "C-1000001")
    assert case["reference"] == "CASE-000001"


async def test_a_committed_change_is_reported_done_even_when_redis_publishing_fails(settings, runtime, admin_token):
    import dataclasses

    import httpx
    from redis.asyncio import Redis

    from app.asgi import create_app
    from app.models import EventOutbox

    cut_off = Redis.from_url("unix:///nonexistent/redis.sock")
    app = create_app(settings, runtime=dataclasses.replace(runtime, redis=cut_off))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        client = GraphQLClient(http, admin_token)
        data = await client(CUSTOMER_CREATE, {"input": {"name": "Kept"}})
    await cut_off.aclose()

    assert await count(runtime, EventOutbox) == 1  # kept for the relay to publish
    assert data["customerCreate"]["errors"] == [] and data["customerCreate"]["customer"]["name"] == "Kept"
    assert await count(runtime, Customer) == 1

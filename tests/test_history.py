"""The unified contact history: newest first across all of a customer's cases, paged, N+1-free."""

from datetime import UTC, datetime, timedelta

from app.auth import SYSTEM
from app.contact_data import ContactData
from app.pagination import encode_cursor
from app.services import cases, contacts, customers
from schema.ids import to_global_id

HISTORY = """
query($id: ID!, $first: Int, $after: String, $channel: Channel) {
  customer(id: $id) {
    contacts(first: $first, after: $after, channel: $channel) {
      totalCount
      edges { cursor node { id channel subject occurredAt case { reference } } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""
START = datetime(2026, 1, 1, tzinfo=UTC)
CHANNELS = ["email", "phone", "chat", "sms", "web"]


async def customer_with_history(runtime, *, cases_count: int, contacts_count: int, uncased: int = 0) -> int:
    """A customer whose contacts are spread over `cases_count` cases (plus `uncased` without a case)."""
    async with runtime.transaction() as session:
        customer = await customers.create_customer(
            session, actor=SYSTEM, name="History", identifiers=[], fields=None, region="GB"
        )
        case_ids = [
            (await cases.create_case(session, actor=SYSTEM, subject=f"case {i}", customer_ids=[customer.id])).id
            for i in range(cases_count)
        ]
        for i in range(contacts_count + uncased):
            data = ContactData(
                channel=CHANNELS[i % len(CHANNELS)],
                direction="inbound",
                occurred_at=START + timedelta(minutes=i),
                subject=f"contact {i}",
            )
            case_id = case_ids[i % cases_count] if i < contacts_count else None
            await contacts.create_contact(session, actor=SYSTEM, data=data, customer_id=customer.id, case_id=case_id)
    return customer.id


async def test_history_is_newest_first_across_cases_and_uncased_contacts(gql, runtime):
    customer_id = await customer_with_history(runtime, cases_count=3, contacts_count=6, uncased=2)

    data = await gql(HISTORY, {"id": to_global_id("Customer", customer_id), "first": 10})

    history = data["customer"]["contacts"]
    assert history["totalCount"] == 8
    assert [e["node"]["subject"] for e in history["edges"]] == [f"contact {i}" for i in range(7, -1, -1)]
    assert history["edges"][0]["node"]["case"] is None  # the newest two have no case
    assert history["edges"][2]["node"]["case"]["reference"].startswith("CASE-")


async def test_history_pages_with_cursors_and_filters_by_channel(gql, runtime):
    customer_id = await customer_with_history(runtime, cases_count=2, contacts_count=10)
    gid = to_global_id("Customer", customer_id)

    seen = []
    after = None
    while True:
        page = (await gql(HISTORY, {"id": gid, "first": 4, "after": after}))["customer"]["contacts"]
        seen += [e["node"]["subject"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    phones = (await gql(HISTORY, {"id": gid, "channel": "PHONE"}))["customer"]["contacts"]

    assert seen == [f"contact {i}" for i in range(9, -1, -1)]
    assert [e["node"]["subject"] for e in phones["edges"]] == ["contact 6", "contact 1"]
    assert phones["totalCount"] == 2


async def test_page_size_and_cursor_are_validated_with_readable_errors(gql, runtime):
    gid = to_global_id("Customer", await customer_with_history(runtime, cases_count=1, contacts_count=1))

    too_many = (await gql.post(HISTORY, {"id": gid, "first": 500})).json()
    garbage = (await gql.post(HISTORY, {"id": gid, "after": "garbage"})).json()
    wrong_types = (await gql.post(HISTORY, {"id": gid, "after": encode_cursor("yesterday", "x")})).json()
    audit = (
        await gql.post(
            "query($id: ID!, $a: String) { auditEvents(entityId: $id, after: $a) { edges { cursor } } }",
            {"id": gid, "a": encode_cursor("x")},
        )
    ).json()

    assert too_many["data"]["customer"] is None
    assert too_many["errors"][0]["message"] == "first must be between 1 and 100"
    for body in (garbage, wrong_types, audit):
        assert body["errors"][0]["message"] == "malformed cursor"


HISTORY_NO_COUNT = """
query($id: ID!) {
  customer(id: $id) {
    name
    contacts(first: 50) { edges { node { channel subject occurredAt case { reference } } } }
  }
}
"""


async def _history_query_counts(http, token, runtime, count_queries, path: str) -> list[int]:
    small = await customer_with_history(runtime, cases_count=1, contacts_count=2)
    large = await customer_with_history(runtime, cases_count=5, contacts_count=50)
    headers = {"Authorization": f"Bearer {token}", "Casegraph-Path": path}
    await http.post("/graphql", json={"query": "{ me { name } }"}, headers=headers)  # caches the token lookup

    counts = []
    for customer_id, size in ((small, 2), (large, 50)):
        start = count_queries.count
        response = await http.post(
            "/graphql",
            json={"query": HISTORY_NO_COUNT, "variables": {"id": to_global_id("Customer", customer_id)}},
            headers=headers,
        )
        counts.append(count_queries.count - start)
        assert response.headers["casegraph-path"] == path
        assert len(response.json()["data"]["customer"]["contacts"]["edges"]) == size
    return counts


async def test_history_query_count_does_not_grow_with_cases_or_contacts(http, admin_token, runtime, count_queries):
    counts = await _history_query_counts(http, admin_token, runtime, count_queries, "executor")

    # the customer, its page of contacts, the cases of that page
    assert counts == [3, 3]


async def test_compiled_history_query_is_one_sql_statement(http, admin_token, runtime, count_queries):
    counts = await _history_query_counts(http, admin_token, runtime, count_queries, "compiled")

    assert counts == [1, 1]


NESTED = (
    """{ customers(first: 5) { edges { node { contacts(first: 3) { edges { node { case { reference } } } } } } } }"""
)


async def _nested_histories_count(http, admin_token, runtime, count_queries, path: str) -> int:
    for _ in range(5):
        await customer_with_history(runtime, cases_count=2, contacts_count=4)
    headers = {"Authorization": f"Bearer {admin_token}", "Casegraph-Path": path}
    await http.post("/graphql", json={"query": NESTED}, headers=headers)  # warm the token cache
    start = count_queries.count
    response = await http.post("/graphql", json={"query": NESTED}, headers=headers)

    assert response.headers["casegraph-path"] == path
    assert all(len(e["node"]["contacts"]["edges"]) == 3 for e in response.json()["data"]["customers"]["edges"])
    return count_queries.count - start


async def test_nested_histories_of_many_customers_are_batched(http, admin_token, runtime, count_queries):
    count = await _nested_histories_count(http, admin_token, runtime, count_queries, "executor")

    assert count == 3  # customers, all their pages in one statement, the cases


async def test_nested_histories_of_many_customers_are_one_compiled_statement(http, admin_token, runtime, count_queries):
    count = await _nested_histories_count(http, admin_token, runtime, count_queries, "compiled")

    assert count == 1


async def test_case_contacts_and_customer_cases(gql, runtime):
    customer_id = await customer_with_history(runtime, cases_count=2, contacts_count=4)
    query = """query($id: ID!) { customer(id: $id) { cases { totalCount edges { node { subject
        contacts { totalCount edges { node { subject } } } } } } } }"""

    data = await gql(query, {"id": to_global_id("Customer", customer_id)})

    cases_ = data["customer"]["cases"]["edges"]
    assert [c["node"]["subject"] for c in cases_] == ["case 1", "case 0"]
    assert [e["node"]["subject"] for e in cases_[0]["node"]["contacts"]["edges"]] == ["contact 3", "contact 1"]
    assert cases_[0]["node"]["contacts"]["totalCount"] == 2

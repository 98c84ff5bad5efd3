"""Authentication, roles and the protective limits of the GraphQL endpoint."""

import re

ME = "{ me { name role } }"


async def test_every_operation_needs_a_valid_token(http, gql):
    missing = await http.post("/graphql", json={"query": ME})
    wrong = await http.post("/graphql", json={"query": ME}, headers={"Authorization": "Bearer cg_nope"})
    ok = await gql.post(ME)

    assert missing.status_code == 401 and wrong.status_code == 401
    assert ok.status_code == 200 and ok.json()["data"]["me"]["role"] == "ADMIN"


async def test_agent_token_sees_its_own_user(gql, agent_token):
    data = await gql(ME, token=agent_token)
    assert data == {"me": {"name": "agent-ann", "role": "AGENT"}}


async def test_graphiql_loads_without_a_token_and_without_a_cdn(http):
    page = await http.get("/graphql", headers={"Accept": "text/html"})

    assert page.status_code == 200 and "GraphiQL" in page.text
    assert not re.search(r"https?://", page.text)
    for asset in re.findall(r'(?:src|href)="(/graphiql-assets/[^"]+)"', page.text):
        assert (await http.get(asset)).status_code == 200


async def test_over_deep_query_is_refused_before_it_runs(gql, count_queries):
    deep = "{ customers { edges { node { cases { edges { node { contacts { edges { node { case { customers { cases { edges { node { id } } } } } } } } } } } } } } }"
    await gql(ME)  # the token lookup is cached from here on
    start = count_queries.count
    body = (await gql.post(deep)).json()
    assert "data" not in body  # refused before execution: a request error carries no data entry
    assert "exceeds maximum operation depth" in body["errors"][0]["message"]
    assert count_queries.count == start


async def test_too_many_aliases_and_tokens_are_refused(gql):
    aliases = "{ " + " ".join(f"a{i}: me {{ name }}" for i in range(40)) + " }"
    tokens = "{ me { " + " ".join(["name"] * 3000) + " } }"

    assert "aliases" in (await gql.post(aliases)).json()["errors"][0]["message"]
    assert "token" in (await gql.post(tokens)).json()["errors"][0]["message"].lower()


async def test_malformed_json_is_a_400(http, admin_token):
    response = await http.post(
        "/graphql",
        content=b"{not json",
        headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400


async def test_oversized_body_is_a_413(http, admin_token):
    huge = "{ me { name } }" + " " * (2 * 1024 * 1024)
    response = await http.post("/graphql", json={"query": huge}, headers={"Authorization": f"Bearer {admin_token}"})
    assert response.status_code == 413


async def test_unexpected_errors_are_masked(gql, runtime, monkeypatch):
    from resolvers.loaders import Loaders

    query = 'query { customer(id: "Q3VzdG9tZXI6MQ==") { id } }'
    await gql.post(query)  # answered by the compiled path: the document is admitted to its hot path

    async def broken(self, statement):
        raise RuntimeError("secret connection string")

    async def broken_statement(sql, parameters):
        raise RuntimeError("secret connection string")

    monkeypatch.setattr(Loaders, "_rows", broken)
    monkeypatch.setattr(runtime.compiled_reads, "fetch", broken_statement)  # the compiled path's one statement
    response = await gql.post(query)
    body = response.json()

    assert response.status_code == 200
    assert body["errors"][0]["message"] == "Unexpected error."
    assert "secret" not in str(body)


async def test_a_role_refusal_is_a_readable_forbidden_error_and_changes_nothing(gql, agent_token):
    created = await gql('mutation { customerCreate(input: {name: "Eve"}) { customer { id } } }')
    customer_id = created["customerCreate"]["customer"]["id"]

    body = (
        await gql.post(
            'mutation($id: ID!) { customerErase(input: {customerId: $id, reason: "asked"}) { errors { code } } }',
            {"id": customer_id},
            token=agent_token,
        )
    ).json()
    still = await gql("query($id: ID!) { customer(id: $id) { name status } }", {"id": customer_id})

    assert body["data"] is None
    assert body["errors"][0]["message"] == "requires role supervisor"
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert still["customer"] == {"name": "Eve", "status": "ACTIVE"}


async def test_integrators_feed_data_in_but_do_not_maintain_it(gql, runtime):
    from tests.conftest import _token

    integrator = await _token(runtime, "crm", "integrator")
    created = await gql(
        'mutation { a: customerCreate(input: {name: "A"}) { customer { id } } b: customerCreate(input: {name: "B"}) { customer { id } } }',
        token=integrator,
    )
    a, b = created["a"]["customer"]["id"], created["b"]["customer"]["id"]

    merge = (
        await gql.post(
            "mutation($s: ID!, $d: ID!) { customerMerge(input: {survivorId: $s, duplicateIds: [$d]}) { errors { code } } }",
            {"s": a, "d": b},
            token=integrator,
        )
    ).json()
    audit = (
        await gql.post(
            "query($id: ID!) { auditEvents(entityId: $id) { edges { node { action } } } }", {"id": a}, token=integrator
        )
    ).json()

    assert merge["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert audit["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await gql("query($id: ID!) { customer(id: $id) { status } }", {"id": b}))["customer"]["status"] == "ACTIVE"


async def test_a_spread_of_an_undefined_fragment_is_a_validation_error(gql):
    body = (await gql.post("{ ...Missing }")).json()
    assert body["errors"] == [{"message": "Unknown fragment 'Missing'.", "locations": [{"line": 1, "column": 6}]}]


MILLION = "{ customers(first: 100) { edges { node { cases(first: 100) { edges { node { contacts(first: 100) { edges { node { id } } } } } } } } } }"


async def test_a_query_that_multiplies_pages_is_refused_before_it_runs_with_its_cost(gql, count_queries):
    await gql(ME)  # the token lookup is cached from here on
    start = count_queries.count
    body = (await gql.post(MILLION)).json()

    assert "data" not in body and count_queries.count == start
    error = body["errors"][0]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert error["extensions"]["cost"] > 1_000_000 and error["extensions"]["limit"] == 50_000


async def test_the_cost_counts_page_sizes_given_in_variables(gql):
    query = "query($n: Int) { customers(first: $n) { edges { node { cases(first: $n) { edges { node { contacts(first: $n) { totalCount } } } } } } } }"
    small = await gql.post(query, {"n": 5})
    large = await gql.post(query, {"n": 100})

    assert small.json()["data"]["customers"]["edges"] == []
    assert large.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


def test_the_unified_history_costs_its_fields_times_the_page(settings):
    from graphql import parse

    from resolvers.query_cost import query_cost
    from resolvers.schema import build_schema

    history = "query($id: ID!) { customer(id: $id) { name contacts(first: 50) { edges { node { channel subject occurredAt case { reference } } } pageInfo { hasNextPage } } } }"
    cost = query_cost(build_schema(settings)._schema, parse(history), None, {"id": "x"})

    # customer, name, contacts once; below the page of 50: edges, node, 4 fields, reference, pageInfo, hasNextPage.
    assert cost == 3 + 50 * 9


async def test_an_unexpected_error_before_execution_is_masked_too(http, admin_token, monkeypatch):
    from resolvers import query_cost

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(query_cost, "query_cost", broken)
    # Through the whole pipeline (an admitted document would skip the cost of a query without variables).
    headers = {"Authorization": f"Bearer {admin_token}", "Casegraph-Path": "executor"}
    body = (await http.post("/graphql", json={"query": ME}, headers=headers)).json()

    assert body["errors"] == [{"message": "Unexpected error."}]


async def test_database_errors_never_carry_the_statement_parameters(runtime):
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError) as failed:
        async with runtime.transaction() as session:
            await session.execute(text("SELECT 1 / 0 WHERE :secret <> ''"), {"secret": "ada@example.com"})

    assert "division by zero" in str(failed.value) and "ada@example.com" not in str(failed.value)

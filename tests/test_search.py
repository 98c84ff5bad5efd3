"""customerSearch and caseSearch: what an agent types, what comes first, and input that must not hurt."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import sqlalchemy
from sqlalchemy import text

from app.services import customers as customer_service
from app.services.customers import IdentifierInput
from tests.support import AGENT, SUPERVISOR, gid, make_case, make_contact, make_customer, scalar

CUSTOMER_SEARCH = """
query($query: String!, $filters: CustomerSearchFilters, $first: Int, $after: String) {
  customerSearch(query: $query, filters: $filters, first: $first, after: $after) {
    edges { cursor node { matchedBy matches { kind value score } customer { id number name status } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
CASE_SEARCH = """
query($query: String!, $filters: CaseSearchFilters, $first: Int, $after: String) {
  caseSearch(query: $query, filters: $filters, first: $first, after: $after) {
    edges { node { snippet byReference case { id reference subject } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


async def execute(runtime, sql: str, **params) -> None:
    async with runtime.engine.begin() as conn:
        await conn.execute(text(sql), params)


async def add_identifier(runtime, customer_id: int, kind: str, value: str) -> None:
    async with runtime.transaction() as session:
        await customer_service.add_identifier(
            session, actor=AGENT, customer_id=customer_id, kind=kind, value=value, region="GB"
        )


@pytest.fixture
async def people(runtime) -> dict[str, int]:
    """A small directory with the awkward cases a contact centre meets."""
    ids = {
        "ada": await make_customer(runtime, "Ada Lovelace", emails=["ada@example.com"], phones=["+44 7700 900123"]),
        "zoe": await make_customer(runtime, "Zoë Ångström", emails=["zoe@example.org"]),
        "jose": await make_customer(runtime, "José Álvarez-Núñez", phones=["+33 6 12 34 56 78"]),
        # A household landline on two profiles.
        "john": await make_customer(runtime, "John Smith", phones=["020 7946 0000"]),
        "jane": await make_customer(runtime, "Jane Smith", phones=["020 7946 0000"]),
        "grace": await make_customer(runtime, "Grace Hopper"),
        "old": await make_customer(runtime, "Ada L.", emails=["ada.old@example.com"]),
    }
    await add_identifier(runtime, ids["grace"], "account_id", "ACC-42_%")
    return ids


async def search(gql, query: str, **variables) -> list[dict]:
    data = await gql(CUSTOMER_SEARCH, {"query": query, **variables})
    return [edge["node"] for edge in data["customerSearch"]["edges"]]


AWKWARD = [
    # (typed, first result, how it matched)
    ("ada@example.com", "ada", "EMAIL"),
    ("  ADA@Example.COM ", "ada", "EMAIL"),
    ("+44 7700 900123", "ada", "PHONE"),
    ("07700 900123", "ada", "PHONE"),
    ("07700-900-123", "ada", "PHONE"),
    ("(07700) 900123", "ada", "PHONE"),
    ("0044 7700 900123", "ada", "PHONE"),
    ("7700900123", "ada", "PHONE"),
    ("06 12 34 56 78", "jose", "PHONE_NATIONAL"),  # a French number dialled without +33
    ("Ada Lovelace", "ada", "NAME"),
    ("Lovelace Ada", "ada", "NAME"),
    ("ada lovelase", "ada", "NAME"),
    ("Adda Lovelace", "ada", "NAME"),
    ("Zoe Angstrom", "zoe", "NAME"),
    ("ZOË ÅNGSTRÖM", "zoe", "NAME"),
    ("jose alvarez nunez", "jose", "NAME"),
    ("Nunez Jose", "jose", "NAME"),
    ("Grace Hoper", "grace", "NAME"),
    ("ACC-42_%", "grace", "ACCOUNT_ID"),
    ("C-000006", "grace", "CUSTOMER_NUMBER"),
    ("c6", "grace", "CUSTOMER_NUMBER"),
]


@pytest.mark.parametrize(("typed", "expected", "how"), AWKWARD)
async def test_awkward_searches_put_the_right_customer_first(gql, people, typed, expected, how):
    results = await search(gql, typed)
    assert results, f"nothing found for {typed!r}"
    assert results[0]["customer"]["id"] == gid("Customer", people[expected])
    assert results[0]["matchedBy"][0] == how


async def test_a_shared_number_lists_every_profile_that_carries_it(gql, people):
    results = await search(gql, "+44 20 7946 0000")
    assert {r["customer"]["id"] for r in results} == {gid("Customer", people["john"]), gid("Customer", people["jane"])}
    assert all(r["matchedBy"] == ["PHONE"] for r in results)


async def test_exact_identifiers_rank_before_similar_names(gql, people, runtime):
    # Someone whose name is an email-looking string does not outrank the email's owner.
    await add_identifier(runtime, people["grace"], "external_ref", "Ada Lovelace")
    results = await search(gql, "Ada Lovelace")
    assert results[0]["customer"]["id"] == gid("Customer", people["grace"])
    assert results[0]["matchedBy"] == ["EXTERNAL_REF"]
    assert results[1]["customer"]["id"] == gid("Customer", people["ada"])
    assert results[1]["matches"][0]["score"] == 1.0


async def test_a_merged_customers_old_email_finds_the_survivor(gql, people, runtime):
    async with runtime.transaction() as session:
        await customer_service.merge_customers(
            session, actor=SUPERVISOR, survivor_id=people["ada"], duplicate_ids=[people["old"]]
        )
    results = await search(gql, "ada.old@example.com")
    assert [r["customer"]["id"] for r in results] == [gid("Customer", people["ada"])]
    # Its old number too.
    results = await search(gql, "C-000007")
    assert [r["customer"]["id"] for r in results] == [gid("Customer", people["ada"])]


async def test_archived_customers_only_when_asked(gql, people, runtime):
    await execute(runtime, "UPDATE customers SET status = 'archived' WHERE id = :id", id=people["grace"])
    assert await search(gql, "Grace Hopper") == []
    found = await search(gql, "Grace Hopper", filters={"status": ["ACTIVE", "ARCHIVED"]})
    assert found[0]["customer"]["status"] == "ARCHIVED"


async def test_pages_follow_the_ranking(gql, runtime):
    for i in range(5):
        await make_customer(runtime, f"Smith {'x' * i}")
    first = await gql(CUSTOMER_SEARCH, {"query": "smith", "first": 2})
    seen = [e["node"]["customer"]["id"] for e in first["customerSearch"]["edges"]]
    after = first["customerSearch"]["pageInfo"]["endCursor"]
    rest = await gql(CUSTOMER_SEARCH, {"query": "smith", "first": 10, "after": after})
    seen += [e["node"]["customer"]["id"] for e in rest["customerSearch"]["edges"]]
    assert len(seen) == len(set(seen)) == 5
    assert not rest["customerSearch"]["pageInfo"]["hasNextPage"]


async def test_created_and_activity_ranges_filter(gql, people, runtime):
    await execute(runtime, "UPDATE customers SET created_at = '2020-01-01' WHERE id = :id", id=people["john"])
    found = await search(gql, "Smith", filters={"createdBefore": "2021-01-01T00:00:00Z"})
    assert [r["customer"]["id"] for r in found] == [gid("Customer", people["john"])]
    assert await search(gql, "Smith", filters={"lastActivityAfter": "2021-01-01T00:00:00Z"}) == []


BAD_INPUT = ["%", "_", "%%%", "...", "?!*", ".*", "(a|b)*$", "[", "\\", "'; DROP TABLE customers; --", "+", "123", "@"]


@pytest.mark.parametrize("typed", BAD_INPUT)
async def test_odd_input_is_answered_without_error(gql, people, typed):
    results = await search(gql, typed)
    assert isinstance(results, list)
    assert all(r["matchedBy"] for r in results)


@pytest.mark.parametrize(
    ("typed", "message"), [("", "type something"), ("   ", "type something"), ("x" * 10_000, "longer")]
)
async def test_empty_or_huge_queries_are_refused(gql, typed, message):
    response = await gql.post(CUSTOMER_SEARCH, {"query": typed})
    body = response.json()
    assert response.status_code == 200 and message in body["errors"][0]["message"]
    response = await gql.post(CASE_SEARCH, {"query": typed})
    assert message in response.json()["errors"][0]["message"]


SEARCH_WITH_HISTORY = """
query { customerSearch(query: "ada lovelace") { edges { node { customer {
  openCases(first: 5) { edges { node { reference } } }
  latestContact { text }
  identifiers { value }
} } } } }
"""


async def test_search_results_show_open_cases_and_latest_contact_in_a_fixed_number_of_queries(
    gql, runtime, count_queries
):
    async def add_customers(count: int) -> None:
        for i in range(count):
            customer_id = await make_customer(runtime, f"Ada Lovelace {i}")
            case_id = await make_case(runtime, [customer_id], subject=f"Case {i}")
            await make_contact(runtime, customer_id=customer_id, case_id=case_id, text_body=f"hello {i}")

    async def statements_for_search(expected_results: int) -> int:
        count_queries.statements.clear()
        results = (await gql(SEARCH_WITH_HISTORY))["customerSearch"]["edges"]
        assert len(results) == expected_results
        assert all(r["node"]["customer"]["openCases"]["edges"] for r in results)
        assert all(r["node"]["customer"]["latestContact"]["text"].startswith("hello") for r in results)
        return count_queries.count

    await gql(SEARCH_WITH_HISTORY)  # the token's first use is recorded once
    await add_customers(2)
    with_two = await statements_for_search(2)
    await add_customers(6)
    # The token, the search (the name's words, then the hits), then one statement per nested field,
    # whatever the number of results.
    assert await statements_for_search(8) == with_two <= 6


async def test_integrators_do_not_browse(gql, runtime):
    from tests.conftest import _token

    token = await _token(runtime, "crm", "integrator")
    response = await gql.post(CUSTOMER_SEARCH, {"query": "ada"}, token=token)
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


# ---- cases -------------------------------------------------------------------------------------


@pytest.fixture
async def casebook(runtime) -> dict[str, int]:
    ada = await make_customer(runtime, "Ada Lovelace")
    bob = await make_customer(runtime, "Bob Baker")
    ids = {
        "boiler": await make_case(runtime, [ada], subject="Boiler leaking in the kitchen"),
        "invoice": await make_case(runtime, [bob], subject="Invoice query"),
        "router": await make_case(runtime, [bob], subject="Broadband down"),
        "ada": ada,
        "bob": bob,
    }
    await make_contact(
        runtime, customer_id=bob, case_id=ids["invoice"], text_body="The kitchen engineer <b>never</b> came"
    )
    await make_contact(runtime, customer_id=bob, case_id=ids["router"], text_body="My router blinks red since Tuesday")
    return ids


async def case_search(gql, query: str, **variables) -> list[dict]:
    data = await gql(CASE_SEARCH, {"query": query, **variables})
    return [edge["node"] for edge in data["caseSearch"]["edges"]]


async def test_case_words_rank_subject_before_contact_text(gql, casebook):
    results = await case_search(gql, "kitchen")
    assert [r["case"]["id"] for r in results] == [gid("Case", casebook["boiler"]), gid("Case", casebook["invoice"])]
    assert "<mark>kitchen</mark>" in results[0]["snippet"]
    # Contact text is escaped before highlighting: its markup never reaches the snippet as markup.
    assert "<mark>kitchen</mark>" in results[1]["snippet"] and "&lt;b&gt;never&lt;/b&gt;" in results[1]["snippet"]


async def test_case_search_stems_and_combines_words(gql, casebook):
    assert [r["case"]["id"] for r in await case_search(gql, "router blinking")] == [gid("Case", casebook["router"])]
    assert await case_search(gql, "router -blinking") == []
    assert [r["case"]["id"] for r in await case_search(gql, '"broadband down"')] == [gid("Case", casebook["router"])]


async def test_a_case_reference_goes_straight_to_the_case(gql, casebook):
    results = await case_search(gql, "case-2")
    assert [(r["case"]["reference"], r["byReference"]) for r in results] == [("CASE-000002", True)]


async def test_case_search_filters(gql, casebook, runtime):
    only_bob = await case_search(gql, "kitchen", filters={"customerId": gid("Customer", casebook["bob"])})
    assert [r["case"]["id"] for r in only_bob] == [gid("Case", casebook["invoice"])]
    assert await case_search(gql, "boiler", filters={"status": ["CLOSED"]}) == []
    assert await case_search(gql, "boiler", filters={"priority": ["URGENT"]}) == []
    await execute(runtime, "INSERT INTO pools (id, name) VALUES (900, 'Billing')")
    await execute(runtime, "UPDATE cases SET pool_id = 900 WHERE id = :id", id=casebook["invoice"])
    in_billing = await case_search(gql, "kitchen", filters={"poolId": gid("Pool", 900)})
    assert [r["case"]["id"] for r in in_billing] == [gid("Case", casebook["invoice"])]
    await execute(runtime, "UPDATE cases SET archived_at = now() WHERE id = :id", id=casebook["boiler"])
    assert len(await case_search(gql, "kitchen")) == 1
    assert len(await case_search(gql, "kitchen", filters={"includeArchived": True})) == 2


async def test_edited_subjects_and_moved_contacts_are_searched_as_they_are_now(gql, casebook, runtime):
    await execute(runtime, "UPDATE cases SET subject = 'Water heater' WHERE id = :id", id=casebook["boiler"])
    assert [r["case"]["id"] for r in await case_search(gql, "heater")] == [gid("Case", casebook["boiler"])]
    await execute(
        runtime,
        "UPDATE contacts SET case_id = :c WHERE case_id = :r",
        c=casebook["boiler"],
        r=casebook["router"],
    )
    assert [r["case"]["id"] for r in await case_search(gql, "router")] == [gid("Case", casebook["boiler"])]


@pytest.mark.parametrize("typed", BAD_INPUT + ["the", "!!!", "a & b | c", "<script>"])
async def test_odd_case_queries_are_answered_without_error(gql, casebook, typed):
    assert isinstance(await case_search(gql, typed), list)


async def test_identifier_values_used_by_creation_stay_normalised(runtime):
    # The search reads phones and emails as customerCreate stores them.
    async with runtime.transaction() as session:
        customer = await customer_service.create_customer(
            session,
            actor=AGENT,
            name="Normal",
            identifiers=[IdentifierInput("phone", "07700 900999")],
            fields=None,
            region="GB",
        )
    assert await scalar(runtime, "SELECT value FROM customer_identifiers WHERE customer_id = :c", c=customer.id) == (
        "+447700900999"
    )


# ---- duplicates at creation ---------------------------------------------------------------------

CREATE = """
mutation($input: CustomerCreateInput!) {
  customerCreate(input: $input) {
    customer { id number }
    possibleDuplicates { score reasons customer { id } }
    errors { field code message }
  }
}
"""


async def test_creation_names_customers_with_the_same_email_phone_or_account_id(gql, people):
    data = await gql(
        CREATE, {"input": {"name": "Ada Lovelace", "emails": ["ADA@example.com"], "phones": ["020 7946 0000"]}}
    )
    payload = data["customerCreate"]
    assert payload["customer"] is not None and payload["errors"] == []
    found = [(d["customer"]["id"], d["reasons"]) for d in payload["possibleDuplicates"]]
    # Ada shares the email and has the same name: first. The Smiths share the household phone.
    assert found[0] == (gid("Customer", people["ada"]), ["shares email ada@example.com", "similar name (1.00)"])
    assert {f[0] for f in found[1:]} == {gid("Customer", people["john"]), gid("Customer", people["jane"])}


async def test_a_similar_name_alone_is_no_duplicate_at_creation(gql, people):
    payload = (await gql(CREATE, {"input": {"name": "Ada Lovelace", "emails": ["new@example.com"]}}))["customerCreate"]
    assert payload["possibleDuplicates"] == [] and payload["customer"] is not None


async def test_if_no_duplicates_creates_nothing_and_names_them(gql, people, runtime):
    before = await scalar(runtime, "SELECT count(*) FROM customers")
    payload = (
        await gql(CREATE, {"input": {"name": "A. Lovelace", "phones": ["+447700900123"], "ifNoDuplicates": True}})
    )["customerCreate"]
    assert payload["customer"] is None
    [error] = payload["errors"]
    assert (error["field"], error["code"]) == ("ifNoDuplicates", "POSSIBLE_DUPLICATE")
    assert "C-000001 (shares phone +447700900123" in error["message"]
    assert await scalar(runtime, "SELECT count(*) FROM customers") == before
    # Without a duplicate, it creates as usual.
    created = (await gql(CREATE, {"input": {"name": "Someone New", "ifNoDuplicates": True}}))["customerCreate"]
    assert created["customer"] is not None and created["errors"] == []


async def test_customer_duplicates_and_creation_agree(gql, people):
    # The same definition: what creation would flag is what customerDuplicates lists for the new profile.
    payload = (await gql(CREATE, {"input": {"name": "Jon Smith", "phones": ["02079460000"]}}))["customerCreate"]
    listed = (
        await gql(
            "query($id: ID!) { customerDuplicates(customerId: $id) { score reasons customer { id } } }",
            {"id": payload["customer"]["id"]},
        )
    )["customerDuplicates"]
    assert payload["possibleDuplicates"] == [d for d in listed if any(r.startswith("shares") for r in d["reasons"])]


# ---- no reading scans the table -----------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    ["ada@example.com", "07700 900123", "06 12 34 56 78", "ACC-42_%", "C-000006", "CASE-000001", "Lovelace Ada"],
)
async def test_every_reading_of_a_query_is_an_index_lookup(runtime, people, typed):
    from app.services.search import _customer_hits, alike_name_words, read_customer_query

    reading = read_customer_query(typed, region="GB")
    async with runtime.engine.begin() as conn:
        if reading.name:
            reading = replace(reading, name_words=await alike_name_words(conn, reading.name))
    if typed == "Lovelace Ada":
        assert reading.name_words == (("lovelace",), ("ada",))
    parts, params = _customer_hits(reading)
    async with runtime.engine.begin() as conn:
        # With sequential scans priced out, a reading that has no usable index still shows one.
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        for part in parts:
            plan = "\n".join(r[0] for r in await conn.execute(text(f"EXPLAIN {part}"), params))
            assert "Seq Scan" not in plan, (part, plan)


async def test_a_shared_identifier_always_has_its_name_compared(gql, runtime):
    # Many profiles with the very name typed do not crowd out the one that shares the phone.
    for _ in range(25):
        await make_customer(runtime, "Jon Smith")
    holder = await make_customer(runtime, "John Smith", phones=["+44 20 7946 1111"])
    new = await make_customer(runtime, "Jon Smith", phones=["020 7946 1111"])
    listed = (
        await gql(
            "query($id: ID!) { customerDuplicates(customerId: $id) { score reasons customer { id } } }",
            {"id": gid("Customer", new)},
        )
    )["customerDuplicates"]
    assert listed[0]["customer"]["id"] == gid("Customer", holder)
    assert listed[0]["reasons"][0] == "shares phone +442079461111"
    assert listed[0]["reasons"][1].startswith("similar name") and listed[0]["score"] > 0.8
    # Creation reads it the same way: a typo'd name with the shared phone.
    payload = (await gql(CREATE, {"input": {"name": "Jonh Smith", "phones": ["02079461111"]}}))["customerCreate"]
    found = {d["customer"]["id"]: d["reasons"] for d in payload["possibleDuplicates"]}
    assert set(found) == {gid("Customer", holder), gid("Customer", new)}
    assert all(reasons[1].startswith("similar name") for reasons in found.values())


# ---- names at scale: the distinct names ranked, then their holders read only as far as needed ------


async def name_dictionaries(runtime) -> tuple[set[str], set[str]]:
    async with runtime.engine.connect() as conn:
        names = set((await conn.execute(text("SELECT name FROM customer_full_names"))).scalars())
        words = set((await conn.execute(text("SELECT word FROM customer_name_words"))).scalars())
    return names, words


async def test_the_name_dictionaries_follow_the_names(runtime):
    zoe = await make_customer(runtime, "Zoë Ångström")
    await make_customer(runtime, "Zoe O'Brien")
    twin = await make_customer(runtime, "Zoe O'Brien")
    names, words = await name_dictionaries(runtime)
    assert {"zoe angstrom", "zoe o'brien"} <= names and {"zoe", "angstrom", "o", "brien"} <= words
    # A word leaves with the last name that holds it, a name with its last holder (an erased
    # name leaves nothing behind).
    await execute(runtime, "UPDATE customers SET name = NULL WHERE id = :id", id=zoe)
    names, words = await name_dictionaries(runtime)
    assert "zoe angstrom" not in names and "angstrom" not in words and "zoe" in words
    await execute(runtime, "DELETE FROM customers WHERE id = :id", id=twin)
    assert "zoe o'brien" in (await name_dictionaries(runtime))[0]
    await execute(runtime, "UPDATE customers SET name = 'Zoé O''Brien' WHERE name = 'Zoe O''Brien'")
    assert "zoe o'brien" in (await name_dictionaries(runtime))[0]
    await execute(runtime, "DELETE FROM customers WHERE name = 'Zoé O''Brien'")
    names, words = await name_dictionaries(runtime)
    assert "zoe o'brien" not in names and not {"zoe", "brien"} & words


async def name_plan(runtime, typed: str) -> str:
    from app.services.search import _customer_hits, alike_name_words, read_customer_query

    await execute(runtime, "ANALYZE customers")
    await execute(runtime, "ANALYZE customer_full_names")
    async with runtime.transaction() as session:
        reading = read_customer_query(typed, region="GB")
        reading = replace(reading, name_words=await alike_name_words(session, reading.name))
        parts, params = _customer_hits(reading)
        [name_part] = [p for p in parts if "'name'" in p]
        return "\n".join(r[0] for r in await session.execute(text(f"EXPLAIN ANALYZE {name_part}"), params))


def holders_read(plan: str) -> int:
    """Customers the name part read by their folded name, over every name it looked at."""
    [line] = [line for line in plan.splitlines() if "Index Scan using ix_customers_folded_name" in line]
    rows, loops = re.search(r"actual time=\S+ rows=([\d.]+) loops=(\d+)", line).groups()
    return round(float(rows) * int(loops))


async def test_a_common_first_name_and_surname_rank_only_those_who_have_both(runtime, gql):
    await execute(
        runtime,
        "INSERT INTO customers (name) SELECT 'James ' || s FROM unnest(CAST(:others AS text[])) s "
        "UNION ALL SELECT s || ' Smith' FROM unnest(CAST(:others AS text[])) s, generate_series(1, 20)",
        others=["Taylor", "Brown", "Wilson", "Evans", "Walker", "Green", "Hall", "Wood", "Clarke", "Patel"] * 20,
    )
    wanted = await make_customer(runtime, "James Smith")
    found = await search(gql, "smiht jmes")
    assert [r["customer"]["id"] for r in found] == [gid("Customer", wanted)]
    plan = await name_plan(runtime, "smiht jmes")
    # The two words meet among the names: of the 4,200 customers who share one, only the one
    # who has both is read.
    assert "Seq Scan on customers" not in plan, plan
    assert holders_read(plan) == 1, plan


async def test_a_name_many_hold_reads_only_as_many_holders_as_are_ranked(runtime, gql):
    from app.services.search import NAME_CANDIDATES

    await execute(
        runtime,
        "INSERT INTO customers (name) SELECT n FROM unnest(ARRAY['Mary Davis', 'Maryam Davis', 'Mary Davies']) n, "
        "generate_series(1, :each)",
        each=2 * NAME_CANDIDATES,
    )
    found = await search(gql, "mary davis", first=5)
    assert {r["customer"]["name"] for r in found} == {"Mary Davis"}
    # The best name's holders fill the candidates; one more row shows that name has no more.
    plan = await name_plan(runtime, "mary davis")
    assert holders_read(plan) <= NAME_CANDIDATES + 1, plan


async def test_a_name_word_matches_its_typos_and_the_words_it_begins(gql, runtime):
    mary, maryam, martin = [
        await make_customer(runtime, name) for name in ("Mary Davis", "Maryam Davis", "Martin Davis")
    ]

    async def found(typed: str) -> list[str]:
        return [r["customer"]["id"] for r in await search(gql, typed)]

    # "martin" shares as many trigrams with "mary" as "maria" does, but is no typo of it.
    assert await found("mary davis") == [gid("Customer", mary), gid("Customer", maryam)]
    assert (await found("mary davsi"))[0] == gid("Customer", mary)
    assert await found("marti davis") == [gid("Customer", martin)]


async def test_every_word_typed_must_be_in_the_name(gql, people):
    assert await search(gql, "Ada Zyxwv") == []
    # Initials alone are compared with the whole name.
    assert (await search(gql, "A. L."))[0]["customer"]["id"] == gid("Customer", people["old"])


async def test_case_words_matching_many_cases_rank_a_bounded_set(gql, runtime, monkeypatch):
    from app.services import search as search_service

    customer = await make_customer(runtime, "Ada Lovelace")
    for i in range(12):
        case_id = await make_case(runtime, [customer], subject=f"Refund {i}")
        await make_contact(runtime, customer_id=customer, case_id=case_id, text_body="about my refund")
    monkeypatch.setattr(search_service, "CASE_CANDIDATES", 3)
    # At most three from the cases' own words and three from their contacts' are ranked.
    results = await case_search(gql, "refund", first=50)
    assert 3 <= len(results) <= 6
    assert all("<mark>" in r["snippet"].lower() for r in results)


async def test_a_page_of_case_matches_reads_only_the_cases_it_shows(runtime):
    customer = await make_customer(runtime, "Ada Lovelace")
    for i in range(40):
        await make_case(runtime, [customer], subject=f"Refund {i}")
    # Enough other cases that reading the matches one by one is the plan, as in production.
    await execute(runtime, "INSERT INTO cases (subject) SELECT 'Invoice ' || g FROM generate_series(1, 20000) g")
    await execute(runtime, "ANALYZE cases")
    page, plan = await case_search_plan(runtime, "refund", first=3)
    assert len(page.rows) == 3 and page.has_next
    # The 40 matches are ranked; the cases are read down the ranking until the page (and one more) is full.
    [cases_read] = [line for line in plan.splitlines() if "on cases k" in line]
    assert "loops=4)" in cases_read, plan


async def case_search_plan(runtime, query: str, first: int):
    """The page caseSearch gives and the executed plan of its statement."""
    from app.services.search import search_cases

    statements = []

    def captured(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append((statement, parameters))

    sqlalchemy.event.listen(runtime.engine.sync_engine, "before_cursor_execute", captured)
    try:
        async with runtime.reading() as session:
            page = await search_cases(session, query=query, first=first)
    finally:
        sqlalchemy.event.remove(runtime.engine.sync_engine, "before_cursor_execute", captured)
    statement, parameters = next((s, p) for s, p in statements if "ranked AS MATERIALIZED" in s)
    async with runtime.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        plan = "\n".join(r[0] for r in await raw.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) {statement}", *parameters))
    return page, plan


async def recent_contact_ids(runtime) -> set[int]:
    async with runtime.engine.connect() as conn:
        return set((await conn.scalars(text("SELECT contact_id FROM recent_contact_search_vectors"))).all())


async def test_the_recent_contact_index_follows_contacts(runtime, monkeypatch):
    from app.services import search as search_service
    from jobs import worker

    customer = await make_customer(runtime, "Ada Lovelace")
    case_id = await make_case(runtime, [customer], subject="Parcel")
    first = await make_contact(runtime, customer_id=customer, case_id=case_id, text_body="alpha")
    unfiled = await make_contact(runtime, customer_id=customer, text_body="beta")
    assert await recent_contact_ids(runtime) == {first}
    second = await make_contact(runtime, customer_id=customer, case_id=case_id, text_body="gamma")
    # The worker trims the recent index every ten minutes.
    assert any(job.coroutine is worker.search_trim for job in worker.WorkerSettings.cron_jobs)
    monkeypatch.setattr(search_service, "RECENT_CONTACTS", 1)
    assert await worker.search_trim({"runtime": runtime}) == 1
    assert await recent_contact_ids(runtime) == {second}
    # Filed on a case now, but older than every recent contact: searched in the full index only.
    await execute(runtime, "UPDATE contacts SET case_id = :case WHERE id = :id", case=case_id, id=unfiled)
    assert await recent_contact_ids(runtime) == {second}
    assert await scalar(runtime, "SELECT count(*) FROM contact_search_vectors WHERE contact_id = :id", id=unfiled) == 1
    # A contact filed a moment after it came in is recent.
    later = await make_contact(runtime, customer_id=customer, text_body="delta")
    await execute(runtime, "UPDATE contacts SET case_id = :case WHERE id = :id", case=case_id, id=later)
    assert await recent_contact_ids(runtime) == {second, later}
    await execute(runtime, "UPDATE contacts SET text = 'epsilon' WHERE id = :id", id=later)
    assert await scalar(
        runtime,
        "SELECT vector @@ 'epsilon'::tsquery FROM recent_contact_search_vectors WHERE contact_id = :id",
        id=later,
    )
    await execute(runtime, "UPDATE contacts SET case_id = NULL WHERE id = :id", id=later)
    assert await recent_contact_ids(runtime) == {second}


async def recent_case_ids(runtime) -> set[int]:
    async with runtime.engine.connect() as conn:
        return set((await conn.scalars(text("SELECT case_id FROM recent_case_search_vectors"))).all())


async def test_the_recent_case_index_follows_cases(runtime, monkeypatch):
    from app.services import search as search_service
    from jobs import worker

    customer = await make_customer(runtime, "Ada Lovelace")
    first = await make_case(runtime, [customer], subject="Parcel")
    second = await make_case(runtime, [customer], subject="Invoice")
    assert await recent_case_ids(runtime) == {first, second}
    monkeypatch.setattr(search_service, "RECENT_CASES", 1)
    assert await worker.search_trim({"runtime": runtime}) == 1
    assert await recent_case_ids(runtime) == {second}
    # A new subject for an older case than every recent one: searched in the full index only.
    await execute(runtime, "UPDATE cases SET subject = 'Refund' WHERE id = :id", id=first)
    assert await recent_case_ids(runtime) == {second}
    assert await scalar(
        runtime, "SELECT vector @@ 'refund'::tsquery FROM case_search_vectors WHERE case_id = :id", id=first
    )
    await execute(runtime, "UPDATE cases SET subject = 'Voucher' WHERE id = :id", id=second)
    assert await scalar(
        runtime, "SELECT vector @@ 'voucher'::tsquery FROM recent_case_search_vectors WHERE case_id = :id", id=second
    )
    third = await make_case(runtime, [customer], subject="Delivery")
    assert await recent_case_ids(runtime) == {second, third}
    await execute(runtime, "DELETE FROM case_search_vectors WHERE case_id = :id", id=third)
    assert await recent_case_ids(runtime) == {second}


async def check_older_read_only_when_few_recent_match(
    gql, runtime, monkeypatch, *, old: int, recent: list[int], full_index: str
) -> None:
    """`old` (out of the recent index) alone holds "voucher"; it and the three `recent` cases hold
    "refund". The older rows are searched while few recent ones match, and not read at all once
    as many match as are enough."""
    from app.services import search as search_service

    async def found(query: str) -> set[str]:
        return {r["case"]["id"] for r in await case_search(gql, query, first=10)}

    assert await found("voucher") == {gid("Case", old)}
    assert await found("refund") == {gid("Case", c) for c in [old, *recent]}
    monkeypatch.setattr(search_service, "ENOUGH_RECENT", 3)
    assert await found("refund") == {gid("Case", c) for c in recent}
    _, plan = await case_search_plan(runtime, "refund", first=10)
    [full_index_scan] = [line for line in plan.splitlines() if f"on {full_index}" in line]
    assert "never executed" in full_index_scan, plan


async def test_older_cases_are_searched_when_few_recent_ones_match(gql, runtime, monkeypatch):
    from app.services import search as search_service

    customer = await make_customer(runtime, "Ada Lovelace")
    old = await make_case(runtime, [customer], subject="Voucher refund")
    recent = [await make_case(runtime, [customer], subject=f"Refund {i}") for i in range(3)]
    async with runtime.transaction() as session:
        assert await search_service.trim_recent_cases(session, keep=3) == 1
    await check_older_read_only_when_few_recent_match(
        gql, runtime, monkeypatch, old=old, recent=recent, full_index="ix_case_search_vectors_vector"
    )


async def test_older_contacts_are_searched_when_few_recent_ones_match(gql, runtime, monkeypatch):
    from app.services import search as search_service

    customer = await make_customer(runtime, "Ada Lovelace")
    old = await make_case(runtime, [customer], subject="First matter")
    await make_contact(runtime, customer_id=customer, case_id=old, text_body="refund of the voucher")
    recent = []
    for i in range(3):
        recent.append(await make_case(runtime, [customer], subject=f"Matter {i}"))
        await make_contact(runtime, customer_id=customer, case_id=recent[-1], text_body=f"refund {i}")
    async with runtime.transaction() as session:
        assert await search_service.trim_recent_contacts(session, keep=3) == 1
    await check_older_read_only_when_few_recent_match(
        gql, runtime, monkeypatch, old=old, recent=recent, full_index="ix_contact_search_vectors_vector"
    )

"""Saved search screens: kept by supervisors per group or for everyone, listed to the agents of their
groups, run by customerSearch/caseSearch under the caller's own filters, and carried by the
configuration file."""

from __future__ import annotations

import pytest
import yaml
from sqlalchemy import text

from app.auth import SYSTEM
from app.config_file import export_config, import_config
from app.errors import UserError
from app.services.auth import create_token
from tests.support import gid, make_customer, scalar

FIELD_CREATE = """mutation($input: FormFieldCreateInput!) {
  formFieldCreate(input: $input) { formField { id } errors { field code } } }"""
GROUP_CREATE = """mutation($input: UserGroupCreateInput!) {
  userGroupCreate(input: $input) { userGroup { id } errors { field code } } }"""
SCREEN = "id name target groupId query filters columns sort"
SCREEN_CREATE = f"""mutation($input: SearchScreenCreateInput!) {{
  searchScreenCreate(input: $input) {{ searchScreen {{ {SCREEN} }} errors {{ field code message }} }} }}"""
SCREEN_UPDATE = f"""mutation($input: SearchScreenUpdateInput!) {{
  searchScreenUpdate(input: $input) {{ searchScreen {{ {SCREEN} }} errors {{ field code }} }} }}"""
SCREENS = f"query($target: SearchTarget) {{ searchScreens(target: $target) {{ {SCREEN} }} }}"
RUN = """query($screen: ID!, $query: String, $filters: CustomerSearchFilters) {
  customerSearch(screenId: $screen, query: $query, filters: $filters) { edges { node { customer { id name } } } } }"""


async def token_for(runtime, name: str, role: str) -> tuple[str, int]:
    async with runtime.transaction() as session:
        token = await create_token(session, name=name, role=role)
    return token, await scalar(runtime, "SELECT id FROM users WHERE name = :n", n=name)


@pytest.fixture
async def setup(gql, runtime) -> dict:
    """A searchable tier field, two groups (billing with Ann in it), and three customers."""
    await gql(FIELD_CREATE, {"input": {"key": "tier", "label": "Tier", "type": "TEXT", "searchable": True}})
    await gql(FIELD_CREATE, {"input": {"key": "notes", "label": "Notes", "type": "TEXT"}})
    ann_token, ann = await token_for(runtime, "ann", "agent")
    bob_token, _ = await token_for(runtime, "bob", "agent")
    billing = (await gql(GROUP_CREATE, {"input": {"name": "Billing", "memberIds": [gid("User", ann)]}}))[
        "userGroupCreate"
    ]["userGroup"]["id"]
    sales = (await gql(GROUP_CREATE, {"input": {"name": "Sales"}}))["userGroupCreate"]["userGroup"]["id"]
    customers = {
        "gold_ada": await make_customer(runtime, "Ada Gold", fields={"tier": "gold"}),
        "plain_ada": await make_customer(runtime, "Ada Plain", fields={"tier": "basic"}),
        "gold_bea": await make_customer(runtime, "Bea Gold", fields={"tier": "gold"}),
    }
    return {"ann": ann_token, "bob": bob_token, "billing": billing, "sales": sales, **customers}


async def create(gql, **values) -> dict:
    payload = (await gql(SCREEN_CREATE, {"input": values}))["searchScreenCreate"]
    assert payload["errors"] == [], payload["errors"]
    return payload["searchScreen"]


async def test_agents_see_their_groups_screens_and_everyones(gql, setup):
    gold = await create(
        gql,
        name="Gold customers",
        target="CUSTOMER",
        groupId=setup["billing"],
        customerFilters={"fields": [{"key": "tier", "value": "gold"}]},
        columns=["number", "name", "fields.tier", "openCases"],
        sort="NEWEST",
    )
    assert gold["filters"] == {"fields": [{"key": "tier", "value": "gold"}]}
    assert (gold["sort"], gold["groupId"]) == ("NEWEST", setup["billing"])
    await create(gql, name="Everyone's", target="CUSTOMER")
    await create(gql, name="Sales only", target="CUSTOMER", groupId=setup["sales"])
    await create(gql, name="Open cases", target="CASE", caseFilters={"status": ["OPEN"]})

    names = lambda data: [s["name"] for s in data["searchScreens"]]  # noqa: E731
    assert names(await gql(SCREENS, {"target": "CUSTOMER"}, token=setup["ann"])) == ["Gold customers", "Everyone's"]
    assert names(await gql(SCREENS, {"target": "CUSTOMER"}, token=setup["bob"])) == ["Everyone's"]
    assert names(await gql(SCREENS, {"target": "CASE"}, token=setup["bob"])) == ["Open cases"]
    # Supervisors and admins see every screen.
    assert len((await gql(SCREENS))["searchScreens"]) == 4


async def test_running_a_screen_applies_its_filters_under_the_callers(gql, setup):
    gold = await create(
        gql,
        name="Gold",
        target="CUSTOMER",
        groupId=setup["billing"],
        customerFilters={"fields": [{"key": "tier", "value": "gold"}]},
        sort="OLDEST",
    )
    run = lambda **v: gql(RUN, {"screen": gold["id"], **v}, token=setup["ann"])  # noqa: E731
    ids = lambda data: [e["node"]["customer"]["id"] for e in data["customerSearch"]["edges"]]  # noqa: E731
    # No query: the screen's filter alone, in the screen's order.
    assert ids(await run()) == [gid("Customer", setup["gold_ada"]), gid("Customer", setup["gold_bea"])]
    # A query narrows it; the caller's value for the same field replaces the screen's.
    assert ids(await run(query="Ada")) == [gid("Customer", setup["gold_ada"])]
    basic = {"fields": [{"key": "tier", "value": "basic"}]}
    assert ids(await run(query="Ada", filters=basic)) == [gid("Customer", setup["plain_ada"])]
    # Another group's agent cannot run it; a customer screen is no case screen.
    body = (await gql.post(RUN, {"screen": gold["id"]}, token=setup["bob"])).json()
    assert body["errors"][0]["extensions"] == {"code": "NOT_FOUND", "field": "screenId"}
    body = (
        await gql.post("query($s: ID!) { caseSearch(screenId: $s) { edges { cursor } } }", {"s": gold["id"]})
    ).json()
    assert body["errors"][0]["extensions"] == {"code": "INVALID", "field": "screenId"}


@pytest.mark.parametrize(
    ("values", "field", "code"),
    [
        ({"columns": ["name", "shoeSize"]}, "columns.1", "UNKNOWN_COLUMN"),
        ({"columns": ["name", "fields.nowhere"]}, "columns.1", "UNKNOWN_COLUMN"),
        ({"columns": ["name", "name"]}, "columns.1", "DUPLICATE"),
        ({"customerFilters": {"fields": [{"key": "notes", "value": "x"}]}}, "filters.fields.0.key", "NOT_SEARCHABLE"),
        ({"caseFilters": {"status": ["OPEN"]}}, "caseFilters", "INVALID"),
        ({"name": " "}, "name", "REQUIRED"),
        ({"name": "Taken"}, "name", "DUPLICATE"),
        ({"groupId": gid("UserGroup", 999)}, "groupId", "NOT_FOUND"),
    ],
)
async def test_bad_screens_are_refused_with_a_code(gql, setup, runtime, values, field, code):
    await create(gql, name="Taken", target="CUSTOMER")
    before = await scalar(runtime, "SELECT count(*) FROM search_screens")
    payload = (await gql(SCREEN_CREATE, {"input": {"name": "New", "target": "CUSTOMER", **values}}))[
        "searchScreenCreate"
    ]
    assert [(e["field"], e["code"]) for e in payload["errors"]] == [(field, code)]
    assert await scalar(runtime, "SELECT count(*) FROM search_screens") == before


async def test_case_screens_check_their_pool_and_refuse_a_customer(gql, setup):
    payload = (
        await gql(
            SCREEN_CREATE,
            {"input": {"name": "X", "target": "CASE", "caseFilters": {"customerId": gid("Customer", 1)}}},
        )
    )["searchScreenCreate"]
    assert [(e["field"], e["code"]) for e in payload["errors"]] == [("filters.customerId", "UNKNOWN_FILTER")]
    payload = (
        await gql(SCREEN_CREATE, {"input": {"name": "X", "target": "CASE", "caseFilters": {"poolId": gid("Pool", 9)}}})
    )["searchScreenCreate"]
    assert [(e["field"], e["code"]) for e in payload["errors"]] == [("filters.poolId", "NOT_FOUND")]
    # A pool a screen filters by cannot go (the screen would list every pool's cases).
    pool = (await gql('mutation { poolCreate(input: {name: "Cards"}) { pool { id } } }'))["poolCreate"]["pool"]["id"]
    await create(gql, name="Cards", target="CASE", caseFilters={"poolId": pool})
    deleted = await gql("mutation($id: ID!) { poolDelete(input: {id: $id}) { errors { field code } } }", {"id": pool})
    assert deleted["poolDelete"]["errors"] == [{"field": "id", "code": "IN_USE"}]


async def test_only_supervisors_keep_screens_and_a_group_with_screens_stays(gql, setup):
    response = await gql.post(SCREEN_CREATE, {"input": {"name": "Mine", "target": "CUSTOMER"}}, token=setup["ann"])
    assert response.json()["errors"] and response.json()["data"] is None
    screen = await create(gql, name="Billing", target="CUSTOMER", groupId=setup["billing"])
    deleted = await gql(
        "mutation($id: ID!) { userGroupDelete(input: {id: $id}) { errors { field code } } }", {"id": setup["billing"]}
    )
    assert deleted["userGroupDelete"]["errors"] == [{"field": "id", "code": "IN_USE"}]
    updated = (await gql(SCREEN_UPDATE, {"input": {"id": screen["id"], "groupId": None, "columns": ["name"]}}))[
        "searchScreenUpdate"
    ]
    assert (updated["searchScreen"]["groupId"], updated["searchScreen"]["columns"]) == (None, ["name"])
    removed = await gql(
        "mutation($id: ID!) { searchScreenDelete(input: {id: $id}) { deletedId errors { code } } }",
        {"id": screen["id"]},
    )
    assert removed["searchScreenDelete"] == {"deletedId": screen["id"], "errors": []}
    assert (await gql(SCREENS))["searchScreens"] == []


async def test_screens_travel_in_the_configuration_file_all_or_nothing(gql, setup, runtime):
    pool = (await gql('mutation { poolCreate(input: {name: "Cards"}) { pool { id } } }'))["poolCreate"]["pool"]["id"]
    await create(
        gql,
        name="Cards to do",
        target="CASE",
        groupId=setup["billing"],
        query="card",
        caseFilters={"poolId": pool, "status": ["OPEN", "NEW"]},
        columns=["reference", "subject", "assignee"],
        sort="LAST_ACTIVITY",
    )
    await create(gql, name="Gold", target="CUSTOMER", customerFilters={"fields": [{"key": "tier", "value": "gold"}]})
    async with runtime.reading() as session:
        document = await export_config(session)
    screens = yaml.safe_load(document)["searchScreens"]
    assert screens[0] == {
        "name": "Cards to do",
        "target": "case",
        "group": "Billing",
        "query": "card",
        "filters": {"status": ["open", "new"], "pool": "Cards"},
        "columns": ["reference", "subject", "assignee"],
        "sort": "last_activity",
    }

    # A bad screen anywhere in the file refuses it whole: nothing changes, not even earlier sections.
    data = yaml.safe_load(document)
    data["searchScreens"][1]["columns"] = ["name", "shoe"]
    data["searchScreens"].append({"name": "New", "target": "customer"})
    data["customerFields"][1]["label"] = "Remarks"
    with pytest.raises(UserError) as refused:
        async with runtime.transaction() as session:
            await import_config(session, actor=SYSTEM, document=yaml.safe_dump(data, sort_keys=False))
    assert (refused.value.field, refused.value.code) == ("searchScreens.1.columns.1", "UNKNOWN_COLUMN")
    async with runtime.reading() as session:
        assert await export_config(session) == document

    # A good file: screens it lists are made its own (matched by group, target and name), others go.
    data = yaml.safe_load(document)
    data["searchScreens"] = [dict(data["searchScreens"][0], columns=["reference"]), {"name": "New", "target": "case"}]
    async with runtime.transaction() as session:
        counts = await import_config(session, actor=SYSTEM, document=yaml.safe_dump(data, sort_keys=False))
    assert counts["searchScreens"] == 2
    listed = (await gql(SCREENS))["searchScreens"]
    assert [(s["name"], s["columns"]) for s in listed] == [("Cards to do", ["reference"]), ("New", [])]
    assert listed[0]["filters"] == {"status": ["OPEN", "NEW"], "poolId": pool}


async def test_a_screen_of_the_last_days_counts_them_when_it_runs(gql, setup, runtime):
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text("UPDATE customers SET created_at = now() - interval '30 days' WHERE id = :i"), {"i": setup["gold_bea"]}
        )
    recent = await create(
        gql,
        name="New gold",
        target="CUSTOMER",
        customerFilters={"createdWithinDays": 7, "fields": [{"key": "tier", "value": "gold"}]},
    )
    assert recent["filters"]["createdWithinDays"] == 7
    data = await gql(RUN, {"screen": recent["id"]})
    assert [e["node"]["customer"]["id"] for e in data["customerSearch"]["edges"]] == [
        gid("Customer", setup["gold_ada"])
    ]
    payload = (
        await gql(
            SCREEN_CREATE,
            {"input": {"name": "Bad", "target": "CUSTOMER", "customerFilters": {"lastActivityWithinDays": 0}}},
        )
    )["searchScreenCreate"]
    assert [(e["field"], e["code"]) for e in payload["errors"]] == [("filters.lastActivityWithinDays", "INVALID")]

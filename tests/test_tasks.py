"""Tasks and follow-ups through the API: created on customers and cases, listed and filtered,
completed, reopened, cancelled and deleted by the people allowed to, refused with codes when the
input is wrong (changing nothing), audited, announced on the assignee's work channel, and read
for a page of customers in a fixed number of queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import text

from app import events
from app.auth import Actor
from app.services import archive as archive_service
from app.services import auth as auth_service
from app.services import customers as customer_service
from app.services.queues import WORK_TOPIC
from tests.conftest import last_event_id
from tests.support import gid, make_case, make_customer, rows, scalar

TASK_FIELDS = """
  id kind status subject notes dueAt remindAt remindedAt completedAt cancelledAt overdue
  customer { number } case { reference } assignee { name } createdBy { name } completedBy { name }
"""
CREATE = f"mutation($input: TaskCreateInput!) {{ taskCreate(input: $input) {{ task {{ {TASK_FIELDS} }} errors {{ field code }} }} }}"
UPDATE = f"mutation($input: TaskUpdateInput!) {{ taskUpdate(input: $input) {{ task {{ {TASK_FIELDS} }} errors {{ field code }} }} }}"
COMPLETE = (
    f"mutation($id: ID!) {{ taskComplete(input: {{id: $id}}) {{ task {{ {TASK_FIELDS} }} errors {{ field code }} }} }}"
)
REOPEN = (
    f"mutation($id: ID!) {{ taskReopen(input: {{id: $id}}) {{ task {{ {TASK_FIELDS} }} errors {{ field code }} }} }}"
)
CANCEL = (
    f"mutation($id: ID!) {{ taskCancel(input: {{id: $id}}) {{ task {{ {TASK_FIELDS} }} errors {{ field code }} }} }}"
)
DELETE = "mutation($id: ID!) { taskDelete(input: {id: $id}) { deletedId errors { field code } } }"
MY_TASKS = """
query($first: Int, $after: String, $filter: TaskFilter) {
  myTasks(first: $first, after: $after, filter: $filter) {
    totalCount edges { cursor node { subject status } } pageInfo { hasNextPage endCursor }
  }
}
"""


def later(**delta) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def user(runtime, name: str, role: str = "agent", email: str | None = None) -> tuple[int, str]:
    """A user and a token of theirs: (user id, token)."""
    async with runtime.transaction() as session:
        created = await auth_service.create_user(
            session, actor=Actor(None, "test", "admin"), name=name, role=role, email=email
        )
        token = await auth_service.create_token(session, name=name, role=role)
        return created.id, token


@pytest.fixture
async def ann(runtime) -> tuple[int, str]:
    return await user(runtime, "ann", email="ann@casegraph.test")


@pytest.fixture
async def bob(runtime) -> tuple[int, str]:
    return await user(runtime, "bob")


@pytest.fixture
async def sue(runtime) -> tuple[int, str]:
    return await user(runtime, "sue", role="supervisor")


@pytest.fixture
async def records(runtime) -> dict[str, int]:
    customer = await make_customer(runtime, "Ada Lovelace")
    other = await make_customer(runtime, "Charles Babbage")
    case = await make_case(runtime, [customer], subject="Boiler")
    return {"customer": customer, "other": other, "case": case}


async def create(gql, token: str, **values) -> dict:
    data = await gql(CREATE, {"input": {"kind": "CALL", "subject": "Call back", **values}}, token=token)
    return data["taskCreate"]


async def test_a_task_is_planned_completed_reopened_and_audited(gql, runtime, ann, records):
    ann_id, token = ann
    due, remind = later(hours=2), later(hours=1)

    created = await create(
        gql,
        token,
        caseId=gid("Case", records["case"]),
        customerId=gid("Customer", records["customer"]),
        notes="About the boiler part",
        dueAt=due,
        remindAt=remind,
    )
    task = created["task"]
    completed = (await gql(COMPLETE, {"id": task["id"]}, token=token))["taskComplete"]["task"]
    twice = await gql(COMPLETE, {"id": task["id"]}, token=token)
    reopened = (await gql(REOPEN, {"id": task["id"]}, token=token))["taskReopen"]["task"]

    assert created["errors"] == []
    assert task["kind"] == "CALL" and task["status"] == "OPEN" and task["overdue"] is False
    assert (task["customer"], task["case"]) == ({"number": "C-000001"}, {"reference": "CASE-000001"})
    assert task["assignee"] == task["createdBy"] == {"name": "ann"}  # the caller, unless named
    assert datetime.fromisoformat(task["remindAt"]) == datetime.fromisoformat(remind)
    assert task["remindedAt"] is None
    assert completed["status"] == "COMPLETED" and completed["completedBy"] == {"name": "ann"}
    assert completed["completedAt"] is not None
    assert twice["taskComplete"] == {"task": None, "errors": [{"field": "id", "code": "WRONG_STATUS"}]}
    assert reopened["status"] == "OPEN" and reopened["completedAt"] is None and reopened["completedBy"] is None
    trail = await rows(runtime, "SELECT action, actor_user_id FROM audit_events WHERE entity_type = 'task' ORDER BY id")
    assert trail == [("task.create", ann_id), ("task.complete", ann_id), ("task.reopen", ann_id)]


async def test_my_tasks_filters_and_pages_soonest_due_first(gql, runtime, ann, bob, records):
    _, token = ann
    customer, case = gid("Customer", records["customer"]), gid("Case", records["case"])
    other = gid("Customer", records["other"])
    plan = [
        ("late call", {"kind": "CALL", "customerId": customer, "dueAt": later(hours=-3)}),
        ("meeting", {"kind": "MEETING", "caseId": case, "dueAt": later(days=2)}),
        ("email", {"kind": "EMAIL", "customerId": other, "dueAt": later(hours=5)}),
        ("chat", {"kind": "CHAT", "customerId": other}),
        ("done call", {"kind": "CALL", "customerId": customer, "dueAt": later(hours=-1)}),
    ]
    ids = {}
    for subject, values in plan:
        ids[subject] = (await create(gql, token, subject=subject, **values))["task"]["id"]
    await gql(COMPLETE, {"id": ids["done call"]}, token=token)
    await create(gql, bob[1], subject="bob's own", customerId=customer)  # someone else's

    async def subjects(**filter_) -> list[str]:
        data = await gql(MY_TASKS, {"filter": filter_}, token=token)
        return [e["node"]["subject"] for e in data["myTasks"]["edges"]]

    assert await subjects() == ["late call", "done call", "email", "meeting", "chat"]
    assert await subjects(status="OPEN") == ["late call", "email", "meeting", "chat"]
    assert await subjects(status="COMPLETED") == ["done call"]
    assert await subjects(overdue=True) == ["late call"]
    assert await subjects(overdue=False) == ["done call", "email", "meeting", "chat"]
    assert await subjects(kind="CALL") == ["late call", "done call"]
    assert await subjects(customerId=customer) == ["late call", "done call"]
    assert await subjects(caseId=case) == ["meeting"]
    assert await subjects(dueBefore=later(hours=6), dueAfter=later(hours=-2)) == ["done call", "email"]
    assert await subjects(customerId=gid("Case", 1)) == []  # an id of another type matches nothing
    open_count = await gql(MY_TASKS, {"first": 1, "filter": {"status": "OPEN"}}, token=token)
    assert open_count["myTasks"]["totalCount"] == 4

    pages, after = [], None
    while True:
        data = (await gql(MY_TASKS, {"first": 2, "after": after}, token=token))["myTasks"]
        pages.append([e["node"]["subject"] for e in data["edges"]])
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert pages == [["late call", "done call"], ["email", "meeting"], ["chat"]]


async def test_customer_and_case_show_their_tasks(gql, ann, records):
    _, token = ann
    customer, case = gid("Customer", records["customer"]), gid("Case", records["case"])
    await create(gql, token, subject="on the customer", customerId=customer, dueAt=later(hours=1))
    await create(gql, token, subject="on both", customerId=customer, caseId=case, dueAt=later(hours=2))
    done = await create(gql, token, subject="on the case", caseId=case)
    await gql(COMPLETE, {"id": done["task"]["id"]}, token=token)
    query = """query($c: ID!, $k: ID!) {
      customer(id: $c) { tasks { edges { node { subject } } } }
      case(id: $k) { tasks { edges { node { subject } } } open: tasks(status: OPEN) { edges { node { subject } } } }
    }"""

    data = await gql(query, {"c": customer, "k": case}, token=token)

    assert [e["node"]["subject"] for e in data["customer"]["tasks"]["edges"]] == ["on the customer", "on both"]
    assert [e["node"]["subject"] for e in data["case"]["tasks"]["edges"]] == ["on both", "on the case"]
    assert [e["node"]["subject"] for e in data["case"]["open"]["edges"]] == ["on both"]


async def test_update_changes_what_is_given_and_a_new_reminder_time_rearms(gql, runtime, ann, bob, records):
    ann_id, token = ann
    bob_id, _ = bob
    task = (
        await create(gql, token, customerId=gid("Customer", records["customer"]), notes="n", remindAt=later(minutes=30))
    )["task"]
    async with runtime.engine.begin() as conn:  # the reminder went out (as the worker marks it)
        await conn.execute(text("UPDATE tasks SET reminded_at = now()"))

    same = await gql(UPDATE, {"input": {"id": task["id"], "subject": "Call Ada back"}}, token=token)
    moved = await gql(
        UPDATE,
        {
            "input": {
                "id": task["id"],
                "kind": "MEETING",
                "notes": None,
                "remindAt": later(hours=1),
                "dueAt": later(hours=2),
                "assigneeId": gid("User", bob_id),
            }
        },
        token=token,
    )

    audited = await scalar(runtime, "SELECT count(*) FROM audit_events")
    unchanged = await gql(UPDATE, {"input": {"id": task["id"], "subject": "Call Ada back"}}, token=token)
    assert unchanged["taskUpdate"]["errors"] == []
    assert await scalar(runtime, "SELECT count(*) FROM audit_events") == audited  # nothing changed, nothing recorded
    assert same["taskUpdate"]["task"]["subject"] == "Call Ada back"
    assert same["taskUpdate"]["task"]["remindedAt"] is not None  # the reminder time did not change
    changed = moved["taskUpdate"]["task"]
    assert changed["kind"] == "MEETING" and changed["notes"] is None and changed["subject"] == "Call Ada back"
    assert changed["remindedAt"] is None  # re-armed
    assert changed["assignee"] == {"name": "bob"}
    befores = await rows(
        runtime, "SELECT before->>'assigneeId', after->>'assigneeId' FROM audit_events WHERE action = 'task.update'"
    )
    assert befores[-1] == (str(ann_id), str(bob_id))


async def test_reassignment_tells_both_users_work_channels(gql, runtime, ann, bob, records):
    ann_id, token = ann
    bob_id, _ = bob
    task = (await create(gql, token, customerId=gid("Customer", records["customer"])))["task"]
    start = await last_event_id(runtime)

    await gql(UPDATE, {"input": {"id": task["id"], "assigneeId": gid("User", bob_id)}}, token=token)

    entries = await runtime.redis.xrange(events.STREAM, min=f"({start}")
    work = {
        e[b"channel"].decode(): orjson.loads(e[b"body"])
        for _, e in entries
        if e[b"channel"].decode().startswith(events.channel(WORK_TOPIC, ""))
    }
    assert work == {
        events.channel(WORK_TOPIC, ann_id): {
            "topic": WORK_TOPIC,
            "key": ann_id,
            "kind": "task",
            "change": "unassigned",
            "taskId": 1,
            "caseId": None,
            "customerId": records["customer"],
        },
        events.channel(WORK_TOPIC, bob_id): {
            "topic": WORK_TOPIC,
            "key": bob_id,
            "kind": "task",
            "change": "assigned",
            "taskId": 1,
            "caseId": None,
            "customerId": records["customer"],
        },
    }
    channels = [e[b"channel"].decode() for _, e in entries]
    assert events.channel("customerUpdated", records["customer"]) in channels


async def test_agents_change_their_own_tasks_and_supervisors_any(gql, runtime, ann, bob, sue, records):
    _, ann_token = ann
    _, bob_token = bob
    _, sue_token = sue
    task = (await create(gql, ann_token, customerId=gid("Customer", records["customer"])))["task"]

    by_bob = await gql(COMPLETE, {"id": task["id"]}, token=bob_token)
    bob_deletes = await gql(DELETE, {"id": task["id"]}, token=bob_token)
    seen_by_bob = await gql(
        "query($id: ID!) { node(id: $id) { ... on Task { subject } } }", {"id": task["id"]}, token=bob_token
    )
    everyone_by_bob = (await gql.post("{ tasks { edges { node { id } } } }", token=bob_token)).json()
    by_sue = await gql(CANCEL, {"id": task["id"]}, token=sue_token)
    everyone_by_sue = await gql("{ tasks { edges { node { subject status } } } }", token=sue_token)
    deleted = await gql(DELETE, {"id": task["id"]}, token=ann_token)

    assert by_bob["taskComplete"]["errors"] == [{"field": "id", "code": "FORBIDDEN"}]
    assert bob_deletes["taskDelete"] == {"deletedId": None, "errors": [{"field": "id", "code": "FORBIDDEN"}]}
    assert seen_by_bob == {"node": {"subject": "Call back"}}
    assert everyone_by_bob["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert by_sue["taskCancel"]["task"]["status"] == "CANCELLED"
    assert everyone_by_sue == {"tasks": {"edges": [{"node": {"subject": "Call back", "status": "CANCELLED"}}]}}
    assert deleted["taskDelete"] == {"deletedId": task["id"], "errors": []}
    assert await scalar(runtime, "SELECT count(*) FROM tasks") == 0
    actions = await rows(
        runtime, "SELECT action, before->>'subject' FROM audit_events WHERE entity_type = 'task' ORDER BY id"
    )
    assert actions[-1] == ("task.delete", "Call back")


async def test_bad_input_is_refused_with_a_code_and_changes_nothing(gql, runtime, ann, records):
    ann_id, token = ann
    customer, case = gid("Customer", records["customer"]), gid("Case", records["case"])
    other = gid("Customer", records["other"])
    archived_customer = await make_customer(runtime, "Archived")
    erased_customer = await make_customer(runtime, "Erased")
    async with runtime.transaction() as session:
        actor = Actor(None, "sup", "supervisor")
        await archive_service.archive_customer(session, actor=actor, customer_id=archived_customer)
        await archive_service.erase_customer(session, actor=actor, customer_id=erased_customer, reason="asked")
    existing = (await create(gql, token, customerId=customer, dueAt=later(hours=1)))["task"]
    await gql(COMPLETE, {"id": existing["id"]}, token=token)
    audit_before = await scalar(runtime, "SELECT count(*) FROM audit_events")
    task_before = await rows(runtime, "SELECT * FROM tasks")
    start = await last_event_id(runtime)

    cases = [
        ({"customerId": customer, "remindAt": later(minutes=-1)}, "remindAt", "IN_THE_PAST"),
        (
            {"customerId": customer, "dueAt": later(hours=1), "remindAt": later(hours=2)},
            "remindAt",
            "REMINDER_AFTER_DUE",
        ),
        ({"customerId": customer, "assigneeId": gid("User", 999)}, "assigneeId", "NOT_FOUND"),
        ({"customerId": customer, "assigneeId": gid("Customer", 1)}, "assigneeId", "NOT_FOUND"),
        ({}, "customerId", "REQUIRED"),
        ({"customerId": other, "caseId": case}, "customerId", "CUSTOMER_NOT_ON_CASE"),
        ({"customerId": gid("Customer", archived_customer)}, "customerId", "ARCHIVED"),
        ({"customerId": gid("Customer", erased_customer)}, "customerId", "ERASED"),
        ({"caseId": gid("Case", 999)}, "caseId", "NOT_FOUND"),
        ({"customerId": customer, "subject": "  "}, "subject", "REQUIRED"),
    ]
    refused = []
    for values, field_, code in cases:
        answer = await create(gql, token, **values)
        refused.append((answer["task"], answer["errors"]) == (None, [{"field": field_, "code": code}]))
    again = await gql(COMPLETE, {"id": existing["id"]}, token=token)
    update_past = await gql(UPDATE, {"input": {"id": existing["id"], "remindAt": later(hours=-1)}}, token=token)
    update_after_due = await gql(UPDATE, {"input": {"id": existing["id"], "remindAt": later(hours=3)}}, token=token)
    update_bare = await gql(UPDATE, {"input": {"id": existing["id"], "customerId": None, "caseId": None}}, token=token)

    assert all(refused), refused
    assert again["taskComplete"]["errors"] == [{"field": "id", "code": "WRONG_STATUS"}]
    assert update_past["taskUpdate"]["errors"] == [{"field": "remindAt", "code": "IN_THE_PAST"}]
    assert update_after_due["taskUpdate"]["errors"] == [{"field": "remindAt", "code": "REMINDER_AFTER_DUE"}]
    assert update_bare["taskUpdate"]["errors"] == [{"field": "customerId", "code": "REQUIRED"}]
    assert await rows(runtime, "SELECT * FROM tasks") == task_before
    assert await scalar(runtime, "SELECT count(*) FROM audit_events") == audit_before
    assert await runtime.redis.xrange(events.STREAM, min=f"({start}") == []


async def test_a_customers_export_holds_their_tasks_and_erasure_clears_them(gql, runtime, ann, records):
    _, token = ann
    await create(gql, token, subject="Call Ada about her diagnosis", customerId=gid("Customer", records["customer"]))
    export = "query($id: ID!) { customerExport(customerId: $id) }"
    exported = (await gql(export, {"id": gid("Customer", records["customer"])}))["customerExport"]
    async with runtime.transaction() as session:
        await archive_service.erase_customer(
            session, actor=Actor(None, "sup", "supervisor"), customer_id=records["customer"], reason="asked"
        )

    assert [(t["subject"], t["status"]) for t in exported["tasks"]] == [("Call Ada about her diagnosis", "open")]
    assert await rows(runtime, "SELECT subject, notes, status FROM tasks") == [("[erased]", None, "cancelled")]
    kept = await rows(runtime, "SELECT after FROM audit_events WHERE action = 'task.create'")
    assert "subject" not in kept[0][0]


@pytest.mark.parametrize(("path", "statements"), [("executor", 4), ("compiled", 1)])
async def test_a_page_of_customers_with_their_tasks_costs_a_fixed_number_of_queries(
    gql, http, runtime, ann, count_queries, path, statements
):
    _, token = ann
    query = """{ customers(first: 20) { edges { node { name
        tasks(first: 5) { edges { node { subject assignee { name } case { reference } } } } } } } }"""
    headers = {"Authorization": f"Bearer {token}", "Casegraph-Path": path}

    counts = []
    for customers in (2, 8):
        for n in range(customers):
            customer = await make_customer(runtime, f"customer {len(counts)}-{n}")
            case = await make_case(runtime, [customer])
            for k in range(3):
                await create(
                    gql, token, subject=f"task {k}", customerId=gid("Customer", customer), caseId=gid("Case", case)
                )
        await http.post("/graphql", json={"query": query}, headers=headers)  # the token lookup is cached
        start = count_queries.count
        response = await http.post("/graphql", json={"query": query}, headers=headers)
        counts.append(count_queries.count - start)
        assert response.headers["casegraph-path"] == path
        assert all(len(e["node"]["tasks"]["edges"]) == 3 for e in response.json()["data"]["customers"]["edges"])

    # executor: the customers, all their task pages in one statement, the assignees, the cases;
    # compiled: one statement
    assert counts == [statements, statements]


async def test_a_merged_customers_tasks_show_on_the_customer_it_was_merged_into(gql, runtime, ann, records):
    _, token = ann
    await create(gql, token, subject="on the duplicate", customerId=gid("Customer", records["other"]))
    await create(gql, token, subject="on the survivor", customerId=gid("Customer", records["customer"]))
    async with runtime.transaction() as session:
        await customer_service.merge_customers(
            session,
            actor=Actor(None, "sup", "supervisor"),
            survivor_id=records["customer"],
            duplicate_ids=[records["other"]],
        )
    query = "query($id: ID!) { customer(id: $id) { tasks { edges { node { subject } } } } }"

    data = await gql(query, {"id": gid("Customer", records["customer"])}, token=token)
    on_tombstone = await create(gql, token, subject="new", customerId=gid("Customer", records["other"]))

    assert [e["node"]["subject"] for e in data["customer"]["tasks"]["edges"]] == ["on the duplicate", "on the survivor"]
    assert on_tombstone["errors"] == [{"field": "customerId", "code": "MERGED"}]

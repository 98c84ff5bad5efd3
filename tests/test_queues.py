"""Work distribution: pools and members, caseNext, handing cases on, absences, status automation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from sqlalchemy import text

from app import events
from schema.ids import decode_id
from tests.conftest import _token, last_event_id
from tests.support import gid, make_customer, rows, scalar
from tests.test_runtime import run_cli

POOL = "mutation($n: String!, $p: Int) { poolCreate(input: {name: $n, priority: $p}) { pool { id } errors { code } } }"
MEMBER = """mutation($pool: ID!, $user: ID!, $p: Int) {
  poolMemberSet(input: {poolId: $pool, userId: $user, priority: $p}) { member { priority } errors { code field } }
}"""
CREATE = """mutation($c: [ID!]!, $pool: ID, $s: String!) {
  caseCreate(input: {subject: $s, customerIds: $c, poolId: $pool}) { case { id waitingSince } errors { code } }
}"""
NEXT = """mutation($pools: [ID!]) {
  caseNext(input: {poolIds: $pools}) {
    case { id subject status statusCategory waitingSince assignee { name } pool { name } }
    errors { code field }
  }
}"""
RELEASE = 'mutation($c: ID!) { caseRelease(input: {caseId: $c, reason: "lunch"}) { case { status statusCategory waitingSince } errors { code } } }'
TRANSFER = """mutation($c: ID!, $pool: ID, $to: ID) {
  caseTransfer(input: {caseId: $c, poolId: $pool, assigneeId: $to, reason: "needs billing"}) {
    case { status waitingSince pool { name } assignee { name } } errors { code field }
  }
}"""
ABSENCE = """mutation($u: ID, $s: DateTime!, $e: DateTime!, $r: ID) {
  absenceRecord(input: {userId: $u, startsAt: $s, endsAt: $e, replacementId: $r, reason: "holiday"}) {
    absence { id replacement { name } } errors { code field }
  }
}"""


async def user(runtime, name: str, role: str = "agent") -> tuple[str, str]:
    """A user's global id and token."""
    token = await _token(runtime, name, role)
    return gid("User", await scalar(runtime, "SELECT id FROM users WHERE name = :n", n=name)), token


async def pool(gql, name: str, priority: int = 0) -> str:
    return (await gql(POOL, {"n": name, "p": priority}))["poolCreate"]["pool"]["id"]


async def serve(gql, pool_id: str, user_id: str, priority: int = 0) -> None:
    assert (await gql(MEMBER, {"pool": pool_id, "user": user_id, "p": priority}))["poolMemberSet"]["errors"] == []


async def waiting_case(gql, customer: str, pool_id: str | None, subject: str = "Broken boiler") -> str:
    return (await gql(CREATE, {"c": [customer], "pool": pool_id, "s": subject}))["caseCreate"]["case"]["id"]


async def next_case(gql, token: str, pools: list[str] | None = None) -> dict:
    return (await gql(NEXT, {"pools": pools}, token=token))["caseNext"]


async def test_case_next_takes_the_oldest_case_of_the_highest_priority_pool_first(gql, runtime):
    ann, ann_token = await user(runtime, "ann")
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    general, vip, billing = await pool(gql, "General", 0), await pool(gql, "VIP", 5), await pool(gql, "Billing", 0)
    await serve(gql, general, ann)
    await serve(gql, vip, ann)
    await serve(gql, billing, ann, priority=1)  # ann's own priority outranks the pool's
    first_general = await waiting_case(gql, customer, general, "general 1")
    await waiting_case(gql, customer, general, "general 2")
    await waiting_case(gql, customer, vip, "vip 1")
    await waiting_case(gql, customer, billing, "billing 1")

    taken = [(await next_case(gql, ann_token))["case"] for _ in range(4)]

    assert [c["subject"] for c in taken] == ["billing 1", "vip 1", "general 1", "general 2"]
    assert taken[2]["id"] == first_general
    assert {(c["status"], c["statusCategory"], c["assignee"]["name"]) for c in taken} == {
        ("OPEN", "IN_PROGRESS", "ann")
    }
    assert all(c["waitingSince"] is None for c in taken)
    assert await next_case(gql, ann_token) == {"case": None, "errors": []}
    claims = await rows(runtime, "SELECT actor_name FROM audit_events WHERE action = 'case.claim'")
    assert claims == [("ann",)] * 4


async def test_case_next_can_be_limited_to_some_pools_and_refuses_pools_not_served(gql, runtime):
    ann, ann_token = await user(runtime, "ann")
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    general, vip = await pool(gql, "General"), await pool(gql, "VIP", 5)
    await serve(gql, general, ann)
    await waiting_case(gql, customer, general, "general 1")
    await waiting_case(gql, customer, vip, "vip 1")

    limited = await next_case(gql, ann_token, [general])
    refused = await next_case(gql, ann_token, [vip])
    unknown = await next_case(gql, ann_token, [gid("Pool", 999)])

    assert limited["case"]["subject"] == "general 1"
    assert refused == {"case": None, "errors": [{"code": "NOT_IN_POOL", "field": "poolIds.0"}]}
    assert unknown["errors"] == [{"code": "NOT_FOUND", "field": "poolIds.0"}]
    assert await scalar(runtime, "SELECT count(*) FROM cases WHERE waiting_since IS NOT NULL") == 1


async def test_fifty_concurrent_claims_on_twenty_cases_take_each_case_exactly_once(gql, runtime):
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    pools = [await pool(gql, f"Pool {i}") for i in range(2)]
    agents = [await user(runtime, f"agent-{i}") for i in range(10)]
    for agent_id, _ in agents:
        for pool_id in pools:
            await serve(gql, pool_id, agent_id)
    for i in range(20):
        await waiting_case(gql, customer, pools[i % 2], f"case {i}")

    results = await asyncio.gather(*(next_case(gql, agents[i % 10][1]) for i in range(50)))

    claimed = [r["case"]["id"] for r in results if r["case"] is not None]
    assert len(claimed) == 20 and len(set(claimed)) == 20
    assert sum(r["case"] is None for r in results) == 30
    assert all(r["errors"] == [] for r in results)
    assert (
        await scalar(runtime, "SELECT count(*) FROM cases WHERE assignee_id IS NULL OR waiting_since IS NOT NULL") == 0
    )
    # Each case's agent is the one that got it back.
    holders = dict(await rows(runtime, "SELECT id, assignee_id FROM cases"))
    assert len(holders) == 20
    assert await scalar(runtime, "SELECT count(*) FROM audit_events WHERE action = 'case.claim'") == 20


async def test_release_transfer_and_reassignment_move_cases_between_pools_and_agents(gql, runtime):
    ann, ann_token = await user(runtime, "ann")
    bob, bob_token = await user(runtime, "bob")
    sue, sue_token = await user(runtime, "sue", "supervisor")
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    general, billing = await pool(gql, "General"), await pool(gql, "Billing")
    await serve(gql, general, ann)
    case = await waiting_case(gql, customer, general)
    await next_case(gql, ann_token)

    bob_releases = (await gql(RELEASE, {"c": case}, token=bob_token))["caseRelease"]
    released = (await gql(RELEASE, {"c": case}, token=ann_token))["caseRelease"]
    again = (await next_case(gql, ann_token))["case"]
    to_billing = (await gql(TRANSFER, {"c": case, "pool": billing}, token=ann_token))["caseTransfer"]
    to_bob = (await gql(TRANSFER, {"c": case, "to": bob}, token=sue_token))["caseTransfer"]
    nowhere = (await gql(TRANSFER, {"c": case}, token=sue_token))["caseTransfer"]
    unknown_pool = (await gql(TRANSFER, {"c": case, "pool": gid("Pool", 999)}, token=sue_token))["caseTransfer"]

    assert bob_releases["errors"] == [{"code": "FORBIDDEN"}]
    assert released["case"]["status"] == "NEW" and released["case"]["statusCategory"] == "RECEIVED"
    assert released["case"]["waitingSince"] is not None
    assert again["id"] == case
    assert to_billing["case"]["pool"] == {"name": "Billing"} and to_billing["case"]["assignee"] is None
    assert to_billing["case"]["waitingSince"] is not None
    assert to_bob["case"]["assignee"] == {"name": "bob"} and to_bob["case"]["waitingSince"] is None
    assert nowhere == {"case": None, "errors": [{"code": "REQUIRED", "field": "poolId"}]}
    assert unknown_pool["errors"] == [{"code": "NOT_FOUND", "field": "poolId"}]

    second = await waiting_case(gql, customer, general, "second")
    await gql(TRANSFER, {"c": second, "to": bob}, token=sue_token)
    reassign = """mutation($from: ID!, $to: ID) {
      casesReassign(input: {fromUserId: $from, toUserId: $to}) { cases { assignee { name } waitingSince } errors { code } }
    }"""
    by_agent = await gql.post(reassign, {"from": bob, "to": ann}, token=ann_token)
    to_ann = (await gql(reassign, {"from": bob, "to": ann}, token=sue_token))["casesReassign"]
    back = (await gql(reassign, {"from": ann}, token=sue_token))["casesReassign"]

    assert by_agent.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert to_ann["cases"] == [{"assignee": {"name": "ann"}, "waitingSince": None}] * 2
    assert [c["assignee"] for c in back["cases"]] == [None, None]
    assert await scalar(runtime, "SELECT count(*) FROM cases WHERE waiting_since IS NOT NULL") == 2
    why = await rows(runtime, "SELECT after->>'why' FROM audit_events WHERE action = 'case.transfer' ORDER BY id")
    assert why == [("needs billing",), ("needs billing",), ("needs billing",)]


async def test_closing_and_merging_take_a_case_out_of_its_queue_and_reopening_puts_it_back(gql, runtime):
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    general = await pool(gql, "General")
    case = await waiting_case(gql, customer, general)
    other = await waiting_case(gql, customer, general, "other")

    await gql(
        'mutation($c: ID!) { caseClose(input: {caseId: $c, reasonCode: "completed"}) { errors { code } } }', {"c": case}
    )
    closed_waiting = await scalar(runtime, "SELECT waiting_since FROM cases WHERE reference = 'CASE-000001'")
    await gql("mutation($c: ID!) { caseReopen(input: {caseId: $c}) { errors { code } } }", {"c": case})
    reopened_waiting = await scalar(runtime, "SELECT waiting_since FROM cases WHERE reference = 'CASE-000001'")
    await gql(
        "mutation($s: ID!, $t: ID!) { caseMerge(input: {sourceCaseId: $s, targetCaseId: $t}) { errors { code } } }",
        {"s": other, "t": case},
    )

    assert closed_waiting is None and reopened_waiting is not None
    assert await rows(runtime, "SELECT subject FROM cases WHERE waiting_since IS NOT NULL") == [("Broken boiler",)]


async def test_pool_cases_my_cases_and_pool_counts(gql, runtime):
    ann, ann_token = await user(runtime, "ann")
    bob, bob_token = await user(runtime, "bob")
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    general = await pool(gql, "General")
    await serve(gql, general, ann)
    for i in range(3):
        await waiting_case(gql, customer, general, f"case {i}")
    await next_case(gql, ann_token)

    listing = """query($p: ID!) {
      poolCases(poolId: $p, waiting: true) { edges { node { subject } } }
      myCases { edges { node { subject statusCategory } } }
      pools { name counts { waiting inProgress oldestWaitingSeconds } members { user { name } priority } }
    }"""
    seen = await gql(listing, {"p": general}, token=ann_token)
    by_bob = await gql.post(listing, {"p": general}, token=bob_token)

    assert [e["node"]["subject"] for e in seen["poolCases"]["edges"]] == ["case 2", "case 1"]
    assert seen["myCases"]["edges"] == [{"node": {"subject": "case 0", "statusCategory": "IN_PROGRESS"}}]
    counts = seen["pools"][0]["counts"]
    assert (counts["waiting"], counts["inProgress"]) == (2, 1) and counts["oldestWaitingSeconds"] >= 0
    assert seen["pools"][0]["members"] == [{"user": {"name": "ann"}, "priority": 0}]
    assert by_bob.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"  # bob does not serve it


def _iso(moment: datetime) -> str:
    return moment.isoformat()


async def test_absences_refuse_overlaps_absent_replacements_and_the_past(gql, runtime):
    ann, ann_token = await user(runtime, "ann")
    bob, bob_token = await user(runtime, "bob")
    now = datetime.now(UTC)
    week = {"s": _iso(now + timedelta(days=1)), "e": _iso(now + timedelta(days=8))}

    recorded = (await gql(ABSENCE, {**week, "r": bob}, token=ann_token))["absenceRecord"]
    overlapping = await gql(
        ABSENCE, {"s": _iso(now + timedelta(days=7)), "e": _iso(now + timedelta(days=9))}, token=ann_token
    )
    replacement_away = await gql(
        ABSENCE, {"s": _iso(now + timedelta(days=2)), "e": _iso(now + timedelta(days=3)), "r": ann}, token=bob_token
    )
    past = await gql(ABSENCE, {"s": _iso(now - timedelta(days=3)), "e": _iso(now - timedelta(days=1))}, token=bob_token)
    backwards = await gql(ABSENCE, {"s": week["e"], "e": week["s"]}, token=bob_token)
    for_another = await gql(ABSENCE, {**week, "u": bob}, token=ann_token)
    themselves = await gql(
        ABSENCE, {"s": _iso(now + timedelta(days=20)), "e": _iso(now + timedelta(days=21)), "r": bob}, token=bob_token
    )

    assert recorded["errors"] == [] and recorded["absence"]["replacement"] == {"name": "bob"}
    assert overlapping["absenceRecord"]["errors"] == [{"code": "OVERLAPPING_ABSENCE", "field": "startsAt"}]
    assert replacement_away["absenceRecord"]["errors"] == [{"code": "REPLACEMENT_ABSENT", "field": "replacementId"}]
    assert past["absenceRecord"]["errors"] == [{"code": "IN_THE_PAST", "field": "endsAt"}]
    assert backwards["absenceRecord"]["errors"] == [{"code": "INVALID", "field": "endsAt"}]
    assert for_another["absenceRecord"]["errors"] == [{"code": "FORBIDDEN", "field": "userId"}]
    assert themselves["absenceRecord"]["errors"] == [{"code": "INVALID", "field": "replacementId"}]
    assert await scalar(runtime, "SELECT count(*) FROM absences") == 1

    withdrawn = await gql(
        "mutation($id: ID!) { absenceEnd(input: {id: $id}) { absence { id } errors { code } } }",
        {"id": recorded["absence"]["id"]},
        token=ann_token,
    )
    assert withdrawn["absenceEnd"] == {"absence": None, "errors": []}
    assert await scalar(runtime, "SELECT count(*) FROM absences") == 0


REPLY_BY_AGENT = """mutation($c: ID!) {
  contactCreate(input: {channel: PHONE, direction: OUTBOUND, caseId: $c, subject: "called back"}) { errors { code } }
}"""
FROM_CUSTOMER = """mutation($c: ID!) {
  contactCreate(input: {channel: EMAIL, direction: INBOUND, caseId: $c, subject: "thanks, but"}) { errors { code } }
}"""
CASE = "query($c: ID!) { case(id: $c) { status statusCategory assignee { name } waitingSince } }"


async def test_replies_and_customer_contacts_move_the_status_by_themselves(gql, runtime):
    ann, ann_token = await user(runtime, "ann")
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    general = await pool(gql, "General")
    await serve(gql, general, ann)
    case = await waiting_case(gql, customer, general)
    await next_case(gql, ann_token)

    await gql(REPLY_BY_AGENT, {"c": case}, token=ann_token)
    after_reply = (await gql(CASE, {"c": case}))["case"]
    await gql(FROM_CUSTOMER, {"c": case})
    after_answer = (await gql(CASE, {"c": case}))["case"]
    await gql(
        'mutation($c: ID!) { caseClose(input: {caseId: $c, reasonCode: "completed"}) { errors { code } } }', {"c": case}
    )
    await gql(FROM_CUSTOMER, {"c": case})
    after_late_answer = (await gql(CASE, {"c": case}))["case"]

    assert after_reply["statusCategory"] == "PENDING_CUSTOMER"
    assert after_answer == {
        "status": "OPEN",
        "statusCategory": "IN_PROGRESS",
        "assignee": {"name": "ann"},
        "waitingSince": None,
    }
    assert after_late_answer["statusCategory"] == "IN_PROGRESS" and after_late_answer["assignee"] == {"name": "ann"}
    whys = await rows(
        runtime, "SELECT after->>'why', actor_name FROM audit_events WHERE action = 'case.status' ORDER BY id"
    )
    assert whys == [("agent replied", "system"), ("customer replied", "system"), ("customer replied", "system")]


async def test_a_case_closed_longer_ago_than_the_pool_allows_stays_closed(gql, runtime):
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    general = await pool(gql, "General")
    await gql(
        "mutation($p: ID!) { poolUpdate(input: {id: $p, reopenWithinDays: 3, replyStatus: KEEP}) { errors { code } } }",
        {"p": general},
    )
    case = await waiting_case(gql, customer, general)
    await gql(
        'mutation($c: ID!) { caseClose(input: {caseId: $c, reasonCode: "completed"}) { errors { code } } }', {"c": case}
    )
    async with runtime.transaction() as session:
        await session.execute(text("UPDATE cases SET closed_at = now() - interval '4 days'"))

    await gql(FROM_CUSTOMER, {"c": case})

    assert (await gql(CASE, {"c": case}))["case"]["status"] == "CLOSED"


async def test_an_absent_agents_returning_case_goes_to_the_replacement_or_back_to_the_pool(gql, runtime):
    ann, ann_token = await user(runtime, "ann")
    bob, bob_token = await user(runtime, "bob")
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    general = await pool(gql, "General")
    await serve(gql, general, ann)
    first = await waiting_case(gql, customer, general, "first")
    second = await waiting_case(gql, customer, general, "second")
    await next_case(gql, ann_token)
    await next_case(gql, ann_token)
    for case in (first, second):
        await gql(REPLY_BY_AGENT, {"c": case}, token=ann_token)
    now = datetime.now(UTC)
    absence = (
        await gql(
            ABSENCE, {"u": ann, "s": _iso(now - timedelta(minutes=1)), "e": _iso(now + timedelta(days=2)), "r": bob}
        )
    )["absenceRecord"]["absence"]

    covered = await gql("{ coveredCases { edges { node { subject } } } }", token=bob_token)
    await gql(FROM_CUSTOMER, {"c": first})
    to_bob = (await gql(CASE, {"c": first}))["case"]
    absent_claim = await next_case(gql, ann_token)
    to_absent = (await gql(TRANSFER, {"c": first, "to": ann}))["caseTransfer"]
    # Without a replacement the case goes back to the pool.
    await gql("mutation($id: ID!) { absenceEnd(input: {id: $id}) { errors { code } } }", {"id": absence["id"]})
    await gql(ABSENCE, {"u": ann, "s": _iso(datetime.now(UTC)), "e": _iso(now + timedelta(days=2))})
    await gql(FROM_CUSTOMER, {"c": second})
    to_pool = (await gql(CASE, {"c": second}))["case"]

    assert sorted(e["node"]["subject"] for e in covered["coveredCases"]["edges"]) == ["first", "second"]
    assert to_bob["assignee"] == {"name": "bob"} and to_bob["statusCategory"] == "IN_PROGRESS"
    assert absent_claim["errors"] == [{"code": "AGENT_ABSENT", "field": None}]
    assert to_absent["errors"] == [{"code": "AGENT_ABSENT", "field": "assigneeId"}]
    assert to_pool["assignee"] is None and to_pool["status"] == "NEW" and to_pool["waitingSince"] is not None


QUEUE_UPDATED = GraphQLRequest(
    """subscription($p: ID!, $after: String) {
      queueUpdated(poolId: $p, after: $after) {
        change caseId counts { waiting inProgress } case { assignee { name } } pool { name }
      }
    }"""
)
MY_WORK_UPDATED = GraphQLRequest(
    "subscription($after: String) { myWorkUpdated(after: $after) { change case { subject } } }"
)


def ws_client(host: str, token: str) -> Client:
    return Client(transport=WebsocketsTransport(url=f"ws://{host}/graphql", init_payload={"token": token}))


async def first_result(session, request: GraphQLRequest, variables: dict) -> dict:
    request = GraphQLRequest(request.document, variable_values=variables)
    async for result in session.subscribe(request):
        return result
    raise AssertionError("the subscription ended without a result")


async def test_a_claim_on_one_api_process_reaches_queue_and_work_subscribers_on_another(
    gql, runtime, second_api_process
):
    ann, ann_token = await user(runtime, "ann")
    _, sue_token = await user(runtime, "sue", "supervisor")
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    general = await pool(gql, "General")
    await serve(gql, general, ann)
    case = await waiting_case(gql, customer, general)
    after = await last_event_id(runtime)  # whatever the other process misses while connecting, it replays

    async with (
        ws_client(second_api_process, sue_token) as supervisor,
        ws_client(second_api_process, ann_token) as agent,
    ):
        queue = asyncio.create_task(first_result(supervisor, QUEUE_UPDATED, {"p": general, "after": after}))
        work = asyncio.create_task(first_result(agent, MY_WORK_UPDATED, {"after": after}))
        await next_case(gql, ann_token)
        queue_update, work_update = await asyncio.wait_for(asyncio.gather(queue, work), 15)

    assert queue_update["queueUpdated"] == {
        "change": "CLAIMED",
        "caseId": case,
        "counts": {"waiting": 0, "inProgress": 1},
        "case": {"assignee": {"name": "ann"}},
        "pool": {"name": "General"},
    }
    assert work_update["myWorkUpdated"] == {"change": "ASSIGNED", "case": {"subject": "Broken boiler"}}


async def test_an_agent_subscribes_only_to_the_pools_they_serve(gql, runtime, live_server):
    _, bob_token = await user(runtime, "bob")
    general = await pool(gql, "General")

    async with ws_client(live_server, bob_token) as bob:
        with pytest.raises(TransportQueryError) as refused:
            await first_result(bob, QUEUE_UPDATED, {"p": general})

    assert refused.value.errors[0]["extensions"]["code"] == "NOT_FOUND"


async def test_case_next_runs_a_constant_number_of_statements_whatever_the_queue_holds(gql, runtime, count_queries):
    ann, ann_token = await user(runtime, "ann")
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    pools = [await pool(gql, f"Pool {i}", priority=i) for i in range(3)]
    for pool_id in pools:
        await serve(gql, pool_id, ann)
    for i in range(30):
        await waiting_case(gql, customer, pools[0], f"case {i}")

    await gql("{ me { name } }", token=ann_token)  # the token's first use of the minute is recorded
    statements = []
    for _ in range(3):
        count_queries.statements.clear()
        await next_case(gql, ann_token)
        statements.append(count_queries.count)

    # The two empty higher-priority tiers cost a statement each; the queue's length costs nothing.
    assert statements[0] == statements[1] == statements[2]
    assert statements[0] <= 12


async def test_pool_members_and_automation_settings_travel_in_the_configuration_file(gql, runtime, servers, tmp_path):
    ann, _ = await user(runtime, "ann")
    await user(runtime, "bob")
    general = await pool(gql, "General")
    await serve(gql, general, ann, priority=2)
    await gql(
        "mutation($p: ID!) { poolUpdate(input: {id: $p, reopenWithinDays: 5, replyStatus: KEEP}) { errors { code } } }",
        {"p": general},
    )
    exported = tmp_path / "mail.yaml"

    assert (await asyncio.to_thread(run_cli, "mail", "export", str(exported), env=servers)).returncode == 0
    document = yaml.safe_load(exported.read_text())
    assert document["pools"][0]["members"] == [{"user": "ann", "priority": 2}]
    assert (document["pools"][0]["reply_status"], document["pools"][0]["reopen_within_days"]) == ("keep", 5)

    document["pools"][0]["members"] = [{"user": "bob", "priority": 1}, {"user": "nobody"}]
    exported.write_text(yaml.safe_dump(document))
    refused = await asyncio.to_thread(run_cli, "mail", "import", str(exported), env=servers)
    document["pools"][0]["members"] = [{"user": "bob", "priority": 1}]
    exported.write_text(yaml.safe_dump(document))
    imported = await asyncio.to_thread(run_cli, "mail", "import", str(exported), env=servers)

    assert refused.returncode == 2 and "pools.0: user 'nobody' not found" in refused.stderr
    assert imported.returncode == 0, imported.stderr
    members = await gql("{ pools { members { user { name } priority } reopenWithinDays replyStatus } }")
    assert members["pools"] == [
        {"members": [{"user": {"name": "bob"}, "priority": 1}], "reopenWithinDays": 5, "replyStatus": "KEEP"}
    ]


async def test_an_agents_work_channel_carries_their_tasks_too(gql, runtime, live_server):
    ann, ann_token = await user(runtime, "ann")
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    after = await last_event_id(runtime)

    async with ws_client(live_server, ann_token) as agent:
        work = asyncio.create_task(
            first_result(
                agent,
                GraphQLRequest(
                    "subscription($after: String) { myWorkUpdated(after: $after) { kind change task { subject } } }"
                ),
                {"after": after},
            )
        )
        created = await gql(
            'mutation($c: ID!) { taskCreate(input: {kind: CALL, subject: "Call back", customerId: $c}) { errors { code } } }',
            {"c": customer},
            token=ann_token,
        )
        update = await asyncio.wait_for(work, 15)

    assert created["taskCreate"]["errors"] == []
    assert update["myWorkUpdated"] == {"kind": "TASK", "change": "CREATED", "task": {"subject": "Call back"}}


async def test_case_next_serves_the_nearest_deadline_before_the_longest_wait(gql, runtime):
    from tests.test_sla import configure

    await configure(gql)  # a default TAT policy: urgent cases must be answered in 15 minutes, normal ones in 60
    ann, ann_token = await user(runtime, "ann")
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    general = await pool(gql, "General")
    await serve(gql, general, ann)
    create = """mutation($c: [ID!]!, $p: ID, $s: String!, $prio: Priority) {
      caseCreate(input: {subject: $s, customerIds: $c, poolId: $p, priority: $prio}) { errors { code } }
    }"""
    await gql(create, {"c": [customer], "p": general, "s": "waiting longest", "prio": "NORMAL"})
    await gql(create, {"c": [customer], "p": general, "s": "urgent", "prio": "URGENT"})

    taken = [(await next_case(gql, ann_token))["case"]["subject"] for _ in range(2)]

    assert taken == ["urgent", "waiting longest"]
    assert await scalar(runtime, "SELECT count(*) FROM cases WHERE due_at IS NULL") == 0


async def test_one_pool_update_is_executed_once_for_all_its_watchers_of_a_role(
    gql, runtime, live_server, count_queries
):
    agents = [await user(runtime, f"agent-{i}") for i in range(3)]
    _, sue_token = await user(runtime, "sue", "supervisor")
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    general = await pool(gql, "General")
    for agent_id, _ in agents:
        await serve(gql, general, agent_id)
    watch = GraphQLRequest("subscription($p: ID!) { queueUpdated(poolId: $p) { change case { subject } } }")
    clients = [ws_client(live_server, token) for _, token in agents] + [ws_client(live_server, sue_token)]
    sessions = [await client.connect_async() for client in clients]
    try:
        updates = [asyncio.create_task(first_result(session, watch, {"p": general})) for session in sessions]
        channel = events.channel("queueUpdated", decode_id(general, "Pool"))
        for _ in range(250):
            if runtime.event_hub.listeners(channel) == 4:
                break
            await asyncio.sleep(0.02)
        count_queries.statements.clear()
        await waiting_case(gql, customer, general, "shared")
        received = await asyncio.wait_for(asyncio.gather(*updates), 15)
    finally:
        for client in clients:
            await client.close_async()

    assert [r["queueUpdated"] for r in received] == [{"change": "ENTERED", "case": {"subject": "shared"}}] * 4
    # The case is loaded once for the three agents and once for the supervisor; the counts once.
    case_loads = [s for s in count_queries.statements if s.startswith("SELECT cases.") and "cases.id IN" in s]
    assert len(case_loads) == 2


INGEST_ONE = """mutation($input: ContactIngestInput!) {
  contactIngest(input: $input) { case { reference } caseCreated errors { code } }
}"""
INGEST_MANY = """mutation($input: ContactIngestBatchInput!) {
  contactIngestBatch(input: $input) { results { case { reference } errors { code } } errors { code } }
}"""


async def test_a_customers_ingested_reply_reopens_a_pending_case_one_by_one_and_in_a_batch(gql, runtime):
    ann, ann_token = await user(runtime, "ann")
    customer = gid("Customer", await make_customer(runtime, "Ada", emails=["ada@example.com"]))
    general = await pool(gql, "General")
    await serve(gql, general, ann)
    first = await waiting_case(gql, customer, general, "first")
    second = await waiting_case(gql, customer, general, "second")
    references = []
    for case in (first, second):
        await next_case(gql, ann_token)
        await gql(REPLY_BY_AGENT, {"c": case}, token=ann_token)
        references.append(
            (await gql("query($c: ID!) { case(id: $c) { reference } }", {"c": case}))["case"]["reference"]
        )
    statuses = "SELECT subject, status FROM cases ORDER BY id"
    pending = await rows(runtime, statuses)

    def reply(n: int, reference: str) -> dict:
        return {
            "source": "mail",
            "externalId": f"r{n}",
            "channel": "EMAIL",
            "direction": "INBOUND",
            "from": "ada@example.com",
            "subject": f"Re: [{reference}] thanks, but",
        }

    alone = (await gql(INGEST_ONE, {"input": reply(1, references[0])}))["contactIngest"]
    batch = (await gql(INGEST_MANY, {"input": {"contacts": [reply(2, references[1])]}}))["contactIngestBatch"]

    assert pending == [("first", "pending"), ("second", "pending")]
    assert alone["case"] == {"reference": references[0]} and not alone["caseCreated"]
    assert batch["results"][0]["case"] == {"reference": references[1]}
    assert await rows(runtime, statuses) == [("first", "open"), ("second", "open")]

"""TAT policies and regions through the API, a case's deadlines, pause and resume, first response,
and the SLA sweep: each warning and breach marked and escalated exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy
import yaml

from app.auth import SYSTEM
from app.contact_data import ContactData
from app.errors import UserError
from app.models import Pool, UserGroup, Workflow
from app.services import cases as case_service
from app.services import contacts as contact_service
from app.services import sla, workflows
from jobs.worker import sla_recompute, sla_sweep
from tests.conftest import published_channels
from tests.support import AGENT, SUPERVISOR, gid, make_customer, rows, scalar

ALL_DAY = [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]

REGION_CREATE = """
mutation($input: RegionCreateInput!) {
  regionCreate(input: $input) { region { id name timeZone businessHours { weekday start end } } errors { field code } }
}"""
POLICY_CREATE = """
mutation($input: TatPolicyCreateInput!) {
  tatPolicyCreate(input: $input) {
    tatPolicy { id code targets { priority target minimumMinutes maximumMinutes } }
    errors { field code }
  }
}"""
CASE_CREATE = """
mutation($input: CaseCreateInput!) {
  caseCreate(input: $input) {
    case { id createdAt responseDueAt resolutionDueAt breached timeLeft sla { paused responseWarnAt firstRespondedAt } }
    errors { code }
  }
}"""
CASE_UPDATE = """
mutation($input: CaseUpdateInput!) {
  caseUpdate(input: $input) { case { responseDueAt resolutionDueAt } errors { code } }
}"""
TARGETS = [
    {"priority": "NORMAL", "target": "RESPONSE", "minimumMinutes": 30, "maximumMinutes": 60},
    {"priority": "NORMAL", "target": "RESOLUTION", "minimumMinutes": 180, "maximumMinutes": 240},
    {"priority": "URGENT", "target": "RESPONSE", "maximumMinutes": 15},
    {"priority": "URGENT", "target": "RESOLUTION", "maximumMinutes": 120},
]


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def configure(gql) -> None:
    region = await gql(
        REGION_CREATE,
        {
            "input": {
                "name": "Round the clock",
                "timeZone": "Europe/London",
                "businessHours": ALL_DAY,
                "isDefault": True,
            }
        },
    )
    assert region["regionCreate"]["errors"] == []
    policy = await gql(POLICY_CREATE, {"input": {"code": "STANDARD", "targets": TARGETS, "isDefault": True}})
    assert policy["tatPolicyCreate"]["errors"] == []


async def new_case(gql, runtime) -> dict:
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    created = await gql(CASE_CREATE, {"input": {"subject": "Boiler", "customerIds": [customer]}})
    return created["caseCreate"]["case"]


async def test_a_new_case_gets_its_deadlines_from_the_default_policy_and_region(gql, runtime):
    await configure(gql)

    case = await new_case(gql, runtime)

    created = at(case["createdAt"])
    assert at(case["responseDueAt"]) == created + timedelta(minutes=60)
    assert at(case["resolutionDueAt"]) == created + timedelta(minutes=240)
    assert at(case["sla"]["responseWarnAt"]) == created + timedelta(minutes=30)
    assert case["breached"] is False
    assert 3500 < case["timeLeft"] <= 3600
    assert case["sla"]["paused"] is False


async def test_changing_the_priority_recomputes_the_deadlines(gql, runtime):
    await configure(gql)
    case = await new_case(gql, runtime)

    updated = await gql(CASE_UPDATE, {"input": {"id": case["id"], "priority": "URGENT"}})

    created = at(case["createdAt"])
    assert at(updated["caseUpdate"]["case"]["responseDueAt"]) == created + timedelta(minutes=15)
    assert at(updated["caseUpdate"]["case"]["resolutionDueAt"]) == created + timedelta(minutes=120)


async def test_without_a_policy_a_case_has_no_deadlines(gql, runtime):
    case = await new_case(gql, runtime)

    assert (case["responseDueAt"], case["resolutionDueAt"], case["breached"], case["timeLeft"]) == (
        None,
        None,
        False,
        None,
    )


async def test_bad_configuration_is_refused_with_codes_and_changes_nothing(gql):
    refusals = [
        (REGION_CREATE, {"name": "X", "timeZone": "Mars/Olympus"}, "regionCreate", ("timeZone", "UNKNOWN_TIME_ZONE")),
        (
            REGION_CREATE,
            {"name": "X", "timeZone": "UTC", "holidayCountry": "QQ"},
            "regionCreate",
            ("holidayCountry", "UNKNOWN_COUNTRY"),
        ),
        (
            REGION_CREATE,
            {
                "name": "X",
                "timeZone": "UTC",
                "businessHours": [
                    {"weekday": 1, "start": "08:00", "end": "12:00"},
                    {"weekday": 1, "start": "11:00", "end": "15:00"},
                ],
            },
            "regionCreate",
            ("businessHours.1", "OVERLAPPING_HOURS"),
        ),
        (
            POLICY_CREATE,
            {
                "code": "BAD",
                "targets": [{"priority": "HIGH", "target": "RESPONSE", "minimumMinutes": 90, "maximumMinutes": 60}],
            },
            "tatPolicyCreate",
            ("targets.0.minimumMinutes", "TAT_MINIMUM_ABOVE_MAXIMUM"),
        ),
    ]
    for document, input_, name, expected in refusals:
        answer = await gql(document, {"input": input_})
        assert [(e["field"], e["code"]) for e in answer[name]["errors"]] == [expected]

    regions = await gql("{ regions { id } tatPolicies { id } }")
    assert regions == {"regions": [], "tatPolicies": []}


async def test_waiting_on_the_customer_pauses_the_clock_and_the_pause_moves_the_deadlines(gql, runtime):
    await configure(gql)
    case = await new_case(gql, runtime)
    case_id = int(await scalar(runtime, "SELECT max(id) FROM cases"))
    created = at(case["createdAt"])

    async with runtime.transaction() as session:
        await sla.status_changed(session, case_id=case_id, status="pending", now=created + timedelta(minutes=10))
    # While paused nothing is due, however late it gets.
    assert (await sla.sweep(runtime, now=created + timedelta(hours=9))).checked == 0
    async with runtime.transaction() as session:
        await sla.status_changed(session, case_id=case_id, status="open", now=created + timedelta(minutes=70))

    # Paused 60 minutes: both deadlines move on by exactly that.
    assert await rows(
        runtime, "SELECT response_due_at, resolution_due_at, paused_seconds, paused_at FROM case_slas"
    ) == [(created + timedelta(minutes=120), created + timedelta(minutes=300), 3600, None)]
    # Consultation does not pause this policy: the clock keeps running.
    async with runtime.transaction() as session:
        await sla.status_changed(session, case_id=case_id, status="consultation", now=created + timedelta(minutes=80))
    assert await scalar(runtime, "SELECT paused_at FROM case_slas") is None


async def test_closing_stops_the_clock_and_reopening_adds_the_closed_time(gql, runtime):
    await configure(gql)
    case = await new_case(gql, runtime)
    case_id = int(await scalar(runtime, "SELECT max(id) FROM cases"))

    async with runtime.transaction() as session:
        await case_service.close_case(session, actor=AGENT, case_id=case_id, reason_code="completed")
    assert await rows(runtime, "SELECT next_check_at IS NULL, resolved_at IS NOT NULL FROM case_slas") == [(True, True)]
    async with runtime.transaction() as session:
        await case_service.reopen_case(session, actor=AGENT, case_id=case_id)

    resolution_due, next_check, resolved = (
        await rows(runtime, "SELECT resolution_due_at, next_check_at, resolved_at FROM case_slas")
    )[0]
    assert resolution_due >= at(case["resolutionDueAt"]) and next_check is not None and resolved is None


async def test_an_outbound_contact_is_the_first_response_but_an_automatic_receipt_is_not(gql, runtime):
    await configure(gql)
    await new_case(gql, runtime)
    case_id = int(await scalar(runtime, "SELECT max(id) FROM cases"))

    async def outbound(kind: str) -> None:
        async with runtime.transaction() as session:
            await contact_service.insert_contact(
                session,
                data=ContactData(channel="email", direction="outbound", text="hi", payload={"mail": {"kind": kind}}),
                customer_id=None,
                case_id=case_id,
            )

    await outbound("auto_response")
    assert await scalar(runtime, "SELECT first_responded_at FROM case_slas") is None
    await outbound("reply")
    responded = await scalar(runtime, "SELECT first_responded_at FROM case_slas")
    assert responded is not None

    # Answered: the sweep now looks only at the resolution's warning point.
    assert await scalar(runtime, "SELECT next_check_at = resolution_warn_at FROM case_slas") is True


async def _escalating_workflow(runtime) -> tuple[int, int, int]:
    async with runtime.transaction() as session:
        pool = Pool(name="Escalations")
        session.add(pool)
        await session.flush()
        group = UserGroup(name="Team leads", pool_id=pool.id)
        session.add(group)
        await session.flush()
        workflow = Workflow(code="COMPLAINT", escalator_group_id=group.id, escalation="assign")
        session.add(workflow)
        await session.flush()
        return workflow.id, group.id, pool.id


async def test_the_sweep_marks_each_stage_once_and_hands_breaches_to_the_escalator_group(gql, runtime):
    await configure(gql)
    workflow_id, group_id, pool_id = await _escalating_workflow(runtime)
    case = await new_case(gql, runtime)
    case_id = int(await scalar(runtime, "SELECT max(id) FROM cases"))
    async with runtime.transaction() as session:
        # An agent holds the case; its workflow escalates by assignment.
        await session.execute(
            sqlalchemy.text("UPDATE cases SET workflow_id = :w, assignee_id = NULL WHERE id = :c"),
            {"w": workflow_id, "c": case_id},
        )
    created = at(case["createdAt"])

    warned = await sla.sweep(runtime, now=created + timedelta(minutes=31))
    assert (warned.checked, warned.warnings, warned.breaches) == (1, 1, 0)
    assert (await sla.sweep(runtime, now=created + timedelta(minutes=45))).checked == 0  # nothing new is due

    breached = await sla.sweep(runtime, now=created + timedelta(minutes=61))
    assert (breached.breaches, breached.escalations) == (1, 1)
    assert await rows(runtime, "SELECT pool_id, assignee_id FROM cases") == [(pool_id, None)]
    assert await scalar(runtime, "SELECT escalated_group_id FROM case_slas") == group_id
    channels = await published_channels(runtime)
    assert channels.count("casegraph:events:slaEvents:all") == 2  # one per sweep that marked something
    assert channels.count(f"casegraph:events:slaEvents:group:{group_id}") == 2

    # Later sweeps, and another worker's, find the response stages marked: nothing twice.
    assert (await sla.sweep(runtime, now=created + timedelta(minutes=90))).checked == 0
    assert await rows(
        runtime, "SELECT action, count(*) FROM audit_events WHERE action LIKE 'case.sla.%' GROUP BY action ORDER BY 1"
    ) == [("case.sla.breach", 1), ("case.sla.warning", 1)]


async def test_escalation_happens_exactly_once_across_a_crash_and_a_worker_restart(gql, runtime, settings):
    await configure(gql)
    for _ in range(30):
        await new_case(gql, runtime)
    late = datetime.now(UTC) + timedelta(hours=5)  # every warning and deadline has passed

    # A worker marks a batch and dies before committing: nothing of it stays.
    try:
        async with runtime.transaction() as session:
            assert (await sla.sweep_batch(session, now=late)).breaches == 60
            raise RuntimeError("killed")
    except RuntimeError:
        pass
    assert await scalar(runtime, "SELECT count(*) FROM case_slas WHERE resolution_breached_at IS NOT NULL") == 0

    # Two workers sweep at once (SKIP LOCKED), then a restarted worker runs its cron job.
    first, second = await asyncio.gather(sla.sweep(runtime, now=late, limit=7), sla.sweep(runtime, now=late, limit=7))
    from app.runtime import create_runtime

    restarted = create_runtime(settings, pool_size=2)
    try:
        again = await sla_sweep({"runtime": restarted})
    finally:
        await restarted.close()

    assert first.breaches + second.breaches == 60 and again["breaches"] == 0
    assert await scalar(runtime, "SELECT count(*) FROM audit_events WHERE action = 'case.sla.breach'") == 30
    assert await scalar(runtime, "SELECT count(*) FROM case_slas WHERE next_check_at IS NOT NULL") == 0


async def test_the_sweep_reads_the_due_clocks_through_the_partial_index(runtime):
    async with runtime.engine.connect() as conn:
        await conn.execute(sqlalchemy.text("SET enable_seqscan = off"))
        explained = await conn.execute(
            sqlalchemy.text("EXPLAIN " + sla._DUE.text), {"now": datetime.now(UTC), "limit": 10}
        )
        plan = "\n".join(r[0] for r in explained)
    assert "ix_case_slas_next_check_at" in plan


async def test_the_configuration_round_trips_through_a_file_and_a_bad_file_changes_nothing(gql, runtime):
    await configure(gql)
    async with runtime.transaction() as session:
        pool = Pool(name="Escalations")
        session.add(pool)
        await session.flush()
        await workflows.create_group(session, actor=SYSTEM, name="Leads", pool_id=pool.id)
        await workflows.create_workflow(session, actor=SYSTEM, code="COMPLAINT", escalation="assign")
    async with runtime.reading() as session:
        exported = await sla.export_sla_config(session)
    document = yaml.safe_dump(exported)

    # The same file again changes nothing but adds what it adds.
    edited = yaml.safe_load(document)
    edited["workflows"][0]["escalator_group"] = "Leads"
    edited["workflows"][0]["tat_policy"] = "STANDARD"
    edited["regions"].append({"name": "New York", "time_zone": "America/New_York", "holiday_country": "US"})
    async with runtime.transaction() as session:
        counts = await sla.import_sla_config(session, edited, SUPERVISOR)
    assert counts == {"regions": 2, "tat_policies": 1, "user_groups": 1, "workflows": 1}
    async with runtime.reading() as session:
        again = await sla.export_sla_config(session)
    assert again["workflows"][0] == {**exported["workflows"][0], "escalator_group": "Leads", "tat_policy": "STANDARD"}
    assert [r["name"] for r in again["regions"]] == ["New York", "Round the clock"]
    assert again["tat_policies"] == exported["tat_policies"]

    before = await snapshot_config(runtime)
    bad_files = [
        ({"regions": [{"name": "X", "time_zone": "Nowhere/Atlantis"}]}, "regions.0.time_zone", "UNKNOWN_TIME_ZONE"),
        (
            {
                "tat_policies": [
                    {
                        "code": "B",
                        "targets": [
                            {"priority": "low", "target": "response", "minimum_minutes": 9, "maximum_minutes": 5}
                        ],
                    }
                ]
            },
            "tat_policies.0.targets.0.minimumMinutes",
            "TAT_MINIMUM_ABOVE_MAXIMUM",
        ),
        ({"workflows": [{"code": "W", "creator_group": "Nobody"}]}, "workflows.0.creator_group", "NOT_FOUND"),
        # The last entry is bad: the regions before it are not written either.
        (
            {"regions": [{"name": "Fine", "time_zone": "UTC"}], "user_groups": [{"name": "G", "region": "Elsewhere"}]},
            "user_groups.0.region",
            "NOT_FOUND",
        ),
        ({"user_groups": []}, "user_groups", "IN_USE"),  # the kept workflow still names Leads
    ]
    for data, field, code in bad_files:
        try:
            async with runtime.transaction() as session:
                await sla.import_sla_config(session, data, SUPERVISOR)
        except UserError as error:
            assert (error.field, error.code) == (field, code)
        else:
            raise AssertionError(f"{data} was accepted")
    assert await snapshot_config(runtime) == before


async def snapshot_config(runtime) -> list:
    return await rows(
        runtime,
        "SELECT (SELECT json_agg(r ORDER BY id)::text FROM regions r), (SELECT json_agg(p ORDER BY id)::text FROM tat_policies p),"
        " (SELECT json_agg(t)::text FROM tat_targets t), (SELECT json_agg(g ORDER BY id)::text FROM user_groups g),"
        " (SELECT json_agg(w ORDER BY id)::text FROM workflows w)",
    )


CASE_LIST = "{ cases(first: 50) { edges { node { responseDueAt resolutionDueAt breached timeLeft sla { paused } } } } }"


async def test_a_page_of_cases_reads_its_clocks_in_a_fixed_number_of_queries(gql, runtime, count_queries):
    await configure(gql)
    await new_case(gql, runtime)
    count_queries.statements.clear()
    await gql(CASE_LIST)
    few = count_queries.count
    for _ in range(12):
        await new_case(gql, runtime)
    count_queries.statements.clear()

    page = await gql(CASE_LIST)

    assert len(page["cases"]["edges"]) == 13
    assert count_queries.count == few


async def test_a_sweep_runs_the_same_statements_for_5_or_40_due_cases(gql, runtime, count_queries):
    await configure(gql)
    counts = []
    for due in (5, 40):
        for _ in range(due):
            await new_case(gql, runtime)
        count_queries.statements.clear()
        result = await sla.sweep(runtime, now=datetime.now(UTC) + timedelta(minutes=45))
        assert result.warnings == due
        counts.append(count_queries.count)

    assert counts[0] == counts[1]


async def test_moving_a_case_to_a_workflow_takes_its_policy(gql, runtime):
    await configure(gql)
    case = await new_case(gql, runtime)
    async with runtime.transaction() as session:
        policy = await sla.create_policy(
            session,
            actor=SYSTEM,
            code="VIP",
            targets=[{"priority": "normal", "target": "resolution", "maximum_minutes": 30}],
        )
        workflow = await workflows.create_workflow(session, actor=SYSTEM, code="VIP", tat_policy_id=policy.id)
        admin = await session.scalar(sqlalchemy.text("SELECT id FROM users WHERE name = 'admin'"))
        await workflows.set_mode(session, actor=SYSTEM, workflow_id=workflow.id, user_id=admin, mode="creator")

    moved = await gql(CASE_UPDATE, {"input": {"id": case["id"], "workflowId": gid("Workflow", workflow.id)}})

    created = at(case["createdAt"])
    assert moved["caseUpdate"]["case"]["responseDueAt"] is None
    assert at(moved["caseUpdate"]["case"]["resolutionDueAt"]) == created + timedelta(minutes=30)


async def test_setting_a_case_pending_through_the_api_pauses_its_clock(gql, runtime):
    await configure(gql)
    case = await new_case(gql, runtime)

    paused = await gql(
        "mutation($input: CaseUpdateInput!) { caseUpdate(input: $input) { case { timeLeft sla { paused } } } }",
        {"input": {"id": case["id"], "status": "PENDING"}},
    )
    await asyncio.sleep(1.1)
    later = await gql("query($id: ID!) { case(id: $id) { timeLeft sla { paused } } }", {"id": case["id"]})

    assert paused["caseUpdate"]["case"]["sla"]["paused"] is True
    # Paused: the time left stands still.
    assert later["case"]["timeLeft"] == paused["caseUpdate"]["case"]["timeLeft"]


async def test_changing_a_policy_recomputes_the_open_cases_in_the_worker(gql, runtime):
    await configure(gql)
    case = await new_case(gql, runtime)
    closed = await new_case(gql, runtime)
    async with runtime.transaction() as session:
        await case_service.close_case(session, actor=AGENT, case_id=int(gid_db(closed["id"])), reason_code="completed")
    policy = (await gql("{ tatPolicies { id } }"))["tatPolicies"][0]["id"]
    faster = [{**t, "maximumMinutes": t["maximumMinutes"] // 2, "minimumMinutes": None} for t in TARGETS]

    await gql(
        "mutation($input: TatPolicyUpdateInput!) { tatPolicyUpdate(input: $input) { errors { code } } }",
        {"input": {"id": policy, "targets": faster}},
    )
    # The job waits in the worker's queue; run it as the worker would.
    assert await runtime.redis.exists(f"arq:job:sla-recompute:policy:{gid_db(policy)}") == 1
    assert await sla_recompute({"runtime": runtime}, int(gid_db(policy)), None) == 1

    after = await gql(
        "query($id: ID!) { case(id: $id) { responseDueAt resolutionDueAt sla { responseWarnAt } } }",
        {"id": case["id"]},
    )
    created = at(case["createdAt"])
    assert at(after["case"]["responseDueAt"]) == created + timedelta(minutes=30)
    assert at(after["case"]["resolutionDueAt"]) == created + timedelta(minutes=120)
    assert after["case"]["sla"]["responseWarnAt"] is None


def gid_db(global_id: str) -> int:
    from schema.ids import from_global_id

    return from_global_id(global_id)[1]


async def test_regions_and_policies_travel_in_the_configuration_file(gql, servers, tmp_path):
    from tests.test_runtime import run_cli

    await configure(gql)
    exported = tmp_path / "config.yaml"
    result = await asyncio.to_thread(run_cli, "config", "export", str(exported), env=servers)
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(exported.read_text())
    assert [p["code"] for p in document["tat_policies"]] == ["STANDARD"]

    document["regions"][0]["business_hours"].append({"weekday": 0, "start": "08:00", "end": "09:00"})
    exported.write_text(yaml.safe_dump(document))
    refused = await asyncio.to_thread(run_cli, "config", "import", str(exported), env=servers)
    assert refused.returncode == 2 and "regions.0.business_hours.7" in refused.stdout + refused.stderr

    document["regions"][0]["business_hours"].pop()
    document["regions"][0]["time_zone"] = "America/New_York"
    exported.write_text(yaml.safe_dump(document))
    result = await asyncio.to_thread(run_cli, "config", "import", str(exported), env=servers)
    assert result.returncode == 0, result.stderr
    assert (await gql("{ regions { timeZone } }")) == {"regions": [{"timeZone": "America/New_York"}]}


async def test_a_region_lists_its_public_and_calendar_holidays(gql):
    calendar = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:x@example.com\r\n"
        "DTSTART;VALUE=DATE:20260408\r\nDTEND;VALUE=DATE:20260410\r\nSUMMARY:Stocktake\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    created = await gql(
        REGION_CREATE,
        {
            "input": {
                "name": "London",
                "timeZone": "Europe/London",
                "holidayCountry": "gb",
                "holidaySubdivision": "eng",
                "holidayCalendar": calendar,
            }
        },
    )
    assert created["regionCreate"]["errors"] == []

    listed = await gql('{ regions { holidayCountry holidays(start: "2026-04-01", end: "2026-04-10") { date name } } }')

    assert listed["regions"] == [
        {
            "holidayCountry": "GB",
            "holidays": [
                {"date": "2026-04-03", "name": "Good Friday"},
                {"date": "2026-04-06", "name": "Easter Monday"},
                {"date": "2026-04-08", "name": "Stocktake"},
                {"date": "2026-04-09", "name": "Stocktake"},
            ],
        }
    ]

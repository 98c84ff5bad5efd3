"""Groups, workflows and user modes: who may open and resolve a workflow's cases (every mutation ×
role × mode), rights from groups, default pools, escalation by notification, and the slaEvents
subscription filtered to what the subscriber may see."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta

import websockets
from sqlalchemy import func, select, update

from app.auth import SYSTEM
from app.contact_data import ContactData
from app.models import ROLES, Case, Mailbox, Pool, User
from app.services import calendars, sla, workflows
from app.services import contacts as contact_service
from app.services.auth import create_token
from schema.permissions import permitted
from tests.conftest import wait_for_subscriber
from tests.support import gid, make_customer, rows, scalar

MODES = (None, "creator", "resolver", "both")
CASE_CREATE = (
    """mutation($input: CaseCreateInput!) { caseCreate(input: $input) { case { id } errors { field code } } }"""
)
CASE_CLOSE = """mutation($input: CaseCloseInput!) { caseClose(input: $input) { case { id } errors { field code } } }"""
CASE_RESOLVE = (
    """mutation($input: CaseUpdateInput!) { caseUpdate(input: $input) { case { id } errors { field code } } }"""
)
CASE_MOVE_TO_WORKFLOW = CASE_RESOLVE
# What each mutation needs besides its role: the workflow right it checks.
NEEDS = {"caseCreate": "creator", "caseClose": "resolver", "caseResolve": "resolver", "caseMoveToWorkflow": "creator"}
OPERATION = {
    "caseCreate": "Mutation.caseCreate",
    "caseClose": "Mutation.caseClose",
    "caseResolve": "Mutation.caseUpdate",
    "caseMoveToWorkflow": "Mutation.caseUpdate",
}


async def _setup(runtime) -> dict:
    async with runtime.transaction() as session:
        pool = Pool(name="Complaints")
        session.add(pool)
        await session.flush()
        workflow = await workflows.create_workflow(session, actor=SYSTEM, code="COMPLAINT", default_pool_id=pool.id)
        users = {}
        for role, mode in itertools.product(ROLES, MODES):
            name = f"{role}-{mode or 'none'}"
            token = await create_token(session, name=name, role=role)
            user_id = await session.scalar(select(User.id).where(User.name == name))
            if mode is not None:
                await workflows.set_mode(session, actor=SYSTEM, workflow_id=workflow.id, user_id=user_id, mode=mode)
            users[(role, mode)] = token
        return {"workflow": workflow.id, "pool": pool.id, "tokens": users}


async def _case_in_workflow(runtime, customer: int, workflow_id: int) -> str:
    from app.services import cases

    async with runtime.transaction() as session:
        case = await cases.create_case(
            session, actor=SYSTEM, subject="Complaint", customer_ids=[customer], workflow_id=workflow_id
        )
        return gid("Case", case.id)


async def _outcome(gql, document: str, variables: dict, token: str, name: str) -> str:
    body = (await gql.post(document, variables, token=token)).json()
    if any(e.get("extensions", {}).get("code") == "FORBIDDEN" for e in body.get("errors") or []):
        return "role refused"
    assert not body.get("errors"), body
    errors = body["data"][name]["errors"]
    if errors:
        assert [e["code"] for e in errors] == ["FORBIDDEN"], errors
        return "mode refused"
    return "completed"


async def test_every_mutation_role_and_mode_is_admitted_or_refused_as_the_mode_says(gql, runtime):
    setup = await _setup(runtime)
    workflow = gid("Workflow", setup["workflow"])
    customer = await make_customer(runtime, "Ada")
    wrong = []
    for (role, mode), token in setup["tokens"].items():
        from app.auth import Actor

        actor = Actor(user_id=None, name="x", role=role)
        for mutation, right in NEEDS.items():
            if mutation == "caseCreate":
                document, variables, name = (
                    CASE_CREATE,
                    {"input": {"subject": "S", "customerIds": [gid("Customer", customer)], "workflowId": workflow}},
                    "caseCreate",
                )
            elif mutation == "caseClose":
                case = await _case_in_workflow(runtime, customer, setup["workflow"])
                document, variables, name = (
                    CASE_CLOSE,
                    {"input": {"caseId": case, "reasonCode": "completed"}},
                    "caseClose",
                )
            elif mutation == "caseResolve":
                case = await _case_in_workflow(runtime, customer, setup["workflow"])
                document, variables, name = CASE_RESOLVE, {"input": {"id": case, "status": "RESOLVED"}}, "caseUpdate"
            else:
                case = await _case_in_workflow(runtime, customer, None)
                document, variables, name = (
                    CASE_MOVE_TO_WORKFLOW,
                    {"input": {"id": case, "workflowId": workflow}},
                    "caseUpdate",
                )
            expected = (
                "role refused"
                if not permitted(actor, OPERATION[mutation])
                else "completed"
                if mode in (right, "both")
                else "mode refused"
            )
            got = await _outcome(gql, document, variables, token, name)
            if got != expected:
                wrong.append((mutation, role, mode, got, expected))

    assert wrong == []


async def test_without_a_mode_the_users_groups_give_the_rights_and_cases_land_in_the_default_pool(gql, runtime):
    async with runtime.transaction() as session:
        pool = Pool(name="Billing")
        session.add(pool)
        await session.flush()
        token = await create_token(session, name="creator-only", role="agent")
        user_id = await session.scalar(select(User.id).where(User.name == "creator-only"))
        openers = await workflows.create_group(session, actor=SYSTEM, name="Front office", member_ids=[user_id])
        workflow = await workflows.create_workflow(
            session, actor=SYSTEM, code="BILLING", creator_group_id=openers.id, default_pool_id=pool.id
        )
    customer = gid("Customer", await make_customer(runtime, "Ada"))

    created = await gql(
        CASE_CREATE,
        {"input": {"subject": "Bill", "customerIds": [customer], "workflowId": gid("Workflow", workflow.id)}},
        token=token,
    )
    case = created["caseCreate"]["case"]["id"]
    closed = await gql(CASE_CLOSE, {"input": {"caseId": case, "reasonCode": "completed"}}, token=token)

    assert closed["caseClose"]["errors"] == [{"field": "caseId", "code": "FORBIDDEN"}]
    assert await rows(runtime, "SELECT pool_id, workflow_id, status FROM cases") == [(pool.id, workflow.id, "new")]


GROUP_CREATE = """mutation($input: UserGroupCreateInput!) {
  userGroupCreate(input: $input) { userGroup { id name regionId } errors { field code } } }"""
WORKFLOW_CREATE = """mutation($input: WorkflowCreateInput!) {
  workflowCreate(input: $input) { workflow { id code escalation escalatorGroupId } errors { field code } } }"""


async def test_groups_and_workflows_through_the_api_and_what_they_refuse(gql):
    group = (await gql(GROUP_CREATE, {"input": {"name": "Leads"}}))["userGroupCreate"]["userGroup"]
    created = await gql(
        WORKFLOW_CREATE, {"input": {"code": "RETURNS", "escalatorGroupId": group["id"], "escalation": "ASSIGN"}}
    )
    assert created["workflowCreate"]["workflow"]["escalatorGroupId"] == group["id"]

    unknown = await gql(WORKFLOW_CREATE, {"input": {"code": "X", "resolverGroupId": gid("UserGroup", 999)}})
    duplicate = await gql(GROUP_CREATE, {"input": {"name": "Leads"}})
    in_use = await gql(
        "mutation($id: ID!) { userGroupDelete(input: {id: $id}) { deletedId errors { field code } } }",
        {"id": group["id"]},
    )

    assert unknown["workflowCreate"]["errors"] == [{"field": "resolverGroupId", "code": "NOT_FOUND"}]
    assert duplicate["userGroupCreate"]["errors"] == [{"field": "name", "code": "DUPLICATE"}]
    assert in_use["userGroupDelete"]["errors"] == [{"field": "id", "code": "IN_USE"}]
    listed = await gql("{ userGroups { name } workflows { code } }")
    assert listed == {"userGroups": [{"name": "Leads"}], "workflows": [{"code": "RETURNS"}]}


async def _notify_workflow(runtime) -> dict:
    """A 24/7 region for the resolver group, a 1-hour response policy, and a workflow that notifies
    its escalator group, of which agent `lead` is a member; agent `other` is not."""
    async with runtime.transaction() as session:
        region = await calendars.create_region(
            session,
            actor=SYSTEM,
            name="Anywhere",
            time_zone="UTC",
            business_hours=[{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)],
        )
        policy = await sla.create_policy(
            session,
            actor=SYSTEM,
            code="FAST",
            targets=[{"priority": "normal", "target": "response", "maximum_minutes": 60}],
        )
        lead_token = await create_token(session, name="lead", role="agent")
        other_token = await create_token(session, name="other", role="agent")
        lead = await session.scalar(select(User.id).where(User.name == "lead"))
        resolvers = await workflows.create_group(session, actor=SYSTEM, name="Resolvers", region_id=region.id)
        leads = await workflows.create_group(session, actor=SYSTEM, name="Leads", member_ids=[lead])
        workflow = await workflows.create_workflow(
            session,
            actor=SYSTEM,
            code="NOTIFY",
            resolver_group_id=resolvers.id,
            escalator_group_id=leads.id,
            tat_policy_id=policy.id,
        )
    return {"workflow": workflow.id, "leads": leads.id, "lead": lead_token, "other": other_token}


async def _subscribe(live_server: str, token: str):
    ws = await websockets.connect(f"ws://{live_server}/graphql", subprotocols=["graphql-transport-ws"])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    query = "subscription { slaEvents { caseId reference breached escalatedGroupId marks { stage target } } }"
    await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": query}}))
    return ws


async def test_a_breach_notifies_the_escalator_group_and_only_its_members_hear_of_it(live_server, runtime):
    setup = await _notify_workflow(runtime)
    customer = await make_customer(runtime, "Ada")
    case = await _case_in_workflow(runtime, customer, setup["workflow"])
    # The case came by a mailbox with a relay, and the lead has an address: the breach is mailed too.
    async with runtime.transaction() as session:
        mailbox = Mailbox(address="support@example.com", intake="smtp", relay_host="127.0.0.1", relay_port=2525)
        session.add(mailbox)
        await session.flush()
        await contact_service.insert_contact(
            session,
            data=ContactData(channel="email", direction="inbound", text="help", source=f"mailbox:{mailbox.id}"),
            customer_id=customer,
            case_id=int(await session.scalar(select(func.max(Case.id)))),
        )
        await session.execute(update(User).where(User.name == "lead").values(email="lead@example.com"))
    lead = await _subscribe(live_server, setup["lead"])
    other = await _subscribe(live_server, setup["other"])
    try:
        await wait_for_subscriber(runtime, "slaEvents", f"group:{setup['leads']}")
        other_id = await scalar(runtime, "SELECT id FROM users WHERE name = 'other'")
        await wait_for_subscriber(runtime, "slaEvents", f"user:{other_id}")

        result = await sla.sweep(runtime, now=datetime.now(UTC) + timedelta(minutes=61))

        message = json.loads(await asyncio.wait_for(lead.recv(), 5))
        assert message["payload"]["data"]["slaEvents"] == {
            "caseId": case,
            "reference": "CASE-000001",
            "breached": True,
            "escalatedGroupId": gid("UserGroup", setup["leads"]),
            "marks": [{"stage": "BREACH", "target": "RESPONSE"}],
        }
        try:
            unexpected = await asyncio.wait_for(other.recv(), 0.5)
        except TimeoutError:
            unexpected = None
        assert unexpected is None
    finally:
        await lead.close()
        await other.close()

    # Notification only: the case is not taken from where it was.
    assert (result.breaches, result.escalations) == (1, 1)
    assert await rows(runtime, "SELECT pool_id, assignee_id FROM cases") == [(None, None)]
    assert await rows(
        runtime,
        "SELECT o.kind, o.envelope_to, c.direction, o.raw LIKE '%SLA breached%' FROM outbound_messages o"
        " JOIN contacts c ON c.id = o.contact_id",
    ) == [("notification", ["lead@example.com"], "internal", True)]
    assert await scalar(runtime, "SELECT first_responded_at FROM case_slas") is None
    # The clock counted in the resolver group's region.
    assert await scalar(runtime, "SELECT region_id IS NOT NULL FROM case_slas") is True


async def test_a_workflows_cases_open_from_its_case_template(gql, runtime):
    from app.services import templates

    setup = await _setup(runtime)
    async with runtime.transaction() as session:
        template = await templates.create_template(
            session, actor=SYSTEM, name="Complaint form", subject="Complaint", priority="high"
        )
        await workflows.update_workflow(
            session, actor=SYSTEM, workflow_id=setup["workflow"], case_template_id=template.id
        )
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    token = setup["tokens"][("agent", "creator")]
    opened = """mutation($input: CaseCreateInput!) {
      caseCreate(input: $input) { case { subject priority template { name } pool { name } } errors { field code } }
    }"""

    by_workflow = await gql(
        opened, {"input": {"customerIds": [customer], "workflowId": gid("Workflow", setup["workflow"])}}, token=token
    )
    named = await gql(
        opened,
        {
            "input": {
                "customerIds": [customer],
                "subject": "Praise",
                "priority": "LOW",
                "workflowId": gid("Workflow", setup["workflow"]),
            }
        },
        token=token,
    )

    assert by_workflow["caseCreate"] == {
        "case": {
            "subject": "Complaint",
            "priority": "HIGH",
            "template": {"name": "Complaint form"},
            "pool": {"name": "Complaints"},
        },
        "errors": [],
    }
    assert named["caseCreate"]["case"]["subject"] == "Praise" and named["caseCreate"]["case"]["priority"] == "LOW"
    async with runtime.reading() as session:
        exported = await sla.export_sla_config(session)
    assert exported["workflows"][0]["case_template"] == "Complaint form"

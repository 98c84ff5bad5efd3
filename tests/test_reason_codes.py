"""Reason codes: a supervisor-kept list, each code of one status category; status changes that
take a reason accept only an active code of the right category, and cases read a code's current
description."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import text

from tests.support import gid, make_case, make_customer, snapshot

ERRORS = "errors { field code message }"
REASON_CODES = "query($c: StatusCategory, $all: Boolean! = false) { reasonCodes(category: $c, includeInactive: $all) { id code description category active } }"
CREATE = f"""mutation($input: ReasonCodeCreateInput!) {{
  reasonCodeCreate(input: $input) {{ reasonCode {{ id code description category active position }} {ERRORS} }} }}"""
UPDATE = f"""mutation($input: ReasonCodeUpdateInput!) {{
  reasonCodeUpdate(input: $input) {{ reasonCode {{ code description category active }} {ERRORS} }} }}"""
DELETE = f"mutation($id: ID!) {{ reasonCodeDelete(input: {{id: $id}}) {{ deletedId {ERRORS} }} }}"
CLOSE = f"""mutation($id: ID!, $r: String!) {{ caseClose(input: {{caseId: $id, reasonCode: $r}}) {{
  case {{ status reasonCode reason {{ description category }} }} {ERRORS} }} }}"""
REOPEN = f"""mutation($id: ID!, $r: String) {{ caseReopen(input: {{caseId: $id, reasonCode: $r}}) {{
  case {{ status reasonCode }} {ERRORS} }} }}"""
UPDATE_CASE = f"""mutation($input: CaseUpdateInput!) {{ caseUpdate(input: $input) {{
  case {{ status reasonCode reason {{ code }} }} {ERRORS} }} }}"""
CASE = "query($id: ID!) { case(id: $id) { status reasonCode reason { code description } } }"


def errors_of(data: dict, mutation: str) -> list[tuple[str, str]]:
    return [(e["field"], e["code"]) for e in data[mutation]["errors"]]


async def code_id(gql, code: str) -> str:
    codes = (await gql(REASON_CODES, {"all": True}))["reasonCodes"]
    return next(c["id"] for c in codes if c["code"] == code)


async def a_case(runtime) -> str:
    return gid("Case", await make_case(runtime, [await make_customer(runtime, "Ada")]))


async def test_a_fresh_installation_offers_the_default_codes_by_category(gql):
    closing = (await gql(REASON_CODES, {"c": "CLOSED"}))["reasonCodes"]
    pending = (await gql(REASON_CODES, {"c": "PENDING_CUSTOMER"}))["reasonCodes"]

    assert [c["code"] for c in closing] == [
        "completed",
        "not-a-problem",
        "rejected",
        "duplicate",
        "no-response",
        "merged",
    ]
    assert [(c["code"], c["description"]) for c in pending] == [("awaiting-customer", "Waiting for the customer")]


async def test_closing_takes_only_an_active_code_of_the_closed_category_and_a_refusal_changes_nothing(gql, runtime):
    case = await a_case(runtime)
    await gql(UPDATE, {"input": {"id": await code_id(gql, "rejected"), "active": False}})
    before = await snapshot(runtime)

    unknown = await gql(CLOSE, {"id": case, "r": "fixed-it"})
    inactive = await gql(CLOSE, {"id": case, "r": "rejected"})
    wrong = await gql(CLOSE, {"id": case, "r": "customer-replied"})

    assert errors_of(unknown, "caseClose") == [("reasonCode", "NOT_FOUND")]
    assert errors_of(inactive, "caseClose") == [("reasonCode", "INACTIVE")]
    assert errors_of(wrong, "caseClose") == [("reasonCode", "WRONG_CATEGORY")]
    assert await snapshot(runtime) == before

    closed = await gql(CLOSE, {"id": case, "r": " completed "})
    assert closed["caseClose"]["case"] == {
        "status": "CLOSED",
        "reasonCode": "completed",
        "reason": {"description": "Completed", "category": "CLOSED"},
    }


async def test_renaming_a_description_renames_it_on_every_case_and_history_keeps_the_code(gql, runtime):
    case = await a_case(runtime)
    await gql(CLOSE, {"id": case, "r": "completed"})

    renamed = await gql(UPDATE, {"input": {"id": await code_id(gql, "completed"), "description": "Solved"}})
    read = await gql(CASE, {"id": case})
    history = await gql(
        "query($id: ID!) { auditEvents(entityId: $id, first: 1) { edges { node { action after } } } }", {"id": case}
    )

    assert renamed["reasonCodeUpdate"]["reasonCode"]["description"] == "Solved"
    assert read["case"] == {
        "status": "CLOSED",
        "reasonCode": "completed",
        "reason": {"code": "completed", "description": "Solved"},
    }
    assert history["auditEvents"]["edges"][0]["node"] == {
        "action": "case.close",
        "after": {"status": "closed", "reasonCode": "completed"},
    }


async def test_a_code_in_use_is_deactivated_not_deleted_and_keeps_its_category(gql, runtime):
    case = await a_case(runtime)
    await gql(CLOSE, {"id": case, "r": "duplicate"})
    used = await code_id(gql, "duplicate")

    refused = await gql(DELETE, {"id": used})
    recategorised = await gql(UPDATE, {"input": {"id": used, "category": "IN_PROGRESS"}})
    deactivated = await gql(UPDATE, {"input": {"id": used, "active": False}})
    unused = await gql(DELETE, {"id": await code_id(gql, "not-a-problem")})

    assert errors_of(refused, "reasonCodeDelete") == [("id", "IN_USE")]
    assert errors_of(recategorised, "reasonCodeUpdate") == [("category", "IN_USE")]
    assert deactivated["reasonCodeUpdate"]["reasonCode"]["active"] is False
    assert unused["reasonCodeDelete"]["errors"] == []
    assert "duplicate" not in [c["code"] for c in (await gql(REASON_CODES))["reasonCodes"]]
    assert (await gql(CASE, {"id": case}))["case"]["reason"]["code"] == "duplicate"


async def test_the_merge_code_always_stays(gql, runtime):
    merged = await code_id(gql, "merged")

    deleted = await gql(DELETE, {"id": merged})
    deactivated = await gql(UPDATE, {"input": {"id": merged, "active": False}})

    assert errors_of(deleted, "reasonCodeDelete") == [("id", "IN_USE")]
    assert errors_of(deactivated, "reasonCodeUpdate") == [("active", "IN_USE")]


async def test_supervisors_add_codes_and_bad_ones_are_typed_errors(gql):
    created = await gql(
        CREATE, {"input": {"code": "card-replaced", "description": "Card replaced", "category": "CLOSED"}}
    )
    twice = await gql(CREATE, {"input": {"code": "card-replaced", "description": "Again", "category": "CLOSED"}})
    blank = await gql(CREATE, {"input": {"code": " ", "description": "Blank", "category": "CLOSED"}})
    undescribed = await gql(CREATE, {"input": {"code": "x", "description": "", "category": "CLOSED"}})

    assert created["reasonCodeCreate"]["reasonCode"]["position"] == 10  # after the ten defaults
    assert errors_of(twice, "reasonCodeCreate") == [("code", "DUPLICATE")]
    assert errors_of(blank, "reasonCodeCreate") == [("code", "REQUIRED")]
    assert errors_of(undescribed, "reasonCodeCreate") == [("description", "REQUIRED")]


async def test_reopening_and_status_changes_take_codes_of_the_new_status(gql, runtime):
    case = await a_case(runtime)
    await gql(CLOSE, {"id": case, "r": "completed"})

    wrong = await gql(REOPEN, {"id": case, "r": "completed"})
    reopened = await gql(REOPEN, {"id": case, "r": "customer-replied"})
    pending = await gql(UPDATE_CASE, {"input": {"id": case, "status": "PENDING", "reasonCode": "awaiting-customer"}})
    stray = await gql(UPDATE_CASE, {"input": {"id": case, "reasonCode": "awaiting-customer"}})
    consulting = await gql(UPDATE_CASE, {"input": {"id": case, "status": "CONSULTATION"}})

    assert errors_of(wrong, "caseReopen") == [("reasonCode", "WRONG_CATEGORY")]
    assert reopened["caseReopen"]["case"] == {"status": "OPEN", "reasonCode": "customer-replied"}
    assert pending["caseUpdate"]["case"] == {
        "status": "PENDING",
        "reasonCode": "awaiting-customer",
        "reason": {"code": "awaiting-customer"},
    }
    assert errors_of(stray, "caseUpdate") == [("reasonCode", "INVALID")]
    # The previous status's reason does not explain the new one.
    assert consulting["caseUpdate"]["case"] == {"status": "CONSULTATION", "reasonCode": None, "reason": None}


async def test_agents_pick_codes_but_do_not_keep_them(gql, agent_token):
    listed = await gql(REASON_CODES, token=agent_token)
    refused = await gql.post(
        CREATE, {"input": {"code": "x", "description": "X", "category": "CLOSED"}}, token=agent_token
    )

    assert len(listed["reasonCodes"]) == 10
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def _migration_0013():
    path = Path(__file__).parent.parent / "migrations" / "versions" / "0013_forms.py"
    spec = importlib.util.spec_from_file_location("migration_0013", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    return migration


async def test_the_migration_keeps_codes_typed_before_as_inactive_codes(runtime):
    migration = _migration_0013()

    def run(sync_connection, step):
        with Operations.context(MigrationContext.configure(sync_connection)):
            step()

    # DDL is transactional in PostgreSQL: the table goes back to free text and returns, then all is rolled back.
    async with runtime.engine.connect() as conn:
        transaction = await conn.begin()
        # Later migrations point at case templates; their references leave with this test's rollback.
        await conn.execute(text("ALTER TABLE workflows DROP CONSTRAINT fk_workflows_case_template_id_case_templates"))
        await conn.execute(text("ALTER TABLE workflows DROP COLUMN case_template_id"))
        await conn.run_sync(run, migration.downgrade)
        await conn.execute(
            text(
                "INSERT INTO cases (subject, status, reason_code) VALUES "
                "('Old', 'closed', 'solved-by-phone'), ('Again', 'closed', 'solved-by-phone'), "
                "('Reopened', 'open', 'called-back'), ('Usual', 'closed', 'completed')"
            )
        )
        await conn.run_sync(run, migration.upgrade)
        kept = (
            await conn.execute(
                text("SELECT code, description, category, active FROM reason_codes WHERE NOT active ORDER BY code")
            )
        ).all()
        completed = await conn.scalar(text("SELECT active FROM reason_codes WHERE code = 'completed'"))
        await transaction.rollback()

    assert [tuple(r) for r in kept] == [
        ("called-back", "called-back", "in_progress", False),
        ("solved-by-phone", "solved-by-phone", "closed", False),
    ]
    assert completed is True

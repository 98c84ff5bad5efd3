"""A consistent graph under concurrency: no parent-case cycle, no case on a customer being erased,
and idempotency keys that belong to their caller."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.migrate import alembic_config
from app.services import archive
from tests.conftest import _token
from tests.support import SUPERVISOR, gid, make_case, make_contact, make_customer, rows

ERRORS = "errors { field code }"
SET_PARENT = f"mutation($id: ID!, $parent: ID!) {{ caseUpdate(input: {{id: $id, parentId: $parent}}) {{ {ERRORS} }} }}"
CASE_CREATE = (
    f'mutation($id: ID!) {{ caseCreate(input: {{subject: "S", customerIds: [$id]}}) {{ case {{ id }} {ERRORS} }} }}'
)
CONTACT_CREATE = f"""mutation($customer: ID!, $key: String!, $text: String!) {{
  contactCreate(input: {{channel: PHONE, direction: INBOUND, customerId: $customer, externalId: $key, text: $text}}) {{
    contact {{ id text customer {{ id }} }} {ERRORS}
  }}
}}"""

CYCLES = """
WITH RECURSIVE walk(start, id, depth) AS (
    SELECT id, parent_id, 1 FROM cases WHERE parent_id IS NOT NULL
    UNION ALL
    SELECT w.start, c.parent_id, w.depth + 1 FROM walk w JOIN cases c ON c.id = w.id
    WHERE c.parent_id IS NOT NULL AND w.depth < 100
)
SELECT DISTINCT start FROM walk WHERE id = start
"""


async def _set_parent(gql, case: int, parent: int) -> list[dict]:
    response = await gql.post(SET_PARENT, {"id": gid("Case", case), "parent": gid("Case", parent)})
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    return response.json()["data"]["caseUpdate"]["errors"]


async def test_concurrent_parent_changes_never_close_a_cycle(gql, runtime):
    # Pairs (a under b, b under a) and triples (a under b while c, b's parent, goes under a): each
    # change alone is fine, together they would close a cycle.
    customer = await make_customer(runtime, "Ada")
    changes = []
    for _ in range(4):
        a, b = await make_case(runtime, [customer]), await make_case(runtime, [customer])
        changes.append([(a, b), (b, a)])
        c = await make_case(runtime, [customer])
        a, b = await make_case(runtime, [customer]), await make_case(runtime, [customer], parent_id=c)
        changes.append([(a, b), (c, a)])

    answers = await asyncio.gather(*(_set_parent(gql, case, parent) for group in changes for case, parent in group))

    assert await rows(runtime, CYCLES) == []
    for index in range(0, len(answers), 2):
        assert sorted([answers[index], answers[index + 1]]) == [[], [{"field": "parentId", "code": "CIRCULAR"}]]


async def test_a_case_cannot_be_created_on_a_customer_being_erased(gql, runtime):
    customer = await make_customer(runtime, "Ada")
    erasing, release = asyncio.Event(), asyncio.Event()

    async def erase() -> None:
        async with runtime.transaction() as session:
            await archive.erase_customer(session, actor=SUPERVISOR, customer_id=customer, reason="request")
            erasing.set()
            await release.wait()

    eraser = asyncio.create_task(erase())
    await erasing.wait()
    creating = asyncio.create_task(gql(CASE_CREATE, {"id": gid("Customer", customer)}))
    await asyncio.sleep(0.3)  # the case creation now waits for the erasure
    release.set()
    await eraser
    created = await creating

    assert created["caseCreate"] == {"case": None, "errors": [{"field": "customerIds.0", "code": "ERASED"}]}
    assert await rows(runtime, "SELECT count(*) FROM case_customers") == [(0,)]


async def test_idempotency_keys_of_contact_create_belong_to_their_caller(gql, runtime):
    ada, bob = await make_customer(runtime, "Ada"), await make_customer(runtime, "Bob")
    crm, shop = await _token(runtime, "crm", "integrator"), await _token(runtime, "shop", "integrator")

    async def create(token: str, customer: int, text: str) -> dict:
        variables = {"customer": gid("Customer", customer), "key": "order-1", "text": text}
        return (await gql(CONTACT_CREATE, variables, token=token))["contactCreate"]

    squatted = await create(crm, bob, "claimed first by crm")
    own = await create(shop, ada, "shop's own contact")
    repeat = await create(shop, ada, "shop's repeat")

    assert own["contact"]["text"] == "shop's own contact" and own["contact"]["customer"]["id"] == gid("Customer", ada)
    assert repeat["contact"]["id"] == own["contact"]["id"]  # still idempotent for the same caller
    assert squatted["contact"]["id"] != own["contact"]["id"]


async def test_the_database_keeps_custom_fields_headers_and_payloads_objects(runtime):
    customer = await make_customer(runtime, "Ada")
    await make_contact(runtime, customer_id=customer, case_id=await make_case(runtime, [customer]))

    for statement in (
        "UPDATE customers SET fields = '[1]'",
        "UPDATE cases SET fields = '\"x\"'",
        "UPDATE contacts SET headers = '[1]'",
        "UPDATE contacts SET payload = '7'",
    ):
        with pytest.raises(IntegrityError, match="_object"):
            async with runtime.transaction() as session:
                await session.execute(text(statement))


async def test_the_migration_keeps_a_stored_non_object_wrapped(runtime, servers):

    config = alembic_config(servers["DATABASE_URL"])
    customer = await make_customer(runtime, "Ada")
    await asyncio.to_thread(command.downgrade, config, "0007")
    try:
        async with runtime.transaction() as session:
            await session.execute(text("UPDATE customers SET fields = '[1]' WHERE id = :c"), {"c": customer})
    finally:
        await asyncio.to_thread(command.upgrade, config, "head")

    assert await rows(runtime, "SELECT fields FROM customers WHERE id = :c", c=customer) == [({"value": [1]},)]

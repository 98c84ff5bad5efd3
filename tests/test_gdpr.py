"""GDPR: customerErase (supervisor/admin, irreversible, no personal data left or logged) and customerExport."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import text

from app.contact_data import ContactData
from app.errors import UserError
from app.services import archive as gdpr
from app.services import cases as case_service
from app.services import contacts as contact_service
from app.services import customers as merge_service
from tests.support import (
    AGENT,
    SUPERVISOR,
    gid,
    make_case,
    make_contact,
    make_customer,
    rows,
    scalar,
    snapshot,
)

ERASE = """
mutation($input: CustomerEraseInput!) { customerErase(input: $input) { customer { id name status } errors { field code } } }
"""
EXPORT = "query($id: ID!) { customerExport(customerId: $id) }"


# The whole date of birth: "1815" alone also turns up in timestamps (microseconds) and ids.
PERSONAL = ("Ada", "Lovelace", "ada@example.com", "+442079460018", "1815-12-10", "Main St")


async def _customer_with_history(runtime):
    ada = await make_customer(
        runtime, "Ada Lovelace", emails=["ada@example.com"], phones=["020 7946 0018"], fields={"dob": "1815-12-10"}
    )
    bob = await make_customer(runtime, "Bob")
    own_case = await make_case(runtime, [ada], "Ada's boiler at 12 Main St")
    shared_case = await make_case(runtime, [bob, ada], "Shared")
    await make_contact(
        runtime, customer_id=ada, case_id=own_case, text_body="I live at 12 Main St", from_address="ada@example.com"
    )
    bob_contact = await make_contact(runtime, customer_id=bob, case_id=shared_case, text_body="bob speaking")
    return ada, bob, own_case, shared_case, bob_contact


async def _everything(runtime) -> str:
    """Every audit event and every contact, as text to search for personal data."""
    events = await rows(runtime, "SELECT * FROM audit_events ORDER BY id")
    contacts = await rows(runtime, "SELECT * FROM contacts ORDER BY id")
    return json.dumps([events, contacts], default=str)


async def test_erase_anonymises_the_customer_and_keeps_case_statistics(gql, runtime):
    ada, bob, own_case, shared_case, bob_contact = await _customer_with_history(runtime)

    data = await gql(ERASE, {"input": {"customerId": gid("Customer", ada), "reason": "Art. 17 request"}})

    assert data["customerErase"] == {
        "customer": {"id": gid("Customer", ada), "name": None, "status": "ERASED"},
        "errors": [],
    }
    assert await scalar(runtime, "SELECT count(*) FROM customer_identifiers WHERE customer_id = :c", c=ada) == 0
    assert await rows(
        runtime,
        "SELECT channel, direction, case_id, text, html, from_address, headers, payload FROM contacts WHERE customer_id = :c",
        c=ada,
    ) == [("email", "inbound", own_case, None, None, None, {}, {})]
    assert await rows(runtime, "SELECT id, subject, status FROM cases ORDER BY id") == [
        (own_case, "[erased]", "new"),
        (shared_case, "Shared", "new"),
    ]
    assert await scalar(runtime, "SELECT text FROM contacts WHERE id = :c", c=bob_contact) == "bob speaking"
    everything = await _everything(runtime)
    for personal in PERSONAL:
        assert personal not in everything, personal
    assert "customer.erase" in everything


async def test_erase_needs_the_supervisor_role_and_changes_nothing_without_it(gql, runtime, agent_token):
    ada, *_ = await _customer_with_history(runtime)
    before = await snapshot(runtime)

    response = await gql.post(ERASE, {"input": {"customerId": gid("Customer", ada), "reason": "x"}}, token=agent_token)

    body = response.json()
    assert body["errors"] and body["data"] is None
    assert await snapshot(runtime) == before


async def test_erasing_twice_or_without_a_reason_is_refused(gql, runtime):
    ada, *_ = await _customer_with_history(runtime)
    no_reason = await gql(ERASE, {"input": {"customerId": gid("Customer", ada), "reason": " "}})
    assert [e["code"] for e in no_reason["customerErase"]["errors"]] == ["REQUIRED"]
    await gql(ERASE, {"input": {"customerId": gid("Customer", ada), "reason": "request"}})
    before = await snapshot(runtime)
    again = await gql(ERASE, {"input": {"customerId": gid("Customer", ada), "reason": "request"}})
    assert [e["code"] for e in again["customerErase"]["errors"]] == ["ERASED"]
    assert await snapshot(runtime) == before


async def test_export_returns_everything_stored_about_the_customer(gql, runtime, agent_token):
    ada, bob, own_case, shared_case, _ = await _customer_with_history(runtime)

    document = (await gql(EXPORT, {"id": gid("Customer", ada)}))["customerExport"]

    assert document["customer"]["name"] == "Ada Lovelace"
    assert document["customer"]["fields"] == {"dob": "1815-12-10"}
    assert sorted(i["value"] for i in document["identifiers"]) == ["+442079460018", "ada@example.com"]
    assert sorted((c["id"], c["is_primary"]) for c in document["cases"]) == [(own_case, True), (shared_case, False)]
    assert [c["text"] for c in document["contacts"]] == ["I live at 12 Main St"]
    assert [e["action"] for e in document["auditEvents"]] == ["customer.create"]
    forbidden = await gql.post(EXPORT, {"id": gid("Customer", ada)}, token=agent_token)
    assert forbidden.json()["errors"]


async def test_erase_leaves_no_personal_data_in_any_audit_event_or_contact(runtime):
    ada, bob, own_case, shared_case, bob_contact = await _customer_with_history(runtime)
    async with runtime.transaction() as session:
        await case_service.update_case(
            session, actor=AGENT, case_id=own_case, description="Ada Lovelace, 12 Main St", priority="high"
        )
    # Recognition could not choose between Ada and Bob for one contact, and chose Bob for another.
    unassigned = await make_contact(runtime, text_body="Ada here, 12 Main St", from_address="ada@example.com")
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE contacts SET candidate_customer_ids = :c, recognition = CAST(:r AS jsonb) WHERE id = ANY(:ids)"
            ),
            {"c": [ada, bob], "r": json.dumps({"matched": "email ada@example.com"}), "ids": [unassigned, bob_contact]},
        )
    assert "Main St" in await _everything(runtime)

    async with runtime.transaction() as session:
        await gdpr.erase_customer(session, actor=SUPERVISOR, customer_id=ada, reason="Art. 17 request")

    everything = await _everything(runtime)
    for personal in PERSONAL:
        assert personal not in everything, personal
    # Non-personal statistics stay in the case's trail; Bob's contact keeps its content, not Ada.
    assert await rows(
        runtime,
        "SELECT after->>'priority' FROM audit_events WHERE entity_type = 'case' "
        "AND entity_id = :c AND action = 'case.update'",
        c=own_case,
    ) == [("high",)]
    assert await rows(
        runtime, "SELECT text, candidate_customer_ids, recognition FROM contacts WHERE id = :c", c=bob_contact
    ) == [("bob speaking", [bob], None)]
    assert await rows(runtime, "SELECT text, candidate_customer_ids FROM contacts WHERE id = :c", c=unassigned) == [
        (None, [bob])
    ]


async def test_erase_locks_tombstones_and_customer_in_ascending_order(runtime):
    # A tombstone has a lower id than the customer it was merged into. Erasure must lock it first,
    # as every other locker does, or it deadlocks with one holding the tombstone and wanting the customer.
    tombstone = await make_customer(runtime, "Old profile")
    ada = await make_customer(runtime, "Ada")
    async with runtime.transaction() as session:
        await merge_service.merge_customers(session, actor=AGENT, survivor_id=ada, duplicate_ids=[tombstone])
    holding = asyncio.Event()
    release = asyncio.Event()

    async def ascending_locker() -> None:
        async with runtime.transaction() as session:
            await session.execute(text("SELECT id FROM customers WHERE id = :t FOR UPDATE"), {"t": tombstone})
            holding.set()
            await release.wait()
            await session.execute(text("SELECT id FROM customers WHERE id = :c FOR UPDATE"), {"c": ada})

    async def erase() -> None:
        await holding.wait()
        async with runtime.transaction() as session:
            await gdpr.erase_customer(session, actor=SUPERVISOR, customer_id=ada, reason="request")

    locker, eraser = asyncio.create_task(ascending_locker()), asyncio.create_task(erase())
    await holding.wait()
    await asyncio.sleep(0.3)  # the erasure is now waiting for a lock
    release.set()
    await asyncio.gather(locker, eraser)
    assert await rows(runtime, "SELECT id, status FROM customers ORDER BY id") == [
        (tombstone, "erased"),
        (ada, "erased"),
    ]


async def test_export_and_duplicates_of_an_unknown_customer_are_null(gql, runtime):
    unknown = gid("Customer", 999999)
    assert (await gql(EXPORT, {"id": unknown}))["customerExport"] is None
    assert (await gql("query($id: ID!) { customerDuplicates(customerId: $id) { score } }", {"id": unknown})) == {
        "customerDuplicates": None
    }
    assert (await gql(EXPORT, {"id": gid("Case", 1)}))["customerExport"] is None


async def test_a_contact_written_for_an_erased_customer_is_an_erased_user_error(runtime):
    ada = await make_customer(runtime, "Ada")
    async with runtime.transaction() as session:
        await gdpr.erase_customer(session, actor=SUPERVISOR, customer_id=ada, reason="request")
    try:
        async with runtime.transaction() as session:
            await contact_service.insert_contact(
                session,
                data=ContactData(channel="sms", direction="inbound", text="late"),
                customer_id=ada,
                case_id=None,
            )
        raise AssertionError("expected ERASED")
    except UserError as error:
        assert (error.code.value, error.field) == ("ERASED", "customerId")
    assert await scalar(runtime, "SELECT count(*) FROM contacts") == 0

"""GDPR: customerErase (supervisor/admin, irreversible, no personal data left or logged) and customerExport."""

from __future__ import annotations

import json

from app.errors import UserError
from app.services.maintenance import gdpr
from tests.test_maintenance_support import AGENT, gid, make_case, make_contact, make_customer, rows, scalar, snapshot

ERASE = """
mutation($input: CustomerEraseInput!) { customerErase(input: $input) { customer { id name status } errors { field code } } }
"""
EXPORT = "query($id: ID!) { customerExport(customerId: $id) }"


async def _customer_with_history(runtime):
    ada = await make_customer(runtime, "Ada Lovelace", emails=["ada@example.com"], phones=["020 7946 0018"], fields={"dob": "1815-12-10"})
    bob = await make_customer(runtime, "Bob")
    own_case = await make_case(runtime, [ada], "Ada's boiler at 12 Main St")
    shared_case = await make_case(runtime, [bob, ada], "Shared")
    await make_contact(runtime, customer_id=ada, case_id=own_case, text_body="I live at 12 Main St", from_address="ada@example.com")
    bob_contact = await make_contact(runtime, customer_id=bob, case_id=shared_case, text_body="bob speaking")
    return ada, bob, own_case, shared_case, bob_contact


async def test_erase_anonymises_the_customer_and_keeps_case_statistics(gql, runtime):
    ada, bob, own_case, shared_case, bob_contact = await _customer_with_history(runtime)

    data = await gql(ERASE, {"input": {"customerId": gid("Customer", ada), "reason": "Art. 17 request"}})

    assert data["customerErase"] == {"customer": {"id": gid("Customer", ada), "name": None, "status": "ERASED"}, "errors": []}
    assert await scalar(runtime, "SELECT count(*) FROM customer_identifiers WHERE customer_id = :c", c=ada) == 0
    assert await rows(
        runtime, "SELECT channel, direction, case_id, text, html, from_address, headers, payload FROM contacts WHERE customer_id = :c", c=ada
    ) == [("email", "inbound", own_case, None, None, None, {}, {})]
    assert await rows(runtime, "SELECT id, subject, status FROM cases ORDER BY id") == [
        (own_case, "[erased]", "new"), (shared_case, "Shared", "new"),
    ]
    assert await scalar(runtime, "SELECT text FROM contacts WHERE id = :c", c=bob_contact) == "bob speaking"
    trail = json.dumps(await rows(runtime, "SELECT action, before, after FROM audit_events WHERE entity_type = 'customer'"))
    for personal in ("Ada", "ada@example.com", "+442079460018", "1815", "Main St"):
        assert personal not in trail
    assert "customer.erase" in trail


async def test_erase_needs_the_supervisor_role_and_changes_nothing_without_it(gql, runtime, agent_token):
    ada, *_ = await _customer_with_history(runtime)
    before = await snapshot(runtime)

    response = await gql.post(ERASE, {"input": {"customerId": gid("Customer", ada), "reason": "x"}}, token=agent_token)

    body = response.json()
    assert body["errors"] and body["data"] is None
    assert await snapshot(runtime) == before
    try:
        async with runtime.transaction() as session:
            await gdpr.erase_customer(session, actor=AGENT, customer_id=ada, reason="x")
        raise AssertionError("expected FORBIDDEN")
    except UserError as error:
        assert error.code.value == "FORBIDDEN"
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

"""One function per invariant: every mutation gives the same answer about a merged or erased record,
and each status transition has one owner."""

from __future__ import annotations

from app.auth import SYSTEM
from app.services import archive
from app.services import customers as customer_service
from tests.support import gid, make_case, make_customer, snapshot

ERRORS = "errors { field code }"
CUSTOMER_UPDATE = f'mutation($id: ID!) {{ customerUpdate(input: {{id: $id, name: "X"}}) {{ {ERRORS} }} }}'
IDENTIFIER_ADD = (
    'mutation($id: ID!) { customerIdentifierAdd(input: {customerId: $id, kind: EMAIL, value: "x@example.com"}) '
    f"{{ {ERRORS} }} }}"
)
CASE_CREATE = f'mutation($id: ID!) {{ caseCreate(input: {{subject: "S", customerIds: [$id]}}) {{ {ERRORS} }} }}'
CONTACT_CREATE = f"mutation($id: ID!) {{ contactCreate(input: {{channel: PHONE, direction: INBOUND, customerId: $id}}) {{ {ERRORS} }} }}"
CASE_LINK = (
    f"mutation($case: ID!, $id: ID!) {{ caseCustomerLink(input: {{caseId: $case, customerId: $id}}) {{ {ERRORS} }} }}"
)
CUSTOMER_ARCHIVE = f"mutation($id: ID!) {{ customerArchive(input: {{customerId: $id}}) {{ {ERRORS} }} }}"
CASE_UPDATE = (
    f"mutation($id: ID!, $status: CaseStatus!) {{ caseUpdate(input: {{id: $id, status: $status}}) {{ {ERRORS} }} }}"
)
CASE_CLOSE = f'mutation($id: ID!) {{ caseClose(input: {{caseId: $id, reasonCode: "completed"}}) {{ case {{ status closedAt }} {ERRORS} }} }}'
CASE_REOPEN = f"mutation($id: ID!) {{ caseReopen(input: {{caseId: $id}}) {{ case {{ status closedAt }} {ERRORS} }} }}"


async def _codes(gql, customer: int, case: int) -> list[str]:
    """The error code each customer-taking mutation answers for `customer`."""
    variables = {"id": gid("Customer", customer), "case": gid("Case", case)}
    codes = []
    for document, name in (
        (CUSTOMER_UPDATE, "customerUpdate"),
        (IDENTIFIER_ADD, "customerIdentifierAdd"),
        (CASE_CREATE, "caseCreate"),
        (CONTACT_CREATE, "contactCreate"),
        (CASE_LINK, "caseCustomerLink"),
        (CUSTOMER_ARCHIVE, "customerArchive"),
    ):
        data = await gql(document, {k: v for k, v in variables.items() if f"${k}" in document})
        codes.append(data[name]["errors"][0]["code"] if data[name]["errors"] else "OK")
    return codes


async def test_a_merged_or_erased_customer_gets_the_same_answer_from_every_mutation(gql, runtime):
    survivor = await make_customer(runtime, "Ada")
    merged = await make_customer(runtime, "Ada L.")
    erased = await make_customer(runtime, "Bob")
    other_case = await make_case(runtime, [survivor])
    async with runtime.transaction() as session:
        await customer_service.merge_customers(session, actor=SYSTEM, survivor_id=survivor, duplicate_ids=[merged])
        await archive.erase_customer(session, actor=SYSTEM, customer_id=erased, reason="request")
    before = await snapshot(runtime)

    assert await _codes(gql, merged, other_case) == ["MERGED"] * 6
    assert await _codes(gql, erased, other_case) == ["ERASED"] * 6
    assert await _codes(gql, 999_999, other_case) == ["NOT_FOUND"] * 6
    assert await snapshot(runtime) == before


async def test_case_update_neither_closes_nor_reopens(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    case = gid("Case", await make_case(runtime, [ada]))

    closing = await gql(CASE_UPDATE, {"id": case, "status": "CLOSED"})
    assert closing["caseUpdate"]["errors"] == [{"field": "status", "code": "WRONG_STATUS"}]
    closed = await gql(CASE_CLOSE, {"id": case})
    assert closed["caseClose"]["case"]["status"] == "CLOSED" and closed["caseClose"]["case"]["closedAt"]

    reopening = await gql(CASE_UPDATE, {"id": case, "status": "OPEN"})
    assert reopening["caseUpdate"]["errors"] == [{"field": "status", "code": "WRONG_STATUS"}]
    reopened = await gql(CASE_REOPEN, {"id": case})
    assert reopened["caseReopen"]["case"] == {"status": "OPEN", "closedAt": None}

    resolved = await gql(CASE_UPDATE, {"id": case, "status": "RESOLVED"})
    assert resolved["caseUpdate"]["errors"] == []
    back = await gql(CASE_UPDATE, {"id": case, "status": "PENDING"})
    assert back["caseUpdate"]["errors"] == [{"field": "status", "code": "WRONG_STATUS"}]

"""Fixing contacts and cases by hand: associate, move, split, close/reopen, move between customers, link, merge, archive."""

from __future__ import annotations

from tests.conftest import last_event_id, published_channels
from tests.support import gid, make_case, make_contact, make_customer, rows, scalar, snapshot

ASSOCIATE = """
mutation($input: ContactAssociateInput!) {
  contactAssociate(input: $input) { contact { id customer { id } case { id } } errors { field code message } }
}
"""
MOVE_CONTACTS = """
mutation($input: ContactMoveInput!) {
  contactMove(input: $input) { contacts { id case { id } customer { id } } errors { field code message } }
}
"""
SPLIT = """
mutation($input: CaseCreateFromContactInput!) {
  caseCreateFromContact(input: $input) {
    case { id subject primaryCustomer { id } } contact { id case { id } } errors { field code message }
  }
}
"""
CLOSE = """
mutation($input: CaseCloseInput!) { caseClose(input: $input) { case { status reasonCode closedAt } errors { field code } } }
"""
REOPEN = """
mutation($input: CaseReopenInput!) { caseReopen(input: $input) { case { status reasonCode closedAt } errors { field code } } }
"""
CASE_MOVE = """
mutation($input: CaseMoveInput!) {
  caseMove(input: $input) { case { customers { id } primaryCustomer { id } } errors { field code } }
}
"""
LINK = """
mutation($input: CaseCustomerLinkInput!) {
  caseCustomerLink(input: $input) { case { customers { id } primaryCustomer { id } } errors { field code } }
}
"""
UNLINK = """
mutation($input: CaseCustomerUnlinkInput!) {
  caseCustomerUnlink(input: $input) { case { customers { id } primaryCustomer { id } } errors { field code } }
}
"""
CASE_MERGE = """
mutation($input: CaseMergeInput!) {
  caseMerge(input: $input) {
    case { id customers { id } contacts(first: 10) { edges { node { id } } } }
    source { id status mergedInto { id } }
    errors { field code message }
  }
}
"""
BY_REFERENCE = "query($r: String!) { caseByReference(reference: $r) { id } }"
CASE_ARCHIVE = (
    "mutation($input: CaseArchiveInput!) { caseArchive(input: $input) { case { id archivedAt } errors { code } } }"
)
CASE_RESTORE = (
    "mutation($input: CaseArchiveInput!) { caseRestore(input: $input) { case { id archivedAt } errors { code } } }"
)
CASES = "{ cases(first: 50) { edges { node { id } } } }"
CASE_BY_ID = "query($id: ID!) { case(id: $id) { id archivedAt } }"


async def test_associate_links_a_contact_and_joins_its_customer_to_the_case(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    bob = await make_customer(runtime, "Bob")
    case = await make_case(runtime, [bob])
    contact = await make_contact(runtime, text_body="loose")

    data = await gql(
        ASSOCIATE,
        {
            "input": {
                "contactId": gid("Contact", contact),
                "customerId": gid("Customer", ada),
                "caseId": gid("Case", case),
            }
        },
    )

    assert data["contactAssociate"]["errors"] == []
    assert data["contactAssociate"]["contact"]["customer"]["id"] == gid("Customer", ada)
    assert data["contactAssociate"]["contact"]["case"]["id"] == gid("Case", case)
    assert await rows(
        runtime, "SELECT customer_id, is_primary FROM case_customers WHERE case_id = :c ORDER BY customer_id", c=case
    ) == [(ada, False), (bob, True)]


async def test_associate_refuses_when_the_role_may_not_link_the_customer(gql, runtime):
    # Integrators log contacts but do not decide which customers a case concerns: the
    # mutation's permission refuses them before anything runs.
    from app.services.auth import create_token

    ada = await make_customer(runtime, "Ada")
    bob = await make_customer(runtime, "Bob")
    case = await make_case(runtime, [bob])
    contact = await make_contact(runtime, customer_id=ada)
    async with runtime.transaction() as session:
        integrator = await create_token(session, name="crm", role="integrator")
    before = await snapshot(runtime)
    response = await gql.post(
        ASSOCIATE, {"input": {"contactId": gid("Contact", contact), "caseId": gid("Case", case)}}, token=integrator
    )
    body = response.json()
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await snapshot(runtime) == before


async def test_moving_a_contact_to_a_case_of_an_unrelated_customer_is_refused_and_changes_nothing(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    bob = await make_customer(runtime, "Bob")
    ada_case = await make_case(runtime, [ada])
    bob_case = await make_case(runtime, [bob])
    contact = await make_contact(runtime, customer_id=ada, case_id=ada_case)
    before = await snapshot(runtime)

    data = await gql(
        MOVE_CONTACTS, {"input": {"contactIds": [gid("Contact", contact)], "toCaseId": gid("Case", bob_case)}}
    )

    assert [(e["code"], e["field"]) for e in data["contactMove"]["errors"]] == [
        ("CUSTOMER_NOT_ON_CASE", "contactIds.0")
    ]
    assert await snapshot(runtime) == before


async def test_contacts_move_to_another_case_of_their_customer(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    first = await make_case(runtime, [ada])
    second = await make_case(runtime, [ada])
    contacts = [await make_contact(runtime, customer_id=ada, case_id=first, text_body=str(i)) for i in range(2)]

    data = await gql(
        MOVE_CONTACTS, {"input": {"contactIds": [gid("Contact", c) for c in contacts], "toCaseId": gid("Case", second)}}
    )

    assert [c["case"]["id"] for c in data["contactMove"]["contacts"]] == [gid("Case", second)] * 2
    assert await scalar(runtime, "SELECT count(*) FROM contacts WHERE case_id = :c", c=second) == 2


async def test_split_a_contact_into_a_new_case(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    case = await make_case(runtime, [ada])
    contact = await make_contact(runtime, customer_id=ada, case_id=case)

    data = await gql(SPLIT, {"input": {"contactId": gid("Contact", contact), "subject": "A different problem"}})

    payload = data["caseCreateFromContact"]
    assert payload["errors"] == []
    assert payload["case"]["subject"] == "A different problem"
    assert payload["case"]["primaryCustomer"]["id"] == gid("Customer", ada)
    assert payload["contact"]["case"]["id"] == payload["case"]["id"]


async def test_close_with_reason_then_reopen(gql, runtime):
    case = await make_case(runtime, [await make_customer(runtime, "Ada")])
    await gql(
        'mutation { reasonCodeCreate(input: {code: "solved-by-phone", description: "Solved by phone", '
        "category: CLOSED}) { errors { code } } }"
    )
    closed = await gql(CLOSE, {"input": {"caseId": gid("Case", case), "reasonCode": "solved-by-phone"}})
    assert closed["caseClose"]["case"]["status"] == "CLOSED"
    assert closed["caseClose"]["case"]["reasonCode"] == "solved-by-phone"
    again = await gql(CLOSE, {"input": {"caseId": gid("Case", case), "reasonCode": "x"}})
    assert [e["code"] for e in again["caseClose"]["errors"]] == ["WRONG_STATUS"]
    blank = await gql(CLOSE, {"input": {"caseId": gid("Case", case), "reasonCode": " "}})
    assert [e["code"] for e in blank["caseClose"]["errors"]] == ["REQUIRED"]

    reopened = await gql(REOPEN, {"input": {"caseId": gid("Case", case)}})
    assert reopened["caseReopen"]["case"] == {"status": "OPEN", "reasonCode": None, "closedAt": None}
    twice = await gql(REOPEN, {"input": {"caseId": gid("Case", case)}})
    assert [e["code"] for e in twice["caseReopen"]["errors"]] == ["WRONG_STATUS"]


async def test_case_move_carries_the_primary_role_and_the_customers_contacts(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    bob = await make_customer(runtime, "Bob")
    carl = await make_customer(runtime, "Carl")
    case = await make_case(runtime, [ada, carl])
    ada_contact = await make_contact(runtime, customer_id=ada, case_id=case)
    carl_contact = await make_contact(runtime, customer_id=carl, case_id=case)

    data = await gql(
        CASE_MOVE,
        {
            "input": {
                "caseId": gid("Case", case),
                "fromCustomerId": gid("Customer", ada),
                "toCustomerId": gid("Customer", bob),
            }
        },
    )

    assert data["caseMove"]["case"]["primaryCustomer"]["id"] == gid("Customer", bob)
    assert await scalar(runtime, "SELECT customer_id FROM contacts WHERE id = :c", c=ada_contact) == bob
    assert await scalar(runtime, "SELECT customer_id FROM contacts WHERE id = :c", c=carl_contact) == carl
    unrelated = await gql(
        CASE_MOVE,
        {
            "input": {
                "caseId": gid("Case", case),
                "fromCustomerId": gid("Customer", ada),
                "toCustomerId": gid("Customer", bob),
            }
        },
    )
    assert [e["code"] for e in unrelated["caseMove"]["errors"]] == ["CUSTOMER_NOT_ON_CASE"]


async def test_link_unlink_and_a_case_always_keeps_a_primary(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    bob = await make_customer(runtime, "Bob")
    case = await make_case(runtime, [ada])
    ids = {"caseId": gid("Case", case)}

    linked = await gql(LINK, {"input": {**ids, "customerId": gid("Customer", bob)}})
    assert len(linked["caseCustomerLink"]["case"]["customers"]) == 2
    duplicate = await gql(LINK, {"input": {**ids, "customerId": gid("Customer", bob)}})
    assert [e["code"] for e in duplicate["caseCustomerLink"]["errors"]] == ["DUPLICATE"]
    before = await snapshot(runtime)
    refused = await gql(UNLINK, {"input": {**ids, "customerId": gid("Customer", ada)}})
    assert [e["code"] for e in refused["caseCustomerUnlink"]["errors"]] == ["PRIMARY_REQUIRED"]
    assert await snapshot(runtime) == before

    promoted = await gql(LINK, {"input": {**ids, "customerId": gid("Customer", bob), "primary": True}})
    assert promoted["caseCustomerLink"]["case"]["primaryCustomer"]["id"] == gid("Customer", bob)
    unlinked = await gql(UNLINK, {"input": {**ids, "customerId": gid("Customer", ada)}})
    assert unlinked["caseCustomerUnlink"]["case"]["customers"] == [{"id": gid("Customer", bob)}]


async def test_case_merge_moves_contacts_and_the_reference_resolves_to_the_target(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    bob = await make_customer(runtime, "Bob")
    source = await make_case(runtime, [ada])
    target = await make_case(runtime, [bob])
    contact = await make_contact(runtime, customer_id=ada, case_id=source)

    data = await gql(CASE_MERGE, {"input": {"sourceCaseId": gid("Case", source), "targetCaseId": gid("Case", target)}})

    payload = data["caseMerge"]
    assert payload["errors"] == []
    assert payload["source"]["mergedInto"]["id"] == gid("Case", target)
    assert {c["id"] for c in payload["case"]["customers"]} == {gid("Customer", ada), gid("Customer", bob)}
    assert payload["case"]["contacts"]["edges"] == [{"node": {"id": gid("Contact", contact)}}]
    reference = await scalar(runtime, "SELECT reference FROM cases WHERE id = :c", c=source)
    assert (await gql(BY_REFERENCE, {"r": reference}))["caseByReference"]["id"] == gid("Case", target)
    late = await make_contact(runtime, customer_id=bob, case_id=target)
    assert await scalar(runtime, "SELECT case_id FROM contacts WHERE id = :c", c=late) == target


async def test_bad_case_merges_have_their_own_codes_and_change_nothing(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    parent = await make_case(runtime, [ada])
    child = await make_case(runtime, [ada], parent_id=parent)
    grandchild = await make_case(runtime, [ada], parent_id=child)
    other = await make_case(runtime, [ada])
    merged = await make_case(runtime, [ada])
    await gql(CASE_MERGE, {"input": {"sourceCaseId": gid("Case", merged), "targetCaseId": gid("Case", other)}})
    before = await snapshot(runtime)
    for code, source, target in [
        ("CIRCULAR", parent, grandchild),
        ("CIRCULAR", parent, child),
        ("SELF_MERGE", parent, parent),
        ("MERGED", merged, parent),
        ("MERGED", parent, merged),
    ]:
        result = await gql(
            CASE_MERGE, {"input": {"sourceCaseId": gid("Case", source), "targetCaseId": gid("Case", target)}}
        )
        assert [e["code"] for e in result["caseMerge"]["errors"]] == [code], (code, source, target)
    assert await snapshot(runtime) == before


async def test_merging_a_child_into_its_parent_reparents_the_grandchildren(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    parent = await make_case(runtime, [ada])
    child = await make_case(runtime, [ada], parent_id=parent)
    grandchild = await make_case(runtime, [ada], parent_id=child)
    result = await gql(CASE_MERGE, {"input": {"sourceCaseId": gid("Case", child), "targetCaseId": gid("Case", parent)}})
    assert result["caseMerge"]["errors"] == []
    assert await scalar(runtime, "SELECT parent_id FROM cases WHERE id = :c", c=grandchild) == parent


async def test_archived_cases_leave_listings_but_stay_readable(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    case = await make_case(runtime, [ada])
    archived = await gql(CASE_ARCHIVE, {"input": {"caseId": gid("Case", case)}})
    assert archived["caseArchive"]["case"]["archivedAt"] is not None
    assert (await gql(CASES))["cases"]["edges"] == []
    assert (await gql(CASE_BY_ID, {"id": gid("Case", case)}))["case"]["id"] == gid("Case", case)
    twice = await gql(CASE_ARCHIVE, {"input": {"caseId": gid("Case", case)}})
    assert [e["code"] for e in twice["caseArchive"]["errors"]] == ["WRONG_STATUS"]
    restored = await gql(CASE_RESTORE, {"input": {"caseId": gid("Case", case)}})
    assert restored["caseRestore"]["case"]["archivedAt"] is None
    assert len((await gql(CASES))["cases"]["edges"]) == 1


async def test_audit_events_page_through_a_cases_history(gql, runtime):
    case = await make_case(runtime, [await make_customer(runtime, "Ada")])
    await gql(CLOSE, {"input": {"caseId": gid("Case", case), "reasonCode": "completed"}})
    await gql(REOPEN, {"input": {"caseId": gid("Case", case)}})
    query = """query($id: ID!, $after: String) { auditEvents(entityId: $id, first: 2, after: $after) {
      edges { node { action actorName entityId } } pageInfo { hasNextPage endCursor } } }"""
    first = (await gql(query, {"id": gid("Case", case)}))["auditEvents"]
    assert [e["node"]["action"] for e in first["edges"]] == ["case.reopen", "case.close"]
    assert first["edges"][0]["node"]["actorName"] == "admin"
    assert first["edges"][0]["node"]["entityId"] == gid("Case", case)
    rest = (await gql(query, {"id": gid("Case", case), "after": first["pageInfo"]["endCursor"]}))["auditEvents"]
    assert [e["node"]["action"] for e in rest["edges"]] == ["case.create"]
    assert rest["pageInfo"]["hasNextPage"] is False


async def test_concurrent_link_swaps_and_unlinks_always_leave_exactly_one_primary(runtime):
    import asyncio

    from app.errors import UserError
    from app.services import cases as case_service
    from tests.support import AGENT

    customers = [await make_customer(runtime, f"C{i}") for i in range(4)]
    case_ids = [await make_case(runtime, customers) for _ in range(3)]

    async def attempt(work) -> None:
        try:
            async with runtime.transaction() as session:
                await work(session)
        except UserError:
            pass  # refused (e.g. unlinking whoever is primary at that moment): nothing changed

    work = []
    for i in range(24):
        case_id, customer_id = case_ids[i % 3], customers[i % 4]
        if i % 3 == 0:
            work.append(
                lambda s, c=case_id, u=customer_id: case_service.unlink_customer(
                    s, actor=AGENT, case_id=c, customer_id=u
                )
            )
        else:
            work.append(
                lambda s, c=case_id, u=customer_id: case_service.link_customer(
                    s, actor=AGENT, case_id=c, customer_id=u, primary=True
                )
            )
    await asyncio.gather(*(attempt(w) for w in work))

    assert await rows(
        runtime,
        "SELECT case_id, count(*) FILTER (WHERE is_primary) FROM case_customers GROUP BY case_id ORDER BY case_id",
    ) == [(c, 1) for c in case_ids]


async def test_case_move_publishes_updates_for_the_case_and_both_customers(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    bob = await make_customer(runtime, "Bob")
    case = await make_case(runtime, [ada])
    mark = await last_event_id(runtime)
    await gql(
        CASE_MOVE,
        {
            "input": {
                "caseId": gid("Case", case),
                "fromCustomerId": gid("Customer", ada),
                "toCustomerId": gid("Customer", bob),
            }
        },
    )
    seen = set(await published_channels(runtime, mark))
    assert seen == {
        f"casegraph:events:caseUpdated:{case}",
        f"casegraph:events:customerUpdated:{ada}",
        f"casegraph:events:customerUpdated:{bob}",
    }


async def test_a_case_merge_and_a_contact_move_carry_an_erased_customers_links(gql, runtime):
    # Erasure keeps an erased customer's case links (non-personal statistics); a merge carries them.
    from app.services import archive as gdpr
    from tests.support import SUPERVISOR

    ada = await make_customer(runtime, "Ada")
    bob = await make_customer(runtime, "Bob")
    source = await make_case(runtime, [bob, ada])
    target = await make_case(runtime, [bob])
    other = await make_case(runtime, [bob, ada])
    contact = await make_contact(runtime, customer_id=ada, case_id=other)
    async with runtime.transaction() as session:
        await gdpr.erase_customer(session, actor=SUPERVISOR, customer_id=ada, reason="request")

    merged = await gql(
        CASE_MERGE, {"input": {"sourceCaseId": gid("Case", source), "targetCaseId": gid("Case", target)}}
    )
    moved = await gql(
        MOVE_CONTACTS, {"input": {"contactIds": [gid("Contact", contact)], "toCaseId": gid("Case", target)}}
    )

    assert merged["caseMerge"]["errors"] == []
    assert await rows(
        runtime, "SELECT customer_id, is_primary FROM case_customers WHERE case_id = :c ORDER BY customer_id", c=target
    ) == [(ada, False), (bob, True)]
    # The erased customer's contact may join the target too, staying theirs.
    assert moved["contactMove"]["errors"] == []
    assert await rows(runtime, "SELECT customer_id, case_id FROM contacts WHERE id = :c", c=contact) == [(ada, target)]


async def test_re_assigning_a_contact_to_a_customer_not_on_its_case_takes_it_off_the_case(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    bob = await make_customer(runtime, "Bob")
    ada_case = await make_case(runtime, [ada])
    contact = await make_contact(runtime, customer_id=ada, case_id=ada_case)

    data = await gql(ASSOCIATE, {"input": {"contactId": gid("Contact", contact), "customerId": gid("Customer", bob)}})

    assert data["contactAssociate"]["errors"] == []
    assert data["contactAssociate"]["contact"]["customer"]["id"] == gid("Customer", bob)
    assert data["contactAssociate"]["contact"]["case"] is None
    assert await rows(runtime, "SELECT customer_id FROM case_customers WHERE case_id = :c", c=ada_case) == [(ada,)]
    assert await rows(runtime, "SELECT before, after FROM audit_events WHERE action = 'contact.associate'") == [
        (
            {"customerId": ada, "caseId": ada_case},
            {"customerId": bob, "caseId": None, "linkedCustomerToCase": False, "detachedFromCaseId": ada_case},
        )
    ]


async def test_re_assigning_a_contact_to_another_customer_on_its_case_keeps_the_case(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    bob = await make_customer(runtime, "Bob")
    shared = await make_case(runtime, [ada, bob])
    contact = await make_contact(runtime, customer_id=ada, case_id=shared)

    data = await gql(ASSOCIATE, {"input": {"contactId": gid("Contact", contact), "customerId": gid("Customer", bob)}})

    assert data["contactAssociate"]["contact"]["case"]["id"] == gid("Case", shared)
    assert await rows(runtime, "SELECT customer_id, case_id FROM contacts WHERE id = :c", c=contact) == [(bob, shared)]

"""customerMerge, customerMergeUndo, customerDuplicates — and merges racing ingests."""

from __future__ import annotations

import asyncio

from app.auth import SYSTEM
from app.contact_data import ContactData
from app.errors import UserError
from app.services import cases as case_service
from app.services import contacts as contact_service
from app.services import customers as merge_service
from tests.conftest import last_event_id, published_channels
from tests.support import (
    AGENT,
    gid,
    make_case,
    make_contact,
    make_customer,
    rows,
    scalar,
    snapshot,
)

MERGE = """
mutation($input: CustomerMergeInput!) {
  customerMerge(input: $input) {
    merge { id fieldStrategy moved undoneAt survivor { id } duplicates { id status } }
    survivor { id name fields identifiers { kind value } }
    errors { field code message }
  }
}
"""
UNDO = """
mutation($input: CustomerMergeUndoInput!) {
  customerMergeUndo(input: $input) {
    merge { id undoneAt undoneBy }
    survivor { id name }
    errors { field code message }
  }
}
"""
BY_NUMBER = "query($n: String!) { customerByNumber(number: $n) { id number } }"
BY_ID = "query($id: ID!) { customer(id: $id) { id } node(id: $id) { ... on Customer { id status mergedInto { id } } } }"
DUPLICATES = """
query($id: ID!) { customerDuplicates(customerId: $id) { score reasons customer { id name } } }
"""
AUDIT = """
query($id: ID!) { auditEvents(entityId: $id, first: 10) { edges { node { action actorName entityId after } } } }
"""


async def _graph(runtime):
    """A survivor and a duplicate sharing an email and one case, each with cases and contacts of their own."""
    survivor = await make_customer(runtime, "Ada Lovelace", emails=["ada@example.com"], fields={"tier": "gold"})
    duplicate = await make_customer(
        runtime,
        "Ada King",
        emails=["ada@example.com", "ada.king@example.com"],
        phones=["020 7946 0018"],
        fields={"tier": "silver", "city": "London"},
    )
    own_case = await make_case(runtime, [duplicate], "Duplicate's case")
    shared_case = await make_case(runtime, [duplicate, survivor], "Shared case")
    survivor_case = await make_case(runtime, [survivor], "Survivor's case")
    contacts = [
        await make_contact(runtime, customer_id=duplicate, case_id=own_case, text_body="d1"),
        await make_contact(runtime, customer_id=duplicate, case_id=shared_case, text_body="d2"),
        await make_contact(runtime, customer_id=duplicate, text_body="d3"),
        await make_contact(runtime, customer_id=survivor, case_id=survivor_case, text_body="s1"),
    ]
    return survivor, duplicate, own_case, shared_case, survivor_case, contacts


async def test_merge_moves_everything_to_the_survivor_and_tombstones_resolve(gql, runtime):
    survivor, duplicate, own_case, shared_case, _, contacts = await _graph(runtime)

    data = await gql(
        MERGE,
        {
            "input": {
                "survivorId": gid("Customer", survivor),
                "duplicateIds": [gid("Customer", duplicate)],
                "fieldStrategy": "FILL_EMPTY",
            }
        },
    )

    payload = data["customerMerge"]
    assert payload["errors"] == []
    assert payload["merge"]["duplicates"] == [{"id": gid("Customer", duplicate), "status": "MERGED"}]
    assert payload["survivor"]["fields"] == {"tier": "gold", "city": "London"}
    assert payload["survivor"]["name"] == "Ada Lovelace"
    assert sorted((i["kind"], i["value"]) for i in payload["survivor"]["identifiers"]) == [
        ("EMAIL", "ada.king@example.com"),
        ("EMAIL", "ada@example.com"),
        ("PHONE", "+442079460018"),
    ]
    assert await scalar(runtime, "SELECT count(*) FROM contacts WHERE customer_id = :d", d=duplicate) == 0
    assert await scalar(runtime, "SELECT count(*) FROM contacts WHERE customer_id = :s", s=survivor) == 4
    assert await rows(
        runtime, "SELECT case_id, customer_id, is_primary FROM case_customers ORDER BY case_id, customer_id"
    ) == [
        (own_case, survivor, True),
        (shared_case, survivor, True),
        (3, survivor, True),
    ]
    # The duplicate's number and id resolve to the survivor; node(id) still shows the tombstone.
    number = await scalar(runtime, "SELECT number FROM customers WHERE id = :d", d=duplicate)
    assert (await gql(BY_NUMBER, {"n": number}))["customerByNumber"]["id"] == gid("Customer", survivor)
    by_id = await gql(BY_ID, {"id": gid("Customer", duplicate)})
    assert by_id["customer"]["id"] == gid("Customer", survivor)
    assert by_id["node"] == {
        "id": gid("Customer", duplicate),
        "status": "MERGED",
        "mergedInto": {"id": gid("Customer", survivor)},
    }
    events = (await gql(AUDIT, {"id": gid("Customer", survivor)}))["auditEvents"]["edges"]
    assert events[0]["node"]["action"] == "customer.merge"
    assert events[0]["node"]["actorName"] == "admin"


async def test_merge_publishes_an_update_for_every_record_touched(gql, runtime):
    survivor, duplicate, own_case, shared_case, _, _ = await _graph(runtime)
    mark = await last_event_id(runtime)

    await gql(MERGE, {"input": {"survivorId": gid("Customer", survivor), "duplicateIds": [gid("Customer", duplicate)]}})

    seen = set(await published_channels(runtime, mark))
    assert {
        f"casegraph:events:customerUpdated:{survivor}",
        f"casegraph:events:customerUpdated:{duplicate}",
        f"casegraph:events:caseUpdated:{own_case}",
        f"casegraph:events:caseUpdated:{shared_case}",
    } <= seen


async def test_undo_restores_exactly_what_moved(gql, runtime):
    survivor, duplicate, *_ = await _graph(runtime)
    before = await snapshot(runtime)
    merged = await gql(
        MERGE,
        {
            "input": {
                "survivorId": gid("Customer", survivor),
                "duplicateIds": [gid("Customer", duplicate)],
                "fieldStrategy": "FILL_EMPTY",
            }
        },
    )
    merge_id = merged["customerMerge"]["merge"]["id"]

    undone = await gql(UNDO, {"input": {"mergeId": merge_id}})

    assert undone["customerMergeUndo"]["errors"] == []
    assert undone["customerMergeUndo"]["merge"]["undoneBy"] == "admin"
    after = await snapshot(runtime)
    for table in ("customers", "identifiers", "cases", "links", "contacts"):
        assert after[table] == before[table], table


async def test_undoing_twice_is_refused_and_changes_nothing(gql, runtime):
    survivor, duplicate, *_ = await _graph(runtime)
    merged = await gql(
        MERGE, {"input": {"survivorId": gid("Customer", survivor), "duplicateIds": [gid("Customer", duplicate)]}}
    )
    merge_id = merged["customerMerge"]["merge"]["id"]
    await gql(UNDO, {"input": {"mergeId": merge_id}})
    before = await snapshot(runtime)

    again = await gql(UNDO, {"input": {"mergeId": merge_id}})

    assert [e["code"] for e in again["customerMergeUndo"]["errors"]] == ["ALREADY_UNDONE"]
    assert await snapshot(runtime) == before


async def test_undo_after_a_conflicting_change_lists_the_conflict_and_changes_nothing(gql, runtime):
    survivor, duplicate, own_case, _, survivor_case, contacts = await _graph(runtime)
    merged = await gql(
        MERGE, {"input": {"survivorId": gid("Customer", survivor), "duplicateIds": [gid("Customer", duplicate)]}}
    )
    other = await make_customer(runtime, "Someone Else")
    # A moved contact now belongs to another customer: undoing would take it from them.
    async with runtime.transaction() as session:
        await case_service.move_case(
            session, actor=AGENT, case_id=own_case, from_customer_id=survivor, to_customer_id=other
        )
    before = await snapshot(runtime)

    result = await gql(UNDO, {"input": {"mergeId": merged["customerMerge"]["merge"]["id"]}})

    errors = result["customerMergeUndo"]["errors"]
    assert [e["code"] for e in errors] == ["CONFLICT"]
    assert f"1 contacts moved since (ids {contacts[0]})" in errors[0]["message"]
    assert "case links changed since" in errors[0]["message"]
    assert await snapshot(runtime) == before


async def test_bad_merges_have_their_own_codes_and_change_nothing(gql, runtime):
    survivor, duplicate, *_ = await _graph(runtime)
    third = await make_customer(runtime, "Third")
    merged_away = await make_customer(runtime, "Merged Away")
    await gql(MERGE, {"input": {"survivorId": gid("Customer", third), "duplicateIds": [gid("Customer", merged_away)]}})
    erased = await make_customer(runtime, "Erased")
    await gql(
        "mutation($i: CustomerEraseInput!) { customerErase(input: $i) { errors { code } } }",
        {"i": {"customerId": gid("Customer", erased), "reason": "request"}},
    )
    before = await snapshot(runtime)
    cases = {
        "SELF_MERGE": (survivor, [survivor]),
        "MERGED": (merged_away, [duplicate]),
        "ERASED": (erased, [duplicate]),
        "NOT_FOUND": (survivor, [999999]),
        "REQUIRED": (survivor, []),
    }
    for code, (into, dups) in cases.items():
        result = await gql(
            MERGE, {"input": {"survivorId": gid("Customer", into), "duplicateIds": [gid("Customer", d) for d in dups]}}
        )
        assert [e["code"] for e in result["customerMerge"]["errors"]] == [code], code
    bad_pick = await gql(
        MERGE,
        {
            "input": {
                "survivorId": gid("Customer", survivor),
                "duplicateIds": [gid("Customer", duplicate)],
                "fieldPicks": [{"field": "fields.nope", "customerId": gid("Customer", duplicate)}],
            }
        },
    )
    assert bad_pick["customerMerge"]["errors"][0]["field"] == "fieldPicks.0.field"
    assert await snapshot(runtime) == before


async def test_field_picks_choose_values_per_field(gql, runtime):
    survivor, duplicate, *_ = await _graph(runtime)
    data = await gql(
        MERGE,
        {
            "input": {
                "survivorId": gid("Customer", survivor),
                "duplicateIds": [gid("Customer", duplicate)],
                "fieldStrategy": "SURVIVOR_WINS",
                "fieldPicks": [
                    {"field": "name", "customerId": gid("Customer", duplicate)},
                    {"field": "fields.tier", "customerId": gid("Customer", duplicate)},
                ],
            }
        },
    )
    survivor_out = data["customerMerge"]["survivor"]
    assert survivor_out["name"] == "Ada King"
    assert survivor_out["fields"] == {"tier": "silver"}
    assert data["customerMerge"]["merge"]["fieldStrategy"] == "PICKS"


async def test_merging_two_duplicates_sharing_a_case_keeps_one_primary_link(runtime):
    survivor = await make_customer(runtime, "S")
    first = await make_customer(runtime, "D1", emails=["same@example.com"])
    second = await make_customer(runtime, "D2", emails=["same@example.com"])
    case = await make_case(runtime, [second, first])
    async with runtime.transaction() as session:
        merge = await merge_service.merge_customers(
            session, actor=AGENT, survivor_id=survivor, duplicate_ids=[first, second]
        )
    assert await rows(runtime, "SELECT customer_id, is_primary FROM case_customers WHERE case_id = :c", c=case) == [
        (survivor, True)
    ]
    assert await rows(runtime, "SELECT customer_id, kind, value FROM customer_identifiers") == [
        (survivor, "email", "same@example.com")
    ]
    async with runtime.transaction() as session:
        await merge_service.undo_merge(session, actor=AGENT, merge_id=merge.id)
    assert await rows(
        runtime, "SELECT customer_id, is_primary FROM case_customers WHERE case_id = :c ORDER BY customer_id", c=case
    ) == [(first, False), (second, True)]
    assert await rows(runtime, "SELECT customer_id FROM customer_identifiers ORDER BY customer_id") == [
        (first,),
        (second,),
    ]


async def test_duplicates_rank_shared_identifiers_and_similar_names(gql, runtime):
    ada = await make_customer(runtime, "Ada Lovelace", emails=["ada@example.com"], phones=["020 7946 0018"])
    same_email = await make_customer(runtime, "A. King", emails=["ada@example.com"])
    both = await make_customer(runtime, "Ada Lovelace", phones=["020 7946 0018"])
    similar = await make_customer(runtime, "Ada Lovelase")
    await make_customer(runtime, "Bob Builder")

    found = (await gql(DUPLICATES, {"id": gid("Customer", ada)}))["customerDuplicates"]

    ids = [c["customer"]["id"] for c in found]
    assert ids == [gid("Customer", both), gid("Customer", same_email), gid("Customer", similar)]
    assert found[0]["reasons"] == ["shares phone +442079460018", "similar name (1.00)"]
    assert found[1]["reasons"] == ["shares email ada@example.com"]
    assert found[2]["reasons"][0].startswith("similar name")
    assert 0 < found[2]["score"] < found[1]["score"] < found[0]["score"] <= 1


async def test_a_contact_written_for_a_merged_customer_lands_on_the_survivor(runtime):
    survivor = await make_customer(runtime, "S")
    duplicate = await make_customer(runtime, "D")
    async with runtime.transaction() as session:
        await merge_service.merge_customers(session, actor=AGENT, survivor_id=survivor, duplicate_ids=[duplicate])
    async with runtime.transaction() as session:
        # insert_contact skips the status check, as an ingest that looked the customer up earlier would.
        contact, _ = await contact_service.insert_contact(
            session,
            data=ContactData(channel="sms", direction="inbound", text="late"),
            customer_id=duplicate,
            case_id=None,
        )
    assert await scalar(runtime, "SELECT customer_id FROM contacts WHERE id = :c", c=contact.id) == survivor


async def test_an_ingest_recording_a_customer_merged_since_recognition_lands_on_the_survivor(runtime):
    # An ingest inserts its contact first and records the recognised customer and case
    # afterwards; a merge may commit in between.
    survivor = await make_customer(runtime, "S")
    duplicate = await make_customer(runtime, "D")
    async with runtime.transaction() as session:
        contact, _ = await contact_service.insert_contact(
            session, data=ContactData(channel="sms", direction="inbound", text="x"), customer_id=None, case_id=None
        )
    async with runtime.transaction() as session:
        await merge_service.merge_customers(session, actor=AGENT, survivor_id=survivor, duplicate_ids=[duplicate])
    async with runtime.engine.begin() as conn:
        recorded = (
            await conn.execute(
                contact_service._RECORD,
                {
                    "contact_id": contact.id,
                    "customer_id": duplicate,
                    "case_id": None,
                    "candidates": [],
                    "needs_review": False,
                    "recognition": None,
                },
            )
        ).one()

    assert recorded.customer_id == survivor


async def test_an_ingest_in_flight_when_the_merge_starts_is_moved_with_it(runtime):
    survivor = await make_customer(runtime, "S")
    duplicate = await make_customer(runtime, "D")
    inserted = asyncio.Event()
    release = asyncio.Event()

    async def slow_ingest() -> int:
        async with runtime.transaction() as session:
            contact, _ = await contact_service.insert_contact(
                session,
                data=ContactData(channel="sms", direction="inbound", text="x"),
                customer_id=duplicate,
                case_id=None,
            )
            inserted.set()
            await release.wait()
            return contact.id

    async def merge() -> None:
        await inserted.wait()
        async with runtime.transaction() as session:
            await merge_service.merge_customers(session, actor=AGENT, survivor_id=survivor, duplicate_ids=[duplicate])

    ingest_task = asyncio.create_task(slow_ingest())
    merge_task = asyncio.create_task(merge())
    await inserted.wait()
    await asyncio.sleep(0.2)  # the merge is now waiting for the ingest's lock on the duplicate
    assert not merge_task.done()
    release.set()
    contact_id = await ingest_task
    await merge_task
    assert await scalar(runtime, "SELECT customer_id FROM contacts WHERE id = :c", c=contact_id) == survivor


async def test_concurrent_ingests_moves_and_merges_leave_no_contact_on_a_tombstone_and_every_case_a_primary(runtime):
    survivor = await make_customer(runtime, "S")
    duplicate = await make_customer(runtime, "D")
    other = await make_customer(runtime, "O")
    cases = [await make_case(runtime, [duplicate]) for _ in range(4)]

    async def ingest(i: int) -> None:
        async with runtime.transaction() as session:
            await contact_service.insert_contact(
                session,
                data=ContactData(channel="sms", direction="inbound", text=str(i)),
                customer_id=duplicate,
                case_id=cases[i % len(cases)],
            )

    async def move(case_id: int) -> None:
        try:
            async with runtime.transaction() as session:
                await case_service.move_case(
                    session, actor=AGENT, case_id=case_id, from_customer_id=duplicate, to_customer_id=other
                )
        except UserError:
            pass  # the merge got there first: the case is no longer the duplicate's

    async def merge() -> None:
        async with runtime.transaction() as session:
            await merge_service.merge_customers(session, actor=SYSTEM, survivor_id=survivor, duplicate_ids=[duplicate])

    tasks = (
        [ingest(i) for i in range(30)] + [move(c) for c in cases[:2]] + [merge()] + [ingest(i) for i in range(30, 60)]
    )
    await asyncio.gather(*tasks)

    assert await scalar(runtime, "SELECT count(*) FROM contacts") == 60
    assert await scalar(runtime, "SELECT count(*) FROM contacts WHERE customer_id = :d", d=duplicate) == 0
    assert await scalar(runtime, "SELECT count(*) FROM case_customers WHERE customer_id = :d", d=duplicate) == 0
    assert (
        await rows(
            runtime,
            "SELECT k.id FROM cases k WHERE NOT EXISTS "
            "(SELECT 1 FROM case_customers l WHERE l.case_id = k.id AND l.is_primary)",
        )
        == []
    )
    # Every contact's customer is linked to its case.
    assert (
        await scalar(
            runtime,
            "SELECT count(*) FROM contacts c WHERE c.case_id IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM case_customers l WHERE l.case_id = c.case_id AND l.customer_id = c.customer_id)",
        )
        == 0
    )


async def test_merge_and_undo_cost_the_same_number_of_statements_whatever_moves(runtime, count_queries):
    counts = []
    for contacts in (2, 20):
        survivor = await make_customer(runtime, "S")
        duplicate = await make_customer(runtime, "D", emails=[f"d{contacts}@example.com"])
        cases = [await make_case(runtime, [duplicate]) for _ in range(contacts // 2)]
        for i in range(contacts):
            await make_contact(
                runtime, customer_id=duplicate, case_id=cases[i % len(cases)], text_body=f"{contacts}-{i}"
            )
        start = count_queries.count
        async with runtime.transaction() as session:
            merge = await merge_service.merge_customers(
                session, actor=AGENT, survivor_id=survivor, duplicate_ids=[duplicate]
            )
        merged_at = count_queries.count
        async with runtime.transaction() as session:
            await merge_service.undo_merge(session, actor=AGENT, merge_id=merge.id)
        counts.append((merged_at - start, count_queries.count - merged_at))
    assert counts[0] == counts[1]
    assert counts[0][0] <= 25


async def test_merge_replaces_duplicates_in_candidate_lists_and_undo_restores_them(runtime):
    from sqlalchemy import text

    survivor = await make_customer(runtime, "S")
    duplicate = await make_customer(runtime, "D")
    other = await make_customer(runtime, "O")
    both = await make_contact(runtime, text_body="both")
    one = await make_contact(runtime, text_body="one")
    untouched = await make_contact(runtime, text_body="untouched")
    lists = {both: [duplicate, other, survivor], one: [other, duplicate], untouched: [other]}
    async with runtime.engine.begin() as conn:
        for contact_id, candidates in lists.items():
            await conn.execute(
                text("UPDATE contacts SET candidate_customer_ids = :c WHERE id = :i"),
                {"c": candidates, "i": contact_id},
            )

    async with runtime.transaction() as session:
        merge = await merge_service.merge_customers(
            session, actor=AGENT, survivor_id=survivor, duplicate_ids=[duplicate]
        )

    assert await rows(runtime, "SELECT id, candidate_customer_ids FROM contacts ORDER BY id") == [
        (both, [survivor, other]),
        (one, [other, survivor]),
        (untouched, [other]),
    ]
    async with runtime.transaction() as session:
        await merge_service.undo_merge(session, actor=AGENT, merge_id=merge.id)
    assert await rows(runtime, "SELECT id, candidate_customer_ids FROM contacts ORDER BY id") == [
        (contact_id, candidates) for contact_id, candidates in lists.items()
    ]

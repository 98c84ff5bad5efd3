"""Batched ingest: a generated corpus (threads within the batch and onto stored mail, case tags,
shared identifiers, repeated senders, duplicates, bad items) ingested one by one and in one batch
gives the same contacts, customers, cases, outcomes and traces; the batch runs a fixed number of
SQL statements whatever its size; contactIngestBatch answers one result per item."""

from __future__ import annotations

import asyncio
import random
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from app.auth import SYSTEM
from app.contact_data import ContactData
from app.errors import UserError
from app.models import Case, CaseCustomer, Contact, Customer, CustomerIdentifier
from app.services import cases as case_service
from app.services import customers as customer_service
from app.services.contacts import create_contact, ingest_batch, ingest_contact, ingest_contacts
from tests.conftest import SEEDS
from tests.test_recognition_rules import add_promotion, add_rule

BASE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
KNOWN = ["anna@known.test", "ben@known.test", "carla@known.test"]
SHARED_PHONE = "+447700900001"  # Ben's and Carla's household line


async def reset(runtime, table_names) -> None:
    async with runtime.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(table_names)} RESTART IDENTITY CASCADE"))
        await conn.execute(text("ALTER SEQUENCE customer_number_seq RESTART"))
        await conn.execute(text("ALTER SEQUENCE case_reference_seq RESTART"))
        for seed in SEEDS:
            await seed(conn)


async def seed_base(runtime) -> None:
    """Three customers (two share a phone), a case each, and a stored mail on Anna's case."""
    async with runtime.transaction() as session:
        ids = []
        for address in KNOWN:
            identifiers = [customer_service.IdentifierInput("email", address)]
            if address != KNOWN[0]:
                identifiers.append(customer_service.IdentifierInput("phone", SHARED_PHONE))
            customer = await customer_service.create_customer(
                session,
                actor=SYSTEM,
                name=address.split("@")[0].title(),
                identifiers=identifiers,
                fields={},
                region="GB",
            )
            ids.append(customer.id)
        cases = [
            await case_service.create_case(session, actor=SYSTEM, subject=f"Case of {i}", customer_ids=[i]) for i in ids
        ]
        await create_contact(
            session,
            actor=SYSTEM,
            data=ContactData(
                channel="email",
                direction="outbound",
                occurred_at=BASE - timedelta(days=1),
                subject="Our answer",
                headers={"Message-ID": "<stored-1@casegraph.test>"},
                to_addresses=[KNOWN[0]],
            ),
            customer_id=ids[0],
            case_id=cases[0].id,
        )


def corpus(seed: int, size: int = 60, *, failures: bool) -> list[ContactData]:
    """With failures, the batch is retried around them and the ids it took are gone (sequences do
    not roll back): case tags then name stored cases only, whose references stay put."""
    rng = random.Random(seed)
    senders = KNOWN + [f"new{k}@new.test" for k in range(6)] + ["stranger@elsewhere.test"]
    items: list[ContactData] = []
    sent: list[tuple[dict, str]] = []
    for i in range(size):
        kind = rng.random()
        if failures and i % 13 == 6:
            kind = 0.565  # a failing item in every stretch of the batch
        elif not failures and 0.55 <= kind < 0.58:
            kind = 0.9
        external_id = f"x-{i}"
        if items and rng.random() < 0.08:
            external_id = rng.choice(items).external_id  # a repeat (possibly of a bad item)
        sender = rng.choice(senders)
        headers: dict = {"Message-ID": f"<m-{i}@corpus.test>"}
        subject = f"Question {i}"
        channel, from_address = "email", f"Someone {i} <{sender}>"
        if kind < 0.25:
            earlier = [(m["Message-ID"], a) for m, a in sent] + [("<stored-1@casegraph.test>", KNOWN[0])]
            target, their_sender = rng.choice(earlier)
            headers |= {"In-Reply-To": target, "References": f"<unknown@x.test> {target}"}
            if rng.random() < 0.7:  # mostly the same correspondent; else a stranger quoting the thread
                sender = their_sender
                from_address = f"Someone {i} <{sender}>"
        elif kind < 0.4:
            # Stored cases, and (without failures) those the batch opens.
            tag = rng.randint(1, 3 if failures else 9)
            subject = f"Re: [CASE-{tag:06d}] {subject}"
            if tag <= len(KNOWN) and rng.random() < 0.6:  # the stored case's own customer
                sender = KNOWN[tag - 1]
                from_address = f"Someone {i} <{sender}>"
        elif kind < 0.52:
            channel = "phone"
            from_address = rng.choice([SHARED_PHONE, "+447700900999", "07700 900002", "not a phone"])
            headers = {}
        elif kind < 0.55:
            channel = "carrier-pigeon"  # refused input
        elif kind < 0.58:
            from_address = f'"{"N" * 220}" <n{i}@new.test>'  # a name too long for a new customer: fails
        if channel == "email":
            sent.append((headers, sender))
        items.append(
            ContactData(
                channel=channel,
                direction="inbound",
                occurred_at=BASE + timedelta(seconds=i),
                subject=subject,
                text="Hello",
                from_address=from_address,
                headers=headers,
                source="corpus",
                external_id=external_id,
            )
        )
    return items


def canonical(value, ids: dict[str, dict[int, int]], kind: str | None = None):
    """Ids (and references) replaced by their rank among the rows: gaps left in the sequences by a
    retried batch aside, two runs compare equal."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ("customerId", "candidates"):
                out[key] = canonical(item, ids, "customer")
            elif key in ("caseId", "referencedCaseId", "threadCaseId"):
                out[key] = canonical(item, ids, "case")
            elif key == "matches":
                out[key] = canonical(item, ids, value.get("target"))
            else:
                out[key] = canonical(item, ids)
        return out
    if isinstance(value, list):
        return [canonical(item, ids, kind) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and kind is not None:
        return ids[kind].get(value, ("unknown", value))
    if isinstance(value, str):
        value = re.sub(r"case (\d+)", lambda m: f"case #{ids['case'].get(int(m[1]), m[1])}", value)
        return re.sub(r"CASE-(\d+)", lambda m: f"CASE #{ids['reference'].get(int(m[1]), m[1])}", value)
    return value


async def snapshot(runtime) -> tuple[dict, dict]:
    """Everything ingest writes, comparable across runs (contact ids and timings aside), and the
    ranks of the customer and case ids."""
    async with runtime.reading() as session:
        contacts = []
        for row in await session.execute(select(Contact).order_by(Contact.source, Contact.external_id)):
            contact = row[0]
            trace = dict(contact.recognition or {})
            trace.pop("elapsedMs", None)
            contacts.append(
                {
                    "externalId": contact.external_id,
                    "customerId": contact.customer_id,
                    "caseId": contact.case_id,
                    "needsReview": contact.needs_review,
                    "candidates": contact.candidate_customer_ids,
                    "trace": trace,
                }
            )
        customers = list(
            await session.execute(
                select(Customer.id, Customer.number, Customer.name, Customer.last_activity_at).order_by(Customer.id)
            )
        )
        identifiers = list(
            await session.execute(
                select(CustomerIdentifier.customer_id, CustomerIdentifier.kind, CustomerIdentifier.value)
            )
        )
        cases = list(await session.execute(select(Case.id, Case.reference, Case.subject).order_by(Case.id)))
        links = list(
            await session.execute(select(CaseCustomer.case_id, CaseCustomer.customer_id, CaseCustomer.is_primary))
        )
    ids = {
        "customer": {row.id: rank for rank, row in enumerate(customers)},
        "case": {row.id: rank for rank, row in enumerate(cases)},
        "reference": {int(row.reference.split("-")[1]): rank for rank, row in enumerate(cases)},
    }
    state = {
        "contacts": canonical(contacts, ids),
        "customers": [(rank, row.name, row.last_activity_at) for rank, row in enumerate(customers)],
        "identifiers": sorted((ids["customer"][c], k, v) for c, k, v in identifiers),
        "cases": [(rank, row.subject) for rank, row in enumerate(cases)],
        "links": sorted((ids["case"][a], ids["customer"][b], p) for a, b, p in links),
    }
    return state, ids


def outcome_of(result, ids) -> tuple:
    if isinstance(result, UserError):
        return ("error", result.code.value, result.field)
    return (
        result.duplicate,
        result.customer_created,
        result.case_created,
        canonical(result.customer_id, ids, "customer"),
        canonical(result.case_id, ids, "case"),
        canonical(list(result.candidates), ids, "customer"),
        result.contact.external_id,
    )


async def one_by_one(runtime, items) -> list:
    results = []
    for data in items:
        try:
            async with runtime.transaction() as session:
                results.append(await ingest_contact(session, actor=SYSTEM, data=data, region="GB"))
        except UserError as error:
            results.append(error)
    return results


async def test_a_batch_gives_what_one_by_one_gives(runtime, table_names):
    for seed, failures in ((1, True), (2, True), (3, False), (4, False)):
        await reset(runtime, table_names)
        await seed_base(runtime)
        results = await one_by_one(runtime, corpus(seed, failures=failures))
        expected_state, ids = await snapshot(runtime)
        expected = [outcome_of(r, ids) for r in results]

        await reset(runtime, table_names)
        await seed_base(runtime)
        results = await ingest_contacts(runtime, actor=SYSTEM, items=corpus(seed, failures=failures), region="GB")
        state, ids = await snapshot(runtime)
        got = [outcome_of(r, ids) for r in results]

        assert got == expected, seed
        assert state == expected_state, seed
        if not failures:  # nothing retried: not even the ids differ
            assert ids == (await snapshot(runtime))[1]
        traces = [c["trace"] for c in state["contacts"]]
        steps = [s for t in traces for s in t.get("steps", [])]
        # The corpus reaches what the batch must get right.
        assert any(t.get("outcome") == "error" for t in traces) == failures, seed
        assert any(t.get("outcome") == "ambiguous" for t in traces), seed
        assert any(s["kind"] == "thread" and s["outcome"] == "match" for s in steps), seed
        assert any(s["kind"] == "reference_in_text" and s["outcome"] == "match" for s in steps), seed
        assert any(s["outcome"] == "refused" for s in steps), seed
        assert any(r[0] == "error" for r in got) and any(r[0] is True for r in got), seed


def known_senders_batch(size: int, start: int) -> list[ContactData]:
    """Known customers writing on their cases: by tag, by thread, by their address alone (phone)."""
    items = []
    for i in range(start, start + size):
        k = i % len(KNOWN)
        headers = {"Message-ID": f"<q-{i}@corpus.test>"}
        subject = f"Re: [CASE-{k + 1:06d}] more"
        if k == 0:
            headers |= {"In-Reply-To": "<stored-1@casegraph.test>"}
            subject = "Re: Our answer"
        items.append(
            ContactData(
                channel="email" if i % 5 else "phone",
                direction="inbound",
                occurred_at=BASE + timedelta(seconds=i),
                subject=subject,
                from_address=KNOWN[k] if i % 5 else "+447700900999",
                headers=headers,
                source="corpus",
                external_id=f"q-{i}" if i % 7 != 3 else f"q-{start}",  # repeats, in the batch and stored before
            )
        )
    return items


async def test_a_batch_runs_the_same_statements_whatever_its_size(runtime, count_queries):
    await seed_base(runtime)
    counts = []
    for size, start in ((6, 0), (60, 100), (300, 1000)):
        count_queries.statements.clear()
        results = await ingest_contacts(runtime, actor=SYSTEM, items=known_senders_batch(size, start), region="GB")
        counts.append(len(count_queries.statements))
        assert len(results) == size
        assert not any(r.customer_created or r.case_created for r in results)
        assert any(r.duplicate for r in results)
    assert counts[0] == counts[1] == counts[2], counts
    # 12 (two of them lock the identifier nobody holds, the unknown phone number, and read it
    # again), one that locks the live customers the batch read (a case opened for one needs no
    # check of its own), and one that finds which of the cases the contacts reached their status
    # automation may change.
    assert counts[0] == 14, count_queries.statements


def new_matters_batch(size: int, start: int) -> list[ContactData]:
    """Known customers writing about something new: each mail opens a case."""
    return [
        ContactData(
            channel="email",
            direction="inbound",
            occurred_at=BASE + timedelta(seconds=i),
            subject=f"New matter {i}",
            from_address=KNOWN[i % len(KNOWN)],
            headers={"Message-ID": f"<n-{i}@corpus.test>"},
            source="corpus",
            external_id=f"n-{i}",
        )
        for i in range(start, start + size)
    ]


async def ingest_counting(runtime, count_queries, items: list[ContactData], table: str) -> tuple[list, int]:
    """One batch's results, and how many statements inserted into `table`."""
    count_queries.statements.clear()
    results = await ingest_contacts(runtime, actor=SYSTEM, items=items, region="GB")
    return results, len([s for s in count_queries.statements if f"INSERT INTO {table}" in s])


async def test_the_cases_a_batch_opens_are_written_in_one_statement(runtime, count_queries):
    await seed_base(runtime)
    counts = []
    for size, start in ((6, 0), (60, 100)):
        results, inserts = await ingest_counting(runtime, count_queries, new_matters_batch(size, start), "cases")
        counts.append(inserts)
        assert all(r.case_created and not r.customer_created for r in results)
        assert len({r.case_id for r in results}) == size
    assert counts == [1, 1], counts
    async with runtime.reading() as session:
        opened = list(await session.execute(select(Case.reference, Case.subject).where(Case.id > 3).order_by(Case.id)))
        links = set(await session.execute(select(CaseCustomer.case_id, CaseCustomer.is_primary)))
    # References follow the order of the contacts, without gaps; each case has its one primary customer.
    assert opened == [(f"CASE-{4 + n:06d}", f"New matter {i}") for n, i in enumerate([*range(0, 6), *range(100, 160)])]
    assert {(r.case_id, True) for r in results} <= links


def new_senders_batch(size: int, start: int) -> list[ContactData]:
    """New senders, every third mail from the sender of the mail before it."""
    return [
        ContactData(
            channel="email",
            direction="inbound",
            occurred_at=BASE + timedelta(seconds=i),
            subject=f"First mail {i}",
            from_address=f"Sender {i - i % 3 // 2} <new{i - i % 3 // 2}@fresh.test>",
            source="corpus",
            external_id=f"f-{i}",
        )
        for i in range(start, start + size)
    ]


async def test_the_customers_a_batch_creates_are_written_in_one_statement(runtime, count_queries):
    await seed_base(runtime)
    counts, created = [], []
    for size, start in ((6, 0), (60, 100)):
        results, inserts = await ingest_counting(runtime, count_queries, new_senders_batch(size, start), "customers")
        counts.append(inserts)
        for i, result in zip(range(start, start + size), results, strict=True):
            repeat = i % 3 == 2
            # The repeated sender is recognised as the customer the batch created a moment before.
            assert result.customer_created != repeat and result.case_created
            if repeat:
                assert result.customer_id == results[i - start - 1].customer_id
            else:
                created.append((i, result.customer_id))
    assert counts == [1, 1], counts
    async with runtime.reading() as session:
        customers = list(
            await session.execute(select(Customer.id, Customer.number, Customer.name).where(Customer.id > 3))
        )
        identifiers = set(await session.execute(select(CustomerIdentifier.customer_id, CustomerIdentifier.value)))
    # Numbers follow the order of the contacts, without gaps; each customer holds its address.
    assert sorted((row.number, row.id, row.name) for row in customers) == [
        (f"C-{4 + n:06d}", customer_id, f"Sender {i}") for n, (i, customer_id) in enumerate(created)
    ]
    assert {(customer_id, f"new{i}@fresh.test") for i, customer_id in created} <= identifiers


async def test_a_field_match_reads_the_customers_created_before_it_in_the_batch(runtime):
    await add_rule(
        runtime, "Member number", "field_match", {"path": "payload.memberNo", "field": "memberNo"}, position=1
    )
    await add_promotion(runtime, "Member number", "payload.memberNo", "customer", "fields.memberNo", "fill_empty")
    items = [
        ContactData(
            channel="email",
            direction="inbound",
            from_address=f"{name}@members.test",
            subject="Hello",
            payload={"memberNo": "M-9"},
            source="corpus",
            external_id=name,
        )
        for name in ("first", "second")
    ]
    first, second = await ingest_contacts(runtime, actor=SYSTEM, items=items, region="GB")
    assert first.customer_created
    assert second.customer_id == first.customer_id and not second.customer_created
    assert second.contact.recognition["matchedRule"] == "Member number"


BATCH = """
mutation($input: ContactIngestBatchInput!) {
  contactIngestBatch(input: $input) {
    results { contact { externalId } customer { number } case { reference } duplicate customerCreated caseCreated
              errors { field code } }
    errors { field code message }
  }
}
"""


async def test_contact_ingest_batch_answers_each_item(gql):
    contacts = [
        {"source": "shop", "externalId": "a", "channel": "EMAIL", "from": "new@one.test", "subject": "Hi"},
        {"source": "shop", "externalId": "b", "channel": "EMAIL", "from": "x" * 300},
        {"source": "shop", "externalId": "c", "channel": "EMAIL", "from": "new@one.test", "subject": "Again"},
        {"source": "shop", "externalId": "a", "channel": "EMAIL", "from": "new@one.test"},
    ]
    answer = (await gql(BATCH, {"input": {"contacts": contacts}}))["contactIngestBatch"]
    assert answer["errors"] == []
    first, refused, second, repeat = answer["results"]
    assert first["customerCreated"] and first["caseCreated"] and first["errors"] == []
    assert refused == {
        "contact": None,
        "customer": None,
        "case": None,
        "duplicate": False,
        "customerCreated": False,
        "caseCreated": False,
        "errors": [{"field": "from", "code": "INVALID"}],
    }
    # The second mail of the new sender finds the customer the first created, in the same call.
    assert second["customer"] == first["customer"] and not second["customerCreated"] and second["caseCreated"]
    assert repeat["duplicate"] and repeat["contact"] == first["contact"] and repeat["case"] == first["case"]

    too_many = [{**contacts[0], "externalId": str(i)} for i in range(501)]
    answer = (await gql(BATCH, {"input": {"contacts": too_many}}))["contactIngestBatch"]
    assert answer == {
        "results": [],
        "errors": [{"field": "contacts", "code": "INVALID", "message": "contacts holds more than 500 items"}],
    }


async def test_a_merge_waits_for_the_batch_that_opened_a_case_for_the_duplicate(runtime):
    """A merge of a customer a batch opened a case for waits for the batch to commit, then carries
    the case over to the survivor (no case is left on a tombstone)."""
    async with runtime.transaction() as session:
        survivor, duplicate = [
            await customer_service.create_customer(
                session,
                actor=SYSTEM,
                name=name,
                region="GB",
                fields=None,
                identifiers=[customer_service.IdentifierInput("email", f"{name.lower()}@known.test")],
            )
            for name in ("Survivor", "Duplicate")
        ]
    batch_done, release = asyncio.Event(), asyncio.Event()

    async def batch() -> int:
        async with runtime.transaction() as session:
            [result] = await ingest_batch(
                session,
                actor=SYSTEM,
                items=[
                    ContactData(
                        channel="email",
                        direction="inbound",
                        from_address="duplicate@known.test",
                        subject="Hello",
                        source="corpus",
                        external_id="locked-1",
                    )
                ],
                region="GB",
            )
            batch_done.set()
            await release.wait()
            return result.case_id

    async def merge() -> None:
        await batch_done.wait()
        async with runtime.transaction() as session:
            await customer_service.merge_customers(
                session, actor=SYSTEM, survivor_id=survivor.id, duplicate_ids=[duplicate.id]
            )

    batch_task, merge_task = asyncio.create_task(batch()), asyncio.create_task(merge())
    await batch_done.wait()
    await asyncio.sleep(0.3)
    assert not merge_task.done()  # waiting for the batch's lock on the duplicate
    release.set()
    case_id = await batch_task
    await merge_task
    async with runtime.reading() as session:
        linked = set(await session.scalars(select(CaseCustomer.customer_id).where(CaseCustomer.case_id == case_id)))
    assert linked == {survivor.id}

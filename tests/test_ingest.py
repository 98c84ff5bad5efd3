"""contactIngest: idempotency (even for two identical requests at the same moment), the preview
that writes nothing, the GraphQL surface, events, and the hot path's SQL statement count."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from app import events
from app.auth import SYSTEM
from app.contact_data import ContactData
from app.models import AuditEvent, Case, CaseCustomer, Contact, Customer, CustomerIdentifier
from app.recognition.outcome import preview_recognition
from app.services import customers as customer_service
from app.services.contacts import ingest_contact
from tests.conftest import published_channels

INGEST = """
mutation($input: ContactIngestInput!) {
  contactIngest(input: $input) {
    contact { id externalId needsReview recognition customer { number } case { reference } candidates { number } }
    customer { number name identifiers { kind value } }
    case { reference subject }
    candidates { number }
    duplicate customerCreated caseCreated
    errors { field code message }
  }
}
"""

PREVIEW = """
query($input: ContactIngestInput!) {
  recognitionPreview(input: $input) {
    preview { needsReview wouldCreateCustomer wouldCreateCase trace customer { number } case { reference } candidates { number } }
    errors { field code message }
  }
}
"""

TABLES = (Customer, CustomerIdentifier, Case, CaseCustomer, Contact, AuditEvent)


async def row_counts(runtime) -> dict[str, int]:
    async with runtime.reading() as session:
        return {m.__tablename__: await session.scalar(select(func.count()).select_from(m)) for m in TABLES}


def email(external_id="e-1", sender="new.person@example.com", **extra) -> ContactData:
    return ContactData(
        channel="email",
        direction="inbound",
        source="mailgate",
        external_id=external_id,
        from_address=sender,
        subject="Hello",
        **extra,
    )


async def ingest_once(runtime, data):
    async with runtime.transaction() as session:
        return await ingest_contact(session, actor=SYSTEM, data=data, region="GB")


async def test_two_identical_requests_at_the_same_moment_store_one_contact_and_create_once(runtime):
    first, second = await asyncio.gather(ingest_once(runtime, email()), ingest_once(runtime, email()))

    assert first.contact.id == second.contact.id
    assert sorted([first.duplicate, second.duplicate]) == [False, True]
    original = first if not first.duplicate else second
    repeat = second if original is first else first
    assert original.customer_created and original.case_created
    assert not repeat.customer_created and not repeat.case_created
    assert (repeat.customer_id, repeat.case_id) == (original.customer_id, original.case_id)
    counts = await row_counts(runtime)
    assert (counts["customers"], counts["cases"], counts["contacts"]) == (1, 1, 1)


async def test_a_later_repeat_returns_the_first_contact_and_creates_nothing(runtime):
    first = await ingest_once(runtime, email())
    before = await row_counts(runtime)

    repeat = await ingest_once(runtime, email(sender="someone.else@example.com"))

    assert repeat.duplicate and repeat.contact.id == first.contact.id
    assert repeat.contact.from_address == "new.person@example.com"
    assert await row_counts(runtime) == before


async def test_the_same_external_id_from_another_source_is_another_contact(runtime):
    await ingest_once(runtime, email())
    other = email()
    other.source = "telephony"
    assert not (await ingest_once(runtime, other)).duplicate


async def test_preview_writes_nothing(runtime):
    async with runtime.transaction() as session:
        await customer_service.create_customer(
            session,
            actor=SYSTEM,
            name="Ann",
            region="GB",
            fields=None,
            identifiers=[customer_service.IdentifierInput("phone", "01632 960123")],
        )
    before = await row_counts(runtime)

    async with runtime.reading() as session:
        unknown = await preview_recognition(session, data=email(), region="GB")
        known = await preview_recognition(
            session, data=ContactData(channel="phone", direction="inbound", from_address="+441632960123"), region="GB"
        )

    assert unknown.customer_created and unknown.case_created and unknown.customer_id is None
    assert unknown.trace["newProfile"]["identifiers"] == [{"kind": "email", "value": "new.person@example.com"}]
    assert known.customer_id is not None and not known.customer_created and not known.case_created
    assert await row_counts(runtime) == before


async def test_ingest_publishes_contact_received(runtime):
    result = await ingest_once(runtime, email())
    received = {name for name in await published_channels(runtime) if "contactReceived" in name}
    assert received == {
        events.channel("contactReceived", "all"),
        events.channel("contactReceived", f"customer:{result.customer_id}"),
        events.channel("contactReceived", f"case:{result.case_id}"),
    }


async def test_known_sender_ingest_runs_a_fixed_number_of_statements(runtime, count_queries):
    async with runtime.transaction() as session:
        await customer_service.create_customer(
            session,
            actor=SYSTEM,
            name="Ada",
            region="GB",
            fields=None,
            identifiers=[customer_service.IdentifierInput("email", "ada@example.com")],
        )
    await ingest_once(runtime, email("warm-up", sender="ada@example.com"))
    count_queries.statements.clear()

    result = await ingest_once(runtime, email("e-2", sender="ada@example.com"))

    # Read before the write (the rules run first): the configuration version (the rule set is in
    # memory) and the identifier lookup. Then the write: contact insert, savepoint, new case
    # (active-customer check, insert with its link: the email policy opens a case), release, contact
    # update with the customer's last activity; and which TAT policy applies to the case (none
    # here, so it gets no SLA clock). BEGIN/COMMIT are not counted; at the commit, the audit entries
    # in one INSERT and the event outbox's INSERT (its rows leave in the background once published).
    assert count_queries.count == 11, count_queries.statements
    async with runtime.reading() as session:
        touched = await session.scalar(select(Customer.last_activity_at).where(Customer.id == result.customer_id))
    assert touched == result.contact.occurred_at


# GraphQL


async def test_contact_ingest_mutation_returns_what_was_recognised_and_created(gql):
    variables = {
        "input": {
            "source": "webform",
            "externalId": "f-1",
            "channel": "WEB",
            "from": "Eve <eve@example.com>",
            "subject": "Help",
            "payload": {"x": 1},
        }
    }

    payload = (await gql(INGEST, variables))["contactIngest"]

    assert (
        payload["errors"] == [] and payload["customerCreated"] and payload["caseCreated"] and not payload["duplicate"]
    )
    assert payload["customer"]["name"] == "Eve" and payload["customer"]["identifiers"] == [
        {"kind": "EMAIL", "value": "eve@example.com"}
    ]
    assert payload["case"]["subject"] == "Help"
    assert payload["contact"]["case"]["reference"] == payload["case"]["reference"]
    assert payload["contact"]["recognition"]["policy"]["channel"] == "web"

    repeat = (await gql(INGEST, variables))["contactIngest"]
    assert repeat["duplicate"] and repeat["contact"]["id"] == payload["contact"]["id"] and not repeat["customerCreated"]


async def test_contact_ingest_lists_candidates_for_a_shared_number(gql):
    for name in ("Ann", "Ben", "Cat"):
        await gql(
            "mutation($i: CustomerCreateInput!) { customerCreate(input: $i) { errors { code } } }",
            {"i": {"name": name, "phones": ["01632 960123"]}},
        )

    payload = (
        await gql(
            INGEST, {"input": {"source": "pbx", "externalId": "c-1", "channel": "PHONE", "from": "+441632960123"}}
        )
    )["contactIngest"]

    assert payload["customer"] is None and payload["contact"]["needsReview"]
    assert sorted(c["number"] for c in payload["candidates"]) == ["C-000001", "C-000002", "C-000003"]
    assert sorted(c["number"] for c in payload["contact"]["candidates"]) == ["C-000001", "C-000002", "C-000003"]


async def test_contact_ingest_refuses_bad_input_as_user_errors(gql, runtime):
    blank = (await gql(INGEST, {"input": {"source": " ", "externalId": "x", "channel": "SMS"}}))["contactIngest"]
    assert (
        blank["errors"] == [{"field": "source", "code": "REQUIRED", "message": "source is required"}]
        and blank["contact"] is None
    )
    assert (await row_counts(runtime))["contacts"] == 0


async def test_contact_ingest_needs_an_integrator_or_supervisor(gql, http, agent_token, runtime):
    from app.services.auth import create_token

    response = await gql.post(
        INGEST, {"input": {"source": "pbx", "externalId": "1", "channel": "PHONE"}}, token=agent_token
    )
    body = response.json()
    assert body["data"] is None and "requires role integrator or supervisor" in body["errors"][0]["message"]
    assert (await row_counts(runtime))["contacts"] == 0
    async with runtime.transaction() as session:
        integrator = await create_token(session, name="pbx", role="integrator")
    ok = await gql(
        INGEST,
        {"input": {"source": "pbx", "externalId": "1", "channel": "PHONE", "from": "07700 900123"}},
        token=integrator,
    )
    assert ok["contactIngest"]["errors"] == [] and ok["contactIngest"]["contact"]["needsReview"]


async def test_recognition_preview_query(gql, runtime):
    before = await row_counts(runtime)
    preview = (
        await gql(PREVIEW, {"input": {"source": "m", "externalId": "p", "channel": "EMAIL", "from": "zed@example.com"}})
    )["recognitionPreview"]["preview"]
    assert preview["wouldCreateCustomer"] and preview["wouldCreateCase"] and preview["customer"] is None
    assert preview["trace"]["preview"] is True
    assert await row_counts(runtime) == before


async def test_two_contacts_from_one_new_sender_at_the_same_moment_create_one_profile(runtime):
    first, second = await asyncio.gather(
        ingest_once(runtime, email("burst-1", sender="burst@example.com")),
        ingest_once(runtime, email("burst-2", sender="burst@example.com")),
    )

    assert first.customer_id == second.customer_id
    assert sorted([first.customer_created, second.customer_created]) == [False, True]
    assert (await row_counts(runtime))["customers"] == 1
    late = first if not first.customer_created else second
    assert late.contact.recognition["steps"][-1]["kind"] == "recheck"


async def test_malformed_headers_or_payload_are_refused(runtime):
    for field, data in (("headers", email(headers=["Message-ID: <x>"])), ("payload", email(payload="text"))):
        try:
            await ingest_once(runtime, data)
        except Exception as error:  # noqa: BLE001
            assert getattr(error, "field", None) == field and getattr(error, "code", None).value == "INVALID"
        else:
            raise AssertionError(f"{field} accepted")
    assert (await row_counts(runtime))["contacts"] == 0


async def test_a_fault_during_recognition_keeps_the_contact_and_nothing_of_the_undone_work(runtime, monkeypatch):
    from sqlalchemy import text

    from app.services import recognition as promotion

    real_create_case = promotion.case_service.create_case

    async def create_case_then_fail(session, **kwargs):
        await real_create_case(session, **kwargs)  # writes a case (and the new customer came before)
        await session.execute(text("SELECT 1 / 0"))  # a bug's database error, mid-way

    monkeypatch.setattr(promotion.case_service, "create_case", create_case_then_fail)

    result = await ingest_once(runtime, email("fault-1", sender="new@example.com"))

    assert result.contact.needs_review and result.contact.recognition["outcome"] == "error"
    # What failed, as a code: neither the SQL statement nor the database's message is stored.
    assert result.contact.recognition["error"] == "DATABASE_ERROR"
    assert "1 / 0" not in str(result.contact.recognition) and "division" not in str(result.contact.recognition)
    assert result.customer_id is None and result.case_id is None
    counts = await row_counts(runtime)
    assert (counts["customers"], counts["customer_identifiers"], counts["cases"], counts["contacts"]) == (0, 0, 0, 1)
    async with runtime.reading() as session:
        actions = list(await session.scalars(select(AuditEvent.action)))
    assert actions == ["contact.ingest"]

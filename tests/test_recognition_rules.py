"""Each recognition rule kind, the order of play, shared identifiers, the no-match policy and
promotion, through the same service the contactIngest mutation calls."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from app.auth import SYSTEM
from app.contact_data import ContactData
from app.errors import ErrorCode, UserError
from app.models import Case, Contact, Customer, CustomerIdentifier, User
from app.recognition.connector import connectors
from app.services import cases as case_service
from app.services import customers as customer_service
from app.services import recognition as rule_service
from app.services.contacts import ingest_contact

_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def fresh_connectors():
    connectors.reset()
    yield


async def make_customer(runtime, name, *identifiers, fields=None, status="active") -> int:
    async with runtime.transaction() as session:
        customer = await customer_service.create_customer(
            session,
            actor=SYSTEM,
            name=name,
            region="GB",
            fields=fields,
            identifiers=[customer_service.IdentifierInput(k, v) for k, v in identifiers],
        )
        if status != "active":
            await session.execute(update(Customer).where(Customer.id == customer.id).values(status=status))
        return customer.id


async def make_case(runtime, subject, *customer_ids, fields=None, status=None) -> Case:
    async with runtime.transaction() as session:
        case = await case_service.create_case(
            session, actor=SYSTEM, subject=subject, customer_ids=list(customer_ids), fields=fields
        )
        if status == "closed":  # closing has its own transition, which takes a reason code
            await case_service.close_case(session, actor=SYSTEM, case_id=case.id, reason_code="completed")
        elif status:
            case = await case_service.update_case(session, actor=SYSTEM, case_id=case.id, status=status)
        return case


async def add_rule(runtime, name, kind, config=None, channels=None, position=None):
    async with runtime.transaction() as session:
        return await rule_service.create_rule(
            session, actor=SYSTEM, name=name, kind=kind, config=config, channels=channels, position=position
        )


async def add_promotion(runtime, name, source, target, field, policy):
    async with runtime.transaction() as session:
        return await rule_service.create_promotion_rule(
            session, actor=SYSTEM, name=name, source=source, target=target, field=field, policy=policy
        )


async def ingest(runtime, channel="email", **fields):
    data = ContactData(
        channel=channel,
        direction=fields.pop("direction", "inbound"),
        source="test",
        external_id=f"x-{next(_ids)}",
        **fields,
    )
    async with runtime.transaction() as session:
        return await ingest_contact(session, actor=SYSTEM, data=data, region="GB")


async def count(runtime, model) -> int:
    async with runtime.reading() as session:
        return await session.scalar(select(func.count()).select_from(model))


def step(result, rule_name):
    return next(s for s in result.contact.recognition["steps"] if s["rule"] == rule_name)


# Case rules


async def test_reference_in_subject_finds_the_case_and_its_primary_customer(runtime):
    ada = await make_customer(runtime, "Ada", ("email", "ada@example.com"))
    bob = await make_customer(runtime, "Bob", ("email", "bob@example.com"))
    case = await make_case(runtime, "Broken kettle", ada, bob)

    # Bob is on the case too: any of its customers may quote it; the case brings its primary customer.
    result = await ingest(runtime, subject=f"Re: [{case.reference}] still broken", from_address="bob@example.com")

    assert (result.case_id, result.customer_id) == (case.id, ada)
    assert result.contact.recognition["matchedRule"] == "Case reference in subject or text"
    assert not result.customer_created and not result.case_created
    assert await count(runtime, Customer) == 2


async def test_a_stranger_quoting_a_reference_is_not_put_on_the_case(runtime):
    ada = await make_customer(runtime, "Ada", ("email", "ada@example.com"))
    case = await make_case(runtime, "Refund", ada)

    stranger = await ingest(runtime, subject=f"Re: [{case.reference}] my refund", from_address="mallory@evil.test")

    reference = step(stranger, "Case reference in subject or text")
    assert reference["outcome"] == "refused" and reference["referencedCaseId"] == case.id
    assert "mallory@evil.test" in reference["reason"]
    assert stranger.case_id != case.id and stranger.customer_id != ada


async def test_a_reference_sent_from_a_customers_phone_number_is_accepted(runtime):
    ada = await make_customer(runtime, "Ada", ("phone", "+447700900123"))
    case = await make_case(runtime, "Refund", ada)

    result = await ingest(runtime, channel="sms", text=f"About {case.reference}", from_address="07700 900123")

    assert result.case_id == case.id and result.customer_id == ada


async def test_reference_sender_check_can_be_switched_off(runtime):
    ada = await make_customer(runtime, "Ada", ("email", "ada@example.com"))
    case = await make_case(runtime, "Refund", ada)
    async with runtime.reading() as session:
        rule = next(r for r in await rule_service.list_rules(session) if r.kind == "reference_in_text")
    async with runtime.transaction() as session:
        await rule_service.update_rule(
            session, actor=SYSTEM, rule_id=rule.id, config={**rule.config, "require_known_sender": False}
        )

    result = await ingest(runtime, subject=f"[{case.reference}]", from_address="colleague@example.com")

    assert result.case_id == case.id


async def test_reference_to_a_merged_case_lands_on_the_surviving_case(runtime):
    ada = await make_customer(runtime, "Ada", ("email", "ada@example.com"))
    old = await make_case(runtime, "Old", ada)
    new = await make_case(runtime, "New", ada)
    async with runtime.transaction() as session:
        await session.execute(update(Case).where(Case.id == old.id).values(merged_into_id=new.id))

    result = await ingest(runtime, text=f"about {old.reference.lower()}", from_address="ada@example.com")

    assert result.case_id == new.id


async def test_archived_cases_are_not_recognised_by_reference_or_thread(runtime):
    first = await ingest(
        runtime, subject="Delivery late", from_address="ada@example.com", headers={"Message-ID": "<a1@example.com>"}
    )
    async with runtime.transaction() as session:
        case = await session.get(Case, first.case_id)
        case.archived_at = func.now()

    by_reference = await ingest(runtime, subject=f"[{case.reference}] again", from_address="ada@example.com")
    by_thread = await ingest(
        runtime,
        subject="Re: Delivery late",
        from_address="ada@example.com",
        headers={"In-Reply-To": "<a1@example.com>"},
    )

    for result in (by_reference, by_thread):
        assert result.case_id != first.case_id and result.customer_id == first.customer_id
        assert result.case_created  # the email policy opens a new case


async def test_unknown_reference_falls_through_to_customer_rules(runtime):
    ada = await make_customer(runtime, "Ada", ("email", "ada@example.com"))
    result = await ingest(runtime, subject="[CASE-999999]", from_address="Ada <ADA@example.com>")
    ref_step = step(result, "Case reference in subject or text")
    assert ref_step["outcome"] == "no_match" and "CASE-999999" in ref_step["reason"]
    assert result.customer_id == ada
    assert result.contact.recognition["matchedRule"] == "Sender email"


async def test_thread_reply_from_the_customer_joins_the_case(runtime):
    first = await ingest(
        runtime, subject="Delivery late", from_address="ada@example.com", headers={"Message-ID": "<m1@example.com>"}
    )
    assert first.customer_created and first.case_created

    reply = await ingest(
        runtime,
        subject="Re: Delivery late",
        from_address="ada@example.com",
        headers={"Message-ID": "<m2@example.com>", "In-Reply-To": "<m1@example.com>", "References": "<m1@example.com>"},
    )

    assert reply.case_id == first.case_id and reply.customer_id == first.customer_id
    assert reply.contact.recognition["matchedRule"] == "Email thread"
    assert not reply.case_created


async def test_thread_rule_refuses_a_strangers_reply_and_says_why(runtime):
    first = await ingest(
        runtime, subject="Refund", from_address="ada@example.com", headers={"Message-ID": "<m1@example.com>"}
    )

    stranger = await ingest(
        runtime,
        subject="Re: Refund",
        from_address="mallory@evil.test",
        headers={"Message-ID": "<m9@evil.test>", "In-Reply-To": "<m1@example.com>"},
    )

    thread = step(stranger, "Email thread")
    assert thread["outcome"] == "refused"
    assert "mallory@evil.test" in thread["reason"] and thread["threadCaseId"] == first.case_id
    assert stranger.case_id != first.case_id
    assert stranger.customer_id != first.customer_id  # a new profile for the stranger, per the email policy


async def test_thread_accepts_an_agents_reply(runtime):
    first = await ingest(
        runtime, subject="Refund", from_address="ada@example.com", headers={"Message-ID": "<m1@example.com>"}
    )
    async with runtime.transaction() as session:
        session.add(User(name="agent-bea", email="Bea@Contact-Centre.test", role="agent"))

    reply = await ingest(
        runtime,
        subject="Re: Refund",
        from_address="bea@contact-centre.test",
        headers={"In-Reply-To": "<m1@example.com>"},
    )

    assert reply.case_id == first.case_id
    assert step(reply, "Email thread")["outcome"] == "match"


async def test_thread_sender_check_can_be_switched_off(runtime):
    first = await ingest(
        runtime, subject="Refund", from_address="ada@example.com", headers={"Message-ID": "<m1@example.com>"}
    )
    async with runtime.reading() as session:
        thread_rule = next(r for r in await rule_service.list_rules(session) if r.kind == "thread")
    async with runtime.transaction() as session:
        await rule_service.update_rule(
            session, actor=SYSTEM, rule_id=thread_rule.id, config={"require_known_sender": False}
        )

    reply = await ingest(runtime, from_address="colleague@example.com", headers={"In-Reply-To": "<m1@example.com>"})

    assert reply.case_id == first.case_id


async def test_external_reference_from_a_payload_path_and_from_the_text(runtime):
    ada = await make_customer(runtime, "Ada", ("phone", "+442079460018"))
    case = await make_case(runtime, "Order problem", ada, fields={"orderNumber": "ORD-4711"})
    await make_case(runtime, "Other order", ada, fields={"orderNumber": "ORD-0001"})
    await add_rule(
        runtime,
        "Order in payload",
        "external_reference",
        {"path": "payload.order.number", "case_field": "orderNumber"},
        position=1,
    )
    await add_rule(
        runtime, "Order in text", "external_reference", {"pattern": r"\b(ORD-\d{4})\b", "case_field": "orderNumber"}
    )

    by_path = await ingest(
        runtime, channel="chat", from_address="web-visitor-1", payload={"order": {"number": "ORD-4711"}}
    )
    by_text = await ingest(runtime, channel="chat", from_address="web-visitor-2", text="where is ORD-4711 please")

    assert (by_path.case_id, by_path.customer_id) == (case.id, ada)
    assert by_path.contact.recognition["matchedRule"] == "Order in payload"
    assert by_text.case_id == case.id and by_text.contact.recognition["matchedRule"] == "Order in text"


async def test_open_case_of_customer_is_off_by_default_and_attaches_when_enabled(runtime):
    ada = await make_customer(runtime, "Ada", ("phone", "+442079460018"))
    closed = await make_case(runtime, "Done", ada, status="closed")
    open_case = await make_case(runtime, "Open", ada, status="open")
    for case in (closed, open_case):
        async with runtime.transaction() as session:
            session.add(
                Contact(
                    channel="phone",
                    direction="inbound",
                    occurred_at=datetime.now(UTC) - timedelta(days=1),
                    customer_id=ada,
                    case_id=case.id,
                )
            )

    before = await ingest(runtime, channel="phone", from_address="020 7946 0018")
    assert before.customer_id == ada and before.case_id is None  # phone policy opens no case

    await add_rule(runtime, "Recent open case", "open_case_of_customer", {"days": 3})
    after = await ingest(runtime, channel="phone", from_address="+44 20 7946 0018")

    assert after.case_id == open_case.id
    assert after.contact.recognition["matchedRule"] == "Sender phone, Recent open case"
    email = await ingest(runtime, channel="email", from_address="x@example.com")
    assert email.case_id != open_case.id  # a different customer


async def test_identifier_rule_on_a_payload_path_with_account_ids(runtime):
    ada = await make_customer(runtime, "Ada", ("account_id", "ACC-1"))
    await add_rule(
        runtime, "Account from form", "identifier", {"kind": "account_id", "source": "payload.form.accountNumber"}
    )

    result = await ingest(
        runtime, channel="web", from_address="unknown@example.com", payload={"form": {"accountNumber": " ACC-1 "}}
    )

    assert result.customer_id == ada and result.contact.recognition["matchedRule"] == "Account from form"


async def test_field_match_rule(runtime):
    await make_customer(runtime, "Other", fields={"memberNo": "M-1"})
    ada = await make_customer(runtime, "Ada", fields={"memberNo": "M-77", "tier": "gold"})
    await add_rule(runtime, "Member number", "field_match", {"path": "payload.memberNo", "field": "memberNo"})

    result = await ingest(runtime, channel="chat", from_address="visitor", payload={"memberNo": "M-77"})

    assert result.customer_id == ada and result.contact.recognition["matchedRule"] == "Member number"


# Order of play


async def test_first_rule_with_one_match_wins_and_order_is_editable(runtime):
    ada = await make_customer(runtime, "Ada", ("email", "shared-desk@example.com"))
    bob = await make_customer(runtime, "Bob", ("account_id", "ACC-B"))
    account_rule = await add_rule(
        runtime, "Account id", "identifier", {"kind": "account_id", "source": "payload.account"}, position=3
    )

    first = await ingest(runtime, from_address="shared-desk@example.com", payload={"account": "ACC-B"})
    assert first.customer_id == bob and first.contact.recognition["matchedRule"] == "Account id"
    assert "Sender email" not in [s["rule"] for s in first.contact.recognition["steps"]]  # never tried

    async with runtime.transaction() as session:
        ids = [r.id for r in await rule_service.list_rules(session)]
        ids.remove(account_rule.id)
        await rule_service.reorder_rules(session, actor=SYSTEM, ids=ids + [account_rule.id])
    second = await ingest(runtime, from_address="shared-desk@example.com", payload={"account": "ACC-B"})
    assert second.customer_id == ada and second.contact.recognition["matchedRule"] == "Sender email"


async def test_disabled_and_other_channel_rules_are_not_tried(runtime):
    await make_customer(runtime, "Ada", ("account_id", "ACC-1"))
    await add_rule(
        runtime, "SMS only", "identifier", {"kind": "account_id", "source": "payload.account"}, channels=["sms"]
    )
    off = await add_rule(runtime, "Off", "identifier", {"kind": "account_id", "source": "payload.account"})
    async with runtime.transaction() as session:
        await rule_service.update_rule(session, actor=SYSTEM, rule_id=off.id, enabled=False)

    result = await ingest(runtime, channel="chat", from_address="visitor", payload={"account": "ACC-1"})

    tried = [s["rule"] for s in result.contact.recognition["steps"]]
    assert "SMS only" not in tried and "Off" not in tried and result.customer_id is None


# Shared identifiers


async def test_household_phone_shared_by_three_profiles_gives_candidates_never_a_guess(runtime):
    household = [await make_customer(runtime, name, ("phone", "01632 960123")) for name in ("Ann", "Ben", "Cat")]
    customers_before = await count(runtime, Customer)

    for channel in ("phone", "email"):
        result = await ingest(runtime, channel=channel, from_address="+44 1632 960123")
        assert result.customer_id is None and result.case_id is None
        assert sorted(result.candidates) == sorted(household)
        assert result.contact.needs_review and sorted(result.contact.candidate_customer_ids) == sorted(household)
        trace = result.contact.recognition
        assert trace["outcome"] == "ambiguous" and step(result, "Sender phone")["outcome"] == "ambiguous"
        assert not result.customer_created and not result.case_created
    assert await count(runtime, Customer) == customers_before  # even the email policy created nothing


async def test_candidates_sharing_an_address_come_most_similar_name_first(runtime):
    # A shared mailbox: the profile whose name is like the sender's display name leads, as in duplicates.
    family = [
        await make_customer(runtime, name, ("email", "family@example.com"))
        for name in ("Robert Jones", "Catherine Jones", "Kate Jones")
    ]
    result = await ingest(runtime, channel="email", from_address='"Jones, Katherine" <family@example.com>')
    assert result.customer_id is None and result.contact.needs_review
    assert result.candidates[0] == family[1] and sorted(result.candidates) == sorted(family)
    assert result.contact.candidate_customer_ids == result.candidates


async def test_a_later_unique_match_beats_earlier_candidates(runtime):
    ann = await make_customer(runtime, "Ann", ("phone", "01632 960123"), ("account_id", "A-1"))
    await make_customer(runtime, "Ben", ("phone", "01632 960123"))
    await add_rule(runtime, "Account", "identifier", {"kind": "account_id", "source": "payload.account"})

    result = await ingest(runtime, channel="phone", from_address="01632 960123", payload={"account": "A-1"})

    assert result.customer_id == ann and result.candidates == [] and not result.contact.needs_review


async def test_archived_and_merged_customers_are_not_recognised(runtime):
    await make_customer(runtime, "Gone", ("email", "gone@example.com"), status="archived")
    await make_customer(runtime, "Merged", ("phone", "+442079460018"), status="merged")

    email = await ingest(runtime, from_address="gone@example.com")
    phone = await ingest(runtime, channel="phone", from_address="+442079460018")

    assert email.customer_created  # a fresh profile, not the archived one
    assert phone.customer_id is None and phone.candidates == []


# No-match policy and promotion


async def test_unknown_caller_creates_nothing_and_gets_a_partially_completed_profile(runtime):
    await add_promotion(runtime, "Caller name", "payload.caller.name", "customer", "name", "fill_empty")
    await add_promotion(runtime, "Postcode", "payload.caller.postcode", "customer", "fields.postcode", "fill_empty")

    result = await ingest(
        runtime,
        channel="phone",
        from_address="07700 900123",
        payload={"caller": {"name": "Dee", "postcode": "AB1 2CD"}},
    )

    assert result.customer_id is None and result.contact.needs_review
    assert await count(runtime, Customer) == 0 and await count(runtime, Case) == 0
    trace = result.contact.recognition
    assert trace["partialProfile"] == {
        "name": "Dee",
        "identifiers": [{"kind": "phone", "value": "+447700900123"}],
        "fields": {"postcode": "AB1 2CD"},
    }
    assert trace["policy"]["channel"] == "phone" and trace["created"] == {"customer": False, "case": False}
    assert {p["rule"]: p["result"] for p in trace["promoted"]} == {"Caller name": "proposed", "Postcode": "proposed"}


async def test_web_form_creates_the_customer_with_promoted_data_and_a_case(runtime):
    await add_promotion(runtime, "Account", "payload.form.accountNumber", "customer", "account_id", "add_identifier")
    await add_promotion(runtime, "Phone", "payload.form.phone", "customer", "phone", "add_identifier")
    await add_promotion(runtime, "Topic", "payload.form.topic", "case", "fields.topic", "fill_empty")

    result = await ingest(
        runtime,
        channel="web",
        subject="Contact form",
        from_address="Eve Example <eve@example.com>",
        payload={"form": {"accountNumber": "ACC-55", "phone": "not a phone", "topic": "billing"}},
    )

    assert result.customer_created and result.case_created
    async with runtime.reading() as session:
        customer = await session.get(Customer, result.customer_id)
        identifiers = set(
            (
                await session.execute(
                    select(CustomerIdentifier.kind, CustomerIdentifier.value).where(
                        CustomerIdentifier.customer_id == customer.id
                    )
                )
            ).all()
        )
        case = await session.get(Case, result.case_id)
    assert customer.name == "Eve Example"
    assert identifiers == {("email", "eve@example.com"), ("account_id", "ACC-55")}
    assert case.subject == "Contact form" and case.fields == {"topic": "billing"}
    skipped = [p for p in result.contact.recognition["promoted"] if p["result"] == "skipped"]
    assert [p["rule"] for p in skipped] == ["Phone"]


async def test_promotion_policies_on_an_existing_customer_and_case(runtime):
    ada = await make_customer(
        runtime, "Ada", ("email", "ada@example.com"), ("account_id", "ACC-1"), fields={"tier": "gold", "city": ""}
    )
    await add_promotion(runtime, "Tier", "payload.tier", "customer", "fields.tier", "fill_empty")
    await add_promotion(runtime, "City", "payload.city", "customer", "fields.city", "fill_empty")
    await add_promotion(runtime, "Score", "payload.score", "customer", "fields.score", "overwrite")
    await add_promotion(runtime, "Account", "payload.account", "customer", "account_id", "add_identifier")
    await add_promotion(runtime, "Old account", "payload.oldAccount", "customer", "account_id", "add_identifier")
    await add_promotion(runtime, "Order", "payload.order", "case", "fields.order", "overwrite")

    result = await ingest(
        runtime,
        from_address="ada@example.com",
        subject="Hello",
        payload={
            "tier": "bronze",
            "city": "Leeds",
            "score": 7,
            "account": "ACC-2",
            "oldAccount": "ACC-1",
            "order": "O-1",
        },
    )

    async with runtime.reading() as session:
        customer = await session.get(Customer, ada)
        accounts = set(
            await session.scalars(
                select(CustomerIdentifier.value).where(
                    CustomerIdentifier.customer_id == ada, CustomerIdentifier.kind == "account_id"
                )
            )
        )
        case = await session.get(Case, result.case_id)
    assert customer.fields == {"tier": "gold", "city": "Leeds", "score": 7}
    assert accounts == {"ACC-1", "ACC-2"}
    assert case.fields == {"order": "O-1"}
    results = {p["rule"]: p["result"] for p in result.contact.recognition["promoted"]}
    assert results == {
        "Tier": "unchanged",
        "City": "applied",
        "Score": "applied",
        "Account": "applied",
        "Old account": "unchanged",
        "Order": "applied",
    }

    again = await ingest(runtime, from_address="ada@example.com", payload={"score": 9})
    async with runtime.reading() as session:
        assert (await session.get(Customer, ada)).fields["score"] == 9
    assert again.customer_id == ada


# Safety


async def test_invalid_pattern_is_refused_at_creation(runtime):
    for pattern in ("([unclosed", "no groups", "(two)(groups)"):
        with pytest.raises(UserError) as refused:
            await add_rule(runtime, "Bad", "reference_in_text", {"pattern": pattern})
        assert refused.value.code == ErrorCode.INVALID_PATTERN and refused.value.field == "config.pattern"
    assert await count(runtime, Case) == 0
    async with runtime.reading() as session:
        assert "Bad" not in [r.name for r in await rule_service.list_rules(session)]


async def test_a_pathological_pattern_times_out_and_the_contact_is_still_stored(runtime):
    await add_rule(
        runtime, "Catastrophic", "reference_in_text", {"pattern": r"(a|aa)+$", "fields": ["text"]}, position=1
    )
    ada = await make_customer(runtime, "Ada", ("email", "ada@example.com"))

    result = await ingest(runtime, from_address="ada@example.com", text="a" * 5000 + "!")

    catastrophic = step(result, "Catastrophic")
    assert catastrophic["outcome"] == "error" and "too long" in catastrophic["reason"]
    assert result.customer_id == ada


async def test_an_outbound_contact_is_recognised_by_its_recipient(runtime):
    ada = await make_customer(runtime, "Ada", ("email", "ada@example.com"))
    result = await ingest(
        runtime,
        direction="outbound",
        from_address="support@contact-centre.test",
        to_addresses=["Ada <ada@example.com>"],
        subject="Your refund",
    )
    assert result.customer_id == ada

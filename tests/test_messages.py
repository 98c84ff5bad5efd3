"""Message templates: supervisors edit the system's own mails; a template that cannot render
gives way to the default words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from app.auth import SYSTEM
from app.contact_data import ContactData
from app.models import Case, Mailbox, User
from app.services import contacts as contact_service
from app.services import messages, sla
from tests.support import make_customer, rows
from tests.test_workflows import _case_in_workflow, _notify_workflow

LIST = "{ messageTemplates { kind subject edited variables { name } } }"
SET = """mutation($input: MessageTemplateSetInput!) {
  messageTemplateSet(input: $input) { messageTemplate { kind subject edited } errors { field code } }
}"""
RESET = """mutation($kind: MessageKind!) {
  messageTemplateReset(input: {kind: $kind}) { messageTemplate { subject edited } errors { code } }
}"""


async def test_supervisors_edit_and_reset_the_system_messages(gql):
    listed = (await gql(LIST))["messageTemplates"]
    edited = await gql(
        SET,
        {"input": {"kind": "SLA_BREACH", "subject": "Late: {{ reference }}", "text": "{{ subject }} is late.\n"}},
    )
    broken = await gql(SET, {"input": {"kind": "SLA_BREACH", "subject": "x", "text": "{{ reference "}})
    two_lines = await gql(SET, {"input": {"kind": "TASK_REMINDER", "subject": "a\nb", "text": "t"}})
    after = {m["kind"]: m for m in (await gql(LIST))["messageTemplates"]}
    reset = await gql(RESET, {"kind": "SLA_BREACH"})

    assert [m["kind"] for m in listed] == ["SLA_WARNING", "SLA_BREACH", "TASK_REMINDER"]
    assert not any(m["edited"] for m in listed)
    assert {"reference", "passed", "escalated"} <= {v["name"] for v in listed[1]["variables"]}
    assert edited["messageTemplateSet"] == {
        "messageTemplate": {"kind": "SLA_BREACH", "subject": "Late: {{ reference }}", "edited": True},
        "errors": [],
    }
    assert broken["messageTemplateSet"]["errors"] == [{"field": "text", "code": "INVALID"}]
    assert two_lines["messageTemplateSet"]["errors"] == [{"field": "subject", "code": "INVALID"}]
    assert after["SLA_BREACH"]["subject"] == "Late: {{ reference }}" and not after["TASK_REMINDER"]["edited"]
    assert reset["messageTemplateReset"]["messageTemplate"] == {
        "subject": "[{{ reference }}] SLA breached",
        "edited": False,
    }


async def test_a_template_that_fails_to_render_gives_way_to_the_default(runtime):
    async with runtime.transaction() as session:
        await messages.set_template(session, actor=SYSTEM, kind="sla_warning", subject="{{ 1 / 0 }}", text="x")
    async with runtime.reading() as session:
        subject, text = await messages.message(
            session,
            "sla_warning",
            {"reference": "CASE-000007", "subject": "Boiler", "passed": ["a"], "escalated": False},
        )
    assert (subject, text) == ("[CASE-000007] SLA warning", "Case CASE-000007: a passed.\n")


async def test_the_sla_sweep_writes_its_notice_from_the_edited_template(runtime):
    setup = await _notify_workflow(runtime)
    customer = await make_customer(runtime, "Ada")
    await _case_in_workflow(runtime, customer, setup["workflow"])
    async with runtime.transaction() as session:
        mailbox = Mailbox(address="support@example.com", intake="smtp", relay_host="127.0.0.1", relay_port=2525)
        session.add(mailbox)
        await session.flush()
        await contact_service.insert_contact(
            session,
            data=ContactData(channel="email", direction="inbound", text="help", source=f"mailbox:{mailbox.id}"),
            customer_id=customer,
            case_id=int(await session.scalar(select(func.max(Case.id)))),
        )
        await session.execute(update(User).where(User.name == "lead").values(email="lead@example.com"))
        await messages.set_template(
            session,
            actor=SYSTEM,
            kind="sla_breach",
            subject="Overdue: {{ reference }} ({{ subject }})",
            text="{% if escalated %}Your group has it now. {% endif %}{{ passed | length }} deadline passed.\n",
        )

    await sla.sweep(runtime, now=datetime.now(UTC) + timedelta(minutes=61))

    sent = await rows(
        runtime,
        "SELECT o.raw LIKE '%Subject: Overdue: CASE-000001 (Complaint)%', o.raw LIKE '%Your group has it now. 1 deadline passed.%'"
        " FROM outbound_messages o",
    )
    assert sent == [(True, True)]

"""Canned replies and signatures: supervisors keep the canned replies (global or per pool), agents
list them and answer with `caseReply(templateId)`; every reply ends with the agent's signature (or
the mailbox's signature template) once, in text and HTML, and auto-responses carry none. What the
relay (a real aiosmtpd server) receives is checked."""

from __future__ import annotations

from email import message_from_bytes, policy

import aiosmtplib
import pytest
import yaml

from app.auth import SYSTEM
from app.config_file import export_config, import_config
from app.errors import UserError
from app.services import mail as mail_service
from app.services import queues as queue_service
from app.services import replies as replies_service
from schema.ids import to_global_id
from tests.conftest import _token
from tests.mail_support import add_mailbox, arq_pool, contacts, listener, message, relay_server, run_jobs

REPLY = """
mutation($input: CaseReplyInput!) {
  caseReply(input: $input) { contact { id subject text } errors { field code message } }
}
"""
CREATE = """
mutation($input: ReplyTemplateCreateInput!) {
  replyTemplateCreate(input: $input) { replyTemplate { id name subject text html pool { name } } errors { field code } }
}
"""
UPDATE = """
mutation($input: ReplyTemplateUpdateInput!) {
  replyTemplateUpdate(input: $input) { replyTemplate { id name subject text html pool { name } } errors { field code } }
}
"""
DELETE = "mutation($id: ID!) { replyTemplateDelete(input: {id: $id}) { deletedId errors { code } } }"
LIST = "query($pool: ID) { replyTemplates(poolId: $pool) { name pool { name } } }"
SIGNATURE = """
mutation($input: UserSignatureSetInput!) {
  userSignatureSet(input: $input) { user { name signature } errors { field code } }
}
"""
ME = "{ me { id name signature } }"

THANKS = {
    "name": "Thanks",
    "subject": "About {{ case.subject }}",
    "text": "Dear {{ customer.name or 'customer' }},\nyour case {{ reference }} is with {{ agent.name }} ({{ pool }}).",
    "html": "<p>Dear {{ customer.name }},</p><p>case {{ reference }}</p>",
}


@pytest.fixture
async def relay():
    async with relay_server() as handler:
        yield handler


@pytest.fixture
async def supervisor_token(runtime) -> str:
    return await _token(runtime, "super-sue", "supervisor")


@pytest.fixture
async def pools(runtime) -> dict[str, int]:
    async with runtime.transaction() as session:
        billing = await queue_service.create_pool(session, actor=SYSTEM, name="Billing")
        returns = await queue_service.create_pool(session, actor=SYSTEM, name="Returns")
        return {"Billing": billing.id, "Returns": returns.id}


@pytest.fixture
async def case_id(runtime, servers, relay, pools) -> int:
    """A case opened in the Billing pool by a mail from Ann <b>Customer</b>, confirmed by an auto-response."""
    await add_mailbox(
        runtime,
        display_name="Support",
        pool_id=pools["Billing"],
        relay={"host": "127.0.0.1", "port": relay.port, "security": "none", "from_address": "support@casegraph.test"},
        auto_response={"subject": "Received", "text": "We got your mail, {{ reference }}."},
    )
    async with arq_pool(servers) as arq, listener(runtime, arq) as port:
        await aiosmtplib.send(
            message(sender='"Ann <b>Customer</b>" <ann@example.org>', subject="Invoice twice"),
            sender="ann@example.org",
            recipients=["support@casegraph.test"],
            hostname="127.0.0.1",
            port=port,
        )
        await run_jobs()
    [inbound] = [c for c in await contacts(runtime) if c.direction == "inbound"]
    assert len(relay.received) == 1  # the auto-response
    return inbound.case_id


def received(relay, index: int = -1):
    return message_from_bytes(relay.received[index].content, policy=policy.default)


def bodies(mail) -> tuple[str, str | None]:
    """The text and HTML parts, with the wire's CRLF line ends as LF."""
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = mail.get_body(("html",))
    return text, html.get_content().replace("\r\n", "\n") if html is not None else None


async def reply(gql, token: str, case_id: int, **fields) -> dict:
    payload = (
        await gql(
            REPLY, {"input": {"caseId": to_global_id("Case", case_id), "to": ["ann@example.org"], **fields}}, token
        )
    )["caseReply"]
    await run_jobs()
    return payload


# ---- canned replies ---------------------------------------------------------------------------------


async def test_supervisors_keep_canned_replies_and_agents_list_those_of_their_pool(
    gql, pools, supervisor_token, agent_token
):
    billing, returns = to_global_id("Pool", pools["Billing"]), to_global_id("Pool", pools["Returns"])
    created = (await gql(CREATE, {"input": THANKS}, supervisor_token))["replyTemplateCreate"]
    assert created["errors"] == [] and created["replyTemplate"]["pool"] is None
    for name, pool in (("Refund", billing), ("Label", returns)):
        made = await gql(CREATE, {"input": {"name": name, "text": "...", "poolId": pool}}, supervisor_token)
        assert made["replyTemplateCreate"]["errors"] == []

    assert [t["name"] for t in (await gql(LIST, {"pool": billing}, agent_token))["replyTemplates"]] == [
        "Refund",
        "Thanks",
    ]
    assert len((await gql(LIST, {}, agent_token))["replyTemplates"]) == 3

    twice = await gql(CREATE, {"input": {**THANKS, "subject": None}}, supervisor_token)
    assert twice["replyTemplateCreate"]["errors"] == [{"field": "name", "code": "DUPLICATE"}]
    same_name_in_a_pool = await gql(CREATE, {"input": {**THANKS, "poolId": billing}}, supervisor_token)
    assert same_name_in_a_pool["replyTemplateCreate"]["errors"] == []
    broken = await gql(CREATE, {"input": {"name": "Broken", "text": "{% for %}"}}, supervisor_token)
    assert broken["replyTemplateCreate"]["errors"] == [{"field": "text", "code": "INVALID"}]
    two_lines = await gql(CREATE, {"input": {"name": "X", "text": "x", "subject": "a\nb"}}, supervisor_token)
    assert two_lines["replyTemplateCreate"]["errors"] == [{"field": "subject", "code": "INVALID"}]

    template_id = created["replyTemplate"]["id"]
    changed = await gql(UPDATE, {"input": {"id": template_id, "subject": None, "poolId": returns}}, supervisor_token)
    assert changed["replyTemplateUpdate"]["replyTemplate"] | {"id": None} == {
        **THANKS,
        "id": None,
        "subject": None,
        "pool": {"name": "Returns"},
    }
    refused = await gql.post(CREATE, {"input": {"name": "Mine", "text": "x"}}, agent_token)
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await gql(DELETE, {"id": template_id}, supervisor_token))["replyTemplateDelete"]["deletedId"] == template_id
    assert [t["name"] for t in (await gql(LIST, {"pool": returns}, agent_token))["replyTemplates"]] == ["Label"]


async def test_a_reply_from_a_canned_reply_is_filled_in_for_the_case(
    gql, relay, case_id, supervisor_token, agent_token, pools
):
    template = (await gql(CREATE, {"input": THANKS}, supervisor_token))["replyTemplateCreate"]["replyTemplate"]

    payload = await reply(gql, agent_token, case_id, templateId=template["id"])

    assert payload["errors"] == []
    mail = received(relay)
    text, html = bodies(mail)
    assert mail["Subject"] == "About Invoice twice [CASE-000001]"
    assert text.startswith("Dear Ann <b>Customer</b>,\nyour case CASE-000001 is with agent-ann (Billing).")
    # The HTML template's variables are escaped: the customer's name adds no markup.
    assert html.startswith("<p>Dear Ann &lt;b&gt;Customer&lt;/b&gt;,</p><p>case CASE-000001</p>")
    assert payload["contact"]["text"] == text.rstrip("\n")

    preview = await gql(
        "query($t: ID!, $c: ID!) { replyPreview(templateId: $t, caseId: $c) { subject text } }",
        {"t": template["id"], "c": to_global_id("Case", case_id)},
        agent_token,
    )
    assert preview["replyPreview"]["subject"] == "About Invoice twice"
    assert preview["replyPreview"]["text"] == text.rstrip("\n")


async def test_the_agents_own_words_come_before_the_canned_reply_and_their_subject_wins(
    gql, relay, case_id, supervisor_token, agent_token
):
    template = (await gql(CREATE, {"input": THANKS}, supervisor_token))["replyTemplateCreate"]["replyTemplate"]

    await reply(gql, agent_token, case_id, templateId=template["id"], text="Sorry for the wait!", subject="Invoice")

    mail = received(relay)
    text, html = bodies(mail)
    assert mail["Subject"] == "Invoice [CASE-000001]"
    assert text.startswith("Sorry for the wait!\n\nDear Ann <b>Customer</b>,")
    assert html.startswith("<p>Sorry for the wait!</p>\n<p>Dear Ann &lt;b&gt;Customer&lt;/b&gt;,</p>")


async def test_a_canned_reply_of_another_pool_or_unknown_is_refused_and_nothing_is_sent(
    gql, relay, case_id, supervisor_token, agent_token, pools
):
    sent_before = len(relay.received)
    other = {"name": "Label", "text": "x", "poolId": to_global_id("Pool", pools["Returns"])}
    template = (await gql(CREATE, {"input": other}, supervisor_token))["replyTemplateCreate"]["replyTemplate"]

    wrong_pool = await reply(gql, agent_token, case_id, templateId=template["id"])
    unknown = await reply(gql, agent_token, case_id, templateId=to_global_id("ReplyTemplate", 999))

    assert wrong_pool["errors"][0]["field"] == "templateId" and wrong_pool["errors"][0]["code"] == "INVALID"
    assert unknown["errors"][0]["code"] == "NOT_FOUND"
    assert len(relay.received) == sent_before


async def test_canned_replies_travel_with_the_configuration_file(runtime, gql, pools, supervisor_token):
    await gql(CREATE, {"input": THANKS}, supervisor_token)
    await gql(
        CREATE,
        {"input": {"name": "Refund", "text": "Refunded.", "poolId": to_global_id("Pool", pools["Billing"])}},
        supervisor_token,
    )
    async with runtime.reading() as session:
        document = yaml.safe_load(await export_config(session))
    assert document["replyTemplates"] == [
        {"name": "Refund", "pool": "Billing", "subject": None, "text": "Refunded.", "html": None},
        {"name": "Thanks", "pool": None, **{k: v for k, v in THANKS.items() if k != "name"}},
    ]

    document["replyTemplates"] = [{"name": "Refund", "pool": "Billing", "text": "Refunded today."}]
    async with runtime.transaction() as session:
        counts = await import_config(session, actor=SYSTEM, document=yaml.safe_dump(document))
    assert counts["replyTemplates"] == 1
    listed = (await gql("{ replyTemplates { name text pool { name } } }"))["replyTemplates"]
    assert listed == [{"name": "Refund", "text": "Refunded today.", "pool": {"name": "Billing"}}]

    document["replyTemplates"] = [{"name": "Lost", "pool": "Nowhere", "text": "x"}]
    with pytest.raises(UserError) as refused:
        async with runtime.transaction() as session:
            await import_config(session, actor=SYSTEM, document=yaml.safe_dump(document))
    assert (refused.value.code, refused.value.field) == ("NOT_FOUND", "replyTemplates.0.pool")


# ---- signatures --------------------------------------------------------------------------------------


async def test_agents_set_their_own_signature_and_supervisors_anyones(gql, agent_token, supervisor_token):
    own = (await gql(SIGNATURE, {"input": {"signature": "Ann\r\nBilling team\n"}}, agent_token))["userSignatureSet"]
    assert own == {"user": {"name": "agent-ann", "signature": "Ann\nBilling team"}, "errors": []}
    sue = (await gql(ME, token=supervisor_token))["me"]["id"]
    ann = (await gql(ME, token=agent_token))["me"]["id"]

    refused = (await gql(SIGNATURE, {"input": {"userId": sue, "signature": "x"}}, agent_token))["userSignatureSet"]
    assert refused == {"user": None, "errors": [{"field": "userId", "code": "FORBIDDEN"}]}
    by_supervisor = await gql(SIGNATURE, {"input": {"userId": ann, "signature": "Ann B."}}, supervisor_token)
    assert by_supervisor["userSignatureSet"]["user"]["signature"] == "Ann B."
    assert (await gql(ME, token=agent_token))["me"]["signature"] == "Ann B."
    cleared = await gql(SIGNATURE, {"input": {"signature": "  "}}, agent_token)
    assert cleared["userSignatureSet"]["user"]["signature"] is None


async def test_a_reply_ends_with_the_agents_signature_once_and_the_auto_response_with_none(
    gql, relay, case_id, agent_token, supervisor_token
):
    [auto_response] = [received(relay, 0)]
    assert auto_response["Auto-Submitted"] == "auto-replied"
    signature = "Ann <Billing>\n+44 20 7946 0000"
    await gql(SIGNATURE, {"input": {"signature": signature}}, agent_token)
    template = (await gql(CREATE, {"input": THANKS}, supervisor_token))["replyTemplateCreate"]["replyTemplate"]

    await reply(gql, agent_token, case_id, text="Plain answer.")
    await reply(gql, agent_token, case_id, html="<p>Rich answer.</p>")
    await reply(gql, agent_token, case_id, text=f"Signed myself.\n\n-- \n{signature}")
    await reply(gql, agent_token, case_id, templateId=template["id"])

    assert "-- \n" not in bodies(auto_response)[0] and "Ann" not in bodies(auto_response)[0]
    plain, rich, self_signed, canned = (bodies(received(relay, n)) for n in range(1, 5))
    assert plain == ("Plain answer.\n\n-- \nAnn <Billing>\n+44 20 7946 0000\n", None)
    assert rich[0].count("Ann <Billing>") == 1 and rich[0].startswith("Rich answer.")
    assert rich[1].count("Ann &lt;Billing&gt;<br>\n+44 20 7946 0000") == 1
    assert self_signed[0].count(signature) == 1
    assert canned[0].count(signature) == 1 and canned[1].count("Ann &lt;Billing&gt;") == 1


async def test_a_mailbox_signature_template_names_the_agent(runtime, gql, relay, case_id, agent_token):
    mailbox = (await gql("{ mailboxes { id } }"))["mailboxes"][0]["id"]
    template = "{{ agent_name }} ({{ agent_role }}), {{ mailbox_name }}\n{{ agent_signature }}"
    updated = await gql(
        "mutation($input: MailboxUpdateInput!) { mailboxUpdate(input: $input) { mailbox { signature } errors { code } } }",
        {"input": {"id": mailbox, "signature": template}},
    )
    assert updated["mailboxUpdate"]["mailbox"]["signature"] == template
    await gql(SIGNATURE, {"input": {"signature": "Direct line 0000"}}, agent_token)

    await reply(gql, agent_token, case_id, text="Done.")

    text, _ = bodies(received(relay))
    assert text == "Done.\n\n-- \nagent-ann (agent), Support\nDirect line 0000\n"


async def test_the_mailbox_signature_travels_with_the_mail_file(runtime, case_id):
    async with runtime.transaction() as session:
        [mailbox] = await mail_service.list_mailboxes(session)
        await mail_service.update_mailbox(session, actor=SYSTEM, mailbox_id=mailbox.id, signature="{{ agent_name }}")
        document = yaml.safe_load(await mail_service.export_config(session))
    assert document["mailboxes"][0]["signature"] == "{{ agent_name }}"

    document["mailboxes"][0]["signature"] = "{{ agent_name }}, {{ mailbox_name }}"
    async with runtime.transaction() as session:
        await mail_service.import_config(session, actor=SYSTEM, document=yaml.safe_dump(document))
        [mailbox] = await mail_service.list_mailboxes(session)
    assert mailbox.signature_template == "{{ agent_name }}, {{ mailbox_name }}"


async def test_listing_canned_replies_costs_the_same_few_statements_however_many_there_are(
    runtime, gql, agent_token, count_queries
):
    query = "{ replyTemplates { name text pool { name } } }"

    async def add(count: int) -> None:
        async with runtime.transaction() as session:
            for n in range(count):
                pool = await queue_service.create_pool(session, actor=SYSTEM, name=f"Pool {count}-{n}")
                await replies_service.create_reply_template(
                    session, actor=SYSTEM, name=f"Reply {count}-{n}", text="x", pool_id=pool.id
                )

    await add(2)
    await gql(query, token=agent_token)  # the token is known from here on
    start = count_queries.count
    assert len((await gql(query, token=agent_token))["replyTemplates"]) == 2
    few = count_queries.count - start

    await add(20)
    start = count_queries.count
    assert len((await gql(query, token=agent_token))["replyTemplates"]) == 22
    assert count_queries.count - start == few <= 3

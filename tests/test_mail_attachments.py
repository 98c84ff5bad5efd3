"""Attachments and inline images of inbound mail: stored once by content hash, listed on the
contact, downloadable by staff with their token only."""

from __future__ import annotations

import os
from email.message import EmailMessage
from email.policy import SMTP

import aiosmtplib
import pytest
from sqlalchemy import func, select

from app.models import Blob
from app.services.auth import create_token
from schema.ids import to_global_id
from tests.mail_support import add_mailbox, arq_pool, contacts, listener, run_jobs

PDF = b"%PDF-1.4 " + os.urandom(2000)
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(500)
ATTACHMENTS = """
query($id: ID!) { node(id: $id) { ... on Contact { attachments { id filename contentType size inline contentId url } } } }
"""


def with_files(message_id: str, files: list[tuple[bytes, str, str, str]]) -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "ann@example.org", "support@casegraph.test", "Invoice"
    mail["Message-ID"] = message_id
    mail.set_content("See the attached invoice.")
    mail.add_alternative('<p>See <img src="cid:logo@x"></p>', subtype="html")
    for data, maintype, subtype, filename in sorted(files, key=lambda f: f[1] != "image"):  # images first
        if maintype == "image":
            mail.get_payload()[1].add_related(
                data, maintype, subtype, cid="<logo@x>", filename=filename, disposition="inline"
            )
        else:
            mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return mail.as_bytes(policy=SMTP)


@pytest.fixture
async def smtp(runtime, servers):
    await add_mailbox(runtime)
    async with arq_pool(servers) as arq, listener(runtime, arq) as port:
        yield port


async def send(port: int, raw: bytes) -> None:
    await aiosmtplib.send(
        raw,
        sender="ann@example.org",
        recipients=["support@casegraph.test"],
        hostname="127.0.0.1",
        port=port,
        timeout=120,
    )


async def test_attachments_are_listed_stored_once_and_downloaded_by_staff_only(smtp, runtime, gql, http, agent_token):
    await send(
        smtp,
        with_files(
            "<a@example.org>", [(PDF, "application", "pdf", "Invoice 42 €.pdf"), (PNG, "image", "png", "logo.png")]
        ),
    )
    await send(smtp, with_files("<b@example.org>", [(PDF, "application", "pdf", "copy.pdf")]))
    await run_jobs()

    by_message = {c.external_id: c for c in await contacts(runtime)}
    first, second = by_message["<a@example.org>"], by_message["<b@example.org>"]
    listed = (await gql(ATTACHMENTS, {"id": to_global_id("Contact", first.id)}))["node"]["attachments"]
    assert [(a["filename"], a["contentType"], a["size"], a["inline"]) for a in listed] == [
        ("logo.png", "image/png", len(PNG), True),
        ("Invoice 42 €.pdf", "application/pdf", len(PDF), False),
    ]
    assert listed[0]["contentId"] == "<logo@x>"
    async with runtime.reading() as session:
        assert await session.scalar(select(func.count()).select_from(Blob)) == 2  # the PDF once for both contacts
    again = (await gql(ATTACHMENTS, {"id": to_global_id("Contact", second.id)}))["node"]["attachments"]
    assert [a["size"] for a in again] == [len(PDF)]

    url = listed[1]["url"]
    download = await http.get(url, headers={"Authorization": f"Bearer {agent_token}"})
    assert download.status_code == 200 and download.content == PDF
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"

    assert (await http.get(url)).status_code == 401
    assert (await http.get(url, headers={"Authorization": "Bearer cg_forged"})).status_code == 401
    async with runtime.transaction() as session:
        integrator = await create_token(session, name="dialer", role="integrator")
    assert (await http.get(url, headers={"Authorization": f"Bearer {integrator}"})).status_code == 403
    missing = f"/attachments/{to_global_id('Attachment', 999)}"
    assert (await http.get(missing, headers={"Authorization": f"Bearer {agent_token}"})).status_code == 404


async def test_a_25_mb_attachment_is_taken_in_whole(smtp, runtime, http, agent_token, gql):
    big = os.urandom(25 * 1024 * 1024)
    await send(smtp, with_files("<big@example.org>", [(big, "application", "octet-stream", "dump.bin")]))
    await run_jobs()

    [contact] = await contacts(runtime)
    [attachment] = (await gql(ATTACHMENTS, {"id": to_global_id("Contact", contact.id)}))["node"]["attachments"]
    assert attachment["size"] == len(big)
    download = await http.get(attachment["url"], headers={"Authorization": f"Bearer {agent_token}"})
    assert download.content == big

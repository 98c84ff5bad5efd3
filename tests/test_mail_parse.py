"""The parser's header policy remembers parsed headers by name and value; what it reads must be
exactly what the standard library's `policy.default` reads, for well-formed and hostile mail, the
first time a header is seen and every time after."""

from __future__ import annotations

from email import policy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.mail import parse
from tests.test_mail_batch import corpus

HEADER_WORDS = st.sampled_from(
    [
        "Grüße",
        "=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
        "=?iso-8859-1?b?SvxyZ2Vu?=",
        "=?bogus?Q?x?=",
        '"Doe, Jane"',
        "<a@example.org>",
        "a@example.org,",
        "(comment)",
        ";",
        "\\",
        '"',
        "re:",
        "[CASE-000123]",
        "\udcfc",  # an 8-bit byte as the parser keeps it
    ]
)
CONTENT_TYPES = st.sampled_from(
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "text/plain; charset=x-no-such-charset",
        'text/plain; charset="iso-8859-1"; format=flowed',
        "text/html; charset=utf-8",
        "text/plain; charset*=utf-8''%C3%BC",
        "text/plain; name=",
        "application/pdf; name=a.pdf",
        "image/png",
        "text",
        ";;",
        "multipart/mixed",  # without a boundary
        "message/rfc822",
    ]
)
BODIES = st.sampled_from(
    [
        b"Hello, my parcel has not arrived.\r\n",
        b"Hall\xf6 \xff\xfe\r\n",
        b"<p>Thanks</p><blockquote>On Mon, Ann wrote: earlier</blockquote>\r\n",
        b"=E2=82=AC 10 =\r\nrefund\r\n",
        b"SGVsbG8=\r\n",
        b"Thanks\r\n\r\n-----Original Message-----\r\nFrom: Support\r\nOld text\r\n",
    ]
)


def _header_line(name: str, words: list[str]) -> bytes:
    return f"{name}: {' '.join(words)}\r\n".encode("utf-8", "surrogateescape")


@st.composite
def hostile_messages(draw) -> bytes:
    headers = b""
    for name in ("From", "To", "Cc", "Subject", "Message-ID", "In-Reply-To", "Auto-Submitted", "Content-ID"):
        if draw(st.booleans()):
            headers += _header_line(name, draw(st.lists(HEADER_WORDS, max_size=4)))
    headers += f"Content-Type: {draw(CONTENT_TYPES)}\r\n".encode()
    if draw(st.booleans()):
        headers += b"Content-Transfer-Encoding: " + draw(
            st.sampled_from([b"quoted-printable", b"base64", b"8bit", b"x"])
        )
        headers += b"\r\n"
    if draw(st.booleans()):
        headers += b"Content-Disposition: " + draw(st.sampled_from([b"attachment; filename=a.txt", b"inline", b"x;"]))
        headers += b"\r\n"
    body = draw(BODIES)
    if draw(st.booleans()):  # the same message wrapped as a part of a multipart one
        boundary = b"b1"
        outer = b'From: x@example.org\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        return outer + b"--" + boundary + b"\r\n" + headers + b"\r\n" + body + b"--" + boundary + b"--\r\n"
    return headers + b"\r\n" + body


def read_both_ways(raw: bytes, monkeypatch) -> tuple:
    remembered = parse.parse_message(raw)
    remembered_again = parse.parse_message(raw)
    with monkeypatch.context() as patch:
        patch.setattr(parse, "POLICY", policy.default)
        standard = parse.parse_message(raw)
    return remembered, remembered_again, standard


def test_the_remembering_policy_reads_the_test_corpus_as_the_standard_policy(monkeypatch):
    for raw in corpus():
        remembered, again, standard = read_both_ways(raw, monkeypatch)
        assert remembered == again == standard


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile_messages())
def test_the_remembering_policy_reads_hostile_mail_as_the_standard_policy(monkeypatch, raw):
    remembered, again, standard = read_both_ways(raw, monkeypatch)
    assert remembered == again == standard

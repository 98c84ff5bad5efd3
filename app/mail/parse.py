"""Reading a raw message: headers, text and sanitised HTML, the new text apart from the quoted
history, and the attachments' names. Never raises: what cannot be read becomes a problem code,
and the raw message is kept by the caller whatever happens here."""

from __future__ import annotations

import asyncio
import html as html_lib
import logging
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser, HeaderParser
from email.policy import EmailPolicy
from email.utils import escapesre, getaddresses, parseaddr, specialsre
from functools import lru_cache
from typing import Any

import nh3
from mailparser_reply import EmailReplyParser

log = logging.getLogger(__name__)

# Headers kept on the contact: threading, addressing, and what later decides on auto-responses.
KEPT_HEADERS = (
    "Message-ID",
    "In-Reply-To",
    "References",
    "Subject",
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Date",
    "Auto-Submitted",
    "Precedence",
    "List-Id",
    "X-Autoreply",
    "X-Autorespond",
    "List-Unsubscribe",
    "X-Auto-Response-Suppress",
)
MAX_HEADER_CHARS = 4000  # a header longer than this is cut: it is kept whole in the raw message
# A longer Message-ID is no real one (and would not fit a database index entry): it is dropped and
# the message keyed by its content hash instead.
MAX_MESSAGE_ID_CHARS = 500
MAX_TEXT_CHARS = 1_000_000
MAX_PARTS = 500  # parts walked for attachments; deeper or wider structures stay in the raw message only
REPLY_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pl"]


@dataclass
class Attachment:
    filename: str | None
    content_type: str
    data: bytes
    inline: bool
    content_id: str | None


@dataclass
class DeliveryReport:
    """What a bounce (RFC 3464 delivery status notification) says about a message we sent."""

    original_message_id: str | None
    action: str | None  # failed, delayed, delivered, relayed, expanded
    status: str | None  # 5.1.1
    diagnostic: str | None
    recipient: str | None


@dataclass
class ParsedMail:
    headers: dict[str, str] = field(default_factory=dict)
    message_id: str | None = None
    subject: str | None = None
    from_address: str | None = None  # the bare address, lower-cased
    from_header: str | None = None  # 'Name <address>': recognition takes a new customer's name from it
    to_addresses: list[str] = field(default_factory=list)
    text: str | None = None  # the whole text part (or the text derived from HTML)
    new_text: str | None = None  # the text without the quoted history
    html: str | None = None  # sanitised
    attachments: list[Attachment] = field(default_factory=list)
    report: DeliveryReport | None = None
    problems: list[str] = field(default_factory=list)

    def problem(self, code: str) -> None:
        if code not in self.problems:
            self.problems.append(code)


@lru_cache(maxsize=1024)
def _parsed_header(factory: Any, name: str, value: str) -> Any:
    return factory(name, value)


class _RememberingPolicy(EmailPolicy):
    """The standard library's `policy.default`, except that a header is parsed once per name and
    value: a message's Content-Type is fetched a dozen times while it is walked, and most
    Content-Type and MIME headers are the same from one message to the next. Parsing headers was
    three quarters of the time a 5 KB message took. Parsed headers are immutable, so sharing one is safe."""

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if hasattr(value, "name"):
            return value
        return _parsed_header(self.header_factory, name, _LINE_BREAKS.sub("", value))


_LINE_BREAKS = re.compile(r"\n|\r")  # as policy.default unfolds a header before parsing it
POLICY = _RememberingPolicy()


def storable(text: str) -> str:
    """Text PostgreSQL can hold: no NUL, no lone surrogates (left by undecodable 8-bit bytes)."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _raw_header(message: EmailMessage, name: str) -> str | None:
    """A header whose structured parse failed, decoded leniently (RFC 2047 words, 8-bit as UTF-8 or Latin-1)."""
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            try:
                return str(make_header(decode_header(str(value))))
            except Exception:  # noqa: BLE001 - lying encodings: keep what the bytes say
                return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return None


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # an 8-bit byte the parser kept as a surrogate escape


def _eight_bit_header(message: EmailMessage, name: str) -> str | None:
    """A header sent as raw 8-bit bytes (not RFC 2047): in the body's charset, else guessed."""
    for key, value in message.raw_items():
        if key.lower() == name.lower() and isinstance(value, str) and _ESCAPED_BYTE.search(value):
            data = value.encode("utf-8", "surrogateescape")
            try:
                return data.decode(message.get_content_charset() or "utf-8")
            except (LookupError, UnicodeDecodeError):
                return _guess_decode(data)
    return None


def _header(message: EmailMessage, name: str, mail: ParsedMail) -> str | None:
    eight_bit = _eight_bit_header(message, name)
    if eight_bit is not None:
        mail.problem("EIGHT_BIT_HEADER")
        return storable(" ".join(eight_bit.split()))[:MAX_HEADER_CHARS]
    try:
        value = message.get(name)
        value = None if value is None else str(value)
    except Exception:  # noqa: BLE001 - malformed header: read it raw and say so
        mail.problem("MALFORMED_HEADER")
        value = _raw_header(message, name)
    if value is None:
        return None
    # CR/LF never survive into a stored header (they would inject headers into a reply).
    value = storable(" ".join(value.split()))
    if "\ufffd" in value or "\udcff" in value:
        mail.problem("UNDECODABLE_HEADER")
    return value[:MAX_HEADER_CHARS]


def _content(part: EmailMessage, mail: ParsedMail) -> str | None:
    """A text part decoded; an unknown charset is guessed (and reported)."""
    try:
        return part.get_content()
    except LookupError:
        mail.problem("UNKNOWN_CHARSET")
    except Exception:  # noqa: BLE001 - broken transfer encoding and the like
        mail.problem("UNREADABLE_PART")
    payload = part.get_payload(decode=True)
    return _guess_decode(payload) if isinstance(payload, bytes) else None


def _guess_decode(data: bytes) -> str:
    """Bytes whose declared charset is unknown: UTF-8 when they are, else Windows-1252, else Latin-1 (never fails)."""
    for charset in ("utf-8", "cp1252"):
        try:
            return data.decode(charset)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def html_to_text(html: str) -> str:
    """Plain text of an HTML body: tags dropped (scripts and styles with their content), entities decoded."""
    block = html.replace("<br", "\n<br").replace("</p>", "</p>\n").replace("</div>", "</div>\n")
    stripped = nh3.clean(block, tags=set())
    lines = [" ".join(line.split()) for line in html_lib.unescape(stripped).splitlines()]
    return "\n".join(line for line in lines if line).strip()


# Every quoted-history header the reply parser knows ("On … wrote:", "From: … Sent: …", "-----Original
# Message-----", an Outlook line of underscores) holds one of these: a text without any has no
# quoted history, and skipping the parser's scan (most of a short mail's parse time) changes nothing.
_QUOTE_CUES = (":", "-----", "_____")


def _new_text(text: str, mail: ParsedMail) -> str:
    if not any(cue in text for cue in _QUOTE_CUES):
        # What the parser answers for such a text: its lines stripped of surrounding blanks.
        return "\n".join(line.strip() for line in text.replace("\r\n", "\n").split("\n")).strip() or text
    try:
        reply = EmailReplyParser(languages=REPLY_LANGUAGES).parse_reply(text)
    except Exception:  # noqa: BLE001 - the library's regexes on hostile text: keep the whole text
        log.exception("reply parsing failed")
        mail.problem("REPLY_PARSE_FAILED")
        return text
    return reply.strip() or text


def _walk_attachments(message: EmailMessage, mail: ParsedMail) -> None:
    for count, part in enumerate(message.walk()):
        if count >= MAX_PARTS:
            mail.problem("TOO_MANY_PARTS")
            return
        if part.is_multipart():
            continue
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        content_id = _header(part, "Content-ID", mail)
        # A body part has neither a name nor a disposition; an inline image may have only its Content-ID.
        if disposition is None and filename is None and (content_id is None or part.get_content_maintype() == "text"):
            continue
        payload = part.get_payload(decode=True)
        mail.attachments.append(
            Attachment(
                filename=storable(filename)[:255] if filename else None,
                content_type=part.get_content_type(),
                data=payload if isinstance(payload, bytes) else b"",
                inline=disposition == "inline" or (disposition is None and content_id is not None),
                content_id=content_id,
            )
        )


def parse_message(raw: bytes) -> ParsedMail:
    """Everything that can be read from a raw message; what cannot is listed in `problems`."""
    mail = ParsedMail()
    try:
        message: Any = BytesParser(policy=POLICY).parsebytes(raw)
    except RecursionError:
        mail.problem("NESTED_TOO_DEEP")
    except Exception:  # noqa: BLE001 - the parser itself gave up
        log.warning("a message could not be parsed", exc_info=True)
        mail.problem("UNPARSABLE")
    else:
        try:
            _read(message, mail)
        except RecursionError:
            mail.problem("NESTED_TOO_DEEP")
        except Exception:  # noqa: BLE001 - keep what was read so far
            log.warning("a message could only partly be read", exc_info=True)
            mail.problem("UNPARSABLE")
        if message.defects:
            mail.problem("MIME_DEFECTS")
        return mail
    # The body defeated the parser: the headers alone still thread and address the message.
    try:
        _read_headers(BytesParser(policy=POLICY).parsebytes(raw, headersonly=True), mail)
    except Exception:  # noqa: BLE001 - nothing readable: the raw message is all there is
        log.warning("a message's headers could not be read", exc_info=True)
    return mail


# A batch this large is parsed in a helper process, while the worker's event loop does the database
# work of other batches: parsing is most of an intake's CPU time.
PARALLEL_FROM = 16
_helper: ProcessPoolExecutor | None = None


def _parse_all(raws: list[bytes]) -> list[ParsedMail]:
    return [parse_message(raw) for raw in raws]


def _end_with(owner_pid: int) -> None:
    """In the helper: exit once the worker that started it is gone. A worker killed with SIGKILL
    never tells its pool to stop, and the helper (with the forkserver it keeps alive) would
    otherwise wait forever."""

    def watch() -> None:
        while True:
            time.sleep(1)
            try:
                os.kill(owner_pid, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


async def parse_messages(raws: list[bytes]) -> list[ParsedMail]:
    """parse_message for each, in a helper process when there are many and a second core for it."""
    global _helper
    if len(raws) < PARALLEL_FROM or (os.cpu_count() or 1) < 2:
        return _parse_all(raws)
    if _helper is None:
        # forkserver: the helper does not inherit the worker's connections and threads.
        _helper = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_end_with,
            initargs=(os.getpid(),),
        )
    try:
        return await asyncio.get_running_loop().run_in_executor(_helper, _parse_all, raws)
    except BrokenProcessPool:  # the helper died (out of memory on a hostile message): parse here
        log.warning("the parsing helper process died; parsing in the worker")
        _helper = None
        return _parse_all(raws)


def _with_name(name: str, address: str) -> str:
    """'Name <address>' in Unicode (formataddr would RFC 2047-encode a non-ASCII name), quoted when needed."""
    name = " ".join(name.split())
    if specialsre.search(name):
        name = '"' + escapesre.sub(r"\\\g<0>", name) + '"'
    return f"{name} <{address}>"


def _read_headers(message: EmailMessage, mail: ParsedMail) -> None:
    for name in KEPT_HEADERS:
        value = _header(message, name, mail)
        if value is not None:
            mail.headers[name] = value
    if len(mail.headers.get("Message-ID", "")) > MAX_MESSAGE_ID_CHARS:
        mail.problem("MALFORMED_MESSAGE_ID")
        del mail.headers["Message-ID"]
    mail.message_id = mail.headers.get("Message-ID") or None
    mail.subject = mail.headers.get("Subject")
    name, sender = parseaddr(mail.headers.get("From", ""))
    mail.from_address = sender.lower() or None
    mail.from_header = _with_name(name, mail.from_address) if name and mail.from_address else mail.from_address
    recipients = getaddresses([mail.headers.get("To", ""), mail.headers.get("Cc", "")])
    mail.to_addresses = list(dict.fromkeys(address.lower() for _, address in recipients if "@" in address))


def _read(message: EmailMessage, mail: ParsedMail) -> None:
    _read_headers(message, mail)
    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    text = _content(plain, mail) if plain is not None else None
    html = _content(rich, mail) if rich is not None else None
    if html:
        mail.html = storable(nh3.clean(html[:MAX_TEXT_CHARS]))
    if not text and html:
        text = html_to_text(html[:MAX_TEXT_CHARS])
    if text:
        mail.text = storable(text[:MAX_TEXT_CHARS].replace("\r\n", "\n"))
        mail.new_text = _new_text(mail.text, mail)
    _walk_attachments(message, mail)
    if message.get_content_type() == "multipart/report":
        mail.report = _delivery_report(message)


def _delivery_report(message: EmailMessage) -> DeliveryReport:
    """The fields of a DSN: the first recipient's status block, and the Message-ID of the message it
    reports on (from its returned copy or headers)."""
    report = DeliveryReport(None, None, None, None, None)
    for part in message.iter_parts():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            blocks = part.get_payload()
            fields = blocks[1] if isinstance(blocks, list) and len(blocks) > 1 else None
            if fields is not None:
                report.action = _one_line(fields.get("Action"), lower=True)
                report.status = _one_line(fields.get("Status"))
                report.diagnostic = _one_line(fields.get("Diagnostic-Code"))
                report.recipient = _one_line(fields.get("Final-Recipient"))
        elif kind == "message/rfc822":
            returned = part.get_payload()
            if isinstance(returned, list) and returned:
                report.original_message_id = _one_line(returned[0].get("Message-ID"))
        elif kind == "text/rfc822-headers":
            headers = HeaderParser(policy=POLICY).parsestr(part.get_content())
            report.original_message_id = _one_line(headers.get("Message-ID"))
    return report


def _one_line(value: Any, *, lower: bool = False) -> str | None:
    if value is None:
        return None
    text = storable(" ".join(str(value).split()))[:MAX_HEADER_CHARS]
    return text.lower() if lower else text

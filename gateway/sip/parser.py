"""Bytes to SIP messages: datagram parsing, stream framing and best-effort error responses.

``parse_message`` splits the start line and header fields (unfolding continuation lines) and
frames the body by Content-Length (RFC 3261 sections 7 and 18.3: over UDP a body longer than
Content-Length is cut to it, a shorter one is an error; without Content-Length the body is the
rest of the datagram). It checks what every layer above relies on, so that a message that parses
never fails later on these: the start line, the SIP version (505), the size limits (513), that
Via, From, To, Call-ID and CSeq are present, single where they must be, and well formed, that
the CSeq method matches a request's method, and Contact and Max-Forwards when present. Those
values are cached on the message; every other header is parsed only when asked for.
"""

from __future__ import annotations

import hashlib
import re

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.headers import canonical_name, header_key, split_list
from gateway.sip.message import Headers, SipMessage, SipRequest, SipResponse
from gateway.sip.uri import SipUri

__all__ = [
    "MAX_HEADERS",
    "MAX_HEADER_LINE",
    "MAX_MESSAGE_SIZE",
    "StreamFramer",
    "best_effort_response",
    "parse_message",
]

MAX_MESSAGE_SIZE = 65535
MAX_HEADERS = 256
MAX_HEADER_LINE = 8192

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_VERSION_RE = re.compile(r"[Ss][Ii][Pp]/[0-9]+\.[0-9]+")
# Headers that may appear once only; a second field is a 400 (RFC 4475 section 3.3.8).
_SINGLE = frozenset({"call-id", "cseq", "from", "to", "max-forwards", "content-type"})
_REQUIRED = ("via", "from", "to", "call-id", "cseq")
_REQUIRED_NAMES = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq"}
# A Via good enough to answer along: protocol/version/transport and a sent-by (any version,
# so that a request in an unknown SIP version still gets its 505).
_SALVAGE_VIA_RE = re.compile(r"\s*[^\s/]+\s*/\s*[^\s/]+\s*/\s*[^\s/]+\s+[^\s;,]+")
_SALVAGE_CSEQ_RE = re.compile(r"[0-9]{1,40}\s+[A-Za-z0-9\-.!%*_+`'~]+")
_CONTENT_LENGTH_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)


def _header_end(data: bytes, start: int = 0) -> tuple[int, int]:
    """Index of the empty line ending the headers and the length of its terminator."""
    crlf = data.find(b"\r\n\r\n", start)
    lf = data.find(b"\n\n", start)
    if crlf < 0 and lf < 0:
        return -1, 0
    if lf >= 0 and (crlf < 0 or lf < crlf + 1):
        return lf, 2
    return crlf, 4


def _content_length(values: list[str]) -> int | None:
    if not values:
        return None
    texts = {v.strip() for v in values}
    if len(texts) > 1:
        raise RemoteProtocolError("conflicting Content-Length values")
    text = texts.pop()
    if not text.isdigit() or not text.isascii() or len(text) > 9:
        raise RemoteProtocolError(f"bad Content-Length {text[:20]!r}")
    return int(text)


def _split_head(head: str) -> tuple[str, list[tuple[str, str, str]]]:
    """Start line and (key, canonical name, unfolded value) per header field."""
    normalized = head.replace("\r\n", "\n")
    if "\r" in normalized:
        raise RemoteProtocolError("bare CR in header")
    lines = normalized.split("\n")
    fields: list[tuple[str, str, str]] = []
    last_name = ""
    last_value: str | None = None
    last_key = ""
    for line in lines[1:]:
        if len(line) > MAX_HEADER_LINE:
            raise RemoteProtocolError("header line too long", 513)
        if line[:1] in (" ", "\t"):
            if last_value is None:
                raise RemoteProtocolError("continuation line before any header")
            folded = line.strip(" \t")
            if folded:
                last_value = f"{last_value} {folded}" if last_value else folded
            if len(last_value) > MAX_HEADER_LINE:
                raise RemoteProtocolError("header line too long", 513)
            continue
        if last_value is not None:
            fields.append((last_key, last_name, last_value))
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or _TOKEN_RE.fullmatch(name) is None:
            raise RemoteProtocolError(f"bad header line {line[:60]!r}")
        last_key = header_key(name)
        last_name = canonical_name(name)
        last_value = value.strip(" \t")
        if len(fields) >= MAX_HEADERS:
            raise RemoteProtocolError("too many headers", 513)
    if last_value is not None:
        fields.append((last_key, last_name, last_value))
    return lines[0], fields


def _start_line(line: str) -> tuple[str, str, int, str]:
    """("request", method, 0, uri) or ("response", "", status, reason)."""
    if line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if _VERSION_RE.fullmatch(version) is None:
            raise RemoteProtocolError(f"bad status line {line[:60]!r}")
        if version[4:] != "2.0":
            raise RemoteProtocolError(f"unsupported SIP version {version[:20]!r}", 505)
        if len(code) != 3 or not code.isdigit() or not code.isascii() or code[0] not in "123456":
            raise RemoteProtocolError(f"bad status code {code[:20]!r}")
        return "response", "", int(code), reason
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise RemoteProtocolError(f"bad request line {line[:60]!r}")
    method, uri, version = parts
    if _TOKEN_RE.fullmatch(method) is None:
        raise RemoteProtocolError(f"bad method {method[:30]!r}")
    if _VERSION_RE.fullmatch(version) is None:
        raise RemoteProtocolError(f"bad request line {line[:60]!r}")
    if version[4:] != "2.0":
        raise RemoteProtocolError(f"unsupported SIP version {version[:20]!r}", 505)
    return "request", method, 0, uri


# RFC 3261 25.1: callid = word [ "@" word ]; word = 1*(alphanum / "-" / "." / "!" / "%" / "*"
# / "_" / "+" / "`" / "'" / "~" / "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]"
# / "?" / "{" / "}"). Anything else (control characters above all) never reaches a log line.
_WORD = r"""[A-Za-z0-9\-.!%*_+`'~()<>:\\"/\[\]?{}]+"""
_CALL_ID = re.compile(f"{_WORD}(?:@{_WORD})?")


def _validate(message: SipMessage, fields: list[tuple[str, str, str]]) -> None:
    seen: dict[str, int] = {}
    for key, _, _ in fields:
        seen[key] = seen.get(key, 0) + 1
    for key in _REQUIRED:
        if key not in seen:
            raise RemoteProtocolError(f"missing {_REQUIRED_NAMES[key]} header")
    for key in _SINGLE:
        if seen.get(key, 0) > 1:
            raise RemoteProtocolError(f"more than one {canonical_name(key)} header")
    _ = message.cseq
    call_id = message.call_id
    if not call_id or not _CALL_ID.fullmatch(call_id):
        raise RemoteProtocolError(f"bad Call-ID {call_id[:60]!r}")
    if not message.vias:
        raise RemoteProtocolError("empty Via header")
    _ = message.from_addr, message.to_addr
    if "contact" in seen:
        values = message.headers.get_all("Contact")
        if "*" in values and len(values) > 1:
            raise RemoteProtocolError("Contact '*' mixed with addresses")
        _ = message.contacts
    if "max-forwards" in seen:
        _ = message.max_forwards


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one datagram (or one framed stream message); raises RemoteProtocolError."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise RemoteProtocolError("message too large", 513)
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    end, term = _header_end(data, start)
    if end < 0:
        raise RemoteProtocolError("no empty line after the headers")
    if term == 2 and data[end - 1 : end] == b"\r":  # "...\r\n\n": a CRLF line, then LF
        end -= 1
        term = 3
    head = data[start:end].decode("utf-8", "surrogateescape")
    start_line, fields = _split_head(head)
    kind, method, status, text = _start_line(start_line)
    headers = Headers._from_parsed(fields)
    body = data[end + term :]
    length = _content_length([v for k, _, v in fields if k == "content-length"])
    if length is not None:
        if length > len(body):
            raise RemoteProtocolError(
                f"Content-Length {length} larger than the body ({len(body)} bytes)"
            )
        body = body[:length]
    message: SipRequest | SipResponse
    if kind == "request":
        uri = SipUri.parse(text)
        if uri.headers:
            raise RemoteProtocolError("Request-URI with escaped headers")
        message = SipRequest(method, uri, headers, body)
        _validate(message, fields)
        if message.cseq.method != method:
            raise RemoteProtocolError(
                f"CSeq method {message.cseq.method!r} does not match {method!r}"
            )
    else:
        message = SipResponse(status, text, headers, body)
        _validate(message, fields)
    return message


class StreamFramer:
    """Cuts a TCP byte stream into messages by Content-Length (RFC 3261 section 18.3).

    CRLF keep-alives between messages (RFC 5626) are skipped. After a framing error the
    stream cannot be resynchronised: every later ``feed`` raises again; close the connection.
    """

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max = max_message_size
        self._error: RemoteProtocolError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        if self._error is not None:
            raise self._error
        self._buffer += data
        messages: list[bytes] = []
        try:
            while True:
                message = self._next_message()
                if message is None:
                    break
                messages.append(message)
        except RemoteProtocolError as exc:
            self._error = exc
            self._buffer.clear()
            if not messages:
                raise
            # Hand out what was framed before the error; the next feed raises it.
        return messages

    @property
    def failed(self) -> RemoteProtocolError | None:
        """The framing error that ended this stream, if any: close the connection."""
        return self._error

    def _next_message(self) -> bytes | None:
        buf = self._buffer
        skip = 0
        while skip < len(buf) and buf[skip] in (13, 10):
            skip += 1
        if skip:
            del buf[:skip]
        if not buf:
            return None
        end, term = _header_end(bytes(buf[: self._max + 4]))
        if end < 0:
            if len(buf) > self._max:
                raise RemoteProtocolError("message too large", 513)
            return None
        head = bytes(buf[:end])
        found = _CONTENT_LENGTH_RE.findall(head)
        if not found:
            raise RemoteProtocolError("missing Content-Length on a stream transport")
        length = _content_length([v.decode("latin-1") for v in found])
        assert length is not None
        total = end + term + length
        if total > self._max:
            raise RemoteProtocolError("message too large", 513)
        if len(buf) < total:
            return None
        message = bytes(buf[:total])
        del buf[:total]
        return message

    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return len(self._buffer)


def best_effort_response(data: bytes, status: int, reason: str) -> bytes | None:
    """Answer for a request that failed to parse, built from what can be salvaged.

    Returns the response bytes when the data looks like a request (not ACK, not a response)
    and Via, From, To, Call-ID and CSeq can be read; otherwise None (drop the message).
    The To tag, when one must be added, is derived from the request so retransmissions get
    the same answer.
    """
    try:
        head_end, _ = _header_end(data[:MAX_MESSAGE_SIZE])
        head = data[: head_end if head_end >= 0 else MAX_MESSAGE_SIZE]
        text = head.decode("utf-8", "replace").lstrip("\r\n")
        lines = text.replace("\r\n", "\n").split("\n")
        first = lines[0]
        if first[:4].upper() == "SIP/" or first.split(" ", 1)[0].upper() == "ACK":
            return None
        fields: dict[str, list[str]] = {}
        last: list[str] | None = None
        for line in lines[1 : MAX_HEADERS + 1]:
            if line[:1] in (" ", "\t") and last is not None:
                last[-1] = f"{last[-1]} {line.strip()}"
                continue
            name, colon, value = line.partition(":")
            name = name.strip()
            if not colon or _TOKEN_RE.fullmatch(name) is None:
                last = None
                continue
            last = fields.setdefault(header_key(name), [])
            last.append(value.strip())
        out = [f"SIP/2.0 {status} {reason}"]
        for key in ("via", "from", "to", "call-id", "cseq"):
            values = [v for v in fields.get(key, []) if v and len(v) <= MAX_HEADER_LINE]
            if not values:
                return None
            if key != "via":
                values = values[:1]
            name = canonical_name(key)
            for value in values:
                if key == "to" and ";tag=" not in value.replace(" ", "").lower():
                    digest = hashlib.sha1(data[:2048]).hexdigest()[:10]
                    value = f"{value};tag={digest}"
                if key == "via":
                    items = split_list(value)
                    if not items or _SALVAGE_VIA_RE.match(items[0]) is None:
                        return None
                elif key == "cseq":
                    if _SALVAGE_CSEQ_RE.fullmatch(value) is None:
                        return None
                elif key == "call-id" and any(c in value for c in " \t"):
                    return None
                out.append(f"{name}: {value}")
        out.append("Content-Length: 0")
        out.append("\r\n")
        return "\r\n".join(out).encode("utf-8", "replace")
    except RemoteProtocolError:  # pragma: no cover - nothing above raises it today
        return None

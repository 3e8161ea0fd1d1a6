"""SIP requests and responses (RFC 3261 section 7) with lazily parsed typed accessors.

``Headers`` keeps header fields in order, as they arrived (one entry per field line, a comma
list is not split until ``get_all`` asks). The typed accessors of ``SipMessage`` (``vias``,
``cseq``, ``from_addr``...) parse the field on first use and cache the result in the ``Headers``
object; any change to the headers drops the cache. The parsed values are views: to change a
header, ``set`` its text (``headers.set("To", str(name_addr))``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar, cast

from gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from gateway.sip.headers import LIST_HEADERS, CSeq, Via, canonical_name, header_key, split_list
from gateway.sip.uri import NameAddr, SipUri

__all__ = [
    "REASON_PHRASES",
    "Headers",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "make_response",
]

_T = TypeVar("_T")
_MISSING = object()

REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 433: "Anonymity Disallowed",
    436: "Bad Identity-Info", 437: "Unsupported Certificate", 438: "Invalid Identity Header",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    494: "Security Agreement Required", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted",
}  # fmt: skip
_CLASS_PHRASES = {1: "Trying", 2: "OK", 3: "Redirection", 4: "Client Error",
                  5: "Server Error", 6: "Global Failure"}  # fmt: skip


class Headers:
    """Ordered, case-insensitive header fields; compact forms are folded to full names."""

    __slots__ = ("_cache", "_fields")

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        # (lookup key, canonical name, value) per field line, in order.
        self._fields: list[tuple[str, str, str]] = [
            (header_key(n), canonical_name(n), v) for n, v in fields
        ]
        self._cache: dict[str, object] = {}

    @classmethod
    def _from_parsed(cls, fields: list[tuple[str, str, str]]) -> Headers:
        headers = cls.__new__(cls)
        headers._fields = fields
        headers._cache = {}
        return headers

    def get(self, name: str) -> str | None:
        """The first value (the first list item for a list header), or None."""
        key = header_key(name)
        for k, _, v in self._fields:
            if k == key:
                if key in LIST_HEADERS:
                    items = split_list(v)
                    if not items:
                        continue
                    return items[0]
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order; comma lists split for list headers."""
        key = header_key(name)
        values = [v for k, _, v in self._fields if k == key]
        if key in LIST_HEADERS:
            return [item for v in values for item in split_list(v)]
        return values

    def fields(self, name: str) -> list[str]:
        """The raw field values of ``name``, one per field line, never split."""
        key = header_key(name)
        return [v for k, _, v in self._fields if k == key]

    def add(self, name: str, value: str) -> None:
        """Append a field after every existing one."""
        _check_value(value)
        self._fields.append((header_key(name), canonical_name(name), value))
        self._cache.clear()

    def set(self, name: str, value: str) -> None:
        """Replace every field of ``name`` by one field (at the first one's place)."""
        _check_value(value)
        key = header_key(name)
        entry = (key, canonical_name(name), value)
        out: list[tuple[str, str, str]] = []
        placed = False
        for f in self._fields:
            if f[0] == key:
                if not placed:
                    out.append(entry)
                    placed = True
            else:
                out.append(f)
        if not placed:
            out.append(entry)
        self._fields = out
        self._cache.clear()

    def remove(self, name: str) -> None:
        key = header_key(name)
        self._fields = [f for f in self._fields if f[0] != key]
        self._cache.clear()

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = header_key(name)
        return any(f[0] == key for f in self._fields)

    def items(self) -> list[tuple[str, str]]:
        """Every field in order as (canonical name, value); comma lists are not split."""
        return [(n, v) for _, n, v in self._fields]

    def copy(self) -> Headers:
        return Headers._from_parsed(list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._fields] == [(k, v) for k, _, v in other._fields]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"

    def cached(self, key: str, build: Callable[[], _T]) -> _T:
        """Parse-once helper for the typed accessors (the cache dies on any change)."""
        value = self._cache.get(key, _MISSING)
        if value is _MISSING:
            value = build()
            self._cache[key] = value
        return cast(_T, value)


def _check_value(value: str) -> None:
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(f"header value with a line break: {value[:60]!r}")


class SipMessage:
    """What requests and responses share: headers, body and the typed header accessors."""

    headers: Headers
    body: bytes

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise RemoteProtocolError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        return self.headers.cached("call-id", lambda: self._required("Call-ID").strip())

    @property
    def cseq(self) -> CSeq:
        return self.headers.cached("cseq", lambda: CSeq.parse(self._required("CSeq")))

    @property
    def vias(self) -> list[Via]:
        return self.headers.cached(
            "via", lambda: [Via.parse(v) for v in self.headers.get_all("Via")]
        )

    @property
    def top_via(self) -> Via:
        vias = self.vias
        if not vias:
            raise RemoteProtocolError("missing Via header")
        return vias[0]

    @property
    def from_addr(self) -> NameAddr:
        return self.headers.cached("from", lambda: NameAddr.parse(self._required("From")))

    @property
    def to_addr(self) -> NameAddr:
        return self.headers.cached("to", lambda: NameAddr.parse(self._required("To")))

    @property
    def from_tag(self) -> str | None:
        return self.from_addr.tag

    @property
    def to_tag(self) -> str | None:
        return self.to_addr.tag

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values (a ``*`` wildcard is left out: see ``headers.get("Contact")``)."""
        return self.headers.cached(
            "contact",
            lambda: [NameAddr.parse(v) for v in self.headers.get_all("Contact") if v != "*"],
        )

    @property
    def record_route(self) -> list[NameAddr]:
        return self.headers.cached(
            "record-route",
            lambda: [NameAddr.parse(v) for v in self.headers.get_all("Record-Route")],
        )

    @property
    def route(self) -> list[NameAddr]:
        return self.headers.cached(
            "route", lambda: [NameAddr.parse(v) for v in self.headers.get_all("Route")]
        )

    @property
    def max_forwards(self) -> int | None:
        return self.headers.cached("max-forwards", self._max_forwards)

    def _max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        value = value.strip()
        if not value.isdigit() or not value.isascii() or len(value) > 10 or int(value) > 255:
            raise RemoteProtocolError(f"bad Max-Forwards {value[:20]!r}")
        return int(value)

    @property
    def content_type(self) -> str | None:
        """The media type, lower case, without parameters (``"application/sdp"``)."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.partition(";")[0].strip().lower()

    def start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """The wire form, with ``Content-Length: len(body)`` (in place of any other)."""
        lines = [self.start_line()]
        length = f"Content-Length: {len(self.body)}"
        for key, name, value in self.headers._fields:
            if key != "content-length":
                lines.append(f"{name}: {value}")
            elif length:
                lines.append(length)
                length = ""
        if length:
            lines.append(length)
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body


@dataclass(eq=True)
class SipRequest(SipMessage):
    method: str
    uri: SipUri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"


@dataclass(eq=True)
class SipResponse(SipMessage):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"


def default_reason(status: int) -> str:
    """The RFC 3261 reason phrase of ``status`` (or of its class)."""
    return REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Unknown")


def make_response(
    request: SipRequest, status: int, reason: str | None = None, to_tag: str | None = None
) -> SipResponse:
    """A response to ``request`` (RFC 3261 section 8.2.6.2).

    Copies Via, From, To (adding ``to_tag`` when given and To has none), Call-ID, CSeq, and
    Record-Route for 1xx/2xx.
    """
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"status out of range: {status}")
    req = request.headers
    fields: list[tuple[str, str, str]] = []
    for key, name, value in req._fields:
        if key in ("via", "from", "call-id", "cseq") or (key == "record-route" and status < 300):
            fields.append((key, name, value))
        elif key == "to":
            if to_tag is not None and request.to_tag is None:
                value = f"{value};tag={to_tag}"
            fields.append((key, name, value))
    response = SipResponse(
        status,
        reason if reason is not None else default_reason(status),
        Headers._from_parsed(fields),
    )
    return response

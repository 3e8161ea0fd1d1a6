"""Header field names and the typed values the core needs: Via and CSeq (RFC 3261 section 20).

Names: ``canonical_name`` expands compact forms (``v`` -> ``Via``) and spells known names the way
RFC 3261 does (``call-id`` -> ``Call-ID``). Lists: ``split_list`` splits a comma-separated value
outside quoted strings and ``<...>``; only headers in ``LIST_HEADERS`` are ever split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.uri import format_params, parse_params

__all__ = [
    "COMPACT_FORMS",
    "LIST_HEADERS",
    "CSeq",
    "Via",
    "canonical_name",
    "header_key",
    "split_list",
]

COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN_NAMES = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "Identity",
    "Identity-Info", "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE",
    "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority",
    "Privacy", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck",
    "Reason", "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Remote-Party-ID",
    "Replaces", "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route", "RSeq",
    "Security-Client", "Security-Server", "Security-Verify", "Server", "Service-Route",
    "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State",
    "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning",
    "WWW-Authenticate",
]  # fmt: skip
_KNOWN: dict[str, str] = {n.lower(): n for n in _KNOWN_NAMES}

# Headers whose grammar is a comma-separated list (RFC 3261 section 7.3.1). Lower case.
LIST_HEADERS: frozenset[str] = frozenset(
    n.lower()
    for n in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Call-Info", "Contact", "Content-Encoding", "Content-Language",
        "Error-Info", "In-Reply-To", "P-Asserted-Identity", "P-Preferred-Identity", "Path",
        "Proxy-Require", "Reason", "Record-Route", "Reject-Contact", "Require", "Route",
        "Security-Client", "Security-Server", "Security-Verify", "Service-Route", "Supported",
        "Unsupported", "Via", "Warning",
    )
)  # fmt: skip

_CANON_CACHE: dict[str, str] = {}
_KEY_CACHE: dict[str, str] = {}
_CACHE_LIMIT = 2048


def _canonical(name: str) -> str:
    low = name.lower()
    if len(low) == 1 and low in COMPACT_FORMS:
        return COMPACT_FORMS[low]
    known = _KNOWN.get(low)
    if known is not None:
        return known
    if name == low or name == name.upper():
        return "-".join(p[:1].upper() + p[1:] for p in low.split("-"))
    return name


def canonical_name(name: str) -> str:
    """``"call-id"`` -> ``"Call-ID"``, ``"v"`` -> ``"Via"``; unknown mixed-case names stay."""
    canon = _CANON_CACHE.get(name)
    if canon is None:
        canon = _canonical(name)
        if len(_CANON_CACHE) < _CACHE_LIMIT:
            _CANON_CACHE[name] = canon
    return canon


def header_key(name: str) -> str:
    """The case-insensitive lookup key of a header name (compact forms expanded)."""
    key = _KEY_CACHE.get(name)
    if key is None:
        key = _canonical(name).lower()
        if len(_KEY_CACHE) < _CACHE_LIMIT:
            _KEY_CACHE[name] = key
    return key


def split_list(value: str) -> list[str]:
    """Split a comma list outside quoted strings and ``<...>``; empty items are dropped."""
    if "," not in value:
        item = value.strip()
        return [item] if item else []
    items: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quotes:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quotes = False
        elif c == '"':
            in_quotes = True
        elif c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == "," and not in_angle:
            item = value[start:i].strip()
            if item:
                items.append(item)
            start = i + 1
        i += 1
    item = value[start:].strip()
    if item:
        items.append(item)
    return items


_T = r"[A-Za-z0-9\-.!%*_+`'~]+"
_VIA_RE = re.compile(
    rf"\s*({_T})\s*/\s*({_T})\s*/\s*({_T})\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+)"
    r"(?:\s*:\s*([0-9]{1,5}))?",
    re.DOTALL,
)


@dataclass(slots=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...``. Parameter values kept verbatim."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value filled in by a server (RFC 3581); None when absent or empty."""
        value = self.params.get("rport")
        if value is None or not (value.isascii() and value.isdigit()) or len(value) > 5:
            return None
        return int(value)

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via value (not a comma list); raises RemoteProtocolError."""
        match = _VIA_RE.match(text)
        if match is None:
            raise RemoteProtocolError(f"bad Via {text[:80]!r}")
        name, version, transport, host, port_text = match.groups()
        if name.upper() != "SIP" or version != "2.0":
            raise RemoteProtocolError(f"bad Via protocol {name}/{version}")
        port: int | None = None
        if port_text is not None:
            port = int(port_text)
            if port > 65535:
                raise RemoteProtocolError(f"bad Via port {port_text}")
        rest = text[match.end() :]
        params = parse_params(rest) if rest else {}
        return cls(transport.upper(), host, port, params)

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"


_CSEQ_RE = re.compile(rf"\s*([0-9]{{1,10}})\s+({_T})\s*", re.DOTALL)


@dataclass(frozen=True, slots=True)
class CSeq:
    """``CSeq: 4711 INVITE``. The number is a 32-bit unsigned integer."""

    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse a CSeq value; raises RemoteProtocolError."""
        match = _CSEQ_RE.fullmatch(text)
        if match is None:
            raise RemoteProtocolError(f"bad CSeq {text[:80]!r}")
        number = int(match.group(1))
        if number > 0xFFFFFFFF:
            raise RemoteProtocolError(f"CSeq number out of range: {number}")
        return cls(number, match.group(2))

    def __str__(self) -> str:
        return f"{self.number} {self.method}"

"""SIP, SIPS and tel URIs and name-addr values (RFC 3261 sections 19.1 and 25.1, RFC 3966).

``SipUri.parse`` keeps the user part unescaped, lower-cases the scheme and parameter names, and
keeps IPv6 references in brackets. A URI of any other scheme (``http:``, ``isbn:``...) parses
too, as an opaque URI: its text after the colon is kept in ``host`` and ``__str__`` gives it back
unchanged, so a user agent can answer 416 instead of failing to parse the message.

``NameAddr`` is a From, To, Contact, Route or Record-Route value. Its ``params`` are the header
field's parameters (``tag``, ``expires``, ``q``...), not the URI's; their values are kept as they
were written (a quoted-string value keeps its quotes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from gateway.sip.errors import RemoteProtocolError

__all__ = ["NameAddr", "SipUri", "parse_params", "quote_string", "unquote_string"]

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
# An unquoted display-name word: a token; UTF-8 letters are let through too, as many phones
# send them unquoted (ASCII separators such as ',' or '"' are still refused).
_DISPLAY_WORD_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\x80-\U0010ffff]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9\-._]+")
_IPV6_REF_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")
# Characters never allowed anywhere in a URI: white space, controls, and the delimiters that
# enclose or quote URIs in header fields.
_URI_FORBIDDEN_RE = re.compile(r"[\x00-\x20\x7f<>\"]")
# Each escaper matches the characters that must be %-escaped in one URI component.
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_USER_ESCAPE_RE = re.compile(rf"[^{_UNRESERVED}&=+$,;?/]")
_PASSWORD_ESCAPE_RE = re.compile(rf"[^{_UNRESERVED}&=+$,]")
_PARAM_ESCAPE_RE = re.compile(rf"[^{_UNRESERVED}\[\]/:&+$]")
_HEADER_ESCAPE_RE = re.compile(rf"[^{_UNRESERVED}\[\]/?:+$]")
# One header-field parameter: ";" name ["=" (token / host / quoted-string)], LWS allowed around
# the separators (RFC 3261 SEMI and EQUAL). Values are kept verbatim.
_PARAM_RE = re.compile(
    rf"\s*;\s*({_TOKEN})(?:\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^\s;,\"<>]+))?\s*", re.DOTALL
)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    return unquote(text, errors="surrogateescape")


def _escape(text: str, unsafe: re.Pattern[str]) -> str:
    if unsafe.search(text) is None:
        return text
    out: list[str] = []
    for char in text:
        if unsafe.match(char) is None:
            out.append(char)
        else:
            out.extend(f"%{b:02X}" for b in char.encode("utf-8", "surrogateescape"))
    return "".join(out)


def unquote_string(quoted: str) -> str:
    """Strip the quotes of a quoted-string and undo its backslash escapes."""
    inner = quoted[1:-1]
    return _QUOTED_PAIR_RE.sub(r"\1", inner) if "\\" in inner else inner


def quote_string(text: str) -> str:
    """Make a quoted-string (escaping ``"`` and ``\\``)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` header-field parameters; names are lower-cased.

    ``text`` must be empty or start (after LWS) with ``;``. Raises RemoteProtocolError.
    """
    params: dict[str, str | None] = {}
    pos = 0
    end = len(text)
    while pos < end:
        match = _PARAM_RE.match(text, pos)
        if match is None or match.end() == pos:
            if text[pos:].strip() == "":
                break
            raise RemoteProtocolError(f"bad parameter list: {text[pos : pos + 40]!r}")
        params[match.group(1).lower()] = match.group(2)
        pos = match.end()
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Serialize header-field parameters (values are written as stored)."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _parse_host_port(hostport: str, text: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        close = hostport.find("]")
        host = hostport[: close + 1]
        rest = hostport[close + 1 :]
        if close < 0 or _IPV6_REF_RE.fullmatch(host) is None:
            raise RemoteProtocolError(f"bad IPv6 reference in URI {text!r}")
        if rest and not rest.startswith(":"):
            raise RemoteProtocolError(f"bad host in URI {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = hostport.partition(":")
        port_text = port_text_ if colon else None
        if _HOSTNAME_RE.fullmatch(host) is None:
            raise RemoteProtocolError(f"bad host in URI {text!r}")
    port: int | None = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
            raise RemoteProtocolError(f"bad port in URI {text!r}")
        port = int(port_text)
        if port > 65535:
            raise RemoteProtocolError(f"bad port in URI {text!r}")
    return host, port


@dataclass(slots=True)
class SipUri:
    """A URI: sip/sips (all fields), tel (number in ``user``) or opaque (text in ``host``)."""

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI; raises RemoteProtocolError when it is malformed."""
        colon = text.find(":")
        if colon <= 0 or _SCHEME_RE.fullmatch(text, 0, colon) is None:
            raise RemoteProtocolError(f"bad URI scheme in {text[:80]!r}")
        if _URI_FORBIDDEN_RE.search(text) is not None:
            raise RemoteProtocolError(f"bad character in URI {text[:80]!r}")
        scheme = text[:colon].lower()
        rest = text[colon + 1 :]
        if scheme == "sip" or scheme == "sips":
            return cls._parse_sip(scheme, rest, text)
        if not rest:
            raise RemoteProtocolError(f"empty URI {text!r}")
        if scheme == "tel":
            number, *param_parts = rest.split(";")
            if not number:
                raise RemoteProtocolError(f"empty tel URI {text!r}")
            return cls(scheme, user=_unescape(number), params=_uri_params(param_parts, text))
        return cls(scheme, host=rest)

    @classmethod
    def _parse_sip(cls, scheme: str, rest: str, text: str) -> SipUri:
        user: str | None = None
        password: str | None = None
        at = rest.find("@")
        if at >= 0:
            userinfo = rest[:at]
            rest = rest[at + 1 :]
            user_text, colon, password_text = userinfo.partition(":")
            if not user_text:
                raise RemoteProtocolError(f"empty user in URI {text!r}")
            user = _unescape(user_text)
            if colon:
                password = _unescape(password_text)
        rest, question, header_text = rest.partition("?")
        hostport, *param_parts = rest.split(";")
        host, port = _parse_host_port(hostport, text)
        headers: dict[str, str] = {}
        if question:
            for part in header_text.split("&"):
                name, equals, value = part.partition("=")
                if not name or not equals:
                    raise RemoteProtocolError(f"bad header in URI {text!r}")
                headers[_unescape(name)] = _unescape(value)
        params = _uri_params(param_parts, text) if param_parts else {}
        return cls(scheme, user, password, host, port, params, headers)

    def __str__(self) -> str:
        scheme = self.scheme
        if scheme == "tel":
            return f"tel:{_escape(self.user or '', _USER_ESCAPE_RE)}{self._params_text()}"
        if scheme != "sip" and scheme != "sips":
            return f"{scheme}:{self.host}"
        parts = [scheme, ":"]
        if self.user is not None:
            parts.append(_escape(self.user, _USER_ESCAPE_RE))
            if self.password is not None:
                parts.append(":" + _escape(self.password, _PASSWORD_ESCAPE_RE))
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        if self.params:
            parts.append(self._params_text())
        if self.headers:
            parts.append(
                "?"
                + "&".join(
                    f"{_escape(k, _HEADER_ESCAPE_RE)}={_escape(v, _HEADER_ESCAPE_RE)}"
                    for k, v in self.headers.items()
                )
            )
        return "".join(parts)

    def _params_text(self) -> str:
        return "".join(
            f";{_escape(k, _PARAM_ESCAPE_RE)}"
            if v is None
            else f";{_escape(k, _PARAM_ESCAPE_RE)}={_escape(v, _PARAM_ESCAPE_RE)}"
            for k, v in self.params.items()
        )

    @property
    def host_port(self) -> str:
        """``host`` or ``host:port``, as in a Via sent-by."""
        return self.host if self.port is None else f"{self.host}:{self.port}"


def _uri_params(parts: list[str], text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in parts:
        name, equals, value = part.partition("=")
        if not name:
            raise RemoteProtocolError(f"empty parameter in URI {text!r}")
        params[_unescape(name).lower()] = _unescape(value) if equals else None
    return params


@dataclass(slots=True)
class NameAddr:
    """``"Display" <uri>;param=value``: the value of From, To, Contact, Route, Record-Route."""

    uri: SipUri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse the name-addr (``<...>``) or addr-spec form; raises RemoteProtocolError."""
        s = text.strip()
        display: str | None = None
        if s.startswith('"'):
            i = 1
            n = len(s)
            while i < n:
                c = s[i]
                if c == "\\":
                    i += 2
                elif c == '"':
                    break
                else:
                    i += 1
            if i >= n:
                raise RemoteProtocolError(f"unterminated quoted string in {text[:80]!r}")
            display = unquote_string(s[: i + 1])
            s = s[i + 1 :].lstrip()
            if not s.startswith("<"):
                raise RemoteProtocolError(f"display name without <uri> in {text[:80]!r}")
        lt = s.find("<")
        if lt >= 0:
            if lt > 0:
                words = s[:lt].split()
                if any(_DISPLAY_WORD_RE.fullmatch(w) is None for w in words):
                    raise RemoteProtocolError(f"unquoted non-token display name in {text[:80]!r}")
                display = " ".join(words) or None
            gt = s.find(">", lt)
            if gt < 0:
                raise RemoteProtocolError(f"missing '>' in {text[:80]!r}")
            uri = SipUri.parse(s[lt + 1 : gt])
            rest = s[gt + 1 :]
        else:
            uri_text, semi, rest = s.partition(";")
            uri_text = uri_text.rstrip()
            if "?" in uri_text or "," in uri_text:
                raise RemoteProtocolError(f"URI with '?' or ',' must be in <> in {text[:80]!r}")
            uri = SipUri.parse(uri_text)
            rest = semi + rest
        return cls(uri, display, parse_params(rest) if rest else {})

    def __str__(self) -> str:
        prefix = "" if self.display is None else quote_string(self.display) + " "
        return f"{prefix}<{self.uri}>{format_params(self.params)}"

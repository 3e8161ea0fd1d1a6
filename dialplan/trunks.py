"""Trunks: configured SIP peers (a carrier, a PBX), validated and in their stored form.

A trunk has a name; the peer's address (host, port, transport udp|tcp|tls; a host name
without a port is located by DNS SRV, gateway/trunk_dns.py) and optionally a second one for
failover; credentials (kept as given, since digest needs the password; never
returned by `as_json`, never logged); whether Switchboard registers to it (`register`, for
`expires` seconds); its numbers in E.164 (normalised with `dialplan.default_country`);
the networks it may send calls from (`allowed_addresses`, CIDR); whether its inbound calls
must pass digest (`auth`); its codecs; its media encryption policy (stored and validated
here, enforced by the SRTP leg); the number prefixes calls may be sent to through it
(`allowed_destinations`, for dial-out); over TLS, whether its certificate is verified
(`tls_verify`, true by default) and against which CA bundle (`tls_ca`, a file path; empty:
the global sip.tls_ca, else the system's CAs); whether the peer (a PBX) registers to us with
the trunk's credentials instead (`register_in`: gateway/registrar.py).

E.164 normalisation (`to_e164`): a number with "+" (or "00") is E.164 already; one without
is national: a leading "0" (the trunk prefix most countries use) is dropped and the default
country's calling code put in front. A number that already starts with the default code and
has the full national length is not prefixed twice for the NANP ("1" + 10 digits). Without
a default country a number without "+" is refused: nothing is ever prefixed blindly.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from dialplan.models import InvalidInput
from dialplan.numbers import COUNTRY_PREFIXES, InvalidNumber, normalise

__all__ = [
    "MEDIA_ENCRYPTION",
    "TRANSPORTS",
    "TRUNK_CODECS",
    "TrunkAddress",
    "TrunkRecord",
    "parse_trunk",
    "to_e164",
    "validate_country",
]

Transport = Literal["udp", "tcp", "tls"]
MediaEncryption = Literal["off", "optional", "required"]
TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls")
MEDIA_ENCRYPTION: tuple[MediaEncryption, ...] = ("off", "optional", "required")
TRUNK_CODECS = ("PCMU", "PCMA", "G722", "OPUS")
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
MIN_EXPIRES, MAX_EXPIRES = 10, 86_400
MAX_LIST = 100
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})")
_USER = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]{1,64}")

FIELDS = ("name", "address", "transport", "failover_address", "username", "password",
          "register", "expires", "numbers", "allowed_addresses", "auth", "codecs",
          "media_encryption", "allowed_destinations", "tls_verify", "tls_ca",
          "register_in")  # fmt: skip


def validate_country(code: str) -> str:
    """A calling code ("1", "44") as dialplan.default_country takes it; "" for none."""
    code = code.strip().lstrip("+")
    if code and code not in COUNTRY_PREFIXES and not (code.isdigit() and 1 <= len(code) <= 3
                                                      and code[0] != "0"):
        raise InvalidInput(f"default country: expected a calling code like 1 or 44, got {code!r}")
    return code


def to_e164(raw: str, default_country: str = "") -> str:
    """The E.164 form ("+" and digits) of a number; InvalidNumber otherwise."""
    number = normalise(raw)
    if number.startswith("+"):
        if len(number) < 4:
            raise InvalidNumber(f"number: {raw!r} is too short for E.164")
        return number
    if not default_country:
        raise InvalidNumber(
            f"number: {raw!r} has no country code ('+'); give it in E.164 form or configure "
            "dialplan.default_country"
        )
    national = number[1:] if number.startswith("0") else number
    if default_country == "1" and len(number) == 11 and number.startswith("1"):
        national = number[1:]  # NANP dialled with its own "1"
    result = "+" + default_country + national
    if len(result) - 1 > 15 or not national:
        raise InvalidNumber(f"number: {raw!r} is no number in country code {default_country}")
    return result


@dataclass(frozen=True, slots=True)
class TrunkAddress:
    host: str
    port: int
    #: False for a host name given without a port: DNS SRV decides where its requests go
    #: (RFC 3263; gateway/trunk_dns.py), `port` being the transport's default for A/AAAA
    port_given: bool = True

    def __str__(self) -> str:
        if not self.port_given:
            return self.host
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: object, transport: str, what: str = "address") -> TrunkAddress:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"{what}: expected HOST or HOST:PORT")
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise InvalidInput(f"{what}: expected [IPv6]:PORT")
    elif text.count(":") > 1:
        host, port_text = text, ""
    else:
        host, _, port_text = text.partition(":")
    numeric = True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        numeric = False
        if not _HOST.fullmatch(host):
            raise InvalidInput(f"{what}: {host!r} is not a host name or IP address") from None
    port = DEFAULT_PORTS[transport]
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise InvalidInput(f"{what}: expected a port 1-65535")
        port = int(port_text)
    return TrunkAddress(host, port, port_given=bool(port_text) or numeric)


@dataclass(frozen=True, slots=True)
class TrunkRecord:
    name: str
    address: TrunkAddress
    transport: Transport
    failover: TrunkAddress | None = None
    username: str = ""
    password: str = field(default="", repr=False)  # never in repr, JSON or logs
    register: bool = False
    expires: int = 300
    numbers: tuple[str, ...] = ()
    allowed_addresses: tuple[str, ...] = ()
    auth: bool = False
    codecs: tuple[str, ...] = ()
    media_encryption: MediaEncryption = "off"
    allowed_destinations: tuple[str, ...] = ()
    tls_verify: bool = True  # over TLS: check the peer's certificate (chain and name)
    tls_ca: str = ""  # the CA bundle for that check; "": sip.tls_ca (or the system's)
    register_in: bool = False  # the peer (a PBX) REGISTERs to us with these credentials
    created: float = 0.0

    def as_json(self) -> dict[str, object]:
        """The API's form: everything but the password."""
        return {
            "name": self.name,
            "address": str(self.address),
            "transport": self.transport,
            "failover_address": str(self.failover) if self.failover else None,
            "username": self.username,
            "has_password": bool(self.password),
            "register": self.register,
            "expires": self.expires,
            "numbers": list(self.numbers),
            "allowed_addresses": list(self.allowed_addresses),
            "auth": self.auth,
            "codecs": list(self.codecs),
            "media_encryption": self.media_encryption,
            "allowed_destinations": list(self.allowed_destinations),
            "tls_verify": self.tls_verify,
            "tls_ca": self.tls_ca,
            "register_in": self.register_in,
        }

    def stored(self) -> dict[str, object]:
        """The form the store keeps (with the password)."""
        data = self.as_json()
        del data["has_password"]
        data["password"] = self.password
        return data


def _list(data: Mapping[str, object], key: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{key}: expected a list of strings")
    if len(value) > MAX_LIST:
        raise InvalidInput(f"{key}: at most {MAX_LIST} items")
    return list(value)


def _str(data: Mapping[str, object], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidInput(f"{key}: expected a string")
    return value


def _bool(data: Mapping[str, object], key: str, default: bool = False) -> bool:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInput(f"{key}: expected true or false")
    return value


def parse_trunk(data: Mapping[str, object], default_country: str = "",
                created: float = 0.0) -> TrunkRecord:
    """A trunk from its API/stored form; InvalidInput names the first bad field."""
    for key in data:
        if key not in FIELDS:
            raise InvalidInput(f"unknown field {key!r}")
    name = _str(data, "name").strip().lower()
    if not _NAME.fullmatch(name):
        raise InvalidInput("name: expected 1 to 64 characters from a-z, 0-9, '.', '_', '-'")
    transport = _str(data, "transport", "udp").lower()
    if transport not in TRANSPORTS:
        raise InvalidInput("transport: expected 'udp', 'tcp' or 'tls'")
    assert transport in ("udp", "tcp", "tls")
    address = parse_address(data.get("address"), transport)
    failover = (parse_address(data["failover_address"], transport, "failover_address")
                if data.get("failover_address") else None)
    username = _str(data, "username")
    password = _str(data, "password")
    if username and not _USER.fullmatch(username):
        raise InvalidInput("username: expected 1 to 64 URI user characters")
    if len(password) > 128 or not password.isprintable():
        raise InvalidInput("password: expected at most 128 printable characters")
    register, auth = _bool(data, "register"), _bool(data, "auth")
    register_in = _bool(data, "register_in")
    if (register or auth or register_in) and not (username and password):
        raise InvalidInput("username and password: required when register, register_in or "
                           "auth is true")
    if register and register_in:
        raise InvalidInput("register and register_in: one or the other (we register to the "
                           "peer, or it registers to us)")
    expires = data.get("expires", 300)
    if isinstance(expires, bool) or not isinstance(expires, int) \
            or not MIN_EXPIRES <= expires <= MAX_EXPIRES:
        raise InvalidInput(f"expires: expected whole seconds {MIN_EXPIRES}-{MAX_EXPIRES}")
    numbers: list[str] = []
    for raw in _list(data, "numbers"):
        number = to_e164(raw, default_country)
        if number not in numbers:
            numbers.append(number)
    networks: list[str] = []
    for raw in _list(data, "allowed_addresses"):
        try:
            networks.append(str(ipaddress.ip_network(raw.strip(), strict=False)))
        except ValueError:
            raise InvalidInput(f"allowed_addresses: {raw!r} is not an address or CIDR "
                               "network") from None
    codecs = [c.upper() for c in _list(data, "codecs")]
    for codec in codecs:
        if codec not in TRUNK_CODECS:
            raise InvalidInput(f"codecs: {codec!r} is not one of {', '.join(TRUNK_CODECS)}")
    encryption = _str(data, "media_encryption", "off").lower()
    if encryption not in MEDIA_ENCRYPTION:
        raise InvalidInput("media_encryption: expected 'off', 'optional' or 'required'")
    assert encryption in ("off", "optional", "required")
    destinations: list[str] = []
    for raw in _list(data, "allowed_destinations"):
        prefix = raw.strip()
        if not re.fullmatch(r"\+[1-9][0-9]{0,14}|\+", prefix):
            raise InvalidInput(f"allowed_destinations: {raw!r} is not a '+' and digits prefix")
        destinations.append(prefix)
    tls_verify = _bool(data, "tls_verify", True)
    tls_ca = _str(data, "tls_ca").strip()
    if tls_ca and (not tls_ca.startswith("/") or len(tls_ca) > 1024
                   or not tls_ca.isprintable()):
        raise InvalidInput("tls_ca: expected an absolute path to a PEM CA bundle")
    if tls_ca and not tls_verify:
        raise InvalidInput("tls_ca: only with tls_verify true (nothing is verified otherwise)")
    return TrunkRecord(
        name=name, address=address, transport=transport, failover=failover,
        username=username, password=password, register=register, expires=expires,
        numbers=tuple(numbers), allowed_addresses=tuple(networks), auth=auth,
        codecs=tuple(dict.fromkeys(codecs)), media_encryption=encryption,
        allowed_destinations=tuple(destinations), tls_verify=tls_verify, tls_ca=tls_ca,
        register_in=register_in, created=created,
    )  # fmt: skip

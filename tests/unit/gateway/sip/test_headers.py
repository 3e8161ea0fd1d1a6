"""Header names, comma lists, Via and CSeq (RFC 3261 sections 7.3 and 20)."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.headers import COMPACT_FORMS, CSeq, Via, canonical_name, split_list


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("call-id", "Call-ID"),
        ("CALL-ID", "Call-ID"),
        ("i", "Call-ID"),
        ("I", "Call-ID"),
        ("v", "Via"),
        ("cseq", "CSeq"),
        ("MaX-fOrWaRdS", "Max-Forwards"),
        ("www-authenticate", "WWW-Authenticate"),
        ("l", "Content-Length"),
        ("m", "Contact"),
        ("k", "Supported"),
        ("x-custom-header", "X-Custom-Header"),
        ("X-PBX-Room", "X-PBX-Room"),
        ("NewFangledHeader", "NewFangledHeader"),
    ],
)
def test_canonical_name(name: str, canonical: str) -> None:
    assert canonical_name(name) == canonical


def test_compact_forms_of_rfc_3261() -> None:
    expected = {"c": "Content-Type", "e": "Content-Encoding", "f": "From", "i": "Call-ID",
                "k": "Supported", "l": "Content-Length", "m": "Contact", "s": "Subject",
                "t": "To", "v": "Via"}  # fmt: skip
    for short, full in expected.items():
        assert COMPACT_FORMS[short] == full


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("INVITE, ACK,BYE", ["INVITE", "ACK", "BYE"]),
        ("single", ["single"]),
        ("", []),
        (" , ,a,, ", ["a"]),
        ('"Doe, John" <sip:j@x>, <sip:k@y>', ['"Doe, John" <sip:j@x>', "<sip:k@y>"]),
        ("<sip:a@x;p=1,2>, <sip:b@y>", ["<sip:a@x;p=1,2>", "<sip:b@y>"]),
        ('"a \\", b" <sip:a@x>, <sip:b@y>', ['"a \\", b" <sip:a@x>', "<sip:b@y>"]),
    ],
)
def test_split_list(value: str, items: list[str]) -> None:
    assert split_list(value) == items


def test_via_basic() -> None:
    via = Via.parse("SIP/2.0/udp pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;Received=192.0.2.1")
    assert via.transport == "UDP"
    assert via.host == "pc33.atlanta.com"
    assert via.port == 5066
    assert via.branch == "z9hG4bK776asdhds"
    assert via.received == "192.0.2.1"
    assert via.rport is None
    assert via.sent_by == "pc33.atlanta.com:5066"
    assert (
        str(via) == "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;received=192.0.2.1"
    )


def test_via_rport() -> None:
    assert Via.parse("SIP/2.0/UDP h;rport;branch=z9hG4bK1").rport is None
    assert "rport" in Via.parse("SIP/2.0/UDP h;rport;branch=z9hG4bK1").params
    assert Via.parse("SIP/2.0/UDP h;rport=5070;branch=z9hG4bK1").rport == 5070
    assert Via.parse("SIP/2.0/UDP h;rport=junk").rport is None


def test_via_unusual_whitespace() -> None:
    # RFC 4475 wsinv, after unfolding.
    via = Via.parse("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw")
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP",
        "192.0.2.2",
        None,
        "390skdjuw",
    )
    spaced = Via.parse("SIP / 2.0 / TCP spindle.example.com ; branch = z9hG4bK9ikj8")
    assert spaced.transport == "TCP"
    assert spaced.branch == "z9hG4bK9ikj8"
    colon = Via.parse("SIP/2.0/UDP host.example.com : 5060")
    assert colon.port == 5060


def test_via_ipv6() -> None:
    via = Via.parse(
        "SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3-111;received=2001:db8::9:255"
    )
    assert via.host == "[2001:db8::9:1]"
    assert via.port == 5070
    assert via.received == "2001:db8::9:255"
    assert Via.parse(str(via)) == via
    assert Via.parse("SIP/2.0/TCP [2001:db8::9:1];branch=z9hG4bK1").port is None


def test_via_unknown_transports_parse() -> None:
    for transport in ("SCTP", "TLS", "UNKNOWN", "WS", "WSS"):
        assert (
            Via.parse(f"SIP/2.0/{transport} t.example.com;branch=z9hG4bK1").transport == transport
        )


@pytest.mark.parametrize(
    "text",
    [
        "SIP/3.0/UDP host",
        "HTTP/2.0/UDP host",
        "SIP/2.0 host",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host:5060000",
        "SIP/2.0/UDP 192.0.2.15;;",  # badinv01
        "SIP/2.0/UDP 192.0.2.15;",
        "SIP/2.0/UDP host;branch=a b",
        "SIP/2.0/UDP [2001:db8::1",
        "",
    ],
)
def test_malformed_vias_raise(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        Via.parse(text)


def test_cseq() -> None:
    assert CSeq.parse("4711 INVITE") == CSeq(4711, "INVITE")
    assert CSeq.parse("0009   INVITE") == CSeq(9, "INVITE")  # wsinv, after unfolding
    assert CSeq.parse(" 4294967295 BYE ") == CSeq(4294967295, "BYE")
    assert str(CSeq(1, "ACK")) == "1 ACK"
    with pytest.raises(dataclasses.FrozenInstanceError):
        CSeq(1, "ACK").number = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    [
        "4294967296 INVITE",
        "36893488147419103232 REGISTER",
        "INVITE",
        "1",
        "-1 INVITE",
        "1 INVITE BYE",
        "1 IN<VITE",
        "",
    ],
)
def test_malformed_cseqs_raise(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        CSeq.parse(text)

"""Headers, SipRequest/SipResponse accessors and serialization, make_response."""

from __future__ import annotations

import pytest

from gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from gateway.sip.headers import CSeq
from gateway.sip.message import Headers, SipRequest, SipResponse, make_response
from gateway.sip.parser import parse_message
from gateway.sip.uri import SipUri


def _request_headers() -> Headers:
    return Headers(
        [
            (
                "Via",
                "SIP/2.0/UDP proxy.example.com;branch=z9hG4bK2,"
                " SIP/2.0/UDP pc.example.com;branch=z9hG4bK1",
            ),
            ("v", "SIP/2.0/TCP third.example.com;branch=z9hG4bK0"),
            ("Record-Route", "<sip:p2.example.com;lr>, <sip:p1.example.com;lr>"),
            ("From", '"Doe, John" <sip:john@example.com>;tag=abc'),
            ("t", "<sip:bob@example.com>"),
            ("i", "call-1@example.com"),
            ("CSeq", "7 INVITE"),
            ("Contact", "<sip:john@192.0.2.1:5060>;expires=60"),
            ("Max-Forwards", "70"),
            ("Content-Type", "Application/SDP; charset=utf-8"),
        ]
    )


def _invite(body: bytes = b"v=0\r\n") -> SipRequest:
    return SipRequest("INVITE", SipUri.parse("sip:bob@example.com"), _request_headers(), body)


# ---- Headers -----------------------------------------------------------------------------


def test_headers_are_case_insensitive_and_fold_compact_forms() -> None:
    headers = _request_headers()
    assert headers.get("call-id") == "call-1@example.com"
    assert headers.get("I") == "call-1@example.com"
    assert headers.get("TO") == "<sip:bob@example.com>"
    assert "Call-ID" in headers and "i" in headers and "cseq" in headers
    assert "Subject" not in headers
    assert 42 not in headers
    assert headers.get("Subject") is None
    assert headers.get_all("Subject") == []
    assert [name for name, _ in headers.items()][:6] == [
        "Via", "Via", "Record-Route", "From", "To", "Call-ID"]  # fmt: skip


def test_get_all_splits_list_headers_only() -> None:
    headers = _request_headers()
    assert headers.get_all("Via") == [
        "SIP/2.0/UDP proxy.example.com;branch=z9hG4bK2",
        "SIP/2.0/UDP pc.example.com;branch=z9hG4bK1",
        "SIP/2.0/TCP third.example.com;branch=z9hG4bK0",
    ]
    assert headers.get("Via") == "SIP/2.0/UDP proxy.example.com;branch=z9hG4bK2"
    assert headers.get_all("From") == ['"Doe, John" <sip:john@example.com>;tag=abc']
    headers.add("WWW-Authenticate", 'Digest realm="a", nonce="b"')
    assert headers.get_all("www-authenticate") == ['Digest realm="a", nonce="b"']
    headers.add("Allow", "INVITE, ACK")
    headers.add("Allow", "BYE")
    assert headers.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    assert headers.fields("Allow") == ["INVITE, ACK", "BYE"]


def test_add_set_remove_copy() -> None:
    headers = Headers([("A-Header", "1"), ("Subject", "s"), ("a-header", "2")])
    headers.add("A-HEADER", "3")
    assert headers.get_all("a-header") == ["1", "2", "3"]
    copy = headers.copy()
    headers.set("a-header", "only")
    assert headers.items() == [("A-Header", "only"), ("Subject", "s")]
    assert copy.get_all("a-header") == ["1", "2", "3"]
    headers.set("New", "x")
    assert headers.items()[-1] == ("New", "x")
    headers.remove("SUBJECT")
    assert "Subject" not in headers
    assert len(headers) == 2
    assert headers == Headers([("A-Header", "only"), ("new", "x")])
    assert headers != copy


def test_values_with_line_breaks_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        Headers().add("Subject", "a\r\nVia: injected")
    with pytest.raises(LocalProtocolError):
        Headers().set("Subject", "a\nb")


# ---- accessors ---------------------------------------------------------------------------


def test_typed_accessors() -> None:
    invite = _invite()
    assert invite.call_id == "call-1@example.com"
    assert invite.cseq == CSeq(7, "INVITE")
    assert [v.host for v in invite.vias] == [
        "proxy.example.com",
        "pc.example.com",
        "third.example.com",
    ]
    assert invite.top_via.branch == "z9hG4bK2"
    assert invite.from_addr.display == "Doe, John"
    assert invite.from_tag == "abc"
    assert invite.to_tag is None
    assert invite.to_addr.uri.user == "bob"
    assert [c.uri.port for c in invite.contacts] == [5060]
    assert invite.contacts[0].params == {"expires": "60"}
    assert [str(r.uri) for r in invite.record_route] == [
        "sip:p2.example.com;lr",
        "sip:p1.example.com;lr",
    ]
    assert invite.route == []
    assert invite.max_forwards == 70
    assert invite.content_type == "application/sdp"


def test_accessors_are_cached_and_refreshed_after_a_change() -> None:
    invite = _invite()
    first = invite.vias
    assert invite.vias is first
    invite.headers.set("To", "<sip:bob@example.com>;tag=xyz")
    assert invite.to_tag == "xyz"
    invite.headers.remove("Via")
    assert invite.vias == []
    with pytest.raises(RemoteProtocolError):
        _ = invite.top_via


def test_missing_or_bad_headers_raise_remote_errors() -> None:
    request = SipRequest("OPTIONS", SipUri.parse("sip:a@b"), Headers([("CSeq", "x OPTIONS")]))
    with pytest.raises(RemoteProtocolError):
        _ = request.call_id
    with pytest.raises(RemoteProtocolError):
        _ = request.cseq
    with pytest.raises(RemoteProtocolError):
        _ = request.from_addr
    assert request.content_type is None
    assert request.max_forwards is None
    request.headers.add("Max-Forwards", "256")
    with pytest.raises(RemoteProtocolError):
        _ = request.max_forwards


def test_contact_star_is_skipped() -> None:
    request = SipRequest("REGISTER", SipUri.parse("sip:example.com"), Headers([("Contact", "*")]))
    assert request.contacts == []
    assert request.headers.get("Contact") == "*"


# ---- serialize ---------------------------------------------------------------------------


def test_serialize_writes_content_length_of_the_body() -> None:
    invite = _invite(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n")
    invite.headers.add("Content-Length", "9999")
    data = invite.serialize()
    assert data.startswith(b"INVITE sip:bob@example.com SIP/2.0\r\n")
    assert len(invite.body) == 31
    assert b"Content-Length: 31\r\n" in data
    assert b"9999" not in data
    assert data.endswith(b"\r\n\r\nv=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n")
    parsed = parse_message(data)
    assert isinstance(parsed, SipRequest)
    assert parsed.body == invite.body
    assert parsed.headers.get_all("Via") == invite.headers.get_all("Via")
    assert parsed.from_addr == invite.from_addr


def test_serialize_without_content_length_header_appends_one() -> None:
    response = SipResponse(200, "OK", Headers([("Call-ID", "x")]))
    assert response.serialize() == b"SIP/2.0 200 OK\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"


def test_message_equality() -> None:
    assert _invite() == _invite()
    assert _invite(b"a") != _invite(b"b")


# ---- make_response -----------------------------------------------------------------------


def test_make_response_copies_the_transaction_headers() -> None:
    invite = _invite()
    ringing = make_response(invite, 180, to_tag="tt1")
    assert ringing.status == 180
    assert ringing.reason == "Ringing"
    assert ringing.headers.get_all("Via") == invite.headers.get_all("Via")
    assert ringing.headers.fields("Via") == invite.headers.fields("Via")
    assert ringing.from_addr == invite.from_addr
    assert ringing.to_tag == "tt1"
    assert ringing.to_addr.uri == invite.to_addr.uri
    assert ringing.call_id == invite.call_id
    assert ringing.cseq == invite.cseq
    assert ringing.headers.get_all("Record-Route") == invite.headers.get_all("Record-Route")
    assert "Contact" not in ringing.headers
    assert "Max-Forwards" not in ringing.headers
    assert ringing.body == b""
    parsed = parse_message(ringing.serialize())
    assert isinstance(parsed, SipResponse)
    assert parsed.to_tag == "tt1"


def test_make_response_record_route_only_for_1xx_2xx() -> None:
    invite = _invite()
    assert "Record-Route" in make_response(invite, 200, to_tag="a").headers
    assert "Record-Route" not in make_response(invite, 486, to_tag="a").headers


def test_make_response_keeps_an_existing_to_tag() -> None:
    invite = _invite()
    invite.headers.set("To", "<sip:bob@example.com>;tag=existing")
    response = make_response(invite, 200, to_tag="other")
    assert response.to_tag == "existing"
    assert make_response(invite, 100).to_tag == "existing"


def test_make_response_reason_phrases() -> None:
    invite = _invite()
    assert make_response(invite, 100).reason == "Trying"
    assert make_response(invite, 100).to_tag is None
    assert make_response(invite, 487).reason == "Request Terminated"
    assert make_response(invite, 505).reason == "Version Not Supported"
    assert make_response(invite, 499).reason == "Client Error"
    assert make_response(invite, 603, "Go away").reason == "Go away"
    for status in (99, 700):
        with pytest.raises(LocalProtocolError):
            make_response(invite, status)

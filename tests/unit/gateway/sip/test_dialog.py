"""Dialogs (RFC 3261 section 12): creation on both sides, route sets, CSeq rules and the
in-dialog requests they build."""

from __future__ import annotations

import pytest

from gateway.sip.dialog import Dialog, DialogId, DialogState, uri_destination
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.headers import Via
from gateway.sip.message import SipRequest, make_response
from gateway.sip.parser import parse_message
from gateway.sip.peer import Peer
from gateway.sip.uri import SipUri

INVITE = (
    b"INVITE sip:conf@10.0.0.2 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-p2\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a1\r\n"
    b"Record-Route: <sip:10.0.0.5;lr>\r\n"
    b"Record-Route: <sip:10.0.0.6:5080;lr;transport=tcp>\r\n"
    b"Max-Forwards: 69\r\n"
    b"From: \"Alice\" <sip:alice@example.com>;tag=a-tag\r\n"
    b"To: <sip:conf@example.com>\r\n"
    b"Call-ID: dlg-1@10.0.0.1\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Contact: <sip:alice@10.0.0.1:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def invite() -> SipRequest:
    message = parse_message(INVITE)
    assert isinstance(message, SipRequest)
    return message


def via() -> Via:
    return Via("UDP", "10.0.0.2", 5060, {"branch": "z9hG4bK-new", "rport": None})


def test_uas_dialog_from_invite() -> None:
    dialog = Dialog.create_uas(invite(), "b-tag")
    assert dialog.id == DialogId("dlg-1@10.0.0.1", "b-tag", "a-tag")
    assert DialogId.of_request(invite()) is None  # no To tag: not in a dialog yet
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:10.0.0.5;lr", "sip:10.0.0.6:5080;lr;transport=tcp"]
    assert str(dialog.remote_target) == "sip:alice@10.0.0.1:5062"
    assert dialog.remote_cseq == 7 and dialog.local_cseq == 0
    assert dialog.local_uri.tag == "b-tag" and dialog.remote_uri.tag == "a-tag"
    assert dialog.state.value == "early"
    dialog.confirm()
    assert dialog.state is DialogState.CONFIRMED


def test_uas_dialog_needs_a_contact() -> None:
    data = INVITE.replace(b"Contact: <sip:alice@10.0.0.1:5062>\r\n", b"")
    request = parse_message(data)
    assert isinstance(request, SipRequest)
    with pytest.raises(RemoteProtocolError):
        Dialog.create_uas(request, "b-tag")


def test_remote_cseq_must_not_go_down() -> None:
    dialog = Dialog.create_uas(invite(), "b-tag")
    bye = invite()
    bye.headers.set("CSeq", "6 BYE")
    assert not dialog.accept_remote_cseq(bye)
    bye.headers.set("CSeq", "7 BYE")
    assert dialog.accept_remote_cseq(bye)  # equal is not lower (a CANCEL/ACK shares it)
    bye.headers.set("CSeq", "9 BYE")
    assert dialog.accept_remote_cseq(bye) and dialog.remote_cseq == 9


def test_loose_routed_request_from_uas() -> None:
    dialog = Dialog.create_uas(invite(), "b-tag")
    bye = dialog.create_request("BYE", via())
    assert bye.method == "BYE" and str(bye.uri) == "sip:alice@10.0.0.1:5062"
    assert bye.headers.get_all("Route") == [
        "<sip:10.0.0.5;lr>", "<sip:10.0.0.6:5080;lr;transport=tcp>"]
    assert bye.from_tag == "b-tag" and bye.to_tag == "a-tag"
    assert bye.cseq.number == 1 and bye.cseq.method == "BYE"
    assert dialog.create_request("INFO", via()).cseq.number == 2
    assert dialog.next_hop() == Peer("udp", "10.0.0.5", 5060)
    parsed = parse_message(bye.serialize())  # it is a valid request on the wire
    assert isinstance(parsed, SipRequest) and parsed.call_id == "dlg-1@10.0.0.1"


def test_strict_routed_request() -> None:
    data = INVITE.replace(b"<sip:10.0.0.5;lr>", b"<sip:10.0.0.5:5070>")
    request = parse_message(data)
    assert isinstance(request, SipRequest)
    dialog = Dialog.create_uas(request, "b-tag")
    bye = dialog.create_request("BYE", via())
    assert str(bye.uri) == "sip:10.0.0.5:5070"
    assert bye.headers.get_all("Route") == [
        "<sip:10.0.0.6:5080;lr;transport=tcp>", "<sip:alice@10.0.0.1:5062>"]
    assert dialog.next_hop() == Peer("udp", "10.0.0.5", 5070)


def test_uac_dialog_reverses_record_route_and_takes_the_contact() -> None:
    request = invite()
    response = make_response(request, 200, to_tag="b-tag")
    response.headers.add("Contact", "<sip:gw@10.0.0.2:5060>")
    dialog = Dialog.create_uac(request, response)
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.id == DialogId("dlg-1@10.0.0.1", "a-tag", "b-tag")
    assert DialogId.of_response(response) == dialog.id
    assert [r.uri.host for r in dialog.route_set] == ["10.0.0.6", "10.0.0.5"]
    assert str(dialog.remote_target) == "sip:gw@10.0.0.2:5060"
    assert dialog.next_hop() == Peer("tcp", "10.0.0.6", 5080)
    assert dialog.create_request("BYE", via()).cseq.number == 8  # after the INVITE's 7
    ack = dialog.create_request("ACK", via(), cseq=7)
    assert ack.cseq.number == 7 and dialog.local_cseq == 8


def test_early_dialog_confirmed_by_2xx_takes_its_route_set() -> None:
    request = invite()
    ringing = make_response(request, 180, to_tag="b-tag")
    dialog = Dialog.create_uac(request, ringing)
    assert dialog.state.value == "early"
    assert str(dialog.remote_target) == "sip:conf@10.0.0.2"  # no Contact yet
    ok = make_response(request, 200, to_tag="b-tag")
    ok.headers.set("Record-Route", "<sip:10.0.0.7;lr>")
    ok.headers.add("Contact", "<sip:gw@10.0.0.2:5090>")
    dialog.confirm(ok)
    assert dialog.state is DialogState.CONFIRMED
    assert [r.uri.host for r in dialog.route_set] == ["10.0.0.7"]
    assert dialog.remote_target.port == 5090


def test_target_refresh() -> None:
    dialog = Dialog.create_uas(invite(), "b-tag")
    reinvite = invite()
    reinvite.headers.set("Contact", "<sip:alice@10.0.0.99:5099;transport=tcp>")
    dialog.refresh_target(reinvite)
    assert dialog.remote_target.host == "10.0.0.99"
    dialog.route_set = []
    assert dialog.next_hop() == Peer("tcp", "10.0.0.99", 5099)


@pytest.mark.parametrize(
    ("uri", "peer"),
    [
        ("sip:a@10.0.0.1", Peer("udp", "10.0.0.1", 5060)),
        ("sip:a@10.0.0.1:5080;transport=TCP", Peer("tcp", "10.0.0.1", 5080)),
        ("sips:a@10.0.0.1", Peer("tls", "10.0.0.1", 5061)),
        ("sip:a@10.0.0.1;maddr=10.0.0.3", Peer("udp", "10.0.0.3", 5060)),
        ("sip:[2001:db8::1]:5070", Peer("udp", "2001:db8::1", 5070)),
    ],
)
def test_uri_destination(uri: str, peer: Peer) -> None:
    assert uri_destination(SipUri.parse(uri)) == peer


def test_without_a_route_set_requests_go_back_to_the_source() -> None:
    """A phone behind NAT: its Contact is private; BYE must reach the address its INVITE
    came from. A route set, when there is one, still wins."""
    text = INVITE.replace(b"Record-Route: <sip:10.0.0.5;lr>\r\n", b"").replace(
        b"Record-Route: <sip:10.0.0.6:5080;lr;transport=tcp>\r\n", b""
    )
    request = parse_message(text)
    assert isinstance(request, SipRequest)
    nat = Peer("udp", "203.0.113.7", 40123)
    dialog = Dialog.create_uas(request, "b-tag", "udp", nat)
    assert dialog.next_hop() == nat
    assert Dialog.create_uas(request, "b-tag").next_hop() == Peer("udp", "10.0.0.1", 5062)
    routed = Dialog.create_uas(invite(), "b-tag", "udp", nat)
    assert routed.next_hop() == Peer("udp", "10.0.0.5", 5060)

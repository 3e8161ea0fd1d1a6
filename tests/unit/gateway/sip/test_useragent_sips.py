"""sips: in secure dialogs (RFC 3261 8.1.1.8, 12.1.1): when the Request-URI (or the top
Record-Route, or without one the Contact) of the dialog-creating request is sips:, our
Contact is a sips: URI (without transport=tls, RFC 5630): in our INVITE and REGISTER, in our
answers, and in the dialog's later requests; a sip: request over TLS keeps
sip:...;transport=tls."""

from __future__ import annotations

from test_useragent_harness import offer_sdp

from gateway.sip.events import IncomingCall
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.parser import parse_message
from gateway.sip.peer import Peer
from gateway.sip.timers import TimerSettings
from gateway.sip.uri import NameAddr
from gateway.sip.useragent import UaSettings, UserAgent

US = ("10.0.0.2", 5061)
PEER = Peer("tls", "10.0.0.9", 5061)


def ua() -> UserAgent:
    return UserAgent(UaSettings(local={"tls": US, "udp": ("10.0.0.2", 5060)},
                                timers=TimerSettings(), session_expires=0))


def sent(agent: UserAgent) -> list[SipRequest | SipResponse]:
    out = []
    for data, _ in agent.datagrams_to_send():
        message = parse_message(data)
        assert isinstance(message, SipRequest | SipResponse)
        out.append(message)
    return out


def contact_of(message: SipRequest | SipResponse) -> str:
    value = message.headers.get("Contact")
    assert value is not None
    return str(NameAddr.parse(value).uri)


def incoming(ruri: str, *, contact: str = "sip:alice@10.0.0.9:5061;transport=tls",
             record_route: str | None = None) -> bytes:
    body = offer_sdp("10.0.0.9")
    lines = [f"INVITE {ruri} SIP/2.0",
             "Via: SIP/2.0/TLS 10.0.0.9:5061;branch=z9hG4bK-sips-1;rport",
             "Max-Forwards: 70", "From: <sips:alice@example.test>;tag=a1",
             "To: <sips:conf@example.test>", "Call-ID: sips-call-1", "CSeq: 1 INVITE",
             f"Contact: <{contact}>", "Content-Type: application/sdp",
             f"Content-Length: {len(body)}"]
    if record_route:
        lines.insert(3, f"Record-Route: <{record_route}>")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def answer_incoming(data: bytes) -> tuple[UserAgent, SipResponse]:
    agent = ua()
    agent.receive_data(data, PEER, 0.0)
    event = agent.next_event()
    assert isinstance(event, IncomingCall)
    agent.answer(event.call_id, offer_sdp("10.0.0.2", 5000), now=0.0)
    final = [m for m in sent(agent) if isinstance(m, SipResponse) and m.status == 200]
    assert len(final) == 1
    return agent, final[0]


def test_our_invite_to_a_sips_uri_has_a_sips_contact() -> None:
    agent = ua()
    agent.call(PEER, "sips:+15550199@carrier.test", "<sips:+15550100@carrier.test>",
               offer_sdp("10.0.0.2"), now=0.0)
    (invite,) = sent(agent)
    assert isinstance(invite, SipRequest)
    assert contact_of(invite) == "sips:10.0.0.2:5061"


def test_a_sip_uri_over_tls_keeps_sip_with_transport_tls() -> None:
    agent = ua()
    agent.call(PEER, "sip:+15550199@carrier.test", "<sip:+15550100@carrier.test>",
               offer_sdp("10.0.0.2"), now=0.0)
    (invite,) = sent(agent)
    assert contact_of(invite) == "sip:10.0.0.2:5061;transport=tls"


def test_register_to_a_sips_registrar_has_a_sips_contact() -> None:
    agent = ua()
    agent.register(PEER, "sips:carrier.test", "<sips:sb@carrier.test>", "sb", call_id="r1",
                   from_tag="t1", cseq=1, expires=300, now=0.0)
    (register,) = sent(agent)
    assert contact_of(register) == "sips:sb@10.0.0.2:5061"


def test_our_answer_to_a_sips_invite_has_a_sips_contact() -> None:
    _, ok = answer_incoming(incoming("sips:conf@10.0.0.2:5061"))
    assert contact_of(ok) == "sips:10.0.0.2:5061"


def test_a_secure_dialogs_refresh_carries_a_sips_contact() -> None:
    """Our INVITE to a sips: URI, answered with a session timer we refresh: the refresh (a
    request in the secure dialog) has a sips: Contact too."""
    agent = UserAgent(UaSettings(local={"tls": US}, timers=TimerSettings(),
                                 session_expires=90))
    call_id = agent.call(PEER, "sips:+15550199@carrier.test", "<sips:sb@carrier.test>",
                         offer_sdp("10.0.0.2"), now=0.0)
    (invite,) = sent(agent)
    assert isinstance(invite, SipRequest)
    body = offer_sdp("10.0.0.9")
    ok = (f"SIP/2.0 200 OK\r\nVia: {invite.headers.get('Via')}\r\n"
          f"From: {invite.headers.get('From')}\r\nTo: {invite.headers.get('To')};tag=b1\r\n"
          f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sips:callee@10.0.0.9:5061>\r\n"
          "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n"
          "Allow: INVITE, ACK, BYE, CANCEL, UPDATE\r\nContent-Type: application/sdp\r\n"
          f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    agent.receive_data(ok, PEER, 0.1)
    assert [m.method for m in sent(agent) if isinstance(m, SipRequest)] == ["ACK"]
    agent.handle_timer(60.0)
    refreshes = [m for m in sent(agent) if isinstance(m, SipRequest)
                 and m.method in ("UPDATE", "INVITE")]
    assert len(refreshes) == 1
    assert refreshes[0].uri.scheme == "sips"
    assert contact_of(refreshes[0]) == "sips:10.0.0.2:5061"


def test_a_sips_record_route_or_contact_makes_the_answer_sips() -> None:
    _, ok = answer_incoming(incoming("sip:conf@10.0.0.2:5061;transport=tls",
                                     record_route="sips:proxy.test;lr"))
    assert contact_of(ok) == "sips:10.0.0.2:5061"
    _, ok = answer_incoming(incoming("sip:conf@10.0.0.2:5061;transport=tls",
                                     contact="sips:alice@10.0.0.9:5061"))
    assert contact_of(ok) == "sips:10.0.0.2:5061"
    _, ok = answer_incoming(incoming("sip:conf@10.0.0.2:5061;transport=tls"))
    assert contact_of(ok) == "sip:10.0.0.2:5061;transport=tls"

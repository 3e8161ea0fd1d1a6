"""Shared pieces of the UserAgent tests (no tests here): an application wrapper that records
call events and can answer automatically, a scripted raw peer, and request templates."""

from __future__ import annotations

from collections.abc import Callable

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.events import CallEvent, IncomingCall, OfferReceived
from gateway.sip.loop import FakeClock, LoopNetwork
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.parser import parse_message
from gateway.sip.peer import Peer
from gateway.sip.sdp import SessionDescription, build_answer, build_offer
from gateway.sip.timers import TimerSettings
from gateway.sip.useragent import UaSettings, UserAgent

A = Peer("udp", "10.0.0.1", 5060)  # usually the caller
B = Peer("udp", "10.0.0.2", 5060)  # usually the callee (the gateway)
RAW = Peer("udp", "10.0.0.9", 5070)  # a scripted peer

Policy = Callable[["App", CallEvent], None]


def settings_for(addr: Peer, **kw: object) -> UaSettings:
    return UaSettings(local={"udp": (addr.host, addr.port), "tcp": (addr.host, addr.port)},
                      timers=TimerSettings(), **kw)  # type: ignore[arg-type]


def offer_sdp(host: str, port: int = 4000, version: int = 1) -> bytes:
    return build_offer(host, port, session_id="1", session_version=version).serialize()


def answer_for(offer: bytes, host: str, port: int = 5000, version: int = 1) -> bytes:
    result = build_answer(SessionDescription.parse(offer), host, port, session_id="2",
                          session_version=version)
    assert result is not None
    return result[0].serialize()


class App:
    """An application on top of a UserAgent: a SansIoNode that records every call event
    and lets a policy react to it at once (like a real app pulling next_event())."""

    def __init__(self, net: LoopNetwork, addr: Peer, policy: Policy | None = None,
                 **settings: object) -> None:
        self.addr = addr
        self.ua = UserAgent(settings_for(addr, **settings))
        self.policy = policy
        self._events: list[CallEvent] = []
        net.add(addr, self)

    def receive_data(self, data: bytes, source: Peer, now: float) -> None:
        self.ua.receive_data(data, source, now)
        self.pump()

    def handle_timer(self, now: float) -> None:
        self.ua.handle_timer(now)
        self.pump()

    def get_timer(self) -> float | None:
        return self.ua.get_timer()

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        return self.ua.datagrams_to_send()

    def pump(self) -> None:
        for _ in range(1000):
            event = self.ua.next_event()
            if event is None:
                return
            self._events.append(event)
            if self.policy is not None:
                self.policy(self, event)

    @property
    def events(self) -> list[CallEvent]:
        self.pump()
        return self._events

    def of(self, kind: type[CallEvent]) -> list[CallEvent]:
        return [e for e in self.events if isinstance(e, kind)]

    def has(self, kind: type[CallEvent], call_id: str | None = None) -> bool:
        return any(call_id is None or e.call_id == call_id for e in self.of(kind))


def answering(app: App, event: CallEvent) -> None:
    """Policy: answer every call and every re-offer at once with a matching SDP answer."""
    host = app.addr.host
    if isinstance(event, IncomingCall):
        if event.offer is None:
            app.ua.answer(event.call_id, offer_sdp(host, 6000))
        else:
            app.ua.answer(event.call_id, answer_for(event.offer, host))
    elif isinstance(event, OfferReceived):
        app.ua.answer_offer(event.call_id, answer_for(event.offer, host, version=2))


def ringing_only(app: App, event: CallEvent) -> None:
    if isinstance(event, IncomingCall):
        app.ua.ringing(event.call_id)


class RawPeer:
    """A scripted SIP peer: records what it receives, sends what the test writes."""

    def __init__(self, net: LoopNetwork, addr: Peer = RAW) -> None:
        self.net = net
        self.addr = addr
        self.received: list[SipRequest | SipResponse] = []
        self.garbage: list[bytes] = []  # what we could not parse (a test's own mutations)
        net.add(addr, self)

    def receive_data(self, data: bytes, source: Peer, now: float) -> None:
        try:
            self.received.append(parse_message(data))
        except RemoteProtocolError:
            self.garbage.append(data)

    def handle_timer(self, now: float) -> None:
        pass

    def get_timer(self) -> float | None:
        return None

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        return []

    def send(self, data: bytes, dest: Peer = B) -> None:
        self.net.send(data, self.addr, dest)

    def responses(self, method: str | None = None, status: int | None = None
                  ) -> list[SipResponse]:
        return [m for m in self.received if isinstance(m, SipResponse)
                and (method is None or m.cseq.method == method)
                and (status is None or m.status == status)]

    def requests(self, method: str | None = None) -> list[SipRequest]:
        return [m for m in self.received if isinstance(m, SipRequest)
                and (method is None or m.method == method)]


def raw_request(
    method: str,
    call_id: str = "raw-call-1",
    *,
    cseq: int = 1,
    from_tag: str = "rawtag",
    to_tag: str | None = None,
    branch: str | None = None,
    body: bytes = b"",
    extra: tuple[str, ...] = (),
    contact: bool = True,
    max_forwards: int = 70,
    cseq_method: str | None = None,
    via: Peer = RAW,
) -> bytes:
    """A request from the scripted peer (the ACK for a 2xx needs its own branch)."""
    branch = branch or f"z9hG4bK-{method.lower()}-{call_id}-{cseq}"
    to = "<sip:conf@10.0.0.2>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:conf@10.0.0.2:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP {via.host}:{via.port};branch={branch};rport",
        f"Max-Forwards: {max_forwards}",
        f"From: \"Raw\" <sip:raw@{via.host}>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
    ]
    if contact:
        lines.append(f"Contact: <sip:raw@{via.host}:{via.port}>")
    lines.extend(extra)
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def network(seed: int = 0, loss: float = 0.0, delay: float = 0.0, jitter: float = 0.0,
            duplicate: float = 0.0) -> tuple[FakeClock, LoopNetwork]:
    clock = FakeClock()
    return clock, LoopNetwork(clock, seed=seed, loss=loss, delay=delay, jitter=jitter,
                              duplicate=duplicate)


def wait(net: LoopNetwork, predicate: Callable[[], bool], seconds: float) -> bool:
    """Run the network until `predicate` holds, for at most `seconds` of fake time from now."""
    return net.run_until(predicate, net.clock.now + seconds)

"""REGISTER end to end without sockets: a UserAgent driven by a Registration, against a
registrar with digest (401) on the in-memory loop, with loss; then the registrar vanishes
and the registration times out, shows "failed" and the timeout backoff."""

from __future__ import annotations

from gateway.sip.digest import DigestServer, parse_credentials
from gateway.sip.events import RequestAnswered, RequestTimedOut
from gateway.sip.layer import RequestReceived, TransactionEvent
from gateway.sip.loop import FakeClock, LayerNode, LoopNetwork
from gateway.sip.message import make_response
from gateway.sip.peer import Peer
from gateway.sip.registration import Registration, RegistrationSettings
from gateway.sip.useragent import UaSettings, UserAgent

UA = Peer("udp", "10.0.0.1", 5060)
REGISTRAR = Peer("udp", "10.0.0.2", 5060)
CALL_ID = "reg-call-id-1"


class Registrant:
    """The UserAgent with one Registration: the sans-I/O half of gateway/trunk_registry."""

    def __init__(self) -> None:
        self.ua = UserAgent(UaSettings(local={"udp": (UA.host, UA.port)}))
        self.reg = Registration(RegistrationSettings(
            name="carrier", addresses=((REGISTRAR.host, REGISTRAR.port),), username="sb",
            password="pw", domain="10.0.0.2:5060", expires=60), rng=lambda: 0.5)  # fmt: skip
        self.granted: list[int] = []

    def pump(self, now: float) -> None:
        self.reg.handle_timer(now)
        while (attempt := self.reg.next_attempt()) is not None:
            self.ua.register(REGISTRAR, attempt.request_uri, "<sip:sb@10.0.0.2:5060>", "sb",
                             call_id=CALL_ID, from_tag="t1", cseq=attempt.cseq,
                             expires=attempt.expires,
                             headers=[attempt.authorization] if attempt.authorization else [],
                             now=now)  # fmt: skip

    def drain(self, now: float) -> None:
        while (event := self.ua.next_event()) is not None:
            if isinstance(event, RequestAnswered):
                r = event.response
                granted = None
                if r.status == 200:
                    granted = int(r.contacts[0].params.get("expires") or 0)
                    self.granted.append(granted)
                self.reg.on_response(r.status, now,
                                     challenges=r.headers.get_all("WWW-Authenticate"),
                                     granted=granted)  # fmt: skip
            elif isinstance(event, RequestTimedOut):
                self.reg.on_timeout(now)
        self.pump(now)

    def receive_data(self, data: bytes, source: Peer, now: float) -> None:
        self.ua.receive_data(data, source, now)
        self.drain(now)

    def handle_timer(self, now: float) -> None:
        self.ua.handle_timer(now)
        self.drain(now)

    def get_timer(self) -> float | None:
        times = [t for t in (self.ua.get_timer(), self.reg.get_timer()) if t is not None]
        return min(times) if times else None

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        return self.ua.datagrams_to_send()


def registrar(digest: DigestServer, seen: list[str]) -> LayerNode:
    def on_event(node: LayerNode, event: TransactionEvent, now: float) -> None:
        if not isinstance(event, RequestReceived):
            return
        request = event.request
        seen.append(request.headers.get("Expires") or "")
        value = request.headers.get("Authorization")
        creds = parse_credentials(value) if value else None
        if creds is not None and digest.verify(creds, "pw", "REGISTER", event.source.host,
                                               now) == "ok":
            response = make_response(request, 200, to_tag="r1")
            response.headers.add("Contact", "<sip:sb@10.0.0.1:5060>;expires=40")
        else:
            response = make_response(request, 401, to_tag="r1")
            for challenge in digest.challenges(now, event.source.host):
                response.headers.add("WWW-Authenticate", challenge)
        node.layer.send_response(event.txn, response, now)

    return LayerNode(on_event=on_event)


def test_register_with_digest_refresh_and_timeout_over_a_lossy_loop() -> None:
    clock = FakeClock()
    net = LoopNetwork(clock, seed=5, loss=0.2)
    me = Registrant()
    seen: list[str] = []
    net.add(UA, me)
    net.add(REGISTRAR, registrar(DigestServer(realm="carrier", nonce_lifetime=30), seen))
    me.reg.start(clock.now)
    me.pump(clock.now)
    assert net.run_until(lambda: me.reg.state == "registered", max_time=30.0)
    assert me.granted == [40] and "40 s" in me.reg.detail
    first_at = clock.now
    # refreshed at 70% of the 40 s granted, reusing the nonce (which may have expired by
    # then: the registrar challenges again and the refresh answers it, no failure)
    assert net.run_until(lambda: len(me.granted) >= 2, max_time=first_at + 60.0)
    assert me.reg.state == "registered" and me.reg.failures == 0
    assert all(e == "60" for e in seen)
    # the registrar goes away: timer F, "failed" with 408, retry in 5 s
    net.drop_filter = lambda data, source, dest: True
    assert net.run_until(lambda: me.reg.state == "failed", max_time=clock.now + 120.0)
    assert "408" in me.reg.detail and "next attempt in 5 s" in me.reg.detail

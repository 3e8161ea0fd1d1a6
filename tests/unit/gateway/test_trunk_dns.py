"""RFC 3263 for trunk hosts with the resolver injected (no sockets): numeric addresses as
they are; a name with a port: A/AAAA; a name without: the transport's SRV records
(_sip._udp, _sip._tcp, _sips._tcp) by priority and weight, else A/AAAA with the default
port; a short cache (min of TTL and 30 s) so refreshes and dial-outs resolve again; and the
registration taking new addresses."""

from __future__ import annotations

import asyncio

import pytest

from dialplan.trunks import parse_trunk
from gateway.sip.registration import Registration, RegistrationSettings
from gateway.trunk_dns import Answer, DnsError, Srv, TrunkResolver, srv_name, srv_order


class FakeDns:
    """Records by (name, kind); every question asked is kept."""

    def __init__(self, records: dict[tuple[str, str], tuple[object, ...]],
                 ttl: float = 300.0) -> None:
        self.records = records
        self.ttl = ttl
        self.asked: list[tuple[str, str]] = []
        self.broken = False

    async def __call__(self, name: str, kind: str) -> Answer:
        self.asked.append((name, kind))
        if self.broken:
            raise DnsError(f"{kind} {name}: Timeout")
        return Answer(self.records.get((name, kind), ()), self.ttl)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


CARRIER = {
    ("_sips._tcp.carrier.test.", "SRV"): (Srv(20, 0, 5061, "backup.carrier.test."),
                                          Srv(10, 0, 5071, "edge.carrier.test.")),
    ("_sip._udp.carrier.test.", "SRV"): (Srv(10, 0, 5080, "edge.carrier.test."),),
    ("edge.carrier.test.", "A"): ("192.0.2.10",),
    ("edge.carrier.test.", "AAAA"): ("2001:db8::10",),
    ("backup.carrier.test.", "A"): ("192.0.2.20",),
    ("carrier.test.", "A"): ("192.0.2.1",),
    ("plain.test.", "A"): ("198.51.100.7",),
}


def resolve(resolver: TrunkResolver, data: dict[str, object]) -> list[tuple[str, int]]:
    trunk = parse_trunk({"name": "carrier", **data})
    return list(asyncio.run(resolver.resolve_trunk(trunk)).addresses)


def test_srv_names_by_transport() -> None:
    assert srv_name("carrier.test", "udp") == "_sip._udp.carrier.test."
    assert srv_name("carrier.test", "tcp") == "_sip._tcp.carrier.test."
    assert srv_name("carrier.test.", "tls") == "_sips._tcp.carrier.test."


def test_a_name_without_a_port_follows_its_srv_records_by_priority() -> None:
    dns = FakeDns(CARRIER)
    resolver = TrunkResolver(dns, clock=Clock())
    assert resolve(resolver, {"address": "carrier.test", "transport": "tls"}) == [
        ("192.0.2.10", 5071), ("2001:db8::10", 5071), ("192.0.2.20", 5061)]
    assert dns.asked[0] == ("_sips._tcp.carrier.test.", "SRV")
    assert resolve(resolver, {"address": "carrier.test", "transport": "udp"}) == [
        ("192.0.2.10", 5080), ("2001:db8::10", 5080)]


def test_no_srv_records_falls_back_to_a_with_the_default_port() -> None:
    dns = FakeDns(CARRIER)
    resolver = TrunkResolver(dns, clock=Clock())
    assert resolve(resolver, {"address": "plain.test", "transport": "tls"}) == [
        ("198.51.100.7", 5061)]
    assert ("_sips._tcp.plain.test.", "SRV") in dns.asked


def test_a_port_given_or_an_ip_address_asks_no_srv() -> None:
    dns = FakeDns(CARRIER)
    resolver = TrunkResolver(dns, clock=Clock())
    assert resolve(resolver, {"address": "carrier.test:5099"}) == [("192.0.2.1", 5099)]
    assert all(kind != "SRV" for _, kind in dns.asked)
    assert resolve(resolver, {"address": "203.0.113.5"}) == [("203.0.113.5", 5060)]
    assert resolve(resolver, {"address": "203.0.113.5", "transport": "tls"}) == [
        ("203.0.113.5", 5061)]


def test_failover_addresses_follow_the_primary() -> None:
    resolver = TrunkResolver(FakeDns(CARRIER), clock=Clock())
    assert resolve(resolver, {"address": "plain.test", "failover_address": "carrier.test:5070"}
                   ) == [("198.51.100.7", 5060), ("192.0.2.1", 5070)]


def test_answers_are_cached_briefly_and_failures_not_at_all() -> None:
    dns = FakeDns(CARRIER, ttl=300.0)
    clock = Clock()
    resolver = TrunkResolver(dns, clock=clock, cache_ttl=30.0)
    resolve(resolver, {"address": "carrier.test", "transport": "tls"})
    asked = len(dns.asked)
    clock.now = 29.0
    resolve(resolver, {"address": "carrier.test", "transport": "tls"})
    assert len(dns.asked) == asked  # within 30 s: from the cache
    clock.now = 31.0
    dns.records[("edge.carrier.test.", "A")] = ("192.0.2.99",)
    assert resolve(resolver, {"address": "carrier.test", "transport": "tls"})[0] == (
        "192.0.2.99", 5071)  # resolved again: the carrier moved
    dns.broken = True
    clock.now = 100.0
    with pytest.raises(DnsError, match="Timeout"):
        resolve(resolver, {"address": "carrier.test", "transport": "tls"})
    dns.broken = False
    assert resolve(resolver, {"address": "carrier.test", "transport": "tls"})


def test_a_short_ttl_wins_over_the_cache_time() -> None:
    dns = FakeDns(CARRIER, ttl=5.0)
    clock = Clock()
    resolver = TrunkResolver(dns, clock=clock)
    resolve(resolver, {"address": "plain.test"})
    asked = len(dns.asked)
    clock.now = 6.0
    resolve(resolver, {"address": "plain.test"})
    assert len(dns.asked) > asked


def test_a_name_that_does_not_resolve_says_so() -> None:
    resolver = TrunkResolver(FakeDns({}), clock=Clock())
    with pytest.raises(DnsError, match=r"nowhere\.test: no address"):
        resolve(resolver, {"address": "nowhere.test"})
    only_dot = FakeDns({("_sip._udp.gone.test.", "SRV"): (Srv(0, 0, 0, "."),)})
    with pytest.raises(DnsError, match="no target resolves"):
        resolve(TrunkResolver(only_dot, clock=Clock()), {"address": "gone.test"})


def test_srv_order_is_rfc_2782s_weighted_draw() -> None:
    a, b, c = Srv(10, 60, 1, "a."), Srv(10, 40, 2, "b."), Srv(5, 0, 3, "c.")
    zero = Srv(10, 0, 4, "z.")
    # lowest priority first; then draws: 0.0 takes the zero weight first, 0.7 of the
    # remaining 100 passes a (60) and lands in b (running sum 100)
    assert srv_order([a, b, c, zero], rng=lambda: 0.0)[:2] == [c, zero]
    draws = iter([0.0, 0.7, 0.0])
    assert srv_order([a, b, zero], rng=lambda: next(draws)) == [zero, b, a]
    draws = iter([0.9, 0.9, 0.0])
    assert srv_order([a, b, zero], rng=lambda: next(draws))[0] == b


def test_the_stored_form_keeps_a_name_without_a_port() -> None:
    trunk = parse_trunk({"name": "carrier", "address": "carrier.test", "transport": "tls"})
    assert trunk.address.port_given is False and str(trunk.address) == "carrier.test"
    assert trunk.as_json()["address"] == "carrier.test"
    assert parse_trunk(trunk.stored()) == trunk
    given = parse_trunk({"name": "carrier", "address": "carrier.test:5061"})
    assert given.address.port_given and str(given.address) == "carrier.test:5061"
    ip = parse_trunk({"name": "carrier", "address": "192.0.2.1"})
    assert ip.address.port_given and str(ip.address) == "192.0.2.1:5060"


def test_the_registration_takes_new_addresses() -> None:
    reg = Registration(RegistrationSettings(
        name="carrier", addresses=(("192.0.2.10", 5071), ("192.0.2.20", 5061)),
        username="sb", password="pw", domain="carrier.test", expires=60), rng=lambda: 0.5)
    reg.start(0.0)
    first = reg.next_attempt()
    assert first is not None and first.address == ("192.0.2.10", 5071)
    reg.on_response(200, 0.1, granted=60)
    reg.set_addresses([("192.0.2.99", 5071), ("192.0.2.10", 5071)])
    assert reg.address == ("192.0.2.10", 5071)  # still there: kept
    reg.set_addresses([("192.0.2.99", 5071)])
    due = reg.get_timer()
    assert due is not None
    reg.handle_timer(due)  # the refresh goes to the new address
    refresh = reg.next_attempt()
    assert refresh is not None and refresh.address == ("192.0.2.99", 5071)


class RecordingUa:
    """Keeps each REGISTER's destination (the registry's only use of the user agent)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def register(self, dest: object, *args: object, **kwargs: object) -> None:
        self.sent.append((dest.host, dest.port))  # type: ignore[attr-defined]


def test_a_refresh_is_resolved_before_it_goes_out_even_when_the_timer_fires_early() -> None:
    """The loop's timer can fire a fraction of a millisecond before the refresh is due; the
    clock then passes the due time before the REGISTER is sent. The refresh must still go
    through DNS first (it went out on the old addresses, unresolved, once in a full test
    run: tests/integration/test_trunk_dns_srv.py)."""
    from gateway.trunk_registry import TrunkRegistry

    dns = FakeDns({("_sip._udp.carrier.test.", "SRV"): (Srv(10, 0, 5080, "edge.carrier.test."),),
                   ("edge.carrier.test.", "A"): ("192.0.2.10",)}, ttl=0.0)
    clock = Clock()
    ua = RecordingUa()
    registry = TrunkRegistry(ua, flush=lambda: None,  # type: ignore[arg-type]
                             resolver=TrunkResolver(dns, clock=clock))
    trunk = parse_trunk({"name": "carrier", "address": "carrier.test", "transport": "udp",
                         "username": "sb", "password": "pw", "register": True,
                         "expires": 60})

    async def run() -> None:
        registry._now = clock  # type: ignore[method-assign]
        registry.start([trunk])
        for _ in range(20):          # the first resolution and REGISTER
            await asyncio.sleep(0)
        assert ua.sent == [("192.0.2.10", 5080)]
        entry = registry._entries["carrier"]
        assert entry.registration is not None
        entry.registration.on_response(200, clock.now, granted=60)
        due = entry.registration.get_timer()
        assert due is not None
        # the carrier moves; the timer fires 0.5 ms early, the pump reads the clock after it
        dns.records[("edge.carrier.test.", "A")] = ("192.0.2.77",)
        asked = len(dns.asked)
        reads = iter([due - 0.0005] + [due + 0.0005] * 100)
        registry._now = lambda: next(reads)  # type: ignore[method-assign]
        await registry._resolve_due()
        assert ua.sent == [("192.0.2.10", 5080)]   # not yet: not due when chosen
        await registry._resolve_due()            # its own timer, due now
        assert len(dns.asked) > asked
        assert ua.sent[-1] == ("192.0.2.77", 5080)  # resolved first: the new address
        await registry.stop()

    asyncio.run(run())

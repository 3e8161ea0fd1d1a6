"""Trunk host names located by DNS SRV (RFC 3263) against a real DNS server: dnsmasq on
127.0.0.53 (its own port) holds `_sip._udp.carrier.test` -> sip.carrier.test:<kamailio's
port> and sip.carrier.test -> 127.0.0.1. A trunk whose address is `carrier.test` (no port)
registers to kamailio through that SRV record; the refresh looks the name up again (the
records' TTL is 0: nothing is cached), and so does a dial-out, whose INVITE reaches the
carrier."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from peers import procs
from peers.dnsmasq import Dnsmasq
from peers.kamailio_carrier import KamailioCarrier

pytestmark = pytest.mark.integration

NUMBER = "+15550100"
SB_PASSWORD = "sb-trunk-secret-10"
SRV = "_sip._udp.carrier.test"


def state(server: Any) -> dict[str, str]:
    resp = server.api("GET", "/api/trunks/carrier")
    assert resp.status == 200, resp.text
    result: dict[str, str] = resp.json()["registration"]
    return result


def test_a_trunk_name_without_a_port_follows_its_srv_record(switchboard_server: Any,
                                                            tmp_workdir: Path) -> None:
    with KamailioCarrier(tmp_workdir, subscribers={"sb": SB_PASSWORD}, number=NUMBER,
                         trunk_user="sb", min_expires=10) as kam, \
            Dnsmasq(tmp_workdir, srv=[(SRV, "sip.carrier.test", kam.port, 10, 0)],
                    hosts=[("sip.carrier.test", "127.0.0.1")]) as dns:
        server = switchboard_server({"sip": {"dns_server": dns.address},
                                     "dialplan": {"default_country": "1"}})
        assert server.api("POST", "/api/rooms", {"name": "standup"}).status == 201
        resp = server.api("POST", "/api/trunks", {
            "name": "carrier", "address": "carrier.test", "transport": "udp",
            "username": "sb", "password": SB_PASSWORD, "register": True, "expires": 10,
            "numbers": [NUMBER], "allowed_destinations": ["+1555"]})
        assert resp.status == 201, resp.text
        assert resp.json()["address"] == "carrier.test"
        if not procs.wait_until(lambda: state(server)["state"] == "registered", 15, 0.2):
            pytest.fail(f"never registered: {state(server)}\n{server.log_tail(30)}\n"
                        f"{dns.log_text()[-2000:]}")
        log = server.log_text()
        assert f"trunk carrier: SRV {SRV}. -> 127.0.0.1:{kam.port}" in log, server.log_tail(30)
        assert dns.queries("SRV", SRV) >= 1
        assert re.search(r"request REGISTER sip:carrier\.test from 127\.0\.0\.1:", kam.log_text())

        # the refresh (due within 5-9 s of the 10 s granted) asks the DNS server again
        before = dns.queries("SRV", SRV)
        if not procs.wait_until(
                lambda: server.log_text().count("trunk carrier: registered (") >= 2, 20, 0.2):
            pytest.fail(f"no refresh:\n{server.log_tail(30)}")
        assert dns.queries("SRV", SRV) > before, dns.log_text()[-2000:]

        # a dial-out resolves the trunk again and its INVITE goes where the record says
        before = dns.queries("SRV", SRV)
        resp = server.api("POST", "/api/rooms/standup/dial", {"number": "+15550199"})
        assert resp.status == 202, resp.text
        if not procs.wait_until(lambda: "request INVITE sip:+15550199@carrier.test" in
                                kam.log_text(), 10, 0.1):
            pytest.fail(f"the INVITE never reached the carrier:\n{kam.log_tail(20)}")
        assert dns.queries("SRV", SRV) > before
        server.api("DELETE", f"/api/calls/{resp.json()['id']}")
    assert SB_PASSWORD not in server.log_text()

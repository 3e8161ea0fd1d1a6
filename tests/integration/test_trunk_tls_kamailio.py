"""Per-trunk TLS verification against kamailio as a carrier over TLS (issue 16): the
carrier's certificate is checked against the trunk's `tls_ca`, else sip.tls_ca. With a CA
that did not sign it, the registration fails at once with a TLS reason (state "failed",
the verification error in the detail) and nothing reaches the carrier; `tls_verify: false`
registers without any CA; with the right CA (the trunk's own, the global one being wrong)
it registers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from peers import procs
from peers.kamailio_carrier import KamailioCarrier

pytestmark = pytest.mark.integration

NUMBER = "+15550100"
SB_PASSWORD = "sb-trunk-secret-9"


def registration(server: Any) -> dict[str, str]:
    resp = server.api("GET", "/api/trunks/carrier")
    assert resp.status == 200, resp.text
    state: dict[str, str] = resp.json()["registration"]
    return state


def wait_state(server: Any, state: str, timeout: float, contains: str = "") -> dict[str, str]:
    last: dict[str, str] = {}

    def reached() -> bool:
        nonlocal last
        last = registration(server)
        return last["state"] == state and contains in last["detail"]

    if not procs.wait_until(reached, timeout, 0.2):
        pytest.fail(f"registration never {state!r} ({contains!r}) in {timeout:.0f} s: {last}\n"
                    f"{server.log_tail(40)}")
    return last


def add_trunk(server: Any, address: str, **tls: object) -> dict[str, Any]:
    resp = server.api("POST", "/api/trunks", {
        "name": "carrier", "address": address, "transport": "tls", "username": "sb",
        "password": SB_PASSWORD, "register": True, "expires": 60, "numbers": [NUMBER],
        **tls})
    assert resp.status == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def registers_seen(kam: KamailioCarrier) -> int:
    return len(re.findall(r"request REGISTER \S+ from 127\.0\.0\.1:\d+", kam.log_text()))


def test_the_trunks_ca_decides_whether_the_carrier_is_trusted(switchboard_server: Any,
                                                              tmp_workdir: Path) -> None:
    from test_sip_tls import LOOP, self_signed

    (tmp_workdir / "carrier").mkdir()
    (tmp_workdir / "other").mkdir()
    cert, key = self_signed(tmp_workdir / "carrier")  # the carrier's (and our listener's)
    wrong, _ = self_signed(tmp_workdir / "other")  # a CA that signed something else
    tls_port = procs.free_port(kinds=("tcp",))
    server = switchboard_server({
        "sip": {"listen": [f"udp:{LOOP}:{procs.free_port(kinds=('udp',))}",
                           f"tls:{LOOP}:{tls_port}"],
                "tls_cert": str(cert), "tls_key": str(key), "tls_ca": str(wrong)},
        "dialplan": {"default_country": "1"}})
    with KamailioCarrier(tmp_workdir, subscribers={"sb": SB_PASSWORD}, number=NUMBER,
                         trunk_user="sb", tls=(cert, key)) as kam:
        # no tls_ca of its own: the global (wrong) one; verify is on by default
        body = add_trunk(server, kam.tls_address)
        assert body["tls_verify"] is True and body["tls_ca"] == ""
        failed = wait_state(server, "failed", 10, contains="TLS: certificate verify failed")
        assert kam.tls_address in failed["detail"], failed
        assert registers_seen(kam) == 0  # nothing was sent over an unverified connection
        assert server.api("DELETE", "/api/trunks/carrier").status == 204

        # a CA of its own that does not sign the carrier's certificate: refused the same way
        add_trunk(server, kam.tls_address, tls_ca=str(wrong))
        wait_state(server, "failed", 10, contains="TLS: certificate verify failed")
        assert server.api("DELETE", "/api/trunks/carrier").status == 204
        assert registers_seen(kam) == 0

        # tls_verify false: no CA at all, still encrypted, registered
        body = add_trunk(server, kam.tls_address, tls_verify=False)
        assert body["tls_verify"] is False
        wait_state(server, "registered", 15)
        assert "trunk carrier: TLS NOT verified (tls_verify false)" in server.log_text()
        assert server.api("DELETE", "/api/trunks/carrier").status == 204
        if not procs.wait_until(lambda: re.search(
                r"request REGISTER \S+ from 127\.0\.0\.1:\d+ expires 0", kam.log_text()), 5):
            pytest.fail(f"no un-REGISTER:\n{kam.log_tail(20)}")
        # (the carrier restarts: the connection opened without verification is gone, the
        # next trunk opens its own, an open connection being reused whoever opened it)
        kam.stop()
        kam.start()

        # the right CA for this trunk (the global one is still wrong): verified, registered
        body = add_trunk(server, kam.tls_address, tls_ca=str(cert))
        assert body["tls_ca"] == str(cert)
        wait_state(server, "registered", 15)
        assert f"trunk carrier: TLS verified against {cert}" in server.log_text()
    assert SB_PASSWORD not in server.log_text()

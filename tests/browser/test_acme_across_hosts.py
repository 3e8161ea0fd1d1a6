"""HTTPS from ACME across test hosts (issue 15, section 4), with real parts only: pebble on
one host, `switchboard serve` on another, headless Chromium on a third behind a NAT
(tests/browser/netlab.py):

    pebble 10.99.3.2 --- [router] --- 10.99.1.1 switchboard --- [NAT] --- 10.99.2.2 Chromium

Switchboard gets a certificate for switchboard.test from pebble over HTTP-01 (pebble resolves
every name to the server and fetches the challenge from 10.99.1.1:80). Chromium resolves the
name to the server (--host-resolver-rules) and trusts pebble's issuing root from the NSS
database of its HOME, and nothing else: no flag about certificate errors. It opens the
meeting page by name over HTTPS, is a secure context (its fake microphone and camera work),
and two browsers exchange audio and video. pebble's certificates live VALIDITY seconds, so
the server renews (at two thirds of the lifetime): the certificate served on the server's
address changes while the server process stays the same, and a fresh Chromium loads the
page, under the new certificate, and joins.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_harness import Browser, Member, join_meeting, rtp_stats
from netlab import EXTRA, SERVER, NetLab, tools_missing
from real_server import SwitchboardProcess
from test_media_paths import _hear_each_other, _until, selected_pair

_INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
if str(_INTEGRATION) not in sys.path:  # pebble's helper lives with the integration peers
    sys.path.insert(0, str(_INTEGRATION))

from peers.pebble import start_pebble_in_netns  # noqa: E402

NAME = "switchboard.test"
ROOM = "acme-room"
VALIDITY = 60  # seconds: pebble's certificateValidityPeriod; renewal comes at about 40 s
HTTP_PORT = 8080  # where real_server puts http.listen inside a namespace
MEDIA_TIMEOUT = 40.0

# Run on the client host: the certificate served on SERVER:HTTP_PORT for NAME, verified
# against pebble's root only. Prints {"serial", "not_after"}, or {"error"} when it does not
# verify (the server's stand-in before ACME, or a certificate from anywhere else).
_SERVED = """
import json, ssl, socket, sys
host, port, name, root = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=root)
try:
    with socket.create_connection((host, port), timeout=5) as raw, \\
            context.wrap_socket(raw, server_hostname=name) as tls:
        info = tls.getpeercert()
    print(json.dumps({"serial": info["serialNumber"],
                      "not_after": ssl.cert_time_to_seconds(info["notAfter"])}))
except ssl.SSLCertVerificationError as err:
    print(json.dumps({"error": str(err)}))
"""


@pytest.fixture
def lab() -> Iterator[NetLab]:
    missing = tools_missing()
    if missing:
        pytest.fail(f"missing {missing}: scripts/install-peers.sh installs them", pytrace=False)
    netlab = NetLab(secrets.token_hex(3))
    try:
        netlab.up()
        yield netlab
    finally:
        netlab.down()


def served_certificate(lab: NetLab, root: Path) -> dict[str, Any]:
    """What a client on the client host gets from https://NAME:HTTP_PORT (NAME -> SERVER)."""
    out = lab.run_in(lab.client, sys.executable, "-c", _SERVED, SERVER, str(HTTP_PORT), NAME,
                     str(root))  # fmt: skip
    result: dict[str, Any] = json.loads(out)
    return result


def server_pid(server: SwitchboardProcess) -> int:
    """The switchboard process itself: the child of the `timeout` wrapper we started
    (`ip netns exec` execs into that wrapper)."""
    wrapper = server.popen.pid
    children = Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _secure_join(browser: Browser, url: str, name: str) -> tuple[Member, dict[str, Any]]:
    """Open the meeting page by name, check it is a secure context whose fake devices work,
    join with microphone and camera; the member and the page's TLS details."""
    page = browser.open(url)
    response = page.reload()  # the navigation's response, for its TLS details
    assert response is not None and response.ok, response
    details = response.security_details()
    assert details is not None, "no TLS details: not served over HTTPS"
    assert page.url == url  # no redirect, no interstitial
    assert page.evaluate("window.isSecureContext") is True
    assert page.evaluate("location.protocol") == "https:"
    kinds = page.evaluate("""async () => {
        const s = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
        const kinds = s.getTracks().map((t) => t.kind).sort();
        s.getTracks().forEach((t) => t.stop());
        return kinds;
    }""")
    assert kinds == ["audio", "video"]
    join_meeting(page, name)
    deadline = time.monotonic() + 15.0
    while not browser.messages(page, "joined"):
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: no `joined` within 15 s")
        page.wait_for_timeout(50)
    joined = browser.messages(page, "joined")[0]
    return Member(browser, page, name, ROOM, str(joined["self"]["id"])), details


def _video_in(member: Member) -> int:
    stats = rtp_stats(member.page) or {}
    return max((s["framesDecoded"] or 0 for s in stats.get("inbound", [])
                if s["kind"] == "video"), default=0)  # fmt: skip


def test_acme_certificate_across_hosts_secure_meeting_and_renewal(
        playwright_instance: Any, tmp_path: Path, lab: NetLab) -> None:  # fmt: skip
    ca_host = lab.add_host()
    pebble = start_pebble_in_netns(tmp_path / "pebble", netns=ca_host, address=EXTRA,
                                   resolve_to=SERVER, http_port=80, validity=VALIDITY)
    browsers: list[Browser] = []
    try:
        bundle = tmp_path / "acme-ca.pem"
        bundle.write_bytes(pebble.ca_path.read_bytes())
        root = tmp_path / "pebble-root.pem"
        root.write_bytes(pebble.root_pem)
        server = SwitchboardProcess.start(tmp_path / "switchboard", {
            "http": {"acme_domains": [NAME], "acme_directory": pebble.directory,
                     "acme_email": "ops@switchboard.test", "acme_ca_bundle": str(bundle),
                     "acme_http_listen": f"{SERVER}:80"},
            "bridge": {"tcp_port": 0},
        }, netns=lab.server, host=SERVER)  # fmt: skip
        try:
            pid = server_pid(server)
            deadline = time.monotonic() + 60.0
            first = served_certificate(lab, root)
            while "serial" not in first:
                assert time.monotonic() < deadline, (
                    f"no certificate from pebble within 60 s ({first}):\n{server.log_tail(40)}")
                time.sleep(0.5)
                first = served_certificate(lab, root)
            assert 0 < first["not_after"] - time.time() <= VALIDITY + 5, first

            # Chromium on the client host trusts pebble's root (NSS, via HOME), nothing else
            home = tmp_path / "home"
            NetLab.trust_ca(home, root, "pebble-root")
            wrapper = lab.chromium_wrapper(tmp_path / "bin", home=home)
            resolve = f"--host-resolver-rules=MAP {NAME} {SERVER}"
            url = f"https://{NAME}:{HTTP_PORT}/{ROOM}"
            members: list[Member] = []
            first_tls: list[dict[str, Any]] = []
            for i in range(2):
                browser = Browser(playwright_instance, tmp_path / f"profile-{i}",
                                  executable=wrapper, extra_args=[resolve])  # fmt: skip
                browsers.append(browser)
                member, details = _secure_join(browser, url, f"A{i}")
                members.append(member)
                first_tls.append(details)
                assert details["subjectName"] == NAME, details
                assert "Pebble" in str(details["issuer"]), details
            _until(members, selected_pair, MEDIA_TIMEOUT, "a selected candidate pair")
            _hear_each_other(members)
            _until(members, lambda m: _video_in(m) > 10, MEDIA_TIMEOUT, "video both ways")
            before = {m.name: _video_in(m) for m in members}
            members[0].page.wait_for_timeout(1500)
            for m in members:
                assert _video_in(m) > before[m.name], f"{m.name}: video stopped"

            # renewal: another certificate on the server's address, same process
            deadline = time.monotonic() + VALIDITY + 30
            renewed = served_certificate(lab, root)
            while renewed.get("serial") == first["serial"] or "serial" not in renewed:
                assert time.monotonic() < deadline, (
                    f"the certificate was not renewed: {renewed}\n{server.log_tail(40)}")
                time.sleep(1.0)
                renewed = served_certificate(lab, root)
            assert renewed["not_after"] > first["not_after"]
            assert server.popen.poll() is None and server_pid(server) == pid
            log_text = server.log_path.read_text(errors="replace")
            assert log_text.count("acme: new certificate") >= 2, server.log_tail(40)

            # a fresh Chromium (a new TLS connection) loads the page under the new
            # certificate and joins the room; the meeting goes on meanwhile
            browser = Browser(playwright_instance, tmp_path / "profile-late",
                              executable=wrapper, extra_args=[resolve])  # fmt: skip
            browsers.append(browser)
            late, details = _secure_join(browser, url, "Late")
            assert details["subjectName"] == NAME
            assert details["validTo"] > first_tls[0]["validTo"], (details, first_tls[0])
            _hear_each_other([late, *members])
            stats = server.api("GET", "/api/stats")
            assert stats["media_port_latched"] >= 3
        finally:
            for browser in browsers:
                browser.close()
            assert server.stop(), server.log_tail()
    finally:
        pebble.stop()

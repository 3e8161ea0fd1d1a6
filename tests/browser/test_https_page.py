"""The meeting page over HTTPS (http.tls_cert) in headless Chromium, by name: a secure
context (window.isSecureContext), getUserMedia with the fake devices, two participants who
hear each other, and not one Content-Security-Policy violation reported by the page.

Chromium resolves switchboard.test to 127.0.0.1 (--host-resolver-rules) and accepts the test
leaf by its public key (--ignore-certificate-errors-spki-list), without touching a trust store.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_harness import Browser, join_meeting, rtp_stats, wait_for
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.sync_api import Page, expect
from real_server import SwitchboardProcess

NAME = "switchboard.test"
ROOM = "secure-room"
# Every CSP violation the page sees, from the first script on (the console line alone could
# be missed or reworded).
CSP_PROBE = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


def leaf(directory: Path) -> tuple[Path, Path, str]:
    """A self-signed certificate for NAME: (cert, key, base64 SHA-256 of its SPKI)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert_path, key_path, base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def https_setup(tmp_path: Path, playwright_instance: Any) -> Iterator[tuple[Any, Browser, int]]:
    cert, key, spki = leaf(tmp_path / "tls")
    server = SwitchboardProcess.start(tmp_path / "switchboard", {
        "http": {"tls_cert": str(cert), "tls_key": str(key)}})  # fmt: skip
    port = int(server.url.rsplit(":", 1)[1])
    browser = Browser(playwright_instance, tmp_path / "profile", extra_args=[
        f"--host-resolver-rules=MAP {NAME} 127.0.0.1",
        f"--ignore-certificate-errors-spki-list={spki}",
    ])  # fmt: skip
    browser.context.add_init_script(CSP_PROBE)
    try:
        yield server, browser, port
    finally:
        browser.close()
        if not server.stop():
            pytest.fail(f"switchboard did not stop on SIGTERM:\n{server.log_tail()}",
                        pytrace=False)


def _heard(page: Page) -> bool:
    stats = rtp_stats(page) or {}
    return any(s["kind"] == "audio" and s["packetsReceived"] > 0 and (s["audioLevel"] or 0) > 0
               for s in stats.get("inbound", []))


def test_meeting_page_over_https_is_a_secure_context(https_setup: tuple[Any, Browser, int]
                                                     ) -> None:  # fmt: skip
    _server, browser, port = https_setup
    url = f"https://{NAME}:{port}/{ROOM}"
    pages = []
    for name in ("Ada Lovelace", "Grace Hopper"):
        page = browser.open(url)
        assert page.url == url  # no redirect, no interstitial
        assert page.evaluate("window.isSecureContext") is True
        assert page.evaluate("location.protocol") == "https:"
        tracks = page.evaluate("""async () => {
            const s = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
            const kinds = s.getTracks().map((t) => t.kind).sort();
            s.getTracks().forEach((t) => t.stop());
            return kinds;
        }""")
        assert tracks == ["audio", "video"]
        join_meeting(page, name)
        pages.append(page)
    for page in pages:
        expect(page.locator("#grid .tile")).to_have_count(2)
        wait_for(lambda p=page: _heard(p), timeout=25, message="remote audio over HTTPS")
    hsts, csp = pages[0].evaluate("""async () => {
        const r = await fetch(location.href);
        return [r.headers.get('strict-transport-security'),
                r.headers.get('content-security-policy')];
    }""")
    assert hsts.startswith("max-age=")
    assert "frame-ancestors 'none'" in csp
    for page in pages:
        assert page.evaluate("window.__cspViolations") == []
        assert [e for e in browser.errors(page) if "Content Security Policy" in e] == []
        assert browser.errors(page) == []
    # the probe itself: an inline style attribute is a violation it reports
    pages[0].evaluate("document.body.setAttribute('style', 'outline: 1px solid red')")
    wait_for(lambda: pages[0].evaluate("window.__cspViolations.length") > 0, timeout=5,
             message="the CSP probe reporting an inline style")

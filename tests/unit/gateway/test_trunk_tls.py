"""Per-trunk TLS verification (issue 16): the trunk fields `tls_verify` (true by default)
and `tls_ca`; the context and name a connection to a trunk's bound address gets; a CA
bundle that cannot be read is a reason, not a silent fallback; and the registration failing
at once, with the transport's reason, when its connection cannot be opened."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dialplan.models import InvalidInput
from dialplan.trunks import TrunkRecord, parse_trunk
from gateway.sip.peer import Peer
from gateway.sip.registration import Registration, RegistrationSettings
from gateway.trunk_tls import TrunkTls


def ca_file(directory: Path) -> str:
    """A self-signed CA certificate in PEM, as a trunk's tls_ca."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trunk test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def tls_trunk(name: str = "carrier", host: str = "127.0.0.1:5061", **extra: object) -> TrunkRecord:
    return parse_trunk({"name": name, "address": host, "transport": "tls", **extra})


def test_the_fields_default_to_verify_with_the_global_ca() -> None:
    trunk = tls_trunk()
    assert trunk.tls_verify is True and trunk.tls_ca == ""
    assert trunk.as_json()["tls_verify"] is True and trunk.as_json()["tls_ca"] == ""
    mine = tls_trunk(tls_ca="/etc/switchboard/carrier-ca.pem")
    assert parse_trunk(mine.stored()) == mine  # what the store keeps comes back the same
    assert tls_trunk(tls_verify=False).tls_verify is False


@pytest.mark.parametrize("extra", [
    {"tls_verify": "no"}, {"tls_ca": "relative/ca.pem"}, {"tls_ca": 5},
    {"tls_ca": "/ca.pem", "tls_verify": False}, {"tls_ca": "/" + "a" * 1100},
])  # fmt: skip
def test_bad_tls_fields_are_refused(extra: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        tls_trunk(**extra)


def test_a_bound_address_gets_its_trunks_context_and_name(tmp_path: Path) -> None:
    trunks = {"carrier": tls_trunk(host="sip.carrier.test:5061"),
              "lab": tls_trunk("lab", "127.0.0.9:5061", tls_verify=False)}
    tls = TrunkTls(trunks.get, global_ca="")
    carrier_peer, lab_peer = Peer("tls", "192.0.2.5", 5061), Peer("tls", "127.0.0.9", 5061)
    assert tls.for_peer(carrier_peer) is None  # not bound: the global context
    tls.bind(trunks["carrier"], carrier_peer)
    tls.bind(trunks["lab"], lab_peer)
    tls.bind(trunks["lab"], Peer("udp", "127.0.0.9", 5060))  # (not TLS: nothing to bind)
    chosen = tls.for_peer(carrier_peer)
    assert chosen is not None
    context, name = chosen
    assert name == "sip.carrier.test"  # the configured name, not the resolved address
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    lab = tls.for_peer(lab_peer)
    assert lab is not None and lab[0].verify_mode == ssl.CERT_NONE and not lab[0].check_hostname
    assert tls.for_peer(carrier_peer) is not None and tls.for_peer(carrier_peer)[0] is context
    tls.unbind(trunks["lab"])
    assert tls.for_peer(lab_peer) is None
    del trunks["carrier"]  # removed through the API: its binding no longer applies
    assert tls.for_peer(carrier_peer) is None


def test_the_trunks_ca_wins_over_the_global_one(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing.pem")
    own = tls_trunk(tls_ca=ca_file(tmp_path))
    tls = TrunkTls({"carrier": own}.get, global_ca=missing)
    peer = Peer("tls", "127.0.0.1", 5061)
    tls.bind(own, peer)
    assert tls.for_peer(peer) is not None  # its own bundle: the global one is not read


def test_an_unreadable_ca_is_a_tls_reason(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing.pem")
    trunk = tls_trunk(tls_ca=missing)
    tls = TrunkTls({"carrier": trunk}.get)
    peer = Peer("tls", "127.0.0.1", 5061)
    tls.bind(trunk, peer)
    with pytest.raises(ValueError, match=r"^TLS: trunk carrier: the CA bundle .* cannot be"):
        tls.for_peer(peer)
    default = tls_trunk("other")  # no own bundle: the global one, unreadable too
    tls = TrunkTls({"other": default}.get, global_ca=missing)
    tls.bind(default, peer)
    with pytest.raises(ValueError, match=r"^TLS: "):
        tls.for_peer(peer)


def registration() -> Registration:
    return Registration(RegistrationSettings(
        name="carrier", addresses=(("127.0.0.1", 5061),), username="sb", password="pw",
        domain="127.0.0.1:5061", expires=60), rng=lambda: 0.5)  # fmt: skip


def test_a_connection_that_fails_fails_the_registration_at_once_with_its_reason() -> None:
    reg = registration()
    reg.start(0.0)
    first = reg.next_attempt()
    assert first is not None
    reg.on_transport_error("TLS: certificate verify failed: self-signed certificate", 0.2)
    assert reg.state == "failed"
    assert reg.detail.startswith("TLS: certificate verify failed: self-signed certificate "
                                 "(127.0.0.1:5061); next attempt in 5 s"), reg.detail
    reg.on_timeout(32.0, first.cseq)  # the dead REGISTER's own timeout: nothing more
    reg.on_transport_error("TLS: again", 33.0)  # nothing in flight: ignored
    assert reg.failures == 1 and reg.get_timer() == 5.2
    reg.handle_timer(5.2)  # the retry
    second = reg.next_attempt()
    assert second is not None and second.cseq == first.cseq + 1
    reg.on_timeout(37.0, first.cseq)  # a stale timeout does not fail the retry
    assert reg.state == "registering"
    reg.on_response(200, 5.5, granted=60)
    assert reg.state == "registered" and "TLS: certificate verify failed" in reg.detail

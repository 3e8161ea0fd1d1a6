"""The TLS carrier scenario of issue 16, shared by the integration and browser tests:

Switchboard listens on SIP/TLS (and UDP) with a throwaway self-signed certificate; kamailio
is the carrier (peers/kamailio_carrier.py) on TLS too, with digest; Switchboard registers a
trunk to it over TLS; a baresip phone is registered at the carrier over TLS with
`mediaenc=srtp-mand` (nothing but SDES-SRTP), under a number the trunk may dial.

- `TlsCarrierSetup(workdir)`: the certificate and the server's ports;
  `switchboard_config()` is the `sip` table to merge into the server's configuration.
- `carrier(...)`: the KamailioCarrier presenting that certificate.
- `trunk_body(kam, ...)`: the POST /api/trunks body of the TLS trunk.
- `srtp_phone(kam, ...)`: a Baresip (not started) registered at the carrier over TLS.
- `wait_registered(get_state, ...)`: poll the trunk's registration state.

Everything is on 127.0.0.1; the processes are bounded in time by peers.procs.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from . import procs
from .baresip import Baresip
from .kamailio_carrier import KamailioCarrier

LOOP = procs.LOOPBACK
TRUNK = "carrier"
TRUNK_USER = "sb"
TRUNK_PASSWORD = "sb-trunk-secret-7"


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (also its own CA), and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "switchboard test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(LOOP))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "sip.crt", tmp / "sip.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TlsCarrierSetup:
    """The certificate (server, carrier and phone share it) and Switchboard's SIP ports."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cert, self.key = self_signed(workdir)
        self.both = workdir / "phone.pem"  # baresip's sip_certificate: cert and key
        self.both.write_bytes(self.cert.read_bytes() + self.key.read_bytes())
        self.tls_port = procs.free_port(kinds=("tcp",))
        self.udp_port = procs.free_port(kinds=("udp",))

    def switchboard_config(self) -> dict[str, Any]:
        """The `sip` table: UDP and TLS listeners, the certificate, the CA bundle."""
        return {"listen": [f"udp:{LOOP}:{self.udp_port}", f"tls:{LOOP}:{self.tls_port}"],
                "tls_cert": str(self.cert), "tls_key": str(self.key),
                "tls_ca": str(self.cert)}

    def carrier(self, number: str, subscribers: dict[str, str],
                **kwargs: Any) -> KamailioCarrier:
        """The carrier (not started) on UDP and TLS; the trunk's own subscriber is added."""
        users = {TRUNK_USER: TRUNK_PASSWORD, **subscribers}
        return KamailioCarrier(self.workdir, subscribers=users, number=number,
                               trunk_user=TRUNK_USER, tls=(self.cert, self.key), **kwargs)

    def srtp_phone(self, kam: KamailioCarrier, name: str, *, user: str, auth_user: str,
                   auth_pass: str, **kwargs: Any) -> Baresip:
        """A baresip (not started) registered at the carrier over TLS, SRTP only."""
        return Baresip(self.workdir, name, user=user, registrar=kam.tls_address,
                       outbound=f"sip:{kam.tls_address};transport=tls", auth_user=auth_user,
                       auth_pass=auth_pass, modules=("srtp.so",),
                       account_params="mediaenc=srtp-mand",
                       extra_config=(f"sip_certificate {self.both}", f"sip_cafile {self.cert}"),
                       **kwargs)


def trunk_body(kam: KamailioCarrier, numbers: list[str], *,
               media_encryption: str = "optional",
               allowed_destinations: tuple[str, ...] = ("+1555",)) -> dict[str, Any]:
    """POST /api/trunks: the carrier over TLS, registered with digest."""
    return {"name": TRUNK, "address": kam.tls_address, "transport": "tls",
            "username": TRUNK_USER, "password": TRUNK_PASSWORD, "register": True,
            "expires": 60, "numbers": numbers, "media_encryption": media_encryption,
            "allowed_destinations": list(allowed_destinations)}


def wait_registered(state: Callable[[], str], timeout: float = 15.0) -> bool:
    """Poll `state()` (the trunk's registration state) until it is "registered"."""
    return procs.wait_until(lambda: state() == "registered", timeout, 0.2)

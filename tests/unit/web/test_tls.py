"""web/tls.py: the renewal schedule on a fake clock, and certificate files reloaded into a
live SSL context (a real TLS handshake sees the new certificate, no restart)."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from web.tls import CertificateFiles, RenewalSchedule, certificate_validity, server_context

DAY = 86400.0


def make_cert(path: Path, name: str, days: float = 90, *, serial: int = 1) -> None:
    """A self-signed certificate `path`/cert.pem with its key `path`/key.pem."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    (path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# -- the schedule --------------------------------------------------------------------------


def test_no_certificate_means_now() -> None:
    s = RenewalSchedule()
    assert s.next_attempt() == 0.0
    assert s.due(1000.0)
    assert not s.usable(1000.0)


def test_renews_at_two_thirds_of_the_lifetime() -> None:
    s = RenewalSchedule()
    s.have(not_before=0.0, not_after=90 * DAY)
    assert s.renew_at == pytest.approx(60 * DAY)
    assert not s.due(59 * DAY)
    assert s.due(60 * DAY)
    assert s.usable(60 * DAY, margin=DAY)


def test_failures_back_off_doubling_to_a_ceiling_and_success_resets() -> None:
    s = RenewalSchedule(first_retry=60.0, max_retry=3600.0)
    s.have(0.0, 90 * DAY)
    now = 60 * DAY
    waits = []
    for _ in range(8):
        retry = s.failed(now)
        waits.append(retry - now)
        assert not s.due(retry - 1)
        assert s.due(retry)
        now = retry
    assert waits == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    s.have(now, now + 90 * DAY)
    assert s.failures == 0
    assert s.next_attempt() == pytest.approx(now + 60 * DAY)


def test_a_failure_never_brings_the_next_attempt_before_the_renewal_time() -> None:
    s = RenewalSchedule()
    s.have(0.0, 90 * DAY)
    s.failed(10.0)  # e.g. a SIGHUP asked for an early look and the server said no
    assert s.next_attempt() == pytest.approx(60 * DAY)


def test_short_lived_certificates_scale() -> None:
    s = RenewalSchedule()
    s.have(1000.0, 1090.0)  # 90 seconds, as the ACME test forces
    assert s.renew_at == pytest.approx(1060.0)


# -- the files ------------------------------------------------------------------------------


def _served_serial(context: ssl.SSLContext, name: str) -> int:
    """Handshake with a server using `context` on loopback; the serial it presented."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.settimeout(5)

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                client.wrap_socket(raw, server_hostname=name) as tls:
            der = tls.getpeercert(binary_form=True)
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        thread.join(5)
        listener.close()
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_context_refuses_tls_1_1(tmp_path: Path) -> None:
    make_cert(tmp_path, "a.test")
    context = server_context(tmp_path / "cert.pem", tmp_path / "key.pem")
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_changed_files_are_served_to_new_connections(tmp_path: Path) -> None:
    make_cert(tmp_path, "a.test", days=30, serial=1)
    files = CertificateFiles(tmp_path / "cert.pem", tmp_path / "key.pem")
    assert _served_serial(files.context, "a.test") == 1
    assert files.check() is False  # nothing changed
    make_cert(tmp_path, "a.test", days=90, serial=2)
    st = os.stat(tmp_path / "cert.pem")
    os.utime(tmp_path / "cert.pem", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert files.check() is True
    assert _served_serial(files.context, "a.test") == 2
    assert files.not_after == certificate_validity((tmp_path / "cert.pem").read_bytes())[1]
    assert files.reloads == 1


def test_a_half_written_pair_keeps_the_old_certificate(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    make_cert(tmp_path, "a.test", serial=7)
    files = CertificateFiles(tmp_path / "cert.pem", tmp_path / "key.pem")
    old_after = files.not_after
    (tmp_path / "cert.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot a cert")
    with caplog.at_level("WARNING"):
        assert files.check() is False
    assert "cannot be loaded" in caplog.text
    assert files.not_after == old_after
    assert _served_serial(files.context, "a.test") == 7

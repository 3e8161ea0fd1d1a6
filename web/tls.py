"""TLS for http.listen: the server's SSL context, reloading its certificate from files, and
when to renew a certificate (sans-I/O: the time is passed in).

Rules, in the order a certificate meets them:
1. `server_context(cert, key)` loads a PEM chain and key into an `ssl.SSLContext` that speaks
   TLS 1.2 and later only, with forward-secret AEAD ciphers for TLS 1.2 (TLS 1.3's suites are
   all modern) and no compression or renegotiation. A bad file raises `ssl.SSLError` /
   `OSError`: at start-up that stops the server with the path in the message.
2. `CertificateFiles.check()` reloads the chain into the same context when either file's
   modification time, size or inode changed. `SSLContext.load_cert_chain` on a live context
   replaces the certificate for handshakes that start afterwards: a renewed certificate is
   served to new connections, open ones keep theirs, nothing restarts. A pair that fails to
   load (a half-written file during renewal) keeps the old certificate, logs a WARNING and is
   tried again on the next check.
3. `RenewalSchedule` says when to get a new certificate: none yet, or the one held is within
   its last third of lifetime (`renew_at`), means now; a failed attempt waits `backoff`
   (doubling from `first_retry` to `max_retry`) before the next; a success resets it.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

__all__ = [
    "CIPHERS",
    "CertificateFiles",
    "RenewalSchedule",
    "certificate_validity",
    "server_context",
]

log = logging.getLogger(__name__)

# TLS 1.2 suites: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 (Mozilla's
# "intermediate" list); TLS 1.3 suites are not affected by set_ciphers.
CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
])


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server context with the chain in `cert` and its key in `key` (PEM files)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(str(cert), str(key))
    return context


def certificate_validity(pem: bytes) -> tuple[float, float]:
    """(not before, not after) of the first certificate in `pem`, as Unix times."""
    cert = x509.load_pem_x509_certificate(pem)
    return (cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp())


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class CertificateFiles:
    """A certificate and key on disk behind one live `ssl.SSLContext` (rule 2)."""

    def __init__(self, cert: str | Path, key: str | Path) -> None:
        self.cert = Path(cert)
        self.key = Path(key)
        self.context = server_context(self.cert, self.key)
        self._stamps = (_stamp(self.cert), _stamp(self.key))
        self.not_before, self.not_after = certificate_validity(self.cert.read_bytes())
        self.reloads = 0
        log.info("tls: serving %s (valid until %s)", self.cert, _when(self.not_after))

    def check(self) -> bool:
        """Reload when a file changed; whether a new certificate is now served."""
        stamps = (_stamp(self.cert), _stamp(self.key))
        if stamps == self._stamps:
            return False
        try:
            pem = self.cert.read_bytes()
            validity = certificate_validity(pem)
            self.context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("tls: %s or %s changed but cannot be loaded (%s); still serving the "
                        "certificate valid until %s", self.cert, self.key, exc,
                        _when(self.not_after))  # fmt: skip
            return False
        self._stamps = stamps
        self.not_before, self.not_after = validity
        self.reloads += 1
        log.info("tls: reloaded %s: new connections get the certificate valid until %s",
                 self.cert, _when(self.not_after))  # fmt: skip
        return True


def _when(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(slots=True)
class RenewalSchedule:
    """When to (re)new a certificate (rule 3). Times are Unix seconds, passed in."""

    fraction: float = 2 / 3  # renew after this much of the lifetime has passed
    first_retry: float = 60.0
    max_retry: float = 6 * 3600.0
    not_before: float | None = None
    not_after: float | None = None
    failures: int = 0
    _retry_at: float | None = None

    def have(self, not_before: float, not_after: float) -> None:
        """A certificate valid from `not_before` to `not_after` is served (a success)."""
        self.not_before, self.not_after = not_before, not_after
        self.failures = 0
        self._retry_at = None

    @property
    def renew_at(self) -> float | None:
        if self.not_before is None or self.not_after is None:
            return None
        return self.not_before + self.fraction * (self.not_after - self.not_before)

    def backoff(self) -> float:
        """The wait after the latest failure."""
        if self.failures == 0:
            return 0.0
        return min(self.max_retry, self.first_retry * 2 ** (self.failures - 1))

    def failed(self, now: float) -> float:
        """An attempt failed at `now`: the time of the next one."""
        self.failures += 1
        self._retry_at = now + self.backoff()
        return self._retry_at

    def next_attempt(self) -> float:
        """When to try next (0.0: at once, no certificate or none due)."""
        due = self.renew_at if self.renew_at is not None else 0.0
        if self._retry_at is not None:
            return max(due, self._retry_at)
        return due

    def due(self, now: float) -> bool:
        return now >= self.next_attempt()

    def usable(self, now: float, margin: float = 0.0) -> bool:
        """Whether the certificate held is still valid `margin` seconds from now."""
        return self.not_after is not None and now + margin < self.not_after

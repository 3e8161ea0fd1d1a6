"""Certificates over ACME (RFC 8555) with the HTTP-01 challenge, on certbot's `acme` library.

The protocol is the library's; this module keeps the files and the schedule:
- `AcmeFiles`: STORE_PATH/acme/ (mode 0700) holds `account.key` (the account's RSA key),
  `cert.pem` (the full chain) and `key.pem` (its ECDSA P-256 key), each mode 0600, each
  replaced atomically (written beside, then renamed).
- `obtain(settings, tokens, files)` is blocking (HTTP to the ACME server): it registers the
  account (or finds it again by its key), orders a certificate for every name, answers each
  name's HTTP-01 challenge by putting the key authorization into `tokens` (the responder in
  web/acme_http.py serves it at /.well-known/acme-challenge/TOKEN), waits for the order and
  writes the new key and chain. It never runs on the event loop: `AcmeManager` runs it in a
  daemon thread.
- `AcmeManager` keeps a certificate served: at start, the one on disk when it is still
  usable, else a self-signed stand-in (so that the HTTPS site can start; browsers refuse it)
  and an attempt at once. Then one attempt each time `RenewalSchedule` says (two thirds of
  the lifetime); a failure is logged (WARNING, or ERROR when the certificate served is
  expired or a stand-in) and retried with backoff. A new certificate is loaded into the live
  SSL context: new connections get it, nothing restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from web.tls import CertificateFiles, RenewalSchedule, certificate_validity

__all__ = ["AcmeFiles", "AcmeManager", "AcmeSettings", "obtain"]

log = logging.getLogger(__name__)

T = TypeVar("T")

ORDER_TIMEOUT = 120.0  # seconds for the ACME server to validate and issue one order
USABLE_MARGIN = 3600.0  # a certificate on disk closer than this to expiry is not used at start


@dataclass(frozen=True, slots=True)
class AcmeSettings:
    domains: tuple[str, ...]
    directory: str
    email: str = ""
    ca_bundle: str = ""  # PEM file trusted for the ACME server; empty: the system's


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600, atomically (a reader sees old or new)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class AcmeFiles:
    """The account key and the certificate in the data directory."""

    def __init__(self, data_dir: str | Path) -> None:
        self.dir = Path(data_dir) / "acme"
        self.account_key = self.dir / "account.key"
        self.cert = self.dir / "cert.pem"
        self.key = self.dir / "key.pem"

    def prepare(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)

    def load_account_key(self) -> rsa.RSAPrivateKey:
        """The account key, made on first use."""
        if self.account_key.exists():
            key = serialization.load_pem_private_key(self.account_key.read_bytes(), None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError(f"{self.account_key}: expected an RSA key")
            return key
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(self.account_key, _pem(key))
        log.info("acme: made a new account key in %s", self.account_key)
        return key

    def save(self, chain_pem: bytes, key_pem: bytes) -> None:
        """The key first: the pair on disk is whole again when the chain lands."""
        _write_private(self.key, key_pem)
        _write_private(self.cert, chain_pem)

    def usable(self, now: float) -> bool:
        try:
            _, not_after = certificate_validity(self.cert.read_bytes())
        except (OSError, ValueError):
            return False
        return self.key.exists() and now + USABLE_MARGIN < not_after


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def self_signed(domains: tuple[str, ...], days: float = 1.0) -> tuple[bytes, bytes]:
    """A stand-in (chain, key) while the first ACME certificate is on its way."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM), _pem(key)


def obtain(settings: AcmeSettings, tokens: MutableMapping[str, str], files: AcmeFiles) -> None:
    """One ACME order for `settings.domains`, written to `files` (blocking)."""
    import josepy as jose
    from acme import challenges, client, crypto_util, errors, messages

    files.prepare()
    account = jose.JWKRSA(key=files.load_account_key())
    verify: Any = settings.ca_bundle or True
    net = client.ClientNetwork(account, user_agent="switchboard", verify_ssl=verify)
    directory = client.ClientV2.get_directory(settings.directory, net)
    acme = client.ClientV2(directory, net=net)
    registration = messages.NewRegistration.from_data(
        email=settings.email or None, terms_of_service_agreed=True
    )
    try:
        acme.new_account(registration)
        log.info("acme: registered a new account at %s", settings.directory)
    except errors.ConflictError as exc:  # this key has an account already: use it
        regr = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
        net.account = acme.query_registration(regr)
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = _pem(key)
    order = acme.new_order(crypto_util.make_csr(key_pem, list(settings.domains)))
    placed: list[str] = []
    try:
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue
            challenge = next((c for c in authz.body.challenges
                              if isinstance(c.chall, challenges.HTTP01)), None)  # fmt: skip
            if challenge is None:
                raise RuntimeError(f"{authz.body.identifier.value}: no HTTP-01 challenge offered")
            response, validation = challenge.response_and_validation(account)
            token = challenge.chall.encode("token")
            tokens[token] = validation
            placed.append(token)
            acme.answer_challenge(challenge, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_TIMEOUT)
        order = acme.poll_and_finalize(order, deadline)
    finally:
        for token in placed:
            tokens.pop(token, None)
    chain = order.fullchain_pem
    if not chain:
        raise RuntimeError("the ACME server finalized the order without a certificate")
    files.save(chain.encode(), key_pem)


Issuer = Callable[[AcmeSettings, MutableMapping[str, str], AcmeFiles], None]


def _in_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """Run blocking `fn` in a daemon thread (a stuck ACME server does not hold up exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def run() -> None:
        try:
            value = fn()
        except BaseException as exc:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(settle, False, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, True, value)

    threading.Thread(target=run, name="acme", daemon=True).start()
    return future


class AcmeManager:
    """Keeps an ACME certificate in a live SSL context (see the module's docstring)."""

    def __init__(self, settings: AcmeSettings, data_dir: str | Path, *,
                 schedule: RenewalSchedule | None = None,
                 clock: Callable[[], float] = time.time,
                 issue: Issuer | None = None) -> None:  # fmt: skip
        """`issue` does one order (default: `obtain`, over the network)."""
        self.settings = settings
        self.issue: Issuer = issue if issue is not None else obtain
        self.files = AcmeFiles(data_dir)
        self.schedule = schedule if schedule is not None else RenewalSchedule()
        self.clock = clock
        self.tokens: dict[str, str] = {}
        self.certificate: CertificateFiles | None = None
        self.stand_in = False
        self.renewals = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        """Load the certificate on disk (or a stand-in) and start the renewal task."""
        self.files.prepare()
        now = self.clock()
        if not self.files.usable(now):
            chain, key = self_signed(self.settings.domains)
            self.files.save(chain, key)
            self.stand_in = True
            log.warning("acme: no usable certificate for %s yet: serving a self-signed "
                        "stand-in until %s issues one", ", ".join(self.settings.domains),
                        self.settings.directory)  # fmt: skip
        self.certificate = CertificateFiles(self.files.cert, self.files.key)
        if not self.stand_in:
            self.schedule.have(self.certificate.not_before, self.certificate.not_after)
        self._task = asyncio.create_task(self._run(), name="acme-renewal")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def renew_now(self) -> None:
        """Check the schedule again at once (SIGHUP)."""
        self._wake.set()

    @property
    def not_after(self) -> float | None:
        return None if self.stand_in or self.certificate is None else self.certificate.not_after

    async def _run(self) -> None:
        while True:
            now = self.clock()
            wait = self.schedule.next_attempt() - now
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=min(wait, 600.0))
                continue
            await self.attempt()

    async def attempt(self) -> bool:
        """One order now; whether a new certificate is served."""
        names = ", ".join(self.settings.domains)
        log.info("acme: ordering a certificate for %s from %s", names, self.settings.directory)
        try:
            await _in_thread(lambda: self.issue(self.settings, self.tokens, self.files))
            assert self.certificate is not None
            if not self.certificate.check():
                raise RuntimeError("the new certificate could not be loaded")
        except Exception as exc:
            now = self.clock()
            retry = self.schedule.failed(now)
            level = logging.ERROR
            if not self.stand_in and self.schedule.usable(retry):
                level = logging.WARNING
            log.log(level, "acme: getting a certificate for %s failed (attempt %d): %s: %s; "
                    "retrying in %.0f s", names, self.schedule.failures, type(exc).__name__,
                    str(exc)[:300], retry - now)  # fmt: skip
            return False
        cert = self.certificate
        self.stand_in = False
        self.renewals += 1
        self.schedule.have(cert.not_before, cert.not_after)
        log.info("acme: new certificate for %s, valid until %s; next renewal at %s", names,
                 _when(cert.not_after), _when(self.schedule.next_attempt()))  # fmt: skip
        return True


def _when(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

"""SDES-SRTP keying for phone legs (RFC 4568 ``a=crypto``), sans-I/O.

A phone or trunk that wants encrypted media offers ``RTP/SAVP`` with one or more
``a=crypto:<tag> <suite> inline:<base64 key||salt>[|<lifetime>][|<MKI>:<length>]`` lines;
the answer picks one (same tag and suite) and gives its own fresh key. The keys travel in the
SDP, so they are only as secret as the signalling: :func:`decide` accepts SDES only over
TLS (``sips:``/``transport=tls``), never over plain UDP or TCP.

What is supported: AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32 (30 bytes of key and
salt each), one key per attribute, no MKI, any lifetime (the key is replaced only by a new
offer), no session parameters (``UNENCRYPTED_SRTP`` and the like are refused: a crypto line
that turns encryption off is not encryption). :func:`srtp_sessions` makes the two libsrtp
sessions (protect ours, unprotect theirs) with pylibsrtp, the library the bridge uses.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import secrets
from dataclasses import dataclass

from pylibsrtp import Policy, Session

#: suite name -> (libsrtp profile, bytes of master key + master salt)
SUITES: dict[str, tuple[int, int]] = {
    "AES_CM_128_HMAC_SHA1_80": (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
    "AES_CM_128_HMAC_SHA1_32": (Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 30),
}
#: our preference when we offer, strongest tag first
OFFER_ORDER = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")

_CRYPTO = re.compile(r"(\d{1,9})\s+([A-Za-z0-9_]{1,64})\s+(\S{1,512})((?:\s+\S{1,128}){0,8})\s*")
_LIFETIME = re.compile(r"(?:2\^\d{1,2}|\d{1,20})")
_MKI = re.compile(r"(\d{1,9}):(\d{1,3})")


class SdesError(ValueError):
    """An ``a=crypto`` value that cannot be used (its text says why; never the key)."""


@dataclass(frozen=True)
class Crypto:
    """One ``a=crypto`` attribute."""

    tag: int
    suite: str
    key_salt: bytes = b""   # master key || master salt
    lifetime: str = ""      # as written ("2^31"), empty when absent
    mki: tuple[int, int] | None = None  # (value, length) when present

    def __repr__(self) -> str:  # the key never goes into a log line or a traceback
        return f"Crypto(tag={self.tag}, suite={self.suite}, mki={self.mki})"

    def value(self) -> str:
        """The attribute's value, for ``a=crypto:`` (carries the key: SDP only)."""
        params = "inline:" + base64.b64encode(self.key_salt).decode("ascii")
        if self.lifetime:
            params += "|" + self.lifetime
        if self.mki is not None:
            params += f"|{self.mki[0]}:{self.mki[1]}"
        return f"{self.tag} {self.suite} {params}"


def parse_crypto(value: str) -> Crypto:
    """The value after ``a=crypto:``; SdesError for anything this side cannot use."""
    m = _CRYPTO.fullmatch(value.strip())
    if m is None:
        raise SdesError("a=crypto: not 'tag suite key-params'")
    tag, suite, key_params, session_params = int(m[1]), m[2], m[3], m[4].split()
    if suite not in SUITES:
        raise SdesError(f"a=crypto: suite {suite} not supported")
    if session_params:
        raise SdesError("a=crypto: session parameters are not supported")
    if ";" in key_params:
        raise SdesError("a=crypto: one key per attribute")
    method, _, rest = key_params.partition(":")
    if method != "inline" or not rest:
        raise SdesError("a=crypto: only inline keys")
    parts = rest.split("|")
    if len(parts) > 3:
        raise SdesError("a=crypto: too many key parameters")
    try:
        key_salt = base64.b64decode(parts[0], validate=True)
    except (binascii.Error, ValueError):
        raise SdesError("a=crypto: key is not base64") from None
    if len(key_salt) != SUITES[suite][1]:
        raise SdesError(f"a=crypto: {suite} needs {SUITES[suite][1]} bytes of key and salt")
    lifetime = ""
    mki: tuple[int, int] | None = None
    for part in parts[1:]:
        if _MKI.fullmatch(part):
            value_s, length_s = part.split(":")
            mki = (int(value_s), int(length_s))
        elif _LIFETIME.fullmatch(part) and not lifetime:
            lifetime = part
        else:
            raise SdesError("a=crypto: a key parameter is neither a lifetime nor an MKI")
    return Crypto(tag, suite, key_salt, lifetime, mki)


def new_crypto(tag: int, suite: str) -> Crypto:
    """Our attribute for ``suite``, with a fresh random key and salt."""
    if suite not in SUITES:
        raise SdesError(f"suite {suite} not supported")
    return Crypto(tag, suite, secrets.token_bytes(SUITES[suite][1]))


def offer() -> list[Crypto]:
    """What we offer: every supported suite, each with its own fresh key."""
    return [new_crypto(tag, suite) for tag, suite in enumerate(OFFER_ORDER, start=1)]


class Encryption(enum.Enum):
    """A trunk's (or the deployment's) media encryption policy."""

    OFF = "off"
    OPTIONAL = "optional"
    REQUIRED = "required"


@dataclass(frozen=True)
class Decision:
    """What to do with an offer: ``reject`` (a SIP status) or answer with ``ours`` (SRTP,
    ``theirs`` the offered attribute chosen) or with plain RTP (both None)."""

    reject: int | None = None
    reason: str = ""
    ours: Crypto | None = None
    theirs: Crypto | None = None


def decide(profile: str, crypto_values: list[str], policy: Encryption, *,
           secure_signalling: bool) -> Decision:
    """The answer to an audio offer with transport ``profile`` ("RTP/AVP" or "RTP/SAVP")
    and these ``a=crypto`` values. SRTP is used when the offer has a usable crypto line, the
    signalling is TLS and the policy is not off; a ``RTP/SAVP`` offer that cannot get it is
    refused (488); a plain offer under a ``required`` policy is refused too."""
    savp = profile.upper() == "RTP/SAVP"
    usable: list[Crypto] = []
    refused: list[str] = []
    for value in crypto_values[:16]:
        try:
            crypto = parse_crypto(value)
        except SdesError as exc:
            refused.append(str(exc))
            continue
        if crypto.mki is not None:
            refused.append("a=crypto: MKI is not supported")
            continue
        usable.append(crypto)
    if policy is Encryption.OFF:
        if savp:
            return Decision(488, "SRTP offered; media encryption is off for this peer")
        return Decision()
    if not secure_signalling:
        if savp or policy is Encryption.REQUIRED:
            return Decision(488, "SDES-SRTP needs TLS signalling (the keys are in the SDP)")
        return Decision()
    if not usable:
        if savp or policy is Encryption.REQUIRED:
            why = refused[0] if refused else "no a=crypto line"
            return Decision(488, f"no usable SRTP key: {why}")
        return Decision()
    usable.sort(key=lambda c: OFFER_ORDER.index(c.suite))
    theirs = usable[0]
    return Decision(ours=new_crypto(theirs.tag, theirs.suite), theirs=theirs)


def srtp_sessions(ours: Crypto, theirs: Crypto) -> tuple[Session, Session]:
    """(protect, unprotect): our outbound session keyed with ``ours``, the inbound one with
    the remote's key. Both attributes must name the same suite."""
    if ours.suite != theirs.suite:
        raise SdesError("the two a=crypto attributes name different suites")
    profile = SUITES[ours.suite][0]
    tx = Session(policy=Policy(key=ours.key_salt, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                               srtp_profile=profile))
    rx = Session(policy=Policy(key=theirs.key_salt, ssrc_type=Policy.SSRC_ANY_INBOUND,
                               srtp_profile=profile))
    return tx, rx

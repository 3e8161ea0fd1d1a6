"""SIP digest authentication (RFC 3261 22, RFC 7616 / 2617 with qop=auth), both sides.

Client side (`answer_challenge`): a 401's WWW-Authenticate or a 407's Proxy-Authenticate is
parsed (`parse_challenge`) and answered with MD5 or SHA-256 (whichever the challenge names;
MD5 when it names none), qop=auth when offered, a fresh cnonce, nc counted per nonce.

Server side (`DigestServer`): a challenge carries a nonce that needs no server-side table:
    nonce = <issue time, hex> "." <16 random hex> "." <HMAC-SHA256(key, time.random.source)>
signed with a per-process key and bound to the source address it was issued to. A response
is checked in this order:
1. the header parses, names our realm, qop=auth (or none), an algorithm we offer;
2. the response matches the password's digest for the nonce it names (else: "wrong", a
   failure, whatever the nonce);
3. the nonce's signature holds for this source and it is younger than `nonce_lifetime`
   (else: "stale", re-challenged with stale=true: the peer knows the password and needs a
   nonce of ours: one from before a restart, for another address, or expired).
A captured answer replayed from elsewhere, or after the nonce's lifetime, only earns a new
challenge that it cannot answer.
Passwords never appear in a log line; usernames may.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ALGORITHMS",
    "Challenge",
    "Credentials",
    "DigestServer",
    "Verdict",
    "answer_challenge",
    "digest_response",
    "parse_challenge",
    "parse_credentials",
]

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
MAX_HEADER = 4096

_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*(?:,|$)')


def _h(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8")).hexdigest()


def _params(text: str) -> dict[str, str] | None:
    """Digest's auth-params as a dict (names lower case), or None when they do not parse."""
    scheme, _, rest = text.strip().partition(" ")
    if scheme.lower() != "digest" or len(text) > MAX_HEADER:
        return None
    out: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            return None
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[m.group(1).lower()] = value
        pos = m.end()
    return out


def digest_response(
    algorithm: str, username: str, realm: str, password: str, method: str, uri: str,
    nonce: str, *, qop: str | None = None, nc: str = "", cnonce: str = "",
) -> str:
    """The `response` value (RFC 7616 3.4.1; RFC 2617 without qop)."""
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


# -- the client side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str  # "MD5" or "SHA-256"
    qop_auth: bool  # qop=auth offered
    opaque: str | None
    stale: bool


def parse_challenge(value: str) -> Challenge | None:
    """A WWW-Authenticate / Proxy-Authenticate value we can answer, else None."""
    params = _params(value)
    if params is None or "nonce" not in params or "realm" not in params:
        return None
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in ALGORITHMS:
        return None
    qops = {q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()}
    if qops and "auth" not in qops:
        return None
    return Challenge(
        realm=params["realm"], nonce=params["nonce"], algorithm=algorithm,
        qop_auth="auth" in qops, opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )  # fmt: skip


def pick_challenge(values: list[str]) -> Challenge | None:
    """The best of several challenges: SHA-256 before MD5."""
    parsed = [c for c in (parse_challenge(v) for v in values) if c is not None]
    parsed.sort(key=lambda c: c.algorithm != "SHA-256")
    return parsed[0] if parsed else None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def answer_challenge(
    challenge: Challenge, username: str, password: str, method: str, uri: str,
    *, nc: int = 1, cnonce: str | None = None,
) -> str:
    """The Authorization / Proxy-Authorization value answering `challenge`."""
    parts = [
        f"username={_quote(username)}", f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}", f"uri={_quote(uri)}",
        f"algorithm={challenge.algorithm}",
    ]  # fmt: skip
    if challenge.qop_auth:
        cn = cnonce or secrets.token_hex(8)
        count = f"{nc:08x}"
        response = digest_response(challenge.algorithm, username, challenge.realm, password,
                                   method, uri, challenge.nonce, qop="auth", nc=count,
                                   cnonce=cn)  # fmt: skip
        parts += ["qop=auth", f"nc={count}", f"cnonce={_quote(cn)}"]
    else:
        response = digest_response(challenge.algorithm, username, challenge.realm, password,
                                   method, uri, challenge.nonce)  # fmt: skip
    parts.append(f"response={_quote(response)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


# -- the server side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """An Authorization / Proxy-Authorization header as sent."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    qop: str | None
    nc: str
    cnonce: str


def parse_credentials(value: str) -> Credentials | None:
    params = _params(value)
    if params is None:
        return None
    try:
        return Credentials(
            username=params["username"], realm=params["realm"], nonce=params["nonce"],
            uri=params["uri"], response=params["response"].lower(),
            algorithm=params.get("algorithm", "MD5").upper(),
            qop=params.get("qop", "").lower() or None,
            nc=params.get("nc", ""), cnonce=params.get("cnonce", ""),
        )  # fmt: skip
    except KeyError:
        return None


#: "ok"; "stale" (a good answer to an expired nonce: re-challenge with stale=true);
#: "wrong" (a bad password, or a nonce we never issued); "malformed"
Verdict = Literal["ok", "stale", "wrong", "malformed"]


@dataclass(slots=True)
class DigestServer:
    realm: str = "switchboard"
    nonce_lifetime: float = 300.0
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def _sign(self, stamp: str, salt: str, source: str) -> str:
        mac = hmac.new(self.key, f"{stamp}.{salt}.{source}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def nonce(self, now: float, source: str) -> str:
        stamp, salt = f"{int(now * 1000):x}", secrets.token_hex(8)
        return f"{stamp}.{salt}.{self._sign(stamp, salt, source)}"

    def challenges(self, now: float, source: str, *, stale: bool = False) -> list[str]:
        """One header value per algorithm (SHA-256 first, RFC 7616 3.7), one nonce."""
        nonce = self.nonce(now, source)
        extra = ", stale=true" if stale else ""
        return [f"Digest realm={_quote(self.realm)}, nonce={_quote(nonce)}, "
                f"algorithm={a}, qop=\"auth\"{extra}" for a in self.algorithms]

    def nonce_age(self, nonce: str, source: str, now: float) -> float | None:
        """Seconds since we issued `nonce` to `source`; None when we never did."""
        parts = nonce.split(".")
        if len(parts) != 3 or len(parts[0]) > 16:
            return None
        stamp, salt, mac = parts
        if not hmac.compare_digest(mac, self._sign(stamp, salt, source)):
            return None
        try:
            return now - int(stamp, 16) / 1000
        except ValueError:
            return None

    def verify(self, creds: Credentials, password: str, method: str, source: str,
               now: float) -> Verdict:
        if creds.realm != self.realm or creds.algorithm not in self.algorithms:
            return "malformed"
        if creds.qop not in (None, "auth") or (creds.qop and not (creds.nc and creds.cnonce)):
            return "malformed"
        expected = digest_response(creds.algorithm, creds.username, creds.realm, password,
                                   method, creds.uri, creds.nonce, qop=creds.qop,
                                   nc=creds.nc, cnonce=creds.cnonce)  # fmt: skip
        if not hmac.compare_digest(expected, creds.response):
            return "wrong"
        age = self.nonce_age(creds.nonce, source, now)
        if age is None or age > self.nonce_lifetime or age < -1.0:
            return "stale"
        return "ok"

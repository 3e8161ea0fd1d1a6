"""Tokens (JWT) as Jitsi issues them, checked more strictly than Jitsi checks them.

`TokenVerifier.verify(token, room, now)` returns the holder's `Identity` or raises
`TokenRefused` with a short `reason` that is safe to log (the token never is). A token meets
these rules, in this order:

1. At most 8 KiB, three base64url parts, a JSON header whose `alg` is one the configured
   keys allow: HS256 with `auth.jwt_secret`, RS256 with `auth.jwt_public_key` (PEM) or
   `auth.jwt_jwks_url`. `none`, any other algorithm, and an algorithm that belongs to a key
   that is not configured are refused (`bad-algorithm`): an RS256 public key is never used
   as an HMAC secret (algorithm confusion).
2. The signature, checked by PyJWT (HMAC compared in constant time): `bad-signature`.
   A JWKS key is picked by the header's `kid` (keys fetched again when a `kid` is unknown,
   and kept `auth.jwt_jwks_refresh` seconds); no key: `unknown-key`.
3. `exp` is required (`no-expiry`) and must be after `now - leeway` (`expired`); `nbf` and
   `iat`, when present, not after `now + leeway` (`not-yet-valid`); `exp` no further than
   `auth.jwt_max_lifetime` from `now` nor from `iat` (`too-long-lived`).
4. `iss` among `auth.jwt_issuers` when any are configured (`wrong-issuer`); `aud` (a string
   or a list) naming `auth.jwt_audience` when one is configured (`wrong-audience`).
5. `room` is `*` or the room (without case) when a room is asked for (`wrong-room`); a token
   without `room` is refused for a room (`wrong-room`).
6. `context.user.moderator` true (or the string "true", as some Jitsi token tools write it)
   makes the holder a host of that room; name, email and id are taken as given (trimmed,
   bounded), `context.features` as a dict of strings. The avatar is kept only when it is an
   `https:` URL with a host, of at most 1024 printable ASCII characters and no space, quote,
   angle bracket, backslash or backtick (`avatar_url`); anything else is dropped, the token
   still valid.

The time comes in as `now` (wall-clock seconds); only a JWKS fetch does I/O, and
`verify_async` runs that in a thread so the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt

__all__ = ["MAX_AVATAR_URL", "MAX_TOKEN_LENGTH", "Identity", "TokenRefused", "TokenSettings",
           "TokenVerifier", "avatar_url"]

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 8192
MAX_AVATAR_URL = 1024
_MAX_TEXT = 256
_URL_FORBIDDEN = frozenset(" \"'<>\\`")


class TokenRefused(Exception):
    """The token is not accepted; `reason` is a short code, safe to log and to show."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """The [auth] keys (switchboard.config.AuthConfig); `public_key` is the PEM text."""

    secret: str = ""
    public_key: str = ""
    jwks_url: str = ""
    issuers: tuple[str, ...] = ()
    audience: str = ""
    max_lifetime: float = 86400.0
    leeway: float = 30.0
    jwks_refresh: float = 300.0

    @property
    def configured(self) -> bool:
        return bool(self.secret or self.public_key or self.jwks_url)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a valid token says its holder is."""

    moderator: bool
    room: str  # "*" or a room name (lower case)
    name: str | None = None
    email: str | None = None
    avatar: str | None = None
    user_id: str | None = None
    subject: str | None = None
    issuer: str | None = None
    features: Mapping[str, str] = field(default_factory=dict)
    expires: float = 0.0

    def allows(self, room: str) -> bool:
        return self.room == "*" or self.room == room.lower()


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = "".join(ch for ch in value.strip() if ch.isprintable())
    return value[:_MAX_TEXT] or None


def avatar_url(value: object) -> str | None:
    """The token's avatar if it is safe to hand to every page as an image address: an
    `https:` URL with a host, printable ASCII without spaces, quotes, angle brackets,
    backslashes or backticks, at most MAX_AVATAR_URL characters; else None."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_AVATAR_URL:
        return None
    if not value.isascii() or not value.isprintable() or _URL_FORBIDDEN.intersection(value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if value[:8].lower() != "https://" or not parts.hostname:
        return None
    return value


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRefused("malformed", f"{name}: expected a number")
    return float(value)


class TokenVerifier:
    """Checks tokens against the configured keys; see the module's rules."""

    def __init__(
        self,
        settings: TokenSettings,
        *,
        jwks_client: jwt.PyJWKClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._clock = clock
        algorithms: list[str] = []
        if settings.secret:
            algorithms.append("HS256")
        if settings.public_key or settings.jwks_url:
            algorithms.append("RS256")
        self.algorithms = tuple(algorithms)
        self._public_key: Any = None
        if settings.public_key:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            self._public_key = load_pem_public_key(settings.public_key.encode())
        self._jwks = jwks_client
        if self._jwks is None and settings.jwks_url:
            self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True,
                                         lifespan=int(settings.jwks_refresh),
                                         timeout=5)  # fmt: skip

    @property
    def configured(self) -> bool:
        return bool(self.algorithms)

    async def verify_async(self, token: str, room: str | None) -> Identity:
        """`verify` with the clock's time; in a thread when a JWKS fetch may be needed."""
        if self._jwks is not None:
            return await asyncio.to_thread(self.verify, token, room, self._clock())
        return self.verify(token, room, self._clock())

    def verify(self, token: str, room: str | None, now: float) -> Identity:
        """The holder's identity, or TokenRefused (see the module's rules)."""
        if not self.algorithms:
            raise TokenRefused("not-configured", "this server accepts no tokens")
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
            raise TokenRefused("malformed", f"expected a token of at most {MAX_TOKEN_LENGTH} "
                               "characters")  # fmt: skip
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("malformed", "not a JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise TokenRefused("bad-algorithm", "the token's algorithm is not accepted here")
        key = self._key(token, alg, header)
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key=key, algorithms=[alg],
                options={"verify_signature": True, "verify_exp": False, "verify_nbf": False,
                         "verify_iat": False, "verify_aud": False, "verify_iss": False},
            )  # fmt: skip
        except jwt.InvalidSignatureError:
            raise TokenRefused("bad-signature", "the signature does not match") from None
        except jwt.PyJWTError:
            raise TokenRefused("malformed", "the token does not decode") from None
        self._check_times(claims, now)
        self._check_parties(claims)
        return self._identity(claims, room)

    def _key(self, token: str, alg: str, header: Mapping[str, Any]) -> Any:
        if alg == "HS256":
            return self.settings.secret.encode()
        if self._public_key is not None and (self._jwks is None or "kid" not in header):
            return self._public_key
        assert self._jwks is not None
        try:
            return self._jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError:
            log.warning("tokens: the JWKS at auth.jwt_jwks_url could not be fetched")
            raise TokenRefused("unknown-key", "the signing keys are unavailable") from None
        except jwt.PyJWTError:
            raise TokenRefused("unknown-key", "no key for this token") from None

    def _check_times(self, claims: Mapping[str, Any], now: float) -> None:
        s = self.settings
        exp = _number(claims, "exp")
        if exp is None:
            raise TokenRefused("no-expiry", "the token has no exp")
        if exp <= now - s.leeway:
            raise TokenRefused("expired", "the token has expired")
        for name in ("nbf", "iat"):
            value = _number(claims, name)
            if value is not None and value > now + s.leeway:
                raise TokenRefused("not-yet-valid", f"the token is not valid yet ({name})")
        iat = _number(claims, "iat")
        if exp - now > s.max_lifetime + s.leeway or \
                (iat is not None and exp - iat > s.max_lifetime + s.leeway):  # fmt: skip
            raise TokenRefused("too-long-lived", f"the token is valid for longer than "
                               f"{s.max_lifetime:.0f} s")  # fmt: skip

    def _check_parties(self, claims: Mapping[str, Any]) -> None:
        s = self.settings
        if s.issuers and claims.get("iss") not in s.issuers:
            raise TokenRefused("wrong-issuer", "the token's issuer is not accepted")
        if s.audience:
            aud = claims.get("aud")
            names = aud if isinstance(aud, list) else [aud]
            if s.audience not in names:
                raise TokenRefused("wrong-audience", "the token is for another audience")

    def _identity(self, claims: Mapping[str, Any], room: str | None) -> Identity:
        token_room = claims.get("room")
        if not isinstance(token_room, str) or not token_room:
            raise TokenRefused("wrong-room", "the token names no room")
        token_room = token_room.lower()
        if room is not None and token_room not in ("*", room.lower()):
            raise TokenRefused("wrong-room", "the token is for another room")
        context = claims.get("context")
        context = context if isinstance(context, dict) else {}
        user = context.get("user")
        user = user if isinstance(user, dict) else {}
        features = context.get("features")
        features = features if isinstance(features, dict) else {}
        moderator = user.get("moderator")
        return Identity(
            moderator=moderator is True or moderator == "true", room=token_room,
            name=_text(user.get("name")), email=_text(user.get("email")),
            avatar=avatar_url(user.get("avatar")), user_id=_text(user.get("id")),
            subject=_text(claims.get("sub")), issuer=_text(claims.get("iss")),
            features={str(k)[:64]: json.dumps(v)[:_MAX_TEXT] if not isinstance(v, str)
                      else v[:_MAX_TEXT] for k, v in list(features.items())[:32]},
            expires=float(claims["exp"]),
        )  # fmt: skip

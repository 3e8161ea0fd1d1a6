"""Tokens (focus/tokens.py): what a valid Jitsi-style token gives, and every refusal.

Each refusal test forges the token an attacker would send (expired, not yet valid, tampered,
for another room, issuer or audience, alg none, HS256 signed with the RS256 public key) and
asserts on what the server gets: TokenRefused with the reason, never an identity."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from focus.tokens import MAX_AVATAR_URL, TokenRefused, TokenSettings, TokenVerifier, avatar_url

NOW = 1_800_000_000.0
SECRET = "s3cret-for-tests-0123456789abcdef-xyz"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": "meet-app", "aud": "switchboard", "sub": "meet.example.org", "room": "standup",
        "exp": NOW + 600, "nbf": NOW - 10, "iat": NOW - 10,
        "context": {"user": {"name": "Ada", "email": "ada@example.org", "id": "u1",
                             "avatar": "https://example.org/a.png", "moderator": True},
                    "features": {"recording": True}},
    }  # fmt: skip
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def hs(payload: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def rs(payload: dict[str, Any], key: Any = RSA_KEY, kid: str | None = None) -> str:
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid} if kid else None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs_verifier(**over: Any) -> TokenVerifier:
    settings: dict[str, Any] = {"secret": SECRET, "issuers": ("meet-app",),
                                "audience": "switchboard"}  # fmt: skip
    settings.update(over)
    return TokenVerifier(TokenSettings(**settings))


def refused(verifier: TokenVerifier, token: str, room: str | None = "standup") -> str:
    with pytest.raises(TokenRefused) as info:
        verifier.verify(token, room, NOW)
    return info.value.reason


def test_a_moderator_token_gives_its_holder() -> None:
    identity = hs_verifier().verify(hs(claims()), "StandUp", NOW)
    assert identity.moderator and identity.room == "standup"
    assert (identity.name, identity.email, identity.user_id) == ("Ada", "ada@example.org", "u1")
    assert identity.avatar == "https://example.org/a.png"
    assert identity.issuer == "meet-app" and identity.subject == "meet.example.org"
    assert identity.features == {"recording": "true"}


@pytest.mark.parametrize("avatar", [
    "http://example.org/a.png", "javascript:alert(1)", "data:image/png;base64,AAAA",
    "//example.org/a.png", "https:/a.png", "https://", "https://example.org/a b.png",
    'https://example.org/a.png"><script>', "https://example.org/\\a.png",
    "https://example.org/\u00e9.png", "https://example.org/a.png\n", 42, None,
    "https://example.org/" + "a" * 1024,
])  # fmt: skip
def test_an_avatar_that_is_not_a_plain_https_url_is_dropped(avatar: object) -> None:
    user = {"name": "Ada", "avatar": avatar, "moderator": True}
    identity = hs_verifier().verify(hs(claims(context={"user": user})), "standup", NOW)
    assert identity.avatar is None and identity.name == "Ada" and identity.moderator


def test_the_longest_avatar_url_is_kept() -> None:
    url = "https://example.org/" + "a" * (MAX_AVATAR_URL - len("https://example.org/"))
    assert avatar_url(url) == url and avatar_url(url + "a") is None
    assert avatar_url("HTTPS://Example.org/p?s=64&d=identicon") is not None


def test_a_member_token_and_the_any_room_claim() -> None:
    member = claims(room="*", context={"user": {"name": "Bob"}})
    identity = hs_verifier().verify(hs(member), "anything", NOW)
    assert not identity.moderator and identity.name == "Bob" and identity.allows("other")
    assert hs_verifier().verify(hs(claims(aud=["x", "switchboard"])), "standup", NOW).moderator


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (claims(exp=NOW - 31), "expired"),
        (claims(exp=None), "no-expiry"),
        (claims(nbf=NOW + 120), "not-yet-valid"),
        (claims(iat=NOW + 120), "not-yet-valid"),
        (claims(exp=NOW + 3 * 86400), "too-long-lived"),
        (claims(iat=NOW - 2 * 86400, exp=NOW + 600), "too-long-lived"),
        (claims(room="other"), "wrong-room"),
        (claims(room=None), "wrong-room"),
        (claims(iss="someone-else"), "wrong-issuer"),
        (claims(aud="another-app"), "wrong-audience"),
        (claims(exp="tomorrow"), "malformed"),
    ],
)  # fmt: skip
def test_claims_that_are_refused(payload: dict[str, Any], reason: str) -> None:
    assert refused(hs_verifier(), hs(payload)) == reason


def test_leeway_is_small_and_honoured() -> None:
    assert hs_verifier().verify(hs(claims(exp=NOW - 20)), "standup", NOW).moderator
    assert hs_verifier().verify(hs(claims(nbf=NOW + 20)), "standup", NOW).moderator


def test_a_tampered_payload_is_refused() -> None:
    header, _, signature = hs(claims(context={"user": {"moderator": False}})).split(".")
    forged = b64(json.dumps(claims()).encode())  # moderator: true, same signature
    assert refused(hs_verifier(), f"{header}.{forged}.{signature}") == "bad-signature"
    assert refused(hs_verifier(), hs(claims(), secret="another-secret-0123456789abcdefgh")) \
        == "bad-signature"  # fmt: skip


def test_alg_none_is_refused() -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    assert refused(hs_verifier(), f"{header}.{body}.") == "bad-algorithm"
    header = b64(json.dumps({"alg": "None", "typ": "JWT"}).encode())
    assert refused(hs_verifier(), f"{header}.{body}.") == "bad-algorithm"


def test_algorithm_confusion_is_refused() -> None:
    """An HS256 token "signed" with the RS256 public key as the HMAC secret: the classic
    confusion attack. With only the public key configured HS256 is not accepted at all."""
    rs_only = TokenVerifier(TokenSettings(public_key=PUBLIC_PEM))
    confused = jwt.api_jws.PyJWS()
    confused._algorithms["HS256"].prepare_key = lambda key: key  # type: ignore[method-assign]
    token = confused.encode(json.dumps(claims()).encode(), PUBLIC_PEM.encode(),
                            algorithm="HS256")  # fmt: skip
    assert refused(rs_only, token) == "bad-algorithm"
    assert rs_only.verify(rs(claims()), "standup", NOW).moderator
    # and an RS256 token where only a secret is configured
    assert refused(hs_verifier(), rs(claims())) == "bad-algorithm"
    assert refused(hs_verifier(secret=SECRET * 2),
                   jwt.encode(claims(), SECRET * 2, algorithm="HS512")) == "bad-algorithm"


def test_rs256_with_the_wrong_key_is_refused() -> None:
    rs_only = TokenVerifier(TokenSettings(public_key=PUBLIC_PEM))
    assert refused(rs_only, rs(claims(), key=OTHER_KEY)) == "bad-signature"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 9000, "eyJhbGciOiJIUzI1NiJ9..."])
def test_garbage_is_malformed(token: str) -> None:
    assert refused(hs_verifier(), token) in ("malformed", "bad-signature")


def test_nothing_is_accepted_without_keys() -> None:
    verifier = TokenVerifier(TokenSettings())
    assert not verifier.configured
    assert refused(verifier, hs(claims())) == "not-configured"


def test_the_token_never_appears_in_the_refusal() -> None:
    token = hs(claims(room="other"))
    with pytest.raises(TokenRefused) as info:
        hs_verifier().verify(token, "standup", NOW)
    assert token not in str(info.value) and token.split(".")[2] not in repr(info.value)


# -- JWKS ------------------------------------------------------------------------------------


class _Jwks:
    def __init__(self) -> None:
        self.fetches = 0
        self.keys: dict[str, Any] = {"k1": RSA_KEY.public_key()}

    def document(self) -> bytes:
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
            jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
            keys.append(jwk)
        return json.dumps({"keys": keys}).encode()


@pytest.fixture
def jwks() -> Iterator[tuple[_Jwks, str]]:
    state = _Jwks()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.fetches += 1
            body = state.document()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_jwks_keys_are_fetched_cached_and_refreshed(jwks: tuple[_Jwks, str]) -> None:
    state, url = jwks
    # PyJWKClient waits 30 s after a fetch before an unknown kid may fetch again (a flood of
    # made-up kids cannot hammer the issuer); no wait here, to see the refresh at once
    client = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, cooldown_duration=0)
    verifier = TokenVerifier(TokenSettings(jwks_url=url, jwks_refresh=300), jwks_client=client)
    assert verifier.verify(rs(claims(), kid="k1"), "standup", NOW).moderator
    assert verifier.verify(rs(claims(), kid="k1"), "standup", NOW).moderator
    assert state.fetches == 1  # cached
    state.keys["k2"] = OTHER_KEY.public_key()  # the issuer rotates its keys
    assert verifier.verify(rs(claims(), key=OTHER_KEY, kid="k2"), "standup", NOW).moderator
    assert state.fetches == 2  # an unknown kid fetches again
    assert refused(verifier, rs(claims(), key=OTHER_KEY, kid="k1")) == "bad-signature"
    assert refused(verifier, rs(claims(), kid="nope")) == "unknown-key"


def test_unknown_kids_do_not_hammer_the_jwks(jwks: tuple[_Jwks, str]) -> None:
    state, url = jwks
    verifier = TokenVerifier(TokenSettings(jwks_url=url))
    assert verifier.verify(rs(claims(), kid="k1"), "standup", NOW).moderator
    for n in range(20):
        assert refused(verifier, rs(claims(), kid=f"made-up-{n}")) == "unknown-key"
    assert state.fetches == 1


async def test_verify_async_runs_jwks_off_the_loop(jwks: tuple[_Jwks, str]) -> None:
    _, url = jwks
    verifier = TokenVerifier(TokenSettings(jwks_url=url), clock=lambda: NOW)
    identity = await verifier.verify_async(rs(claims(), kid="k1"), "standup")
    assert identity.moderator

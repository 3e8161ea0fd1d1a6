"""Digest: RFC 7616 3.9.1's example vectors (MD5 and SHA-256), challenges, the server's
signed and expiring nonces, wrong passwords and forged nonces."""

from __future__ import annotations

import pytest

from gateway.sip.digest import (
    DigestServer,
    answer_challenge,
    digest_response,
    parse_challenge,
    parse_credentials,
    pick_challenge,
)

RFC = {
    "username": "Mufasa", "realm": "http-auth@example.org", "password": "Circle of Life",
    "method": "GET", "uri": "/dir/index.html",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
}  # fmt: skip


@pytest.mark.parametrize(("algorithm", "expected"), [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])  # fmt: skip
def test_rfc7616_vectors(algorithm: str, expected: str) -> None:
    r = RFC
    assert digest_response(algorithm, r["username"], r["realm"], r["password"], r["method"],
                           r["uri"], r["nonce"], qop="auth", nc="00000001",
                           cnonce=r["cnonce"]) == expected  # fmt: skip
    challenge = parse_challenge(
        f'Digest realm="{r["realm"]}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{r["nonce"]}", opaque="{r["opaque"]}"')
    assert challenge is not None and challenge.qop_auth and challenge.algorithm == algorithm
    header = answer_challenge(challenge, r["username"], r["password"], r["method"], r["uri"],
                              nc=1, cnonce=r["cnonce"])
    creds = parse_credentials(header)
    assert creds is not None and creds.response == expected and creds.nc == "00000001"
    assert f'opaque="{r["opaque"]}"' in header


def test_rfc2617_without_qop() -> None:
    # RFC 2617's own example ("Circle Of Life", no qop in this form): the formula without qop
    ha = digest_response("MD5", "u", "r", "p", "REGISTER", "sip:x", "n")
    assert len(ha) == 32 and ha != digest_response("MD5", "u", "r", "q", "REGISTER", "sip:x", "n")


def test_pick_prefers_sha256_and_refuses_unknown() -> None:
    md5 = 'Digest realm="a", nonce="n1"'
    sha = 'Digest realm="a", nonce="n2", algorithm=SHA-256, qop="auth"'
    picked = pick_challenge([md5, sha])
    assert picked is not None and picked.algorithm == "SHA-256"
    assert parse_challenge('Digest realm="a", nonce="n", algorithm=SHA-512-256') is None
    assert parse_challenge('Digest realm="a", nonce="n", qop="auth-int"') is None
    assert parse_challenge('Basic realm="a"') is None
    assert parse_challenge("Digest realm") is None


def _answer(server: DigestServer, header: str, password: str) -> str:
    challenge = parse_challenge(header)
    assert challenge is not None
    return answer_challenge(challenge, "carrier", password, "INVITE", "sip:+15550100@sb")


@pytest.mark.parametrize("index", [0, 1])  # SHA-256, then MD5
def test_server_accepts_the_right_password(index: int) -> None:
    server = DigestServer(realm="sb", nonce_lifetime=60)
    header = server.challenges(100.0, "192.0.2.1")[index]
    creds = parse_credentials(_answer(server, header, "pw"))
    assert creds is not None
    assert server.verify(creds, "pw", "INVITE", "192.0.2.1", 110.0) == "ok"
    assert server.verify(creds, "other", "INVITE", "192.0.2.1", 110.0) == "wrong"
    assert server.verify(creds, "pw", "BYE", "192.0.2.1", 110.0) == "wrong"


def test_nonce_expires_stale_and_is_bound_to_source() -> None:
    server = DigestServer(realm="sb", nonce_lifetime=60)
    creds = parse_credentials(_answer(server, server.challenges(100.0, "192.0.2.1")[0], "pw"))
    assert creds is not None
    assert server.verify(creds, "pw", "INVITE", "192.0.2.1", 161.0) == "stale"
    # a nonce issued to another source, or signed with another key (before a restart, or
    # forged), is no nonce of ours: the right password gets a new challenge, a wrong one
    # is wrong
    assert server.verify(creds, "pw", "INVITE", "192.0.2.9", 110.0) == "stale"
    other = DigestServer(realm="sb")
    assert other.verify(creds, "pw", "INVITE", "192.0.2.1", 110.0) == "stale"
    assert other.verify(creds, "bad", "INVITE", "192.0.2.1", 110.0) == "wrong"
    assert "stale=true" in server.challenges(0.0, "x", stale=True)[0]


def test_server_refuses_malformed_answers() -> None:
    server = DigestServer(realm="sb")
    creds = parse_credentials(_answer(server, 'Digest realm="elsewhere", nonce="1.2.3"', "pw"))
    assert creds is not None
    assert server.verify(creds, "pw", "INVITE", "h", 0.0) == "malformed"
    assert parse_credentials('Digest username="a"') is None
    assert parse_credentials("Digest " + "x" * 5000) is None

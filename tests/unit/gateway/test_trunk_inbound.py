"""Inbound calls and trunks: matching by registration, address and digest username; 407
challenges, stale nonces, wrong passwords (403, counted by the PIN throttle until the
source is blocked), sip.require_trunk, and today's behaviour with no trunks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dialplan.store import Store
from dialplan.throttle import PinThrottle
from dialplan.trunk_match import match_trunk
from dialplan.trunks import parse_trunk
from gateway.sip.digest import answer_challenge, parse_challenge
from gateway.sip.message import SipRequest
from gateway.sip.parser import parse_message
from gateway.trunk_auth import Admit, Challenge, InboundTrunks, Refuse

CARRIER = parse_trunk({"name": "carrier", "address": "192.0.2.10:5060", "username": "sb",
                       "password": "right-pw", "register": True,
                       "numbers": ["+15550100"]})  # fmt: skip
PBX = parse_trunk({"name": "pbx", "address": "198.51.100.1", "allowed_addresses":
                   ["198.51.100.0/24"]})  # fmt: skip
DIGEST = parse_trunk({"name": "digest", "address": "203.0.113.1", "username": "peer",
                      "password": "right-pw", "auth": True})  # fmt: skip
REGISTERED = {"carrier": frozenset({"192.0.2.10"})}
CONTACTS = {"carrier": "sb"}


def invite(ruri_user: str, to_user: str | None = None, auth: str | None = None,
           caller: str = "alice") -> SipRequest:
    lines = [f"INVITE sip:{ruri_user}@sb.example SIP/2.0",
             "Via: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK1",
             f"From: <sip:{caller}@x>;tag=1", f"To: <sip:{to_user or ruri_user}@sb.example>",
             "Call-ID: c1", "CSeq: 1 INVITE", "Max-Forwards: 70"]  # fmt: skip
    if auth:
        lines.append(f"Proxy-Authorization: {auth}")
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, SipRequest)
    return message


@pytest.mark.parametrize(("source", "ruri", "to", "user", "expected"), [
    ("192.0.2.10", "sb", "+15550100", None, ("carrier", "registration")),
    ("192.0.2.10", "+15550100", None, None, ("carrier", "registration")),
    ("192.0.2.11", "sb", "+15550100", None, None),  # not from the registrar
    ("192.0.2.10", "other", "+15550199", None, None),  # neither contact user nor number
    ("198.51.100.7", "1000", None, None, ("pbx", "address")),
    ("203.0.113.9", "1000", None, "peer", ("digest", "digest")),
    ("203.0.113.9", "1000", None, "nobody", None),
])  # fmt: skip
def test_match_trunk(source: str, ruri: str, to: str | None, user: str | None,
                     expected: tuple[str, str] | None) -> None:
    match = match_trunk([CARRIER, PBX, DIGEST], source, ruri, to or ruri, user, REGISTERED,
                        CONTACTS)
    assert (None if match is None else (match.trunk.name, match.by)) == expected


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store(":memory:")
    s.create_room("standup")
    s.add_number("+15550100", "room", "standup")
    yield s
    s.close()


def policy(store: Store, throttle: PinThrottle, *, require: bool = True) -> InboundTrunks:
    return InboundTrunks(store, throttle, lambda: REGISTERED, require_trunk=require,
                         nonce_lifetime=60, default_country="1")


def test_no_trunks_keeps_todays_behaviour(store: Store) -> None:
    inbound = policy(store, PinThrottle(), require=False)
    assert inbound.decide("c1", invite("5550100"), "127.0.0.1", "alice", 0.0) == \
        Admit(None, "5550100")


def test_require_trunk_refuses_unmatched_calls(store: Store) -> None:
    store.add_trunk(PBX)
    inbound = policy(store, PinThrottle())
    assert isinstance(inbound.decide("c1", invite("1000"), "192.0.2.200", "a", 0.0), Refuse)
    admitted = inbound.decide("c1", invite("1000"), "198.51.100.7", "a", 0.0)
    assert isinstance(admitted, Admit) and admitted.trunk is not None
    # without require_trunk, the same call is an ordinary call
    open_policy = policy(store, PinThrottle(), require=False)
    assert open_policy.decide("c1", invite("1000"), "192.0.2.200", "a", 0.0) == \
        Admit(None, "1000")


def test_the_registration_routes_the_to_number(store: Store) -> None:
    store.add_trunk(CARRIER)
    inbound = policy(store, PinThrottle())
    decision = inbound.decide("c1", invite("sb", "5550100"), "192.0.2.10", "a", 0.0)
    assert isinstance(decision, Admit) and decision.trunk == store.trunk("carrier")
    assert decision.dialled == "+15550100"  # E.164 with the default country "1"


def answer(challenge: Challenge, password: str, user: str = "peer") -> str:
    parsed = parse_challenge(challenge.headers[0][1])
    assert parsed is not None and challenge.headers[0][0] == "Proxy-Authenticate"
    return answer_challenge(parsed, user, password, "INVITE", "sip:1000@sb.example")


def test_digest_challenge_then_ok_stale_and_wrong(store: Store) -> None:
    store.add_trunk(DIGEST)
    throttle = PinThrottle(failures=3, window=600, block=900)
    inbound = policy(store, throttle)
    src = "203.0.113.9"
    first = inbound.decide("c1", invite("1000"), src, "a", 0.0)
    assert isinstance(first, Challenge) and len(first.headers) == 2  # SHA-256 and MD5
    assert "SHA-256" in first.headers[0][1] and "MD5" in first.headers[1][1]
    ok = inbound.decide("c2", invite("1000", auth=answer(first, "right-pw")), src, "a", 1.0)
    assert isinstance(ok, Admit) and ok.trunk is not None and ok.trunk.name == "digest"
    stale = inbound.decide("c3", invite("1000", auth=answer(first, "right-pw")), src, "a", 90.0)
    assert isinstance(stale, Challenge) and "stale=true" in stale.headers[0][1]
    # the same answer replayed from another source: the nonce was not issued to it, so it
    # only earns a new challenge
    other = inbound.decide("c4", invite("1000", auth=answer(first, "right-pw")), "203.0.113.8",
                           "a", 1.0)
    assert isinstance(other, Challenge) and "stale=true" in other.headers[0][1]
    for n in range(3):
        challenge = inbound.decide("c5", invite("1000"), src, f"x{n}", 2.0)
        assert isinstance(challenge, Challenge)
        wrong = inbound.decide("c6", invite("1000", auth=answer(challenge, "guess")), src,
                               f"x{n}", 2.0)
        assert isinstance(wrong, Refuse) and wrong.status == 403 and wrong.wrong_password
    assert throttle.is_blocked("someone-else", src, 3.0)  # the address is blocked now


def test_md5_only_offers_one_challenge_and_takes_md5_answers(store: Store) -> None:
    """sip.digest_algorithms = ["MD5"]: for peers that read only the first header and know
    only MD5 (sipp 3.6 in tests/bench/callrate_digest.py)."""
    store.add_trunk(DIGEST)
    inbound = InboundTrunks(store, PinThrottle(), lambda: REGISTERED, require_trunk=True,
                            nonce_lifetime=60, algorithms=("MD5",))
    src = "203.0.113.9"
    first = inbound.decide("c1", invite("1000"), src, "a", 0.0)
    assert isinstance(first, Challenge) and len(first.headers) == 1
    assert "algorithm=MD5" in first.headers[0][1]
    ok = inbound.decide("c2", invite("1000", auth=answer(first, "right-pw")), src, "a", 1.0)
    assert isinstance(ok, Admit) and ok.trunk is not None and ok.trunk.name == "digest"
    # a SHA-256 answer (to a challenge of a server offering it) is not taken: challenged
    sha = policy(store, PinThrottle()).decide("c3", invite("1000"), src, "a", 0.0)
    assert isinstance(sha, Challenge)
    again = inbound.decide("c4", invite("1000", auth=answer(sha, "right-pw")), src, "a", 1.0)
    assert isinstance(again, Challenge)


def test_credentials_for_an_unknown_user_are_a_failure(store: Store) -> None:
    store.add_trunk(DIGEST)
    throttle = PinThrottle(failures=1, window=600, block=900)
    inbound = policy(store, throttle)
    challenge = inbound.decide("c1", invite("1000"), "203.0.113.9", "a", 0.0)
    assert isinstance(challenge, Challenge)
    refused = inbound.decide("c2", invite("1000", auth=answer(challenge, "pw", user="admin")),
                             "203.0.113.9", "a", 0.0)
    assert isinstance(refused, Refuse) and refused.wrong_password
    assert throttle.is_blocked(None, "203.0.113.9", 1.0)

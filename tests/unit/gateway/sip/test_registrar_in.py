"""PBXs registering to us (trunks with register_in): 401 digest challenges from the same
DigestServer as the 407s (SHA-256 and MD5, qop=auth), a binding kept in memory with its
expiry, wrong passwords counted by the PIN throttle until the source is blocked, and the
binding's address matching the PBX's calls to its trunk; the user agent hands REGISTER to
the app only while a trunk asks for it (405 otherwise)."""

from __future__ import annotations

import pytest
from test_useragent_harness import RAW, raw_request

from dialplan.models import InvalidInput
from dialplan.throttle import PinThrottle
from dialplan.trunk_match import match_trunk
from dialplan.trunks import TrunkRecord, parse_trunk
from gateway.registrar import MIN_EXPIRES, Registrar
from gateway.sip.digest import DigestServer, answer_challenge, parse_challenge
from gateway.sip.events import RegisterReceived
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.parser import parse_message
from gateway.sip.peer import Peer
from gateway.sip.timers import TimerSettings
from gateway.sip.useragent import UaSettings, UserAgent

PBX = parse_trunk({"name": "pbx", "address": "192.0.2.50", "username": "office",
                   "password": "pbx-secret-1", "register_in": True,
                   "allowed_destinations": ["+1555"]})  # fmt: skip
SOURCE = Peer("udp", "192.0.2.50", 5080)
URI = "sip:switchboard.test"


def register(auth: str | None = None, *, expires: str | None = "120",
             contact: str = "<sip:office@192.0.2.50:5080>") -> SipRequest:
    lines = [f"REGISTER {URI} SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.50:5080;branch=z9hG4bK1",
             "From: <sip:office@switchboard.test>;tag=1", "To: <sip:office@switchboard.test>",
             "Call-ID: reg-1", "CSeq: 1 REGISTER", "Max-Forwards: 70", f"Contact: {contact}"]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if auth:
        lines.append(f"Authorization: {auth}")
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, SipRequest)
    return message


def make(trunks: list[TrunkRecord] | None = None,
         throttle: PinThrottle | None = None) -> Registrar:
    listed = [PBX] if trunks is None else trunks
    return Registrar(lambda: listed, DigestServer(realm="switchboard", nonce_lifetime=60),
                     throttle or PinThrottle(failures=3, window=600, block=900))


def answer(headers: tuple[tuple[str, str], ...], password: str, user: str = "office",
           algorithm: str = "SHA-256") -> str:
    values = [v for name, v in headers if name == "WWW-Authenticate"]
    chosen = next(c for c in (parse_challenge(v) for v in values)
                  if c is not None and c.algorithm == algorithm)
    return answer_challenge(chosen, user, password, "REGISTER", URI)


def test_a_register_is_challenged_then_bound_with_its_expiry() -> None:
    registrar = make()
    status, _, headers = registrar.on_register(register(), SOURCE, 0.0)
    assert status == 401
    algorithms = [v.split("algorithm=")[1].split(",")[0] for n, v in headers]
    assert {n for n, _ in headers} == {"WWW-Authenticate"} and algorithms == ["SHA-256", "MD5"]
    assert all('qop="auth"' in v for _, v in headers)
    for algorithm in ("SHA-256", "MD5"):
        status, _, ok = registrar.on_register(
            register(answer(headers, "pbx-secret-1", algorithm=algorithm)), SOURCE, 1.0)
        assert status == 200 and ok == (("Contact", "<sip:office@192.0.2.50:5080>;expires=120"),)
    state = registrar.state("pbx", 10.0)
    assert state is not None and state[0] == "registered" and "192.0.2.50" in state[1]
    assert registrar.state("other", 10.0) is None
    bound = registrar.binding("pbx", 10.0)
    assert bound is not None and bound.source == SOURCE and bound.expires_at == 121.0
    assert registrar.sources(10.0) == {"pbx": frozenset({"192.0.2.50"})}
    assert registrar.binding("pbx", 121.0) is None  # expired
    assert registrar.sources(121.0) == {}


def test_unknown_users_get_the_same_challenge_and_then_a_refusal() -> None:
    registrar = make()
    status, _, headers = registrar.on_register(register(), Peer("udp", "198.51.100.9", 5060),
                                               0.0)
    assert status == 401  # nothing tells a scanner which users exist
    status, _, _ = registrar.on_register(register(answer(headers, "x", user="admin")),
                                         Peer("udp", "198.51.100.9", 5060), 0.1)
    assert status == 403


def test_wrong_passwords_are_throttled_like_pins() -> None:
    throttle = PinThrottle(failures=3, window=600, block=900)
    registrar = make(throttle=throttle)
    guesser = Peer("udp", "203.0.113.7", 5060)
    for n in range(3):
        _, _, headers = registrar.on_register(register(), guesser, float(n))
        status, _, _ = registrar.on_register(register(answer(headers, f"guess-{n}")), guesser,
                                             float(n) + 0.1)
        assert status == 403
    _, _, headers = make().on_register(register(), guesser, 5.0)  # (a nonce for the answer)
    status, _, extra = registrar.on_register(register(answer(headers, "pbx-secret-1")),
                                             guesser, 5.1)
    assert (status, extra) == (403, ())  # blocked: refused even with the right password
    assert registrar.binding("pbx", 6.0) is None
    # the genuine PBX elsewhere, same username: not locked out by the guesser
    _, _, headers = registrar.on_register(register(), SOURCE, 6.0)
    assert registrar.on_register(register(answer(headers, "pbx-secret-1")), SOURCE, 6.1)[0] \
        == 200


def test_a_stale_nonce_is_challenged_again_with_stale_true() -> None:
    registrar = make()
    _, _, headers = registrar.on_register(register(), SOURCE, 0.0)
    status, _, again = registrar.on_register(register(answer(headers, "pbx-secret-1")),
                                             SOURCE, 500.0)
    assert status == 401 and all("stale=true" in v for _, v in again)


def test_expiry_limits_and_unregistering() -> None:
    registrar = make()
    _, _, headers = registrar.on_register(register(), SOURCE, 0.0)
    auth = answer(headers, "pbx-secret-1")
    status, _, brief = registrar.on_register(register(auth, expires="10"), SOURCE, 0.1)
    assert status == 423 and brief == (("Min-Expires", str(MIN_EXPIRES)),)
    status, _, ok = registrar.on_register(
        register(auth, expires=None, contact="<sip:office@192.0.2.50:5080>;expires=99999"),
        SOURCE, 0.2)
    assert status == 200 and ok[0][1].endswith(";expires=3600")
    assert registrar.on_register(register(auth, expires="0"), SOURCE, 0.3)[0] == 200
    assert registrar.binding("pbx", 0.4) is None
    registrar.on_register(register(auth), SOURCE, 0.5)
    assert registrar.on_register(register(auth, expires="0", contact="*"), SOURCE, 0.6)[0] == 200
    assert registrar.binding("pbx", 0.7) is None


def test_calls_from_the_bound_address_are_the_trunks() -> None:
    match = match_trunk([PBX], "192.0.2.50", "+15550100", None, None,
                        {"pbx": frozenset({"192.0.2.50"})}, {})
    assert match is not None and (match.trunk.name, match.by) == ("pbx", "registration")
    assert match_trunk([PBX], "192.0.2.50", "+15550100", None, None, {}, {}) is None


def test_register_in_needs_credentials_and_excludes_register() -> None:
    with pytest.raises(InvalidInput):
        parse_trunk({"name": "pbx", "address": "192.0.2.50", "register_in": True})
    with pytest.raises(InvalidInput):
        parse_trunk({"name": "pbx", "address": "192.0.2.50", "username": "u",
                     "password": "p", "register_in": True, "register": True})
    assert PBX.as_json()["register_in"] is True and parse_trunk(PBX.stored()) == PBX
    assert make().enabled() and not make([]).enabled()


def test_the_user_agent_hands_register_over_only_when_asked() -> None:
    ua = UserAgent(UaSettings(local={"udp": ("10.0.0.2", 5060)}, timers=TimerSettings()))

    def responses() -> list[SipResponse]:
        out = []
        for data, _ in ua.datagrams_to_send():
            message = parse_message(data)
            assert isinstance(message, SipResponse)
            out.append(message)
        return out

    ua.receive_data(raw_request("REGISTER", "r1"), RAW, 0.0)
    assert [r.status for r in responses()] == [405]
    accepting = False
    ua.accept_register = lambda: accepting
    ua.receive_data(raw_request("REGISTER", "r2"), RAW, 0.0)
    assert [r.status for r in responses()] == [405]
    accepting = True
    ua.receive_data(raw_request("REGISTER", "r3"), RAW, 0.0)
    event = ua.next_event()
    assert isinstance(event, RegisterReceived) and event.call_id == "r3"
    assert event.source == RAW
    ua.answer_register(event.key, 401, "Unauthorized", [("WWW-Authenticate", "Digest x")],
                       now=0.1)
    (response,) = responses()
    assert response.status == 401 and response.headers.get("WWW-Authenticate") == "Digest x"
    ua.answer_register(event.key, 200, now=0.2)  # answered already: nothing more
    assert responses() == []

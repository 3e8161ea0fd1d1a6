"""The registration state machine with a fake clock: refresh timing, 401/407, 423, stale
nonces, backoff after 403 against after a timeout, failover, un-REGISTER."""

from __future__ import annotations

from gateway.sip.digest import parse_credentials
from gateway.sip.registration import RegisterAttempt, Registration, RegistrationSettings

PRIMARY, SECOND = ("192.0.2.1", 5060), ("192.0.2.2", 5060)
WWW = 'Digest realm="carrier", nonce="n1", algorithm=SHA-256, qop="auth"'


def make(*, rng: float = 0.5, failover: bool = False, expires: int = 120) -> Registration:
    addresses = (PRIMARY, SECOND) if failover else (PRIMARY,)
    return Registration(RegistrationSettings(
        name="carrier", addresses=addresses, username="sb", password="pw",
        domain="carrier.example", expires=expires), rng=lambda: rng)  # fmt: skip


def sent(reg: Registration) -> RegisterAttempt:
    attempt = reg.next_attempt()
    assert attempt is not None
    assert reg.next_attempt() is None
    return attempt


def register(reg: Registration, now: float = 0.0) -> None:
    reg.start(now)
    first = sent(reg)
    assert first.authorization is None and first.expires == 120
    reg.on_response(401, now, challenges=[WWW])
    second = sent(reg)
    assert second.authorization is not None and second.authorization[0] == "Authorization"
    assert second.cseq == first.cseq + 1
    reg.on_response(200, now, granted=100)
    assert reg.state == "registered"


def test_refresh_between_half_and_nine_tenths_of_the_granted_expiry() -> None:
    for draw, due in ((0.0, 50.0), (1.0, 90.0), (0.5, 70.0)):
        reg = make(rng=draw)
        register(reg)
        assert reg.get_timer() == due
        reg.handle_timer(due - 1)
        assert reg.next_attempt() is None
        reg.handle_timer(due)
        refresh = sent(reg)
        creds = parse_credentials(refresh.authorization[1]) if refresh.authorization else None
        assert creds is not None and creds.nc == "00000002"  # the nonce reused, nc counted
        reg.on_response(200, due, granted=100)
        assert reg.state == "registered" and reg.registrations == 2


def test_407_answers_with_proxy_authorization() -> None:
    reg = make()
    reg.start(0.0)
    sent(reg)
    reg.on_response(407, 0.0, challenges=[WWW.replace("n1", "p1")])
    attempt = sent(reg)
    assert attempt.authorization is not None
    assert attempt.authorization[0] == "Proxy-Authorization"


def test_wrong_password_is_a_refusal_with_the_slow_backoff() -> None:
    reg = make()
    reg.start(0.0)
    sent(reg)
    reg.on_response(401, 0.0, challenges=[WWW])
    sent(reg)
    reg.on_response(401, 0.1, challenges=[WWW.replace("n1", "n2")])
    assert reg.state == "failed" and "credentials refused" in reg.detail
    assert reg.get_timer() == 0.1 + 300.0
    assert reg.next_attempt() is None


def test_stale_nonce_is_answered_without_a_failure() -> None:
    reg = make()
    register(reg)
    reg.handle_timer(70.0)
    sent(reg)
    reg.on_response(401, 70.0, challenges=[WWW.replace("n1", "n2") + ", stale=true"])
    again = sent(reg)
    assert again.authorization is not None and 'nonce="n2"' in again.authorization[1]
    reg.on_response(200, 70.0, granted=100)
    assert reg.state == "registered" and reg.failures == 0


def test_registrar_restart_new_nonce_on_refresh_is_answered() -> None:
    """A refresh with the old nonce is challenged afresh (the registrar restarted): answered."""
    reg = make()
    register(reg)
    reg.handle_timer(70.0)
    sent(reg)
    reg.on_response(401, 70.0, challenges=[WWW.replace("n1", "n9")])
    assert sent(reg).authorization is not None
    reg.on_response(200, 70.0, granted=100)
    assert reg.state == "registered" and reg.failures == 0


def test_423_asks_for_min_expires() -> None:
    reg = make(expires=60)
    reg.start(0.0)
    sent(reg)
    reg.on_response(423, 0.0, min_expires=600)
    attempt = sent(reg)
    assert attempt.expires == 600
    reg.on_response(200, 0.0)
    assert reg.state == "registered"
    assert 300.0 <= (reg.get_timer() or 0) <= 540.0


def test_403_backs_off_much_slower_than_a_timeout() -> None:
    slow = make()
    slow.start(0.0)
    sent(slow)
    slow.on_response(403, 0.0)
    assert slow.state == "failed" and slow.get_timer() == 300.0
    slow.handle_timer(300.0)
    assert slow.state == "registering"
    sent(slow)
    slow.on_response(403, 300.0)
    assert slow.get_timer() == 300.0 + 600.0  # doubled

    fast = make()
    fast.start(0.0)
    sent(fast)
    fast.on_timeout(32.0)
    assert fast.state == "failed" and fast.get_timer() == 37.0
    assert "408" in fast.detail and "next attempt in 5 s" in fast.detail
    fast.handle_timer(37.0)
    sent(fast)
    fast.on_response(503, 37.0)
    assert fast.get_timer() == 47.0  # 10 s
    fast.handle_timer(47.0)
    sent(fast)
    fast.on_response(200, 47.0, granted=100)
    assert fast.state == "registered" and "before" in fast.detail


def test_failover_to_the_second_address_at_once() -> None:
    reg = make(failover=True)
    reg.start(0.0)
    assert sent(reg).address == PRIMARY
    reg.on_timeout(32.0)
    assert reg.state == "registering"
    assert sent(reg).address == SECOND
    reg.on_response(401, 32.0, challenges=[WWW])
    assert sent(reg).address == SECOND
    reg.on_response(200, 32.0, granted=100)
    assert reg.state == "registered" and reg.address == SECOND
    # both fail: failed, with the backoff; the next round starts at the primary
    reg.handle_timer(reg.get_timer() or 0)
    sent(reg)
    reg.on_response(500, 100.0)
    assert sent(reg).address == PRIMARY
    reg.on_timeout(132.0)
    assert reg.state == "failed" and reg.next_attempt() is None
    reg.handle_timer(137.0)
    assert sent(reg).address == PRIMARY


def test_stop_unregisters_with_expires_zero() -> None:
    reg = make()
    register(reg)
    reg.stop(10.0)
    attempt = sent(reg)
    assert attempt.expires == 0 and attempt.authorization is not None
    reg.on_response(200, 10.0)
    assert reg.state == "off" and reg.get_timer() is None


def test_stop_while_failed_is_off_at_once() -> None:
    reg = make()
    reg.start(0.0)
    sent(reg)
    reg.on_response(403, 0.0)
    reg.stop(1.0)
    assert reg.state == "off" and reg.next_attempt() is None and reg.get_timer() is None


def test_an_unanswered_refresh_shows_when_the_registration_expires() -> None:
    reg = make()
    register(reg)  # granted 100 s at 0, refresh at 70
    reg.handle_timer(70.0)
    sent(reg)
    assert reg.state == "registered" and reg.get_timer() == 100.0
    reg.handle_timer(100.0)
    assert reg.state == "registering" and "expired" in reg.detail
    assert reg.next_attempt() is None
    reg.on_timeout(102.0)
    assert reg.state == "failed" and "408" in reg.detail

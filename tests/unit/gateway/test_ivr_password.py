"""PinIvr's additions for the room policy (issue 17, section 3): the password after the PIN,
and a Join without "joining the meeting" for callers who will wait or be refused. Sans-I/O,
with a fake clock; nothing here may log a digit, a PIN or a password."""

from __future__ import annotations

import logging

import pytest

from gateway.ivr import (
    CheckPassword,
    CheckPin,
    Hangup,
    IvrAction,
    IvrError,
    IvrSettings,
    IvrState,
    Join,
    PinIvr,
    PlayPrompt,
    StopPrompt,
)

SETTINGS = IvrSettings(first_digit_timeout=10.0, inter_digit_timeout=5.0, max_attempts=3,
                       max_pin_length=12, prompt_timeout=60.0, max_password_attempts=3,
                       max_password_length=8)  # fmt: skip
PIN = "48213077"
PASSWORD = "9305"


def drain(ivr: PinIvr) -> list[IvrAction]:
    actions = []
    while (action := ivr.next_action()) is not None:
        actions.append(action)
    return actions


def keys(ivr: PinIvr, digits: str, now: float) -> list[IvrAction]:
    for digit in digits:
        ivr.on_digit(digit, now)
    return drain(ivr)


def at_password(now: float = 0.0) -> PinIvr:
    """An IVR whose PIN was right, asking for the room's password (its prompt ended)."""
    ivr = PinIvr("call-1", SETTINGS)
    ivr.start(now)
    assert drain(ivr) == [PlayPrompt("welcome")]
    assert keys(ivr, PIN + "#", now + 1) == [StopPrompt(), CheckPin(PIN)]
    ivr.pin_result(True, now + 1, password=True)
    assert drain(ivr) == [PlayPrompt("enter_password")]
    assert ivr.stage == "password" and ivr.state is IvrState.PROMPTING
    ivr.on_prompt_finished(now + 4, "enter_password")
    assert ivr.state is IvrState.COLLECTING
    assert ivr.get_timer() == now + 14  # the first-digit timeout, as for the PIN
    return ivr


def test_right_pin_without_announce_joins_at_once() -> None:
    ivr = PinIvr("c", SETTINGS)
    ivr.start(0.0)
    drain(ivr)
    keys(ivr, PIN + "#", 1.0)
    ivr.pin_result(True, 1.0, announce=False)
    assert drain(ivr) == [Join()]  # no "joining the meeting": the caller will wait
    assert ivr.state is IvrState.DONE and ivr.get_timer() is None


def test_password_right_then_joining_then_join() -> None:
    ivr = at_password()
    assert keys(ivr, PASSWORD, 5.0) == []
    assert ivr.get_timer() == 10.0  # inter-digit
    assert keys(ivr, "#", 6.0) == [CheckPassword(PASSWORD)]
    assert ivr.state is IvrState.CHECKING and ivr.get_timer() is None
    ivr.password_result(True, 6.5)
    assert drain(ivr) == [PlayPrompt("joining")]
    ivr.on_prompt_finished(8.0, "joining")
    assert drain(ivr) == [Join()]
    assert ivr.password_failures == 0 and ivr.failures == 0


def test_password_right_without_announce_joins_at_once() -> None:
    ivr = at_password()
    keys(ivr, PASSWORD + "#", 5.0)
    ivr.password_result(True, 5.5, announce=False)
    assert drain(ivr) == [Join()]


def test_three_wrong_passwords_then_prompt_and_hangup() -> None:
    ivr = at_password()
    now = 5.0
    for attempt in range(1, 4):
        assert keys(ivr, "1111#", now) == [CheckPassword("1111")]
        ivr.password_result(False, now)
        actions = drain(ivr)
        assert actions == [PlayPrompt("invalid_password" if attempt < 3 else
                                      "password_failed")]  # fmt: skip
        if attempt < 3:
            ivr.on_prompt_finished(now + 1, "invalid_password")
        now += 2.0
    assert ivr.password_failures == 3 and ivr.failures == 0  # counted apart from PINs
    assert keys(ivr, "9305#", now) == []  # keys during the goodbye are ignored
    ivr.on_prompt_finished(now + 2, "password_failed")
    assert drain(ivr) == [Hangup("too many wrong passwords")]
    assert ivr.state is IvrState.DONE


def test_wrong_then_right_password() -> None:
    ivr = at_password()
    keys(ivr, "12#", 5.0)
    ivr.password_result(False, 5.1)
    assert drain(ivr) == [PlayPrompt("invalid_password")]
    assert keys(ivr, "9", 5.5) == [StopPrompt()]  # barge-in, the key kept
    assert keys(ivr, "305#", 6.0) == [CheckPassword(PASSWORD)]
    ivr.password_result(True, 6.1)
    assert drain(ivr) == [PlayPrompt("joining")]


def test_empty_password_and_no_input_are_failed_attempts_that_reprompt() -> None:
    ivr = at_password()
    assert keys(ivr, "#", 5.0) == [PlayPrompt("enter_password")]  # '#' alone
    assert ivr.password_failures == 1
    ivr.on_prompt_finished(8.0, "enter_password")
    ivr.handle_timer(17.9)
    assert drain(ivr) == []
    ivr.handle_timer(18.0)  # no key within the first-digit timeout
    assert drain(ivr) == [PlayPrompt("enter_password")]
    assert ivr.password_failures == 2
    ivr.on_prompt_finished(21.0, "enter_password")
    ivr.handle_timer(31.0)
    assert drain(ivr) == [PlayPrompt("password_failed")]


def test_star_clears_and_inter_digit_timeout_submits_password() -> None:
    ivr = at_password()
    keys(ivr, "77*", 5.0)
    assert ivr.digits == ""
    keys(ivr, "93", 6.0)
    ivr.handle_timer(11.0)
    assert drain(ivr) == [CheckPassword("93")]


def test_max_password_length_submits() -> None:
    ivr = at_password()
    assert keys(ivr, "12345678", 5.0) == [CheckPassword("12345678")]  # 8: the longest


def test_password_check_can_wait_for_the_global_limit_and_be_given_up() -> None:
    ivr = at_password()
    keys(ivr, PASSWORD + "#", 5.0)
    ivr.check_later(5.05)
    ivr.handle_timer(5.05)
    assert drain(ivr) == [CheckPassword(PASSWORD)]  # asked again, still the password
    ivr.give_up("busy", "PIN lookups overloaded", 6.0)
    assert drain(ivr) == [PlayPrompt("busy")]
    ivr.on_prompt_finished(9.0, "busy")
    assert drain(ivr) == [Hangup("PIN lookups overloaded")]


def test_results_in_the_wrong_stage_are_our_bug() -> None:
    ivr = at_password()
    keys(ivr, PASSWORD + "#", 5.0)
    with pytest.raises(IvrError):
        ivr.pin_result(True, 5.0)
    fresh = PinIvr("c2", SETTINGS)
    fresh.start(0.0)
    keys(fresh, PIN + "#", 1.0)
    with pytest.raises(IvrError):
        fresh.password_result(True, 1.0)


def test_check_actions_hide_their_digits_in_repr() -> None:
    assert PASSWORD not in repr(CheckPassword(PASSWORD))
    assert PIN not in repr(CheckPin(PIN))


def test_no_pin_or_password_in_any_log_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ivr = at_password()
    keys(ivr, "5555#", 5.0)
    ivr.password_result(False, 5.1)
    keys(ivr, PASSWORD + "#", 6.0)
    ivr.password_result(True, 6.1)
    ivr.on_prompt_finished(8.0)
    assert drain(ivr)[-1] == Join()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "password accepted" in text  # the records are there...
    for secret in (PIN, PASSWORD, "5555"):
        assert secret not in text  # ...and say nothing of the digits

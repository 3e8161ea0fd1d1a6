"""PinIvr: the PIN state machine, driven with a fake clock (now is a number we choose)."""

from __future__ import annotations

import logging

import pytest

from gateway.ivr import (
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
                       max_pin_length=12, prompt_timeout=60.0)


def drain(ivr: PinIvr) -> list[IvrAction]:
    actions = []
    while (action := ivr.next_action()) is not None:
        actions.append(action)
    return actions


def started(settings: IvrSettings = SETTINGS) -> PinIvr:
    ivr = PinIvr("call-1", settings)
    ivr.start(0.0)
    assert drain(ivr) == [PlayPrompt("welcome")]
    return ivr


def keys(ivr: PinIvr, digits: str, now: float) -> list[IvrAction]:
    for digit in digits:
        ivr.on_digit(digit, now)
    return drain(ivr)


def test_start_plays_welcome_and_waits_for_it() -> None:
    ivr = PinIvr("c", SETTINGS)
    assert ivr.state is IvrState.IDLE
    assert ivr.next_action() is None
    ivr.start(100.0)
    assert ivr.next_action() == PlayPrompt("welcome")
    assert ivr.next_action() is None
    assert ivr.state is IvrState.PROMPTING
    # While the prompt plays the only timer is the safety net for a prompt that never ends.
    assert ivr.get_timer() == 160.0


def test_right_pin_after_prompt_then_joining_then_join() -> None:
    ivr = started()
    ivr.on_prompt_finished(5.0)
    assert ivr.state is IvrState.COLLECTING
    assert ivr.get_timer() == 15.0  # first-digit timeout
    assert keys(ivr, "1234", 6.0) == []
    assert ivr.get_timer() == 11.0  # inter-digit timeout from the last digit
    assert keys(ivr, "#", 7.0) == [CheckPin("1234")]
    assert ivr.state is IvrState.CHECKING
    assert ivr.get_timer() is None
    ivr.pin_result(True, 7.1)
    assert drain(ivr) == [PlayPrompt("joining")]
    assert ivr.pin == "1234"
    ivr.on_prompt_finished(8.5)
    assert drain(ivr) == [Join()]
    assert ivr.state is IvrState.DONE
    assert ivr.get_timer() is None


def test_digit_during_prompt_barges_in_and_is_kept() -> None:
    ivr = started()
    assert keys(ivr, "9", 1.0) == [StopPrompt()]
    assert ivr.state is IvrState.COLLECTING
    assert ivr.digits == "9"
    assert keys(ivr, "87#", 2.0) == [CheckPin("987")]


def test_late_prompt_end_after_barge_in_is_ignored() -> None:
    ivr = started()
    keys(ivr, "1", 1.0)
    ivr.on_prompt_finished(1.0, "welcome")
    assert ivr.state is IvrState.COLLECTING
    assert ivr.get_timer() == 6.0  # still the inter-digit timer, not a new first-digit timer
    assert drain(ivr) == []


def test_prompt_end_for_another_prompt_is_ignored() -> None:
    ivr = started()
    keys(ivr, "1#", 1.0)
    ivr.pin_result(False, 1.1)
    assert drain(ivr) == [PlayPrompt("invalid_pin")]
    ivr.on_prompt_finished(1.2, "welcome")  # stale report about the stopped welcome
    assert ivr.state is IvrState.PROMPTING
    ivr.on_prompt_finished(3.0, "invalid_pin")
    assert ivr.state is IvrState.COLLECTING


def test_wrong_pin_plays_invalid_then_collects_again() -> None:
    ivr = started()
    ivr.on_prompt_finished(5.0)
    assert keys(ivr, "111#", 6.0) == [CheckPin("111")]
    ivr.pin_result(False, 6.2)
    assert drain(ivr) == [PlayPrompt("invalid_pin")]
    assert ivr.failures == 1
    assert ivr.digits == ""
    ivr.on_prompt_finished(9.0)
    assert ivr.get_timer() == 19.0
    assert keys(ivr, "2222#", 10.0) == [CheckPin("2222")]
    ivr.pin_result(True, 10.1)
    assert drain(ivr) == [PlayPrompt("joining")]


def test_three_wrong_pins_say_goodbye_then_hang_up() -> None:
    ivr = started()
    now = 1.0
    for attempt in range(1, 4):
        assert keys(ivr, "5#", now)[-1] == CheckPin("5")
        ivr.pin_result(False, now)
        actions = drain(ivr)
        if attempt < 3:
            assert actions == [PlayPrompt("invalid_pin")]
        else:
            assert actions == [PlayPrompt("goodbye")]
        now += 1.0
    assert ivr.failures == 3
    assert ivr.state is IvrState.GOODBYE
    assert keys(ivr, "1#", now) == []  # keys during goodbye are ignored
    ivr.on_prompt_finished(now + 1.0)
    assert drain(ivr) == [Hangup("too many attempts")]
    assert ivr.state is IvrState.DONE


def test_max_attempts_one_hangs_up_after_first_failure() -> None:
    ivr = started(IvrSettings(max_attempts=1))
    keys(ivr, "5#", 1.0)
    ivr.pin_result(False, 1.0)
    assert drain(ivr) == [PlayPrompt("goodbye")]


def test_star_clears_digits() -> None:
    ivr = started()
    ivr.on_prompt_finished(2.0)
    assert keys(ivr, "12*", 3.0) == []
    assert ivr.digits == ""
    assert ivr.get_timer() == 13.0  # back to the first-digit timeout
    assert keys(ivr, "34#", 4.0) == [CheckPin("34")]


def test_star_during_prompt_barges_in_with_no_digits() -> None:
    ivr = started()
    assert keys(ivr, "*", 1.0) == [StopPrompt()]
    assert ivr.state is IvrState.COLLECTING
    assert ivr.get_timer() == 11.0


def test_empty_pin_counts_as_attempt_and_replays_welcome() -> None:
    ivr = started()
    ivr.on_prompt_finished(5.0)
    assert keys(ivr, "#", 6.0) == [PlayPrompt("welcome")]
    assert ivr.failures == 1
    assert ivr.state is IvrState.PROMPTING


def test_pound_during_prompt_stops_it_then_counts_empty_attempt() -> None:
    ivr = started()
    assert keys(ivr, "#", 1.0) == [StopPrompt(), PlayPrompt("welcome")]
    assert ivr.failures == 1


def test_inter_digit_timeout_submits_typed_digits() -> None:
    ivr = started()
    ivr.on_prompt_finished(5.0)
    keys(ivr, "42", 6.0)
    ivr.handle_timer(10.9)  # too early: nothing
    assert drain(ivr) == []
    assert ivr.state is IvrState.COLLECTING
    ivr.handle_timer(11.0)
    assert drain(ivr) == [CheckPin("42")]
    ivr.pin_result(False, 11.1)
    assert drain(ivr) == [PlayPrompt("invalid_pin")]
    assert ivr.failures == 1


def test_no_input_replays_welcome_and_counts() -> None:
    ivr = started()
    ivr.on_prompt_finished(5.0)
    ivr.handle_timer(15.0)
    assert drain(ivr) == [PlayPrompt("welcome")]
    assert ivr.failures == 1


def test_silent_caller_is_hung_up_after_max_attempts() -> None:
    ivr = started()
    now = 0.0
    played: list[IvrAction] = []
    for _ in range(3):
        now += 5.0
        ivr.on_prompt_finished(now)
        timer = ivr.get_timer()
        assert timer == now + 10.0
        now = timer
        ivr.handle_timer(now)
        played += drain(ivr)
    assert played == [PlayPrompt("welcome"), PlayPrompt("welcome"), PlayPrompt("goodbye")]
    ivr.on_prompt_finished(now + 1.0)
    assert drain(ivr) == [Hangup("too many attempts")]


def test_max_pin_length_submits_without_pound() -> None:
    ivr = started(IvrSettings(max_pin_length=4))
    assert keys(ivr, "1234", 1.0) == [StopPrompt(), CheckPin("1234")]
    assert keys(ivr, "5", 1.1) == []  # ignored while checking


def test_keys_a_to_d_and_garbage_are_ignored() -> None:
    ivr = started()
    ivr.on_prompt_finished(1.0)
    assert keys(ivr, "A1dX2", 2.0) == []
    assert ivr.digits == "12"


def test_digits_while_checking_are_ignored() -> None:
    ivr = started()
    keys(ivr, "7#", 1.0)
    assert keys(ivr, "8#", 1.5) == []
    ivr.pin_result(True, 2.0)
    assert ivr.pin == "7"


def test_prompt_that_never_ends_is_treated_as_ended() -> None:
    ivr = started(IvrSettings(prompt_timeout=30.0))
    ivr.handle_timer(29.0)
    assert ivr.state is IvrState.PROMPTING
    ivr.handle_timer(30.0)
    assert ivr.state is IvrState.COLLECTING
    assert ivr.get_timer() == 40.0


def test_joining_prompt_that_never_ends_still_joins() -> None:
    ivr = started(IvrSettings(prompt_timeout=30.0))
    keys(ivr, "1#", 1.0)
    ivr.pin_result(True, 1.0)
    drain(ivr)
    ivr.handle_timer(31.0)
    assert drain(ivr) == [Join()]


def test_misuse_raises_ivr_error() -> None:
    ivr = PinIvr("c")
    with pytest.raises(IvrError):
        ivr.on_digit("1", 0.0)
    ivr.start(0.0)
    with pytest.raises(IvrError):
        ivr.start(1.0)
    with pytest.raises(IvrError):
        ivr.pin_result(True, 1.0)  # nothing was submitted


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        IvrSettings(max_attempts=0)
    with pytest.raises(ValueError):
        IvrSettings(inter_digit_timeout=0)


def test_actions_are_frozen() -> None:
    action = CheckPin("1")
    with pytest.raises(AttributeError):
        action.pin = "2"  # type: ignore[misc]


def test_transitions_are_logged_with_call_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.ivr")
    ivr = PinIvr("call-xyz", SETTINGS)
    ivr.start(0.0)
    ivr.on_digit("1", 1.0)
    messages = [r.getMessage() for r in caplog.records]
    assert "call call-xyz: ivr idle -> prompting" in messages
    assert "call call-xyz: ivr prompting -> collecting" in messages


def collected(pin: str = "48213077") -> PinIvr:
    """An IVR that has just asked for `pin` to be checked (at t=5)."""
    ivr = started()
    ivr.on_prompt_finished(4.0)
    assert keys(ivr, pin + "#", 5.0) == [CheckPin(pin)]
    return ivr


def test_check_later_asks_again_at_that_time_and_keeps_the_digits() -> None:
    ivr = collected()
    ivr.check_later(5.05)
    assert ivr.get_timer() == 5.05
    ivr.handle_timer(5.04)
    assert drain(ivr) == []
    assert keys(ivr, "9#", 5.045) == []  # keys while the lookup waits are ignored
    ivr.handle_timer(5.05)
    assert drain(ivr) == [CheckPin("48213077")]
    assert ivr.get_timer() is None and ivr.state is IvrState.CHECKING
    ivr.check_later(5.1)
    ivr.handle_timer(5.1)
    assert drain(ivr) == [CheckPin("48213077")]
    ivr.pin_result(True, 5.2)  # then checked as usual, no attempt used up by the waiting
    assert drain(ivr) == [PlayPrompt("joining")]
    assert ivr.failures == 0


def test_give_up_plays_the_prompt_then_hangs_up_without_a_failed_attempt() -> None:
    ivr = collected()
    ivr.give_up("blocked", "PIN guessing blocked", 6.0)
    assert drain(ivr) == [PlayPrompt("blocked")]
    assert ivr.failures == 0 and ivr.digits == ""
    ivr.on_prompt_finished(9.0, "blocked")
    assert drain(ivr) == [Hangup("PIN guessing blocked")]
    assert ivr.state is IvrState.DONE


def test_check_later_and_give_up_only_while_checking() -> None:
    ivr = started()
    with pytest.raises(IvrError):
        ivr.check_later(1.0)
    with pytest.raises(IvrError):
        ivr.give_up("blocked", "x", 1.0)


def test_no_key_digit_or_pin_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Every path through the IVR at DEBUG: no record carries a keyed digit or the PIN."""
    caplog.set_level(logging.DEBUG, logger="gateway.ivr")
    ivr = PinIvr("call-secret", SETTINGS)
    ivr.start(0.0)
    keys(ivr, "7", 0.5)  # barge-in
    keys(ivr, "A9*", 1.0)  # a letter, a digit, clear
    ivr.on_digit("?", 1.1)  # garbage
    keys(ivr, "8642#", 2.0)
    ivr.pin_result(False, 2.1)
    keys(ivr, "86", 3.0)  # during invalid_pin: barge-in
    ivr.handle_timer(8.1)  # inter-digit timeout submits
    assert drain(ivr) == [CheckPin("86")]
    keys(ivr, "5", 8.2)  # ignored while checking
    ivr.check_later(8.3)
    ivr.pin_result(True, 8.4)
    drain(ivr)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "8642" not in text and "86" not in text
    assert not any(ch in text.replace("call-secret", "") for ch in "?79#*5"), text
    assert repr(CheckPin("8642")) == "CheckPin()"

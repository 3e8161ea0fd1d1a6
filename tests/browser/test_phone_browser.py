"""Acceptance tests of issue 4, phones and browsers in one conference: real baresip phones
dial the real `switchboard serve` with a PIN, real headless Chromium members are in the same
room, and each side must hear the other.

Every participant plays one steady tone: a phone its aufile source, a browser its fake
microphone (`--use-file-for-fake-audio-capture`). What is asserted is measured outside the
server: in the browser, the remote track of each participant through a WebAudio probe
(browser_harness.inbound_audio: dominant frequency, energy at each test frequency) and
getStats() (audio level); on the phone, baresip's recording of what it heard (sndfile's
dump-*-dec.wav, at the codec's rate); the roster from the signaling messages Chromium
received; /api/stats and baresip's ctrl_tcp events.

Chromium's noise suppression brings a steady tone down to about -30 dBFS within two seconds
(measured), so the thresholds for a browser's tone at a phone are set far below that and far
above the silence floor (about -90 dBFS).

Most checks are soft (phone_harness.Expectations): a test goes through its whole scenario
and then fails listing every expectation that did not hold, so one run tells which parts of
the feature work. Steps that the rest depends on (dialling in, the phone in the roster) are
hard assertions.

Run inside a network namespace with only loopback (as root):
unshare -n -- bash -c 'ip link set lo up && .venv/bin/pytest -q tests/browser/test_phone_browser.py'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import phone_harness as ph
import pytest
from browser_harness import Member, install_audio_probe, remote_media
from phone_harness import CODECS, Expectations, Phone, PhoneBank, PhoneCodec, audio

log = logging.getLogger(__name__)

MEDIA_TIMEOUT = 5.0  # media.timeout: a phone whose RTP stops is removed after this
SWITCHBOARD_CONFIG = {
    "bridge": {"endpoint_timeout": 5.0},
    "media": {"timeout": MEDIA_TIMEOUT, "rtp_ports": ph.reserve_rtp_ports()},
}

TOLERANCE_HZ = 40.0     # a tone's dominant frequency, measured
CONTROL_HZ = 2500.0     # nobody sends it: the noise floor of a measurement
MIN_POWER = 1e-5        # -47 dBFS: a tone that is there (a browser's is about -30 dBFS)
# After a phone is seen in the room: its join beep and any prompt (even a wrong "you are the
# only participant", 2.6 s) are over, so the phone's measurements do not depend on them.
SETTLE_S = 4.5
WINDOW_S = 1.5          # the length of each measurement
PROMPT_POWER = 1e-4     # speech_power of a spoken prompt is far above (about 1e-2)
ROSTER_TIMEOUT = 20.0
MEDIA_WAIT = 15.0       # first audio of a new source, on a shared 2-core machine
MEDIA_RECHECK = 5.0     # a source that has been there (or was awaited already) again


# -- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def phones(crowd: Any, module_switchboard: Any, tmp_path: Path) -> Iterator[PhoneBank]:
    """The test's phones; after it they are stopped (by PID if they will not quit), and the
    server must have no call and no leg left within 15 s. (Torn down before `crowd`, which
    then closes the browsers and waits for the server to be at rest.)"""
    workdir = tmp_path / "phones"
    workdir.mkdir()
    bank = PhoneBank(workdir)
    try:
        yield bank
    finally:
        bank.stop_all()
    try:
        ph.wait_stats(module_switchboard, {"calls": 0, "legs": 0}, 15.0)
    except AssertionError as exc:
        pytest.fail(f"after the phones quit: {exc}", pytrace=False)


def _mic(tmp_path: Path, hz: int) -> Path:
    return ph.fake_mic_wav(tmp_path / f"mic-{hz}hz.wav", hz)


def _join(crowd: Any, tmp_path: Path, room: str, name: str, hz: int) -> Member:
    """A browser with its fake microphone playing `hz`, camera off, the audio probe on."""
    member: Member = crowd.join(room, name, camera=False, audio_file=_mic(tmp_path, hz))
    install_audio_probe(member.page)
    return member


def _wait_until(t: float) -> None:
    """Sleep until monotonic time `t` (at most 10 s)."""
    time.sleep(min(max(t - time.monotonic(), 0.0), 10.0))


def _settled(phones: Sequence[Phone]) -> None:
    """Wait until every phone has been in the room for SETTLE_S."""
    _wait_until(max(p.in_room_at or 0.0 for p in phones) + SETTLE_S)


def _audio_level(member: Member, pid: str) -> float:
    """The highest getStats audioLevel of `member`'s inbound audio from `pid` (0 if none)."""
    levels = [s.audio_level for s in remote_media(member.browser, member.page)
              if s.participant == pid and s.kind == "audio" and s.packets > 0]  # fmt: skip
    return max(levels, default=0.0)


def _level_above_zero(member: Member, pid: str, who: str) -> float:
    return ph.until(member, lambda: _audio_level(member, pid) > 0, MEDIA_WAIT,
                    f"an inbound audio level above 0 from {who}")  # fmt: skip


def _browser_hears(member: Member, pid: str, who: str, hz: float, freqs: Sequence[float],
                   timeout: float = MEDIA_WAIT) -> str:  # fmt: skip
    """Within `timeout`, `member`'s inbound audio from `pid` is a tone of `hz` for
    WINDOW_S: its dominant frequency within TOLERANCE_HZ, its band above MIN_POWER and 100
    times the noise floor."""
    def measured() -> bool:
        got = member.inbound_audio().get(pid)
        if got is None or got.age_s < WINDOW_S:
            return False
        samples = got.recent(WINDOW_S)
        dominant = audio.dominant_frequency(samples, got.rate)
        power = ph.bands(samples, got.rate, [hz, CONTROL_HZ])
        last[:] = [samples, got.rate]
        return (abs(dominant - hz) <= TOLERANCE_HZ and power[hz] > MIN_POWER
                and power[hz] > 100 * power[CONTROL_HZ])  # fmt: skip

    last: list[Any] = []
    try:
        ph.until(member, measured, timeout, f"{who}'s {hz:g} Hz tone")
    except AssertionError:
        detail = (ph.describe(last[0], last[1], [*freqs, CONTROL_HZ]) if last else
                  "no audio source from it in the page")  # fmt: skip
        raise AssertionError(f"{member.name} does not hear {who}'s {hz:g} Hz tone from "
                             f"participant {pid} within {timeout:g} s: {detail}") from None
    return ph.describe(last[0], last[1], freqs)


def _phone_hears(phone: Phone, expected: Sequence[float], absent: Sequence[float],
                 window: float = WINDOW_S) -> str:  # fmt: skip
    """The phone's recording of its last `window` seconds holds each `expected` tone above
    MIN_POWER and 20 times the noise floor; each `absent` tone has less than a tenth of the
    weakest expected one; with one expected tone, it is the dominant frequency."""
    samples, rate = phone.heard(window)
    freqs = [*expected, *absent]
    power = ph.bands(samples, rate, [*freqs, CONTROL_HZ])
    desc = f"{phone.name} heard {ph.describe(samples, rate, [*freqs, CONTROL_HZ])}"
    assert samples.size >= 0.9 * window * rate, f"recording too short: {desc}"
    weakest = min(power[f] for f in expected)
    assert weakest > MIN_POWER, f"a tone is missing: {desc}"
    assert weakest > 20 * power[CONTROL_HZ], f"not above the noise: {desc}"
    for f in absent:
        assert power[f] < weakest / 10, f"{f:g} Hz should not be there: {desc}"
    if len(expected) == 1:
        dominant = audio.dominant_frequency(samples, rate)
        assert abs(dominant - expected[0]) <= TOLERANCE_HZ, f"dominant {dominant:.0f} Hz: {desc}"
    return desc


def _muted_in_rosters(members: Sequence[Member], pid: str, muted: bool, timeout: float = 5.0
                      ) -> None:  # fmt: skip
    for member in members:
        ph.wait_roster(member, lambda p: p["id"] == pid and p.get("muted") is muted, timeout,
                       f"the phone shown {'muted' if muted else 'unmuted'}")  # fmt: skip


def _silent_from(member: Member, pid: str, hz: float, seconds: float = 1.0) -> str:
    """`member` no longer hears `hz` from `pid` (its source may also be gone)."""
    def quiet() -> bool:
        got = member.inbound_audio().get(pid)
        if got is None:
            return True
        samples = got.recent(seconds)
        return ph.bands(samples, got.rate, [hz])[hz] < MIN_POWER

    ph.until(member, quiet, 5.0, f"the phone's {hz:g} Hz tone to stop")
    got = member.inbound_audio().get(pid)
    return "source gone" if got is None else ph.describe(got.recent(seconds), got.rate, [hz])


def _dial_in(server: Any, phones: Sequence[Phone], pin: str, members: Sequence[Member]
             ) -> dict[str, str]:  # fmt: skip
    """The phones dial in with the PIN; every member must see each of them (hard). Returns
    phone name -> participant id."""
    ph.dial_in(server, phones, pin)
    ids: dict[str, str] = {}
    for member in members:
        for phone in phones:
            seen = ph.phone_in(member, phone, ROSTER_TIMEOUT)
            if phone.in_room_at is None:
                phone.in_room_at = time.monotonic()
            assert ids.setdefault(phone.name, seen["id"]) == seen["id"], (ids, seen)
            assert seen["muted"] is False and seen["role"] == "guest", seen
    return ids


# -- (a) one phone, one browser, each codec ----------------------------------------------------


@pytest.mark.parametrize("codec", list(CODECS.values()), ids=list(CODECS))
def test_a_phone_and_a_browser_hear_each_other(crowd: Any, module_switchboard: Any,
                                               phones: PhoneBank, tmp_path: Path,
                                               codec: PhoneCodec) -> None:  # fmt: skip
    server = module_switchboard
    room, pin = f"phone-{codec.label.lower()}", {"PCMU": "61734021", "G722": "61734022",
                                                 "opus": "61734023"}[codec.label]
    ph.make_room(server, room, pin)
    phone = phones.add("Phone 700", 700.0, codec=codec)
    ada = _join(crowd, tmp_path, room, "Ada Lovelace", 1300)
    ids = _dial_in(server, [phone], pin, [ada])
    pid = ids[phone.name]
    people = ph.api_participants(server, room)
    assert {p["kind"] for p in people.values()} == {"phone", "browser"}, people
    expect = Expectations(f"{codec.label}: phone 700 Hz, browser 1300 Hz")
    expect.check(phone.codecs_in_use() == (codec.log_name, codec.log_name),
                 f"the phone talks {codec.label}", f"encoder, decoder: {phone.codecs_in_use()}")
    rate, channels = phone.recording_format()
    log.info("%s: the phone's recording is %d Hz, %d channels", codec.label, rate, channels)

    expect.attempt("the browser has the phone's audio with a level above 0",
                   lambda: _level_above_zero(ada, pid, "the phone"))
    expect.attempt("the browser hears the phone's 700 Hz (+-40 Hz)",
                   _browser_hears, ada, pid, "the phone", 700.0, [700.0, 1300.0],
                   MEDIA_RECHECK)
    _settled([phone])
    expect.attempt("the phone hears the browser's 1300 Hz (+-40 Hz), well above silence",
                   lambda: _phone_hears(phone, [1300.0], [700.0]))

    def no_prompt_in_the_room() -> str:
        assert phone.in_room_at is not None
        samples, r = phone.heard(time.monotonic() - phone.in_room_at - 1.0)
        speech = ph.speech_power(samples, r, [700.0, 1300.0])
        desc = f"speech band {speech:.1e} over the last {samples.size / r:.1f} s"
        assert speech < PROMPT_POWER, (f"the phone heard a prompt after joining a room that "
                                       f"has a browser in it (you are the only participant?): "
                                       f"{desc}")  # fmt: skip
        return desc

    expect.attempt("no prompt after the join (it is not alone: a browser is there)",
                   no_prompt_in_the_room)

    hung_up = phone.hangup()
    expect.attempt("the phone's call closes", lambda: phone.wait_closed(10))
    left = expect.attempt("the browser sees the phone leave within 3 s",
                          lambda: ph.wait_left(ada, pid, 3.0, "the phone"))
    if left is not None:
        expect.check(left.get("reason") == "hangup", "the reason is `hangup`", str(left))
    log.info("hangup to participant-left: %.2f s", time.monotonic() - hung_up)
    expect.verify()


# -- (b) two phones, two browsers ---------------------------------------------------------------


def test_two_phones_and_two_browsers_hear_the_three_others(crowd: Any, module_switchboard: Any,
                                                           phones: PhoneBank, tmp_path: Path
                                                           ) -> None:  # fmt: skip
    server = module_switchboard
    room, pin = "phones-and-browsers", "61734031"
    ph.make_room(server, room, pin)
    tones = {"Phone 500": 500.0, "Phone 900": 900.0, "Ada Lovelace": 1300.0,
             "Grace Hopper": 1700.0}
    freqs = list(tones.values())
    p500 = phones.add("Phone 500", 500.0)
    p900 = phones.add("Phone 900", 900.0, codec=CODECS["G722"])
    ada = _join(crowd, tmp_path, room, "Ada Lovelace", 1300)
    grace = _join(crowd, tmp_path, room, "Grace Hopper", 1700)
    ids = _dial_in(server, [p500, p900], pin, [ada, grace])
    ids.update({ada.name: ada.id, grace.name: grace.id})
    assert len(ph.api_participants(server, room)) == 4
    stats = server.api("GET", "/api/stats")
    assert (stats["participants"], stats["calls"]) == (4, 2), stats
    _settled([p500, p900])

    expect = Expectations("2 phones (500, 900 Hz) + 2 browsers (1300, 1700 Hz)")
    wait = MEDIA_WAIT  # the first source gets the full wait, the others are there by then
    for member in (ada, grace):
        for name, hz in tones.items():
            if name == member.name:
                continue
            expect.attempt(f"{member.name} hears {name} ({hz:g} Hz) from its participant",
                           _browser_hears, member, ids[name], name, hz, freqs, wait)
            wait = MEDIA_RECHECK

        def hears_others_not_self(m: Member = member) -> str:
            samples, rate = ph.inbound_mix(m, WINDOW_S)
            power = ph.bands(samples, rate, [*freqs, CONTROL_HZ])
            own = tones[m.name]
            others = [power[f] for f in freqs if f != own]
            desc = ph.describe(samples, rate, [*freqs, CONTROL_HZ])
            assert min(others) > MIN_POWER, f"{m.name}: a tone is missing from its mix: {desc}"
            assert power[own] < min(others) / 10, f"{m.name} hears itself: {desc}"
            return desc

        expect.attempt(f"{member.name}'s whole inbound audio has the three others, not itself",
                       hears_others_not_self)
    for phone in (p500, p900):
        own = phone.tone_hz
        expect.attempt(f"{phone.name} hears the three others and not itself",
                       _phone_hears, phone, [f for f in freqs if f != own], [own])
    expect.verify()


# -- (c) moderation seen from both sides --------------------------------------------------------


def test_moderation_of_a_phone_seen_from_both_sides(crowd: Any, module_switchboard: Any,
                                                    phones: PhoneBank, tmp_path: Path
                                                    ) -> None:  # fmt: skip
    server = module_switchboard
    room, pin = "phone-moderation", "61734041"
    ph.make_room(server, room, pin)
    phone = phones.add("Phone 700", 700.0)
    ada = _join(crowd, tmp_path, room, "Ada Lovelace", 1300)  # first: the moderator
    grace = _join(crowd, tmp_path, room, "Grace Hopper", 1700)
    members = [ada, grace]
    assert ada.messages("joined")[0]["self"]["role"] == "moderator"
    pid = _dial_in(server, [phone], pin, members)[phone.name]
    expect = Expectations("moderation of a phone")
    heard_before = {
        member.name: expect.attempt(f"{member.name} hears the phone before the mute",
                                    _browser_hears, member, pid, "the phone", 700.0, [700.0],
                                    MEDIA_WAIT if member is ada else MEDIA_RECHECK) is not None
        for member in members
    }  # fmt: skip
    _settled([phone])
    before, rate = phone.heard(WINDOW_S)
    speech_before = ph.speech_power(before, rate, [700.0, 1300.0, 1700.0])

    # The moderator mutes the phone from the participants pane.
    ada.page.click("#btn-people")
    ada.page.click(f'#people-list li[data-participant="{pid}"] '
                   f'button[aria-label="Mute {phone.name}"]')
    muted_at = time.monotonic()
    expect.attempt("both browsers show the phone muted",
                   lambda: _muted_in_rosters(members, pid, True))
    expect.attempt("the API shows the phone muted",
                   lambda: ph.until(ada, lambda: ph.api_participants(server, room)[pid]["muted"],
                                    3.0, "muted in the API"))  # fmt: skip
    for member in members:
        if heard_before[member.name]:
            expect.attempt(f"the phone's tone stops at {member.name}",
                           _silent_from, member, pid, 700.0)
        else:
            expect.check(False, f"the phone's tone stops at {member.name}",
                         "cannot tell: it never heard the phone")

    def heard_the_prompt() -> str:
        # From the mute on, however long the checks above took (the prompt is 4.2 s: a
        # fixed 2.5 s window taken late held only its tail).
        _wait_until(muted_at + 2.5)
        samples, r = phone.heard(min(time.monotonic() - muted_at, 8.0))
        speech = ph.speech_power(samples, r, [700.0, 1300.0, 1700.0])
        desc = (f"speech band {speech:.1e} (before the mute {speech_before:.1e}); "
                f"{ph.describe(samples, r, [1300.0, 1700.0])}")
        assert speech > PROMPT_POWER and speech > 10 * speech_before, (
            f"no prompt after the mute: {desc}")
        return desc

    expect.attempt("the phone hears a prompt after the mute", heard_the_prompt)

    # *6 on the phone unmutes it, *6 again mutes it: the browsers follow.
    phone.key("*6")
    expect.attempt("*6 unmutes: both browsers show it",
                   lambda: _muted_in_rosters(members, pid, False))
    expect.attempt("*6 unmutes: Grace hears the phone again",
                   _browser_hears, grace, pid, "the phone", 700.0, [700.0], MEDIA_RECHECK)
    phone.key("*6")
    expect.attempt("*6 again mutes: both browsers show it",
                   lambda: _muted_in_rosters(members, pid, True))

    # The moderator removes the phone.
    ada.page.click(f'#people-list li[data-participant="{pid}"] '
                   f'button[aria-label="Remove {phone.name} from the meeting"]')
    ada.page.click("dialog.confirm button.btn-danger")
    expect.attempt("the phone's call is closed (CALL_CLOSED)", lambda: phone.wait_closed(10))
    for member in members:
        left = expect.attempt(f"{member.name} sees the phone leave",
                              ph.wait_left, member, pid, 10.0, "the phone")
        if left is not None:
            expect.check(left.get("reason") == "kicked", f"{member.name}: the reason is "
                         f"`kicked`", str(left))  # fmt: skip
    expect.check(pid not in ph.api_participants(server, room), "the API no longer lists it")
    expect.verify()


# -- (d) leaving: hangup, lost phone, closed browser ---------------------------------------------


def test_phones_and_browsers_that_go_away(crowd: Any, module_switchboard: Any,
                                          phones: PhoneBank, tmp_path: Path) -> None:
    server = module_switchboard
    room, pin = "phone-leaving", "61734051"
    ph.make_room(server, room, pin)
    tasks_at_start = int(server.api("GET", "/api/stats")["tasks"])
    talker = phones.add("Phone 500", 500.0)
    lost = phones.add("Phone 900", 900.0)
    ada = _join(crowd, tmp_path, room, "Ada Lovelace", 1300)
    grace = _join(crowd, tmp_path, room, "Grace Hopper", 1700)
    ids = _dial_in(server, [talker, lost], pin, [ada, grace])
    _settled([talker, lost])
    expect = Expectations("phones and browsers going away")

    # A browser closes: its tone leaves the phones' mix, the other browser's stays.
    expect.attempt("the phone hears both browsers and the other phone",
                   _phone_hears, talker, [900.0, 1300.0, 1700.0], [500.0])
    crowd.leave(grace)
    ph.wait_left(ada, grace.id, 5.0, "Grace")
    time.sleep(1.5)
    expect.attempt("1.5 s after Grace's browser left, the phone hears Ada (and the other "
                   "phone), not Grace", _phone_hears, talker, [900.0, 1300.0], [1700.0, 500.0],
                   1.0)  # fmt: skip

    # A phone hangs up mid-tone.
    hung_up = talker.hangup()
    left = expect.attempt("Ada sees the phone that hung up leave within 3 s",
                          lambda: ph.wait_left(ada, ids[talker.name], 3.0, talker.name))
    if left is not None:
        expect.check(left.get("reason") == "hangup", "the reason is `hangup`", str(left))
    log.info("hangup to participant-left: %.2f s", time.monotonic() - hung_up)
    expect.attempt("its call closes", lambda: talker.wait_closed(5))

    # A phone whose RTP stops (baresip stopped with SIGSTOP) is removed after the timeout.
    lost.freeze()
    frozen_at = time.monotonic()
    ada.page.wait_for_timeout(2000)
    expect.check(ids[lost.name] in ph.roster(ada), "the silent phone is still there after 2 s")
    left = expect.attempt(f"the silent phone is removed (media.timeout {MEDIA_TIMEOUT:g} s)",
                          lambda: ph.wait_left(ada, ids[lost.name], MEDIA_TIMEOUT + 8, lost.name))
    if left is not None:
        after = time.monotonic() - frozen_at
        log.info("frozen phone removed after %.1f s", after)
        expect.check(after >= MEDIA_TIMEOUT - 1.0, "not before the timeout", f"{after:.1f} s")
        expect.check(left.get("reason") in ("timeout", "hangup"), "the reason is `timeout`",
                     str(left))
    lost.thaw()  # it answers the server's BYE now, as a phone whose network came back would
    expect.attempt("the silent phone's call is closed once it answers again",
                   lambda: lost.wait_closed(10))

    # The last browser goes: nothing is left on the server.
    crowd.leave(ada)
    zero = {"calls": 0, "legs": 0, "endpoints": 0, "participants": 0, "browsers": 0,
            "conferences": 0}
    expect.attempt(f"/api/stats: {zero}, tasks <= {tasks_at_start} within 15 s",
                   lambda: ph.wait_stats(server, zero, 15.0, max_tasks=tasks_at_start))
    expect.verify()

"""Acceptance tests of the browser-meetings issue: real headless Chromium against the real
`switchboard serve` (one server for the module, bridge.endpoint_timeout 5 s).

What is asserted comes from outside the page's logic wherever possible: getStats() of the
browser's RTCPeerConnection per remote source, matched to its sender by the applied offer's
`a=msid` (and checked against the offer's `tracks` map as it crossed the socket), the
signaling frames on the wire as Playwright saw them, the server's REST API, and the DOM.
Timings (join to first remote audio, leave to the tile going, ...) are measured, not
asserted beyond the issue's bounds: logged and kept in tests/browser/artifacts/figures-real.json.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from browser_harness import ARTIFACTS, Member, RemoteSource, screenshot
from playwright.sync_api import expect

log = logging.getLogger(__name__)

ENDPOINT_TIMEOUT = 5.0
SWITCHBOARD_CONFIG = {"bridge": {"endpoint_timeout": ENDPOINT_TIMEOUT}}
MEDIA_TIMEOUT = 25.0  # first packets and frames, on a shared 2-core machine


# -- helpers --------------------------------------------------------------------------------


def _figure(name: str, value: float | None, unit: str) -> None:
    """Log a measured figure and keep it in artifacts/figures-real.json for the report."""
    log.info("figure: %s = %s %s", name, value, unit)
    path = ARTIFACTS / "figures-real.json"
    try:
        figures = json.loads(path.read_text())
    except (OSError, ValueError):
        figures = {}
    figures[name] = {"value": value, "unit": unit, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")


def _until(member: Member, condition: Callable[[Member], Any], timeout: float,
           message: str) -> Any:  # fmt: skip
    """Poll `condition(member)`, letting Playwright deliver events between tries."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition(member)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{member.name}: timed out after {timeout:.0f} s waiting "
                                 f"for {message}")  # fmt: skip
        member.page.wait_for_timeout(100)


def _sources(member: Member) -> dict[str, list[RemoteSource]]:
    """Live remote sources by sending participant; the offer's `tracks` map must agree with
    the SDP's a=msid on every one of them."""
    out: dict[str, list[RemoteSource]] = {}
    for source in member.media():
        assert source.tracks_participant == source.participant, (
            f"{member.name}: mid {source.mid}: a=msid says {source.participant}, the offer's "
            f"tracks say {source.tracks_participant}")
        out.setdefault(source.participant, []).append(source)
    return out


def _pick(sources: Iterable[RemoteSource], kind: str, video_type: str | None = None
          ) -> RemoteSource | None:  # fmt: skip
    for s in sources:
        if s.kind == kind and (kind == "audio" or s.video_type == video_type):
            return s
    return None


def _flowing(member: Member, senders: Sequence[Member], *, video: bool = True,
             only: bool = True, gap: float = 1.5) -> None:  # fmt: skip
    """`member` receives, from each of `senders` separately, audio (packets rising, energy
    rising, an audio level above zero at some point) and, if `video`, camera video (frames
    decoded rising); if `only`, no source from anyone else."""
    want = {s.id for s in senders}

    def started(_: Member) -> bool:
        by = _sources(member)
        for sender in senders:
            audio = _pick(by.get(sender.id, []), "audio")
            if audio is None or audio.packets == 0 or audio.audio_energy <= 0:
                return False
            camera = _pick(by.get(sender.id, []), "video", "camera")
            if video and (camera is None or camera.frames == 0):
                return False
        return True

    _until(member, started, MEDIA_TIMEOUT, f"audio{' and video' if video else ''} from "
           f"{[s.name for s in senders]}")  # fmt: skip
    first = _sources(member)
    if only:
        assert set(first) == want, f"{member.name} receives from {set(first)}, expected {want}"
    member.page.wait_for_timeout(gap * 1000)
    later = _sources(member)
    for sender in senders:
        a0, a1 = _pick(first[sender.id], "audio"), _pick(later.get(sender.id, []), "audio")
        assert a0 and a1 and a1.packets > a0.packets, \
            f"{member.name}: audio packets from {sender.name} stopped: {a0} -> {a1}"
        assert a1.audio_energy > a0.audio_energy, \
            f"{member.name}: no audio energy from {sender.name}: {a0} -> {a1}"
        if video:
            v0 = _pick(first[sender.id], "video", "camera")
            v1 = _pick(later.get(sender.id, []), "video", "camera")
            assert v0 and v1 and v1.frames > v0.frames, \
                f"{member.name}: frames from {sender.name} stopped: {v0} -> {v1}"

    # The level: the fake microphone beeps, so it is above zero some of the time.
    def level_from_all(_: Member) -> bool:
        by = _sources(member)
        for sender in senders:
            audio = _pick(by.get(sender.id, []), "audio")
            levels[sender.id] = max(levels.get(sender.id, 0.0), audio.audio_level if audio else 0)
        return all(levels.get(s.id, 0) > 0 for s in senders)

    levels: dict[str, float] = {}
    _until(member, level_from_all, 10, f"an audio level above zero from each of "
           f"{[s.name for s in senders]}")  # fmt: skip


def _everyone_flows(members: Sequence[Member], *, video: bool = True) -> None:
    for member in members:
        _flowing(member, [m for m in members if m is not member], video=video)


def _audio_packets(member: Member, sender: Member) -> int:
    audio = _pick(_sources(member).get(sender.id, []), "audio")
    return audio.packets if audio else -1


def _roster(server: Any, room: str) -> dict[str, dict[str, Any]]:
    people = server.api("GET", f"/api/rooms/{room}/participants")
    items = people.get("participants", people) if isinstance(people, dict) else people
    return {p["id"]: p for p in items}


def _tile(member: Member, pid: str) -> Any:
    return member.page.locator(f'#grid .tile[data-participant="{pid}"]')


# -- the tests -------------------------------------------------------------------------------


def test_two_then_three_browsers_hear_and_see_each_other(crowd: Any, module_switchboard: Any
                                                         ) -> None:  # fmt: skip
    room = "acceptance-media"
    ada = crowd.join(room, "Ada Lovelace", measure=True)
    grace = crowd.join(room, "Grace Hopper", measure=True)
    _everyone_flows([ada, grace])
    katherine = crowd.join(room, "Katherine Johnson", measure=True)
    members = [ada, grace, katherine]
    _everyone_flows(members)

    assert set(_roster(module_switchboard, room)) == {m.id for m in members}
    stats = module_switchboard.api("GET", "/api/stats")
    assert (stats["endpoints"], stats["browsers"], stats["participants"]) == (3, 3, 3), stats
    assert ada.messages("joined")[0]["self"]["role"] == "moderator"
    for member in members:
        expect(member.page.locator("#grid .tile")).to_have_count(3)
        for other in members:
            expect(_tile(member, other.id)).to_have_count(1)
            if other is not member:
                expect(_tile(member, other.id)).not_to_have_class(re.compile("video-hidden"))
        assert member.browser.errors(member.page) == []
    screenshot(ada.page, "room-3-real")

    for member, others in ((grace, 1), (katherine, 2)):
        timing = member.join_timing()
        _figure(f"join click to first remote audio packet ({others} in the room)",
                timing["audio_ms"], "ms")  # fmt: skip
        _figure(f"join click to first remote video frame decoded ({others} in the room)",
                timing["frame_ms"], "ms")  # fmt: skip
        assert timing["audio_ms"] is not None, f"{member.name}: no remote audio measured"


def test_screen_share_reaches_the_others(crowd: Any) -> None:
    room = "acceptance-screen"
    ada = crowd.join(room, "Ada Lovelace")  # camera on: her screen is a second video source
    grace = crowd.join(room, "Grace Hopper", camera=False)
    katherine = crowd.join(room, "Katherine Johnson", camera=False)
    for viewer in (grace, katherine):
        _flowing(viewer, [ada], only=False)
        _flowing(viewer, [m for m in (grace, katherine) if m is not viewer], video=False,
                 only=False)  # fmt: skip

    ada.page.click("#btn-screen")
    expect(ada.page.locator("#stage")).to_have_class(re.compile("has-screen"))
    for viewer in (grace, katherine):
        def screen(v: Member) -> RemoteSource | None:
            found = _pick(_sources(v).get(ada.id, []), "video", "screen")
            return found if found is not None and found.frames > 0 else None

        first = _until(viewer, screen, MEDIA_TIMEOUT, "frames of Ada's screen")
        camera = _pick(_sources(viewer)[ada.id], "video", "camera")
        assert camera is not None and not camera.ssrcs & first.ssrcs, (camera, first)
        viewer.page.wait_for_timeout(2000)
        later = screen(viewer)
        assert later is not None and later.frames > first.frames, \
            f"{viewer.name}: Ada's screen frames stopped: {first} -> {later}"
        camera_later = _pick(_sources(viewer)[ada.id], "video", "camera")
        assert camera_later is not None and camera_later.frames > camera.frames, \
            f"{viewer.name}: Ada's camera stopped while she shares her screen"
        # Nobody else's screen.
        assert not any(_pick(_sources(viewer).get(o.id, []), "video", "screen")
                       for o in (grace, katherine))
        expect(viewer.page.locator("#stage")).to_have_class(re.compile("has-screen"))
        expect(viewer.page.locator("#screen-area")).to_contain_text("Ada Lovelace is presenting")
        viewer.page.wait_for_function(
            "() => [...document.querySelectorAll('#screen-area video')]"
            ".some((v) => v.videoWidth > 0 && v.currentTime > 0)", timeout=10_000)
    screenshot(grace.page, "room-screen-real")

    ada.page.click("#btn-screen")  # stop sharing: the screen source goes away everywhere
    for viewer in (grace, katherine):
        _until(viewer, lambda v: _pick(_sources(v).get(ada.id, []), "video", "screen")
               is None, 10, "Ada's screen source to go away")  # fmt: skip
        expect(viewer.page.locator("#stage")).not_to_have_class(re.compile("has-screen"))
        _flowing(viewer, [ada], only=False)  # her camera goes on
        _flowing(viewer, [m for m in (grace, katherine) if m is not viewer], video=False,
                 only=False)  # fmt: skip


def test_chat_reaches_the_room_and_no_one_else(crowd: Any) -> None:
    room, other_room = "acceptance-chat", "acceptance-elsewhere"
    ada = crowd.join(room, "Ada Lovelace", camera=False)
    grace = crowd.join(room, "Grace Hopper", camera=False)
    outsider = crowd.join(other_room, "Linus Outsider", camera=False)
    text = "The minutes are at https://example.test/minutes, please read them"

    ada.page.click("#btn-chat")
    ada.page.fill("#chat-input", text)
    ada.page.keyboard.press("Enter")
    for member in (ada, grace):
        chats = _until(member, lambda m: m.messages("chat"), 5, "the chat message")
        assert len(chats) == 1, chats
        msg = chats[0]
        assert (msg["from"], msg["name"], msg["text"]) == (ada.id, "Ada Lovelace", text), msg
        assert abs(msg["ts"] - time.time()) < 30, msg
        expect(member.page.locator("#chat-log .chat-msg .chat-text")).to_have_text([text])
    expect(grace.page.locator("#chat-log .chat-msg .chat-from")).to_have_text(["Ada Lovelace"])
    expect(ada.page.locator("#chat-log .chat-msg .chat-from")).to_have_text(["You"])
    expect(grace.page.locator("#btn-chat")).to_contain_text("1")  # the unread badge

    # The other room's member says something too; nothing crosses between the rooms.
    outsider.page.click("#btn-chat")
    outsider.page.fill("#chat-input", "anyone here?")
    outsider.page.keyboard.press("Enter")
    _until(outsider, lambda _: outsider.messages("chat"), 5, "its own chat message back")
    for member in (ada, grace, outsider):
        member.page.wait_for_timeout(1000)
    assert [m["text"] for m in outsider.messages("chat")] == ["anyone here?"]
    expect(outsider.page.locator("#chat-log .chat-msg .chat-text")).to_have_text(["anyone here?"])
    for member in (ada, grace):
        assert [m["text"] for m in member.messages("chat")] == [text]
        assert not any(m.get("id") == outsider.id or
                       (m.get("participant") or {}).get("id") == outsider.id
                       for m in member.messages())  # fmt: skip
    screenshot(grace.page, "room-chat-real")


def test_moderator_mutes_a_participant(crowd: Any, module_switchboard: Any) -> None:
    room = "acceptance-mute"
    ada = crowd.join(room, "Ada Lovelace", camera=False)  # first: the moderator
    grace = crowd.join(room, "Grace Hopper", camera=False)
    katherine = crowd.join(room, "Katherine Johnson", camera=False)
    members = [ada, grace, katherine]
    _everyone_flows(members, video=False)
    assert ada.messages("joined")[0]["self"]["role"] == "moderator"
    assert grace.messages("joined")[0]["self"]["role"] == "guest"

    # A guest cannot mute anyone (crafted on Grace's own socket).
    grace.page.evaluate("(id) => window.switchboard.meeting.sig.send('moderate', "
                        "{action: 'mute', target: id})", ada.id)  # fmt: skip
    err = _until(grace, lambda _: grace.messages("error"), 5, "an error for a guest's mute")
    assert (err[-1]["code"], err[-1].get("ref")) == ("forbidden", "moderate"), err
    assert not _roster(module_switchboard, room)[ada.id]["muted"]

    ada.page.click("#btn-people")
    ada.page.click(f'#people-list li[data-participant="{grace.id}"] '
                   f'button[aria-label="Mute Grace Hopper"]')
    clicked = time.monotonic()
    muted = _until(grace, lambda _: grace.messages("muted"), 5, "the `muted` message")
    assert muted[0]["by"] == ada.id, muted
    # Grace's page shows it, stops her microphone and tells the room.
    expect(grace.page.locator("#toasts")).to_contain_text("Ada Lovelace muted you")
    expect(grace.page.locator("#btn-mic")).to_have_attribute("aria-pressed", "false")
    assert grace.page.evaluate("() => window.switchboard.meeting.local.mic.enabled") is False
    _until(grace, lambda _: {"type": "media", "audio": False, "video": False, "screen": False}
           in grace.browser.messages(grace.page, "media", sent=True), 5,
           "a `media` message with audio off")  # fmt: skip
    assert _roster(module_switchboard, room)[grace.id]["muted"] is True

    # Her audio stops reaching the others; theirs keeps flowing.
    for listener in (ada, katherine):
        def stopped(m: Member) -> bool:
            before = _audio_packets(m, grace)
            assert before > 0, f"{m.name}: Grace's audio source is gone"
            m.page.wait_for_timeout(1000)
            return _audio_packets(m, grace) == before
        _until(listener, stopped, 8, "Grace's audio packets to stop")
        _figure(f"mute click to the muted audio stopping at {listener.name} (1 s samples)",
                round(time.monotonic() - clicked, 1), "s")  # fmt: skip
    _flowing(ada, [katherine], video=False, only=False)
    _flowing(katherine, [ada], video=False, only=False)
    expect(ada.page.locator(f'#people-list li[data-participant="{grace.id}"]')).to_contain_text(
        "Grace Hopper")  # fmt: skip

    # Nobody can unmute her: no such button for the moderator, and a crafted `moderate`
    # with an unmute action is refused.
    row = ada.page.locator(f'#people-list li[data-participant="{grace.id}"]')
    expect(row.locator('button[aria-label="Grace Hopper is muted"]')).to_be_disabled()
    expect(ada.page.locator('#people-list button[aria-label^="Unmute"]')).to_have_count(0)
    errors_before = len(ada.messages("error"))
    ada.page.evaluate("(id) => window.switchboard.meeting.sig.send('moderate', "
                      "{action: 'unmute', target: id})", grace.id)  # fmt: skip
    err = _until(ada, lambda _: ada.messages("error")[errors_before:], 5, "an error for unmute")
    assert err[0]["code"] == "bad-message" and err[0]["message"].startswith("action"), err
    assert err[0].get("ref") == "moderate", err
    before = _audio_packets(ada, grace)
    ada.page.wait_for_timeout(1500)
    assert _audio_packets(ada, grace) == before, "Grace's audio came back without her"
    assert _roster(module_switchboard, room)[grace.id]["muted"] is True

    # Only she can unmute herself: then the others hear her again.
    grace.page.click("#btn-mic")
    expect(grace.page.locator("#btn-mic")).to_have_attribute("aria-pressed", "true")
    _flowing(ada, [grace, katherine], video=False)
    _flowing(katherine, [ada, grace], video=False)
    assert _roster(module_switchboard, room)[grace.id]["muted"] is False


def test_a_participant_who_leaves_disappears_within_two_seconds(crowd: Any,
                                                               module_switchboard: Any
                                                               ) -> None:  # fmt: skip
    room = "acceptance-leave"
    ada = crowd.join(room, "Ada Lovelace", camera=False)
    grace = crowd.join(room, "Grace Hopper", camera=True)
    katherine = crowd.join(room, "Katherine Johnson", camera=False)
    others = [ada, katherine]
    for member in others:
        _flowing(member, [m for m in (ada, grace, katherine) if m is not member], video=False)
        expect(_tile(member, grace.id)).to_have_count(1)
        # Note (wall clock, ms) when Grace's tile goes; polled every 10 ms.
        member.page.evaluate("""(id) => {
          window.__goneAt = null;
          const timer = setInterval(() => {
            if (!document.querySelector(`#grid .tile[data-participant="${id}"]`)) {
              window.__goneAt = Date.now();
              clearInterval(timer);
            }
          }, 10);
        }""", grace.id)
    clicked_at = grace.page.evaluate("() => Date.now()")
    grace.page.click("#btn-leave")
    expect(grace.page.locator("#ended")).to_be_visible()
    for member in others:
        gone = _until(member, lambda m: m.page.evaluate("() => window.__goneAt"), 5,
                      "Grace's tile to go")  # fmt: skip
        delay = (gone - clicked_at) / 1000
        _figure(f"leave click to the tile going at {member.name}", round(delay * 1000), "ms")
        assert delay <= 2.0, f"{member.name}: Grace's tile stayed {delay:.2f} s"
        left = [m for m in member.messages("participant-left") if m["id"] == grace.id]
        assert [m["reason"] for m in left] == ["left"], left
        expect(member.page.locator("#grid .tile")).to_have_count(2)
    assert set(_roster(module_switchboard, room)) == {ada.id, katherine.id}
    # Her sources go away from the others' offers, and the two carry on.
    for member in others:
        _until(member, lambda m: grace.id not in _sources(m), 5,
               "Grace's sources to go away")  # fmt: skip
    _flowing(ada, [katherine], video=False)
    _flowing(katherine, [ada], video=False)


def test_a_participant_who_loses_the_network_is_removed_after_the_timeout(
        crowd: Any, module_switchboard: Any) -> None:  # fmt: skip
    room = "acceptance-lost"
    ada = crowd.join(room, "Ada Lovelace")
    grace = crowd.join(room, "Grace Hopper")
    katherine = crowd.join(room, "Katherine Johnson", camera=False)
    for member in (ada, grace):
        _flowing(member, [m for m in (ada, grace) if m is not member], only=False)
        _flowing(member, [katherine], video=False, only=False)
    _flowing(katherine, [ada, grace])

    # Katherine's Chromium stops dead: its sockets stay open, nothing more comes from it.
    katherine.browser.freeze()
    frozen = time.monotonic()
    ada.page.wait_for_timeout(2000)
    assert katherine.id in _roster(module_switchboard, room), \
        "removed within 2 s: not by a timeout (the server cannot know yet)"

    def removed(_: Member) -> bool:
        return katherine.id not in _roster(module_switchboard, room)

    _until(ada, removed, ENDPOINT_TIMEOUT + 8, "the server to remove Katherine")
    after = time.monotonic() - frozen
    _figure(f"frozen browser to its removal (bridge.endpoint_timeout {ENDPOINT_TIMEOUT:g} s)",
            round(after, 1), "s")  # fmt: skip
    assert after >= ENDPOINT_TIMEOUT - 1.0, f"removed after {after:.1f} s: before the timeout"
    for member in (ada, grace):
        left = _until(member, lambda m: [x for x in m.messages("participant-left")
                                                if x["id"] == katherine.id], 5,
                      "participant-left for Katherine")  # fmt: skip
        assert [x["reason"] for x in left] == ["timeout"], left
        expect(_tile(member, katherine.id)).to_have_count(0)
        expect(member.page.locator("#toasts")).to_contain_text("Katherine Johnson lost their "
                                                               "connection")  # fmt: skip
    stats = module_switchboard.api("GET", "/api/stats")
    assert (stats["endpoints"], stats["participants"]) == (2, 2), stats
    # The two others carry on: media both ways, from each other only.
    for member in (ada, grace):
        _until(member, lambda m: katherine.id not in _sources(m), 5,
               "Katherine's sources to go away")  # fmt: skip
    _flowing(ada, [grace])
    _flowing(grace, [ada])
    katherine.browser.kill()

"""The meeting page in Chromium against the scripted signaling server (no media flows).

The fake room holds Ada (moderator, camera on), Grace (muted, hand raised) and a phone caller;
the browser under test joins as the fake server's `role` (moderator by default).
"""

from __future__ import annotations

import re
import time
from typing import Any

from browser_harness import join_meeting, remote_tracks, screenshot, wait_for
from fake_signaling import participant
from playwright.sync_api import Page, expect

ROOM = "team-standup"


def _sdp_sections(sdp: str) -> dict[str, str]:
    """mid -> its m-section's text."""
    out = {}
    for section in sdp.split("\r\nm=")[1:]:
        mid = re.search(r"a=mid:(\S+)", section)
        assert mid, section
        out[mid.group(1)] = section
    return out


def _direction(section: str) -> str:
    found = re.findall(r"^a=(sendrecv|sendonly|recvonly|inactive)\r?$", section, re.M)
    assert len(found) == 1, section
    return str(found[0])


def _joined(browser: Any, fake_server: Any, name: str = "Linus Example", **kw: Any) -> Page:
    page: Page = browser.open(f"{fake_server.url}/{ROOM}")
    join_meeting(page, name, **kw)
    expect(page.locator("#grid .tile")).to_have_count(1 + len(fake_server.participants))
    wait_for(lambda: fake_server.messages("answer"), message="the answer to the first offer")
    return page


def _assert_tiles_fit(page: Page) -> None:
    """Every tile lies inside the stage (no overflow, no wrapped-away row)."""
    grid = page.locator("#grid").bounding_box()
    assert grid is not None
    for tile in page.locator("#grid .tile").all():
        box = tile.bounding_box()
        assert box is not None
        assert box["x"] >= grid["x"] - 1 and box["y"] >= grid["y"] - 1, (box, grid)
        assert box["x"] + box["width"] <= grid["x"] + grid["width"] + 1, (box, grid)
        assert box["y"] + box["height"] <= grid["y"] + grid["height"] + 1, (box, grid)


def _tile(page: Page, pid: str) -> Any:
    return page.locator(f'#grid .tile[data-participant="{pid}"]')


def test_prejoin_shows_a_live_preview_and_devices(browser: Any, fake_server: Any) -> None:
    page = browser.open(f"{fake_server.url}/{ROOM}")
    page.wait_for_selector("#join-button:not([disabled])")
    page.wait_for_function(
        "() => document.querySelector('#preview-video').videoWidth > 0", timeout=10_000
    )
    expect(page.locator("#preview-box")).to_have_class(re.compile("camera-on"))
    assert page.locator("#mic-select option").count() >= 1
    assert page.locator("#cam-select option").count() >= 1
    expect(page.locator("#mic-select option").first).to_have_text(re.compile(r"\S"))
    # The fake microphone beeps: the level meter moves.
    page.wait_for_function(
        "() => parseFloat(document.querySelector('#mic-level').style.transform.slice(7)) > 0.05",
        timeout=10_000,
    )
    page.fill("#name-input", "Linus Example")
    expect(page.locator("#preview-avatar")).to_have_text("LE")
    screenshot(page, "prejoin-desktop")
    # Camera off: the preview gives way to the avatar.
    page.click("#pre-cam")
    expect(page.locator("#preview-box")).not_to_have_class(re.compile("camera-on"))
    expect(page.locator("#pre-cam")).to_have_attribute("aria-pressed", "false")
    assert browser.errors(page) == []


def test_prejoin_needs_a_name_and_remembers_it(browser: Any, fake_server: Any) -> None:
    page = browser.open(f"{fake_server.url}/{ROOM}")
    page.wait_for_selector("#join-button:not([disabled])")
    page.fill("#name-input", "   ")
    page.click("#join-button")
    expect(page.locator("#prejoin-error")).to_be_visible()
    assert fake_server.messages("join") == []
    join_meeting(page, "Margaret Hamilton")
    page.goto(f"{fake_server.url}/{ROOM}")
    expect(page.locator("#name-input")).to_have_value("Margaret Hamilton")
    page.goto(f"{fake_server.url}/")
    expect(page.locator("#recent-list a")).to_have_text([re.compile(ROOM)])


def test_join_shows_everyone_and_negotiates_the_offer(browser: Any, fake_server: Any) -> None:
    page = _joined(browser, fake_server)
    join = fake_server.messages("join")[0]
    assert join == {"type": "join", "version": 1, "room": ROOM, "name": "Linus Example",
                    "audio": True, "video": True}

    # One tile each: names, the phone icon, Grace's hand and mute, our own camera.
    expect(page.locator("#grid .tile .tile-name")).to_have_text(
        ["Linus Example (you)", "Ada Lovelace", "Grace Hopper", "+1 555 •••• 42"]
    )
    expect(_tile(page, "p-grace").locator(".tile-hand")).to_be_visible()
    expect(_tile(page, "p-grace").locator(".tile-mic")).to_be_visible()
    expect(_tile(page, "p-phone").locator(".tile-kind")).to_be_visible()
    expect(_tile(page, "p-ada").locator(".tile-hand")).to_be_hidden()
    self_tile = page.locator("#grid .tile.self")
    expect(self_tile).not_to_have_class(re.compile("video-hidden"))
    page.wait_for_function(
        "() => document.querySelector('#grid .tile.self video').videoWidth > 0", timeout=10_000
    )
    # Ada's camera is announced but no frames arrive from the fake: her avatar shows.
    expect(_tile(page, "p-ada")).to_have_class(re.compile("video-hidden"))
    expect(page.locator("#btn-people .badge")).to_have_text("4")

    # The answer: our slots sendonly (mic, camera) and inactive (screen); every source of the
    # others received; the revision of the offer.
    answer = fake_server.messages("answer")[0]
    assert answer["revision"] == 1
    sections = _sdp_sections(answer["sdp"])
    assert list(sections)[:3] == ["a0", "v0", "s0"]
    assert _direction(sections["a0"]) == "sendonly" and "a=ssrc:" in sections["a0"]
    assert _direction(sections["v0"]) == "sendonly" and "a=ssrc:" in sections["v0"]
    assert _direction(sections["s0"]) == "inactive"
    for mid in list(sections)[3:]:
        assert _direction(sections[mid]) == "recvonly", mid
    assert "a=candidate:" in answer["sdp"], "the server does not trickle: candidates go in"

    tracks = remote_tracks(page)
    assert tracks == {
        "r1": {"participant": "p-ada", "kind": "audio", "video_type": None},
        "r2": {"participant": "p-ada", "kind": "video", "video_type": "camera"},
        "r3": {"participant": "p-grace", "kind": "audio", "video_type": None},
        "r4": {"participant": "p-grace", "kind": "video", "video_type": "camera"},
        "r5": {"participant": "p-phone", "kind": "audio", "video_type": None},
    }
    # One <audio> per remote audio source.
    assert page.locator("#audio-sink audio").count() == 3
    _assert_tiles_fit(page)
    time.sleep(0.5)  # let the clock and the level meters tick once for the picture
    screenshot(page, "room-3-fake-desktop")
    assert browser.errors(page) == []


def test_three_people_on_a_phone(phone_browser: Any, fake_server: Any) -> None:
    page = _joined(phone_browser, fake_server)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the phone"
    for button in page.locator(".toolbar .tool:visible").all():
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    for tile in page.locator("#grid .tile").all():
        box = tile.bounding_box()
        assert box is not None and box["width"] >= 150, box
    expect(page.locator("#btn-info")).to_be_hidden()  # the top bar's (i) instead
    _assert_tiles_fit(page)
    time.sleep(0.5)
    screenshot(page, "room-3-fake-phone")
    page.click("#btn-chat")
    expect(page.locator("#panel")).to_be_visible()
    box = page.locator("#panel").bounding_box()
    assert box is not None and box["width"] == 390, "the chat takes the whole phone screen"
    page.fill("#chat-input", "On my phone")
    page.press("#chat-input", "Enter")
    expect(page.locator("#chat-log .chat-msg .chat-text")).to_have_text(["On my phone"])
    screenshot(page, "room-chat-phone")
    page.click("#panel-close")
    expect(page.locator("#panel")).to_be_hidden()
    page.click("#topbar-info")
    expect(page.locator("#dialin-pin")).to_be_visible()
    screenshot(page, "room-info-phone")
    assert phone_browser.errors(page) == []


def test_chat_history_sending_and_unread_badge(browser: Any, fake_server: Any) -> None:
    now = time.time()
    fake_server.chat.extend([
        {"type": "chat", "from": "p-ada", "name": "Ada Lovelace",
         "text": "Agenda: https://example.com/agenda", "ts": now - 300},
        {"type": "chat", "from": "p-ada", "name": "Ada Lovelace", "text": "Grace is first.",
         "ts": now - 290},
    ])
    page = _joined(browser, fake_server)
    expect(page.locator("#btn-chat .badge")).to_be_hidden()  # history is not unread

    page.click("#btn-chat")
    log = page.locator("#chat-log")
    expect(log.locator(".chat-text")).to_have_text(
        ["Agenda: https://example.com/agenda", "Grace is first."]
    )
    link = log.locator("a")
    expect(link).to_have_attribute("href", "https://example.com/agenda")
    expect(link).to_have_attribute("rel", "noopener noreferrer")

    page.fill("#chat-input", "Hello <b>everyone</b>")
    page.press("#chat-input", "Enter")
    expect(log.locator(".chat-msg").last.locator(".chat-from")).to_have_text("You")
    expect(log.locator(".chat-text").last).to_have_text("Hello <b>everyone</b>")  # not HTML
    assert fake_server.messages("chat")[-1] == {"type": "chat", "text": "Hello <b>everyone</b>"}
    expect(page.locator("#chat-input")).to_have_value("")
    _assert_tiles_fit(page)  # the stage narrowed for the panel, and the tiles with it
    screenshot(page, "room-chat-desktop")

    # Panel closed: a new message shows a badge and a toast; opening the chat clears it.
    page.click("#btn-chat")
    fake_server.push({"type": "chat", "from": "p-grace", "name": "Grace Hopper",
                      "text": "Found a bug", "ts": time.time()})
    expect(page.locator("#btn-chat .badge")).to_have_text("1")
    expect(page.locator("#toasts")).to_contain_text("Grace Hopper: Found a bug")
    assert page.title().startswith("(1) ")
    page.keyboard.press("c")
    expect(page.locator("#btn-chat .badge")).to_be_hidden()
    expect(log.locator(".chat-text").last).to_have_text("Found a bug")


def test_joins_leaves_and_updates_show_within_two_seconds(browser: Any, fake_server: Any
                                                          ) -> None:
    page = _joined(browser, fake_server)
    fake_server.add_participant(participant("p-alan", "Alan Turing"))
    expect(_tile(page, "p-alan")).to_be_visible(timeout=2000)
    expect(page.locator("#toasts")).to_contain_text("Alan Turing joined")
    wait_for(lambda: "p-alan" in {t["participant"] for t in remote_tracks(page).values()},
             message="Alan's sources in the new offer")

    fake_server.remove_participant("p-ada")
    expect(_tile(page, "p-ada")).to_have_count(0, timeout=2000)
    expect(page.locator("#toasts")).to_contain_text("Ada Lovelace left")
    wait_for(lambda: "p-ada" not in {t["participant"] for t in remote_tracks(page).values()},
             message="Ada's sources gone from the page")
    answer = fake_server.messages("answer")[-1]
    sections = _sdp_sections(answer["sdp"])
    assert _direction(sections["r1"]) == "inactive"  # Ada's m-lines stay, inactive

    grace = participant("p-grace", "Grace Hopper", audio=False, hand=False)
    fake_server.push({"type": "participant-updated", "participant": grace})
    expect(_tile(page, "p-grace").locator(".tile-hand")).to_be_hidden(timeout=2000)
    fake_server.push({"type": "participant-updated",
                      "participant": {**grace, "hand": True, "name": "Rear Admiral Hopper"}})
    expect(_tile(page, "p-grace").locator(".tile-name")).to_have_text("Rear Admiral Hopper")
    expect(page.locator("#toasts")).to_contain_text("raised their hand")


def test_keyboard_shortcuts_and_media_messages(browser: Any, fake_server: Any) -> None:
    page = _joined(browser, fake_server)
    page.keyboard.press("m")
    expect(page.locator("#btn-mic")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#btn-mic")).to_have_attribute("aria-label", "Unmute microphone (M)")
    wait_for(lambda: fake_server.messages("media"), message="a media message")
    assert fake_server.messages("media")[-1] == {
        "type": "media", "audio": False, "video": True, "screen": False}
    assert page.evaluate("window.switchboard.meeting.local.mic.enabled") is False
    expect(page.locator("#grid .tile.self .tile-mic")).to_be_visible()

    page.keyboard.press("m")
    wait_for(lambda: fake_server.messages("media")[-1]["audio"] is True, message="unmute")

    # Camera off stops sending on v0: a new offer is asked for and answered inactive.
    offers_before = len(fake_server.messages("answer"))
    page.keyboard.press("v")
    expect(page.locator("#btn-cam")).to_have_class(re.compile(r"\boff\b"))
    wait_for(lambda: fake_server.messages("renegotiate"), message="renegotiate")
    wait_for(lambda: len(fake_server.messages("answer")) > offers_before, message="new answer")
    sections = _sdp_sections(fake_server.messages("answer")[-1]["sdp"])
    assert _direction(sections["v0"]) == "inactive"
    assert fake_server.messages("media")[-1]["video"] is False
    expect(page.locator("#grid .tile.self")).to_have_class(re.compile("video-hidden"))

    page.keyboard.press("h")
    wait_for(lambda: fake_server.messages("hand"), message="hand")
    assert fake_server.messages("hand")[-1] == {"type": "hand", "raised": True}
    expect(page.locator("#grid .tile.self .tile-hand")).to_be_visible()

    # Typing in the chat is not a shortcut.
    page.keyboard.press("c")
    expect(page.locator("#chat-input")).to_be_focused()
    page.keyboard.type("mvh")
    expect(page.locator("#chat-input")).to_have_value("mvh")
    page.keyboard.press("Escape")
    expect(page.locator("#panel")).to_be_hidden()

    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    expect(page.locator("#shortcut-list")).to_contain_text("Mute or unmute the microphone")
    assert browser.errors(page) == []


def test_screen_share_renegotiates_and_takes_the_stage(browser: Any, fake_server: Any) -> None:
    page = _joined(browser, fake_server)
    answers = len(fake_server.messages("answer"))
    page.click("#btn-screen")
    wait_for(lambda: len(fake_server.messages("answer")) > answers, message="answer with s0")
    sections = _sdp_sections(fake_server.messages("answer")[-1]["sdp"])
    assert _direction(sections["s0"]) == "sendonly" and "a=ssrc:" in sections["s0"]
    assert {"type": "media", "audio": True, "video": True, "screen": True} in \
        fake_server.messages("media")
    expect(page.locator("#stage")).to_have_class(re.compile("has-screen"))
    expect(page.locator("#screen-area")).to_contain_text("You are presenting")

    # A remote presenter takes the stage; ours is not shown back to us.
    page.click("#screen-area [data-action='stop-screen']")
    expect(page.locator("#stage")).not_to_have_class(re.compile("has-screen"))
    ada = participant("p-ada", "Ada Lovelace", role="moderator", screen=True)
    fake_server.participants[0] = ada
    fake_server.push({"type": "participant-updated", "participant": ada})
    fake_server.push({"type": "renegotiate-now"})  # ignored by the page: unknown type
    fake_server.add_participant(participant("p-x", "Extra"))  # sends a new offer to all
    expect(page.locator("#screen-area")).to_contain_text("Ada Lovelace is presenting")
    expect(page.locator("#screen-area .screen-wait")).to_be_visible()  # no frames from a fake
    screenshot(page, "room-screen-desktop")
    assert browser.errors(page) == []


def test_moderator_mute_from_the_server(browser: Any, fake_server: Any) -> None:
    page = _joined(browser, fake_server)
    fake_server.push({"type": "muted", "by": "p-ada", "kind": "audio"})
    expect(page.locator("#btn-mic")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#toasts")).to_contain_text("Ada Lovelace muted you")
    assert page.evaluate("window.switchboard.meeting.local.mic.enabled") is False
    wait_for(lambda: fake_server.messages("media"), message="media after being muted")
    assert fake_server.messages("media")[-1]["audio"] is False
    # Only we can unmute ourselves.
    page.click("#btn-mic")
    wait_for(lambda: fake_server.messages("media")[-1]["audio"] is True, message="unmute")


def test_moderator_actions_in_the_participants_pane(browser: Any, fake_server: Any) -> None:
    page = _joined(browser, fake_server)
    page.click("#btn-people")
    pane = page.locator("#people-list")
    expect(pane.locator(".person")).to_have_count(4)
    expect(page.locator("#panel-title")).to_have_text("Participants (4)")
    screenshot(page, "room-people-desktop")

    page.click('#people-list [aria-label="Mute Ada Lovelace"]')
    wait_for(lambda: fake_server.messages("moderate"), message="moderate mute")
    assert fake_server.messages("moderate")[-1] == {
        "type": "moderate", "action": "mute", "target": "p-ada"}
    expect(_tile(page, "p-ada").locator(".tile-mic")).to_be_visible()

    page.click('#people-list [aria-label="Remove +1 555 •••• 42 from the meeting"]')
    dialog = page.locator("dialog.confirm")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Remove", exact=True).click()
    wait_for(lambda: len(fake_server.messages("moderate")) == 2, message="moderate kick")
    assert fake_server.messages("moderate")[-1] == {
        "type": "moderate", "action": "kick", "target": "p-phone"}
    expect(_tile(page, "p-phone")).to_have_count(0)
    expect(page.locator("#toasts")).to_contain_text("was removed")

    page.click("#mute-all")
    wait_for(lambda: len(fake_server.messages("moderate")) == 3, message="mute-all")
    assert fake_server.messages("moderate")[-1] == {"type": "moderate", "action": "mute-all"}


def test_guests_see_no_moderator_actions(browser: Any, fake_server: Any) -> None:
    fake_server.role = "guest"
    page = _joined(browser, fake_server)
    page.click("#btn-people")
    expect(page.locator("#people-list .person")).to_have_count(4)
    expect(page.locator("#people-actions")).to_be_hidden()
    assert page.locator("#people-list button").count() == 0


def test_dial_in_details(browser: Any, fake_server: Any) -> None:
    page = _joined(browser, fake_server)
    page.keyboard.press("i")
    expect(page.locator("#panel-title")).to_have_text("Meeting details")
    expect(page.locator("#info-link")).to_have_text(f"{fake_server.url}/{ROOM}")
    expect(page.locator("#dialin-numbers a")).to_have_text(
        ["+1 555 0100", "+44 20 7123 4567", "+1 800 555 0199"])
    expect(page.locator("#dialin-numbers a").first).to_have_attribute(
        "href", "tel:+15550100,,482913%23")
    expect(page.locator("#dialin-pin")).to_have_text("482 913")
    expect(page.locator("#dialin-numbers .tag")).to_have_text(["Toll-free"])
    screenshot(page, "room-info-desktop")


def test_kicked_leaves_the_meeting(browser: Any, fake_server: Any) -> None:
    page = _joined(browser, fake_server)
    fake_server.push({"type": "kicked", "by": "p-ada"})
    fake_server.close_clients(4001)
    expect(page.locator("#ended")).to_be_visible()
    expect(page.locator("#ended-title")).to_have_text("You were removed from the meeting")
    expect(page.locator("#ended-text")).to_contain_text("Ada Lovelace")
    # Devices are released.
    assert page.evaluate("window.switchboard.meeting.local.mic") is None
    screenshot(page, "ended-kicked")


def test_lost_connection_offers_rejoin(browser: Any, fake_server: Any) -> None:
    page = _joined(browser, fake_server)
    fake_server.close_clients(1011)
    expect(page.locator("#ended-title")).to_have_text("You were disconnected")
    expect(page.locator("#rejoin")).to_have_text(re.compile(r"Rejoining in \d s"))
    page.click("#rejoin")
    expect(page.locator("#meeting")).to_be_visible()
    wait_for(lambda: len(fake_server.messages("join")) == 2, message="the second join")
    expect(page.locator("#grid .tile")).to_have_count(4)


def test_leave_and_rejoin(browser: Any, fake_server: Any) -> None:
    page = _joined(browser, fake_server)
    page.click("#btn-leave")
    expect(page.locator("#ended-title")).to_have_text("You left the meeting")
    wait_for(lambda: fake_server.messages("leave"), message="leave")
    page.click("#rejoin")
    expect(page.locator("#grid .tile")).to_have_count(4)


def test_room_that_does_not_exist(browser: Any, fake_server: Any) -> None:
    fake_server.room_exists = lambda name: False
    page = browser.open(f"{fake_server.url}/{ROOM}")
    page.wait_for_selector("#join-button:not([disabled])")
    page.fill("#name-input", "Linus Example")
    page.click("#join-button")
    expect(page.locator("#ended-title")).to_have_text("This meeting does not exist")
    expect(page.locator("#rejoin")).to_have_text("Rejoin")  # no automatic retry

"""Phone callers on the meeting page, in Chromium against the scripted signaling server.

A phone caller is a participant of kind "phone": its audio arrives like anyone's (an offer
m-line whose `tracks` entry names it), it has no video, and its name comes masked from the
server. The page must show it as a tile with a handset (an inline SVG named "phone caller"),
its mute state and the speaking indicator, list it in the participants pane with the same
moderator actions as a browser, and drop it when it hangs up. No media flows from the fake:
audio levels are given to the page by replacing its level source (`remoteLevels`).
"""

from __future__ import annotations

import re
from typing import Any

from browser_harness import join_meeting, remote_tracks, screenshot, wait_for
from fake_signaling import DIAL_IN, participant
from playwright.sync_api import Locator, Page, expect

ROOM = "phone-standup"
PHONE_ID = "p-tel-1"
PHONE_NAME = "+44 20••••5678"
PHONE_LABEL = "phone caller"


def _phone(pid: str = PHONE_ID, name: str = PHONE_NAME, **kw: Any) -> dict[str, Any]:
    return participant(pid, name, kind="phone", video=False, **kw)


def _ada() -> dict[str, Any]:
    return participant("p-ada", "Ada Lovelace", role="moderator")


def _joined(browser: Any, fake_server: Any, participants: list[dict[str, Any]]) -> Page:
    fake_server.participants = participants
    page: Page = browser.open(f"{fake_server.url}/{ROOM}")
    join_meeting(page, "Linus Example", camera=False)
    expect(page.locator("#grid .tile")).to_have_count(1 + len(participants))
    wait_for(lambda: fake_server.messages("answer"), message="the answer to the first offer")
    return page


def _tile(page: Page, pid: str) -> Locator:
    return page.locator(f'#grid .tile[data-participant="{pid}"]')


def _moderate(fake_server: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = fake_server.messages("moderate")
    return messages


_WATCH_CLASSES_JS = """
(pid) => {
  // Every class list the tile had, so that a short-lived state is not missed by polling.
  const tile = document.querySelector(`#grid .tile[data-participant="${pid}"]`);
  window.__tileClasses = [tile.className];
  new MutationObserver(() => window.__tileClasses.push(tile.className))
    .observe(tile, {attributes: true, attributeFilter: ['class']});
}
"""


def test_phone_caller_tile_join_mute_speaking_and_hangup(browser: Any, fake_server: Any) -> None:
    page = _joined(browser, fake_server, [_ada()])
    assert page.locator('#grid svg[aria-label="phone caller"]').count() == 0

    # A phone caller joins: a tile with a handset and the masked number, no video.
    fake_server.add_participant(_phone())
    tile = _tile(page, PHONE_ID)
    expect(tile).to_be_visible(timeout=2000)
    expect(tile.locator(".tile-name")).to_have_text(PHONE_NAME)
    handset = tile.locator(f'.tile-label svg[aria-label="{PHONE_LABEL}"]')
    expect(handset).to_be_visible()
    expect(handset).to_have_attribute("role", "img")
    assert handset.evaluate("(el) => el.querySelector('path') !== null"), "inline, not <use>"
    assert handset.locator("use").count() == 0
    expect(tile).to_have_class(re.compile(r"\bvideo-hidden\b"))
    expect(tile.locator("video")).to_be_hidden()
    expect(tile).to_have_attribute("aria-label", f"{PHONE_NAME}, {PHONE_LABEL}")
    expect(tile.locator(".tile-mic")).to_be_hidden()
    expect(tile.locator(".speak-bars")).to_be_visible()
    # The browser's tile has no handset.
    assert _tile(page, "p-ada").locator(f'svg[aria-label="{PHONE_LABEL}"]').count() == 0
    expect(page.locator("#toasts")).to_contain_text(f"{PHONE_NAME} joined by phone")
    expect(page.locator("#btn-people .badge")).to_have_text("3")

    # Its audio is an ordinary source of the offer, played by its own <audio>.
    wait_for(lambda: any(t == {"participant": PHONE_ID, "kind": "audio", "video_type": None}
                         for t in remote_tracks(page).values()),
             message="the phone caller's audio source on the page")
    assert [t for t in remote_tracks(page).values() if t["participant"] == PHONE_ID] == [
        {"participant": PHONE_ID, "kind": "audio", "video_type": None}]
    expect(page.locator(f'#audio-sink audio[data-participant="{PHONE_ID}"]')).to_have_count(1)

    # Muted (by *6 or a moderator): the muted indicator replaces the level bars.
    fake_server.push({"type": "participant-updated", "participant": _phone(muted=True)})
    expect(tile.locator(".tile-mic")).to_be_visible(timeout=2000)
    expect(tile.locator(".speak-bars")).to_be_hidden()
    expect(tile).to_have_attribute("aria-label", f"{PHONE_NAME}, {PHONE_LABEL}, muted")
    fake_server.push({"type": "participant-updated", "participant": _phone(muted=False)})
    expect(tile.locator(".tile-mic")).to_be_hidden(timeout=2000)
    expect(tile.locator(".speak-bars")).to_be_visible()

    # The bridge names the phone caller dominant speaker: the speaking indicator lights up on
    # its tile (and only there) and the tile stays the dominant one.
    page.evaluate(_WATCH_CLASSES_JS, PHONE_ID)
    fake_server.push({"type": "dominant-speaker", "id": PHONE_ID})
    page.wait_for_function(
        "() => window.__tileClasses.some((c) => /\\bspeaking\\b/.test(c))", timeout=3000)
    expect(tile).to_have_class(re.compile(r"\bdominant\b"))
    expect(_tile(page, "p-ada")).not_to_have_class(re.compile(r"\b(dominant|speaking)\b"))
    # Without audio levels the speaking indicator fades; the dominant mark stays.
    expect(tile).not_to_have_class(re.compile(r"\bspeaking\b"), timeout=5000)
    expect(tile).to_have_class(re.compile(r"\bdominant\b"))

    # Audio levels (RFC 6464, as the browser reports them per source) light it up too.
    page.evaluate(f"""() => {{
      window.switchboard.meeting.media.remoteLevels = () => new Map([['{PHONE_ID}', 0.3]]);
    }}""")
    expect(tile).to_have_class(re.compile(r"\bspeaking\b"), timeout=2000)
    page.click("#btn-people")
    row = page.locator(f'#people-list .person[data-participant="{PHONE_ID}"]')
    expect(row.locator(".avatar")).to_have_class(re.compile(r"\bspeaking\b"))
    expect(row).to_have_class(re.compile(r"\bdominant\b"))
    screenshot(page, "room-phone-speaking")
    page.evaluate("() => { window.switchboard.meeting.media.remoteLevels = () => new Map(); }")
    page.click("#btn-people")

    # Someone else becomes the dominant speaker.
    fake_server.push({"type": "dominant-speaker", "id": "p-ada"})
    expect(tile).not_to_have_class(re.compile(r"\bdominant\b"), timeout=2000)
    expect(_tile(page, "p-ada")).to_have_class(re.compile(r"\bdominant\b"))

    # The caller hangs up: the tile, its audio and its source go.
    fake_server.push({"type": "dominant-speaker", "id": PHONE_ID})
    fake_server.remove_participant(PHONE_ID, reason="hangup")
    expect(tile).to_have_count(0, timeout=2000)
    expect(page.locator("#toasts")).to_contain_text(f"{PHONE_NAME} hung up")
    wait_for(lambda: PHONE_ID not in {t["participant"] for t in remote_tracks(page).values()},
             message="the phone caller's source gone from the page")
    expect(page.locator(f'#audio-sink audio[data-participant="{PHONE_ID}"]')).to_have_count(0)
    assert page.evaluate("window.switchboard.meeting.dominant") is None
    expect(page.locator("#grid .tile")).to_have_count(2)
    expect(page.locator("#btn-people .badge")).to_have_text("2")
    assert browser.errors(page) == []


def test_a_caller_with_a_display_name_in_the_first_roster(browser: Any, fake_server: Any
                                                         ) -> None:
    """Callers already in the room come with `joined`; a caller ID name is shown as sent."""
    page = _joined(browser, fake_server, [_phone("p-tel-2", "Reception (Main St)", muted=True)])
    tile = _tile(page, "p-tel-2")
    expect(tile.locator(".tile-name")).to_have_text("Reception (Main St)")
    expect(tile.locator(f'svg[aria-label="{PHONE_LABEL}"]')).to_be_visible()
    expect(tile.locator(".tile-mic")).to_be_visible()
    # Its avatar is a handset too, not initials.
    expect(tile.locator(".tile-avatar .avatar")).to_have_text("")
    expect(tile.locator(".tile-avatar svg path")).to_have_count(1)
    # Nobody else here but a phone: the page is not "alone".
    expect(page.locator("#alone-hint")).to_be_hidden()
    assert browser.errors(page) == []


def test_moderator_mutes_and_removes_a_phone_caller(browser: Any, fake_server: Any) -> None:
    page = _joined(browser, fake_server, [_ada(), _phone()])
    page.click("#btn-people")
    row = page.locator(f'#people-list .person[data-participant="{PHONE_ID}"]')
    expect(row.locator(".person-name")).to_have_text(PHONE_NAME)
    expect(row.locator(f'svg[aria-label="{PHONE_LABEL}"]')).to_be_visible()
    expect(row.locator(".person-sub")).to_contain_text("Phone")
    # The phone caller has no camera state; a browser has no handset.
    expect(row.locator('[title^="Camera"]')).to_have_count(0)
    ada_row = page.locator('#people-list .person[data-participant="p-ada"]')
    expect(ada_row.locator(f'svg[aria-label="{PHONE_LABEL}"]')).to_have_count(0)
    screenshot(page, "room-people-phone")

    # Mute: the same `moderate` message as for a browser; the server's update shows.
    row.get_by_role("button", name=f"Mute {PHONE_NAME}").click()
    wait_for(lambda: _moderate(fake_server), message="moderate mute")
    assert _moderate(fake_server) == [
        {"type": "moderate", "action": "mute", "target": PHONE_ID}]
    expect(_tile(page, PHONE_ID).locator(".tile-mic")).to_be_visible(timeout=2000)
    expect(row.get_by_role("button", name=f"{PHONE_NAME} is muted")).to_be_disabled()

    # Remove: asks first; cancelling sends nothing.
    remove = row.get_by_role("button", name=f"Remove {PHONE_NAME} from the meeting")
    remove.click()
    dialog = page.locator("dialog.confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"Remove {PHONE_NAME}?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    page.wait_for_timeout(300)
    assert len(_moderate(fake_server)) == 1
    remove.click()
    dialog.get_by_role("button", name="Remove", exact=True).click()
    wait_for(lambda: len(_moderate(fake_server)) == 2, message="moderate kick")
    assert _moderate(fake_server)[-1] == {"type": "moderate", "action": "kick", "target": PHONE_ID}
    expect(_tile(page, PHONE_ID)).to_have_count(0, timeout=2000)
    expect(row).to_have_count(0)
    expect(page.locator("#toasts")).to_contain_text(f"{PHONE_NAME} was removed from the meeting")
    assert browser.errors(page) == []


def test_guest_sees_the_phone_caller_without_actions(browser: Any, fake_server: Any) -> None:
    fake_server.role = "guest"
    page = _joined(browser, fake_server, [_ada(), _phone()])
    page.click("#btn-people")
    row = page.locator(f'#people-list .person[data-participant="{PHONE_ID}"]')
    expect(row.locator(f'svg[aria-label="{PHONE_LABEL}"]')).to_be_visible()
    assert row.locator("button").count() == 0


def _open_info(page: Page) -> None:
    page.keyboard.press("i")
    expect(page.locator("#panel-title")).to_have_text("Meeting details")


_INVITATION_JS = """
async () => {
  const info = await import('/static/js/ui/info.js');
  return info.invitation(window.switchboard.meeting.room, window.switchboard.meeting.dialIn);
}
"""


def test_dial_in_box_shows_numbers_and_pin(browser: Any, fake_server: Any) -> None:
    fake_server.dial_in = dict(DIAL_IN)
    page = _joined(browser, fake_server, [_ada()])
    _open_info(page)
    expect(page.locator("#dialin-block")).to_be_visible()
    expect(page.locator("#dialin-none")).to_be_hidden()
    expect(page.locator("#dialin-numbers a")).to_have_text(
        ["+1 555 0100", "+44 20 7123 4567", "+1 800 555 0199"])
    expect(page.locator("#dialin-numbers a").nth(1)).to_have_attribute(
        "href", "tel:+442071234567,,482913%23")
    expect(page.locator("#dialin-pin")).to_have_text("482 913")
    text = page.evaluate(_INVITATION_JS)
    assert "Or join by phone:" in text and "+44 20 7123 4567 (GB)" in text
    assert "PIN: 482913#" in text


def test_dial_in_box_copes_with_no_numbers(browser: Any, fake_server: Any) -> None:
    for dial_in in (None, {"pin": "482913", "numbers": []}):
        fake_server.dial_in = dial_in
        page = _joined(browser, fake_server, [])
        expect(page.locator("#alone-hint")).to_be_visible()
        expect(page.locator("#alone-hint")).not_to_contain_text("dial-in")
        _open_info(page)
        expect(page.locator("#dialin-block")).to_be_hidden()
        expect(page.locator("#dialin-none")).to_be_visible()
        expect(page.locator("#dialin-none")).to_have_text("This meeting has no dial-in numbers.")
        expect(page.locator("#dialin-numbers li")).to_have_count(0)
        text = page.evaluate(_INVITATION_JS)
        assert text == f'Join the meeting "{ROOM}": {fake_server.url}/{ROOM}', text
        assert browser.errors(page) == [], dial_in
        page.click("#btn-leave")
        expect(page.locator("#ended-title")).to_have_text("You left the meeting")

"""Who gets in, on the real server with headless Chromium (issue 17): a host with a
moderator token and guests without; a guest knocks and the host admits, another is denied;
a wrong password is refused and the right one skips the lobby; expired, tampered,
wrong-room and alg:none tokens are refused; the last moderator leaving hands over to
another host; a hosts-only room makes guests wait, then lets them in when a host arrives.
A token's avatar shows on the host's tile and in the people list; the room's host PIN shows
to moderators only (also to one made moderator when the last one leaves), never to guests.
The last test scans the server's log (debug level) for every token, password and PIN used.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
from browser_harness import join_meeting, wait_for
from playwright.sync_api import Page, expect

SECRET = "browser-lobby-secret-0123456789abcdef"
SWITCHBOARD_CONFIG = {"auth": {"jwt_secret": SECRET}, "log": {"level": "debug"}}

SECRETS: set[str] = set()  # every token, password and PIN these tests used


def token(room: str, *, moderator: bool = True, name: str = "Host", **over: Any) -> str:
    claims: dict[str, Any] = {"room": room, "exp": int(time.time()) + 600,
                              "context": {"user": {"name": name, "moderator": moderator}}}
    claims.update(over)
    made = jwt.encode(claims, SECRET, algorithm="HS256")
    SECRETS.add(made)
    return made


def make_room(server: Any, name: str, **policy: Any) -> dict[str, Any]:
    room: dict[str, Any] = server.api("POST", "/api/rooms", {"name": name, **policy})
    SECRETS.add(room["pin"])
    if room.get("host_pin"):
        SECRETS.add(room["host_pin"])
    if "password" in policy:
        SECRETS.add(policy["password"])
    return room


def pin_number(server: Any) -> None:
    """A dial-in number that asks for a PIN: the page shows the PIN (and host PIN) then."""
    if not any(n["number"] == "+15550100" for n in server.api("GET", "/api/numbers")):
        server.api("POST", "/api/numbers", {"number": "+15550100", "route": "pin",
                                            "formattedNumber": "+1 555 0100"})  # fmt: skip


def ask_to_join(page: Page, name: str) -> None:
    page.wait_for_selector("#join-button:not([disabled])")
    page.fill("#name-input", name)
    page.click("#join-button")


# One pixel of PNG: the avatar a token names, answered by the test (Playwright's routing), so
# no request leaves the machine and the image loads only if the page's CSP lets it.
PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAC"
                         "hwGA60e6kgAAAABJRU5ErkJggg==")  # fmt: skip
AVATAR = "https://avatars.switchboard.test/host.png?s=64"


def serve_avatar(browser: Any) -> None:
    browser.context.route(AVATAR, lambda route: route.fulfill(
        status=200, content_type="image/png", body=PIXEL))  # fmt: skip


def shows_avatar(page: Page, scope: str) -> None:
    """The avatar <img> under `scope` has the token's URL and has loaded (CSP allowed it)."""
    img = page.locator(f"{scope} img.avatar-img")
    expect(img).to_have_count(1, timeout=10_000)
    expect(img).to_have_attribute("src", AVATAR)
    wait_for(lambda: img.evaluate("i => i.complete && i.naturalWidth === 1 && !i.hidden"),
             timeout=10, message="the avatar image loaded")  # fmt: skip


def open_host(browser: Any, server: Any, room: str, name: str = "Host",
              avatar: str | None = None) -> Page:  # fmt: skip
    user: dict[str, Any] = {"name": name, "moderator": True}
    if avatar is not None:
        user["avatar"] = avatar
    page = browser.open(f"{server.url}/{room}?jwt={token(room, context={'user': user})}")
    join_meeting(page, name)
    expect(page.locator("#grid .tile.self")).to_have_count(1)
    assert "jwt" not in page.url  # taken off the address bar at once
    return page


def people_panel(page: Page) -> None:
    if page.locator("#panel-people").is_hidden():
        page.click("#btn-people")
    expect(page.locator("#panel-people")).to_be_visible()


def waiting(page: Page, title: str) -> None:
    expect(page.locator("#lobby-wait")).to_be_visible(timeout=10_000)
    expect(page.locator("#lobby-title")).to_have_text(title)


def test_a_guest_knocks_the_host_admits_another_is_denied(browser: Any,
                                                          module_switchboard: Any) -> None:
    server = module_switchboard
    pin_number(server)
    make_room(server, "lobby-room", lobby=True, host_pin="73829105")
    serve_avatar(browser)
    host = open_host(browser, server, "lobby-room", avatar=AVATAR)
    guest = browser.open(f"{server.url}/lobby-room")
    ask_to_join(guest, "Guest One")
    waiting(guest, "Asking to join")
    assert server.api("GET", "/api/rooms/lobby-room/lobby")[0]["name"] == "Guest One"
    people_panel(host)
    entry = host.locator("#lobby-list .lobby-entry")
    expect(entry).to_have_count(1)
    expect(entry.locator(".lobby-name")).to_have_text("Guest One")
    entry.locator("[data-action=admit]").click()
    expect(guest.locator("#meeting")).to_be_visible()
    expect(guest.locator("#grid .tile")).to_have_count(2, timeout=15_000)
    expect(host.locator("#grid .tile")).to_have_count(2, timeout=15_000)
    # the host's token names an avatar: on its tile and in the people list, for the guest
    host_id = host.locator("#grid .tile.self").get_attribute("data-participant")
    shows_avatar(guest, f"#grid .tile[data-participant='{host_id}']")
    people_panel(guest)
    shows_avatar(guest, f"#people-list .person[data-participant='{host_id}']")
    expect(guest.locator("img.avatar-img")).to_have_count(2)  # the guest has none
    # the host PIN: shown to the moderator beside the PIN, never to a guest nor in the
    # invitation
    host.keyboard.press("i")
    expect(host.locator("#dialin-host-row")).to_be_visible()
    expect(host.locator("#dialin-host-pin")).to_have_text("738 291 05")
    guest.keyboard.press("i")
    expect(guest.locator("#dialin-pin")).to_be_visible()
    expect(guest.locator("#dialin-host-row")).to_be_hidden()
    for page in (host, guest):
        text = page.evaluate("""async () => (await import('/static/js/ui/info.js')).invitation(
            window.switchboard.meeting.room, window.switchboard.meeting.dialIn)""")
        assert "Or join by phone" in text and "73829105" not in text, text
    assert "73829105" not in json.dumps(browser.messages(guest))
    people_panel(host)  # back to the knocking list

    other = browser.open(f"{server.url}/lobby-room")
    ask_to_join(other, "Guest Two")
    waiting(other, "Asking to join")
    expect(entry).to_have_count(1)
    entry.locator("[data-action=deny]").click()
    expect(other.locator("#ended")).to_be_visible()
    expect(other.locator("#ended-title")).to_have_text("You were not let in")
    expect(host.locator("#grid .tile")).to_have_count(2)
    for page in (host, guest, other):
        page.close()


def test_a_wrong_password_is_refused_and_the_right_one_skips_the_lobby(
        browser: Any, module_switchboard: Any) -> None:  # fmt: skip
    server = module_switchboard
    make_room(server, "password-room", lobby=True, password="sesame4242")
    host = open_host(browser, server, "password-room")
    guest = browser.open(f"{server.url}/password-room")
    ask_to_join(guest, "Guest")
    waiting(guest, "Asking to join")  # no password given: knock
    guest.click("#lobby-leave")
    guest.close()
    server.api("PATCH", "/api/rooms/password-room", {"lobby": False})
    guest = browser.open(f"{server.url}/password-room")
    ask_to_join(guest, "Guest")
    expect(guest.locator("#password-ask")).to_be_visible(timeout=10_000)
    guest.fill("#password-input", "not-the-one")
    SECRETS.add("not-the-one")
    guest.click("#password-join")
    expect(guest.locator("#password-error")).to_be_visible(timeout=10_000)
    guest.fill("#password-input", "sesame4242")
    guest.click("#password-join")
    expect(guest.locator("#meeting")).to_be_visible(timeout=10_000)
    expect(guest.locator("#grid .tile")).to_have_count(2, timeout=15_000)
    for page in (host, guest):
        page.close()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_bad_tokens_are_refused(browser: Any, module_switchboard: Any) -> None:
    server = module_switchboard
    make_room(server, "token-room", lobby=True)
    good = token("token-room")
    header, body, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["room"] = "*"
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    none = f"{none_header}.{body}."
    bad = {"expired": token("token-room", exp=int(time.time()) - 3600),
           "tampered": tampered, "wrong-room": token("another-room"), "alg-none": none}
    SECRETS.update(bad.values())
    for why, value in bad.items():
        page = browser.open(f"{server.url}/token-room?jwt={value}")
        ask_to_join(page, f"Mallory {why}")
        expect(page.locator("#ended")).to_be_visible(timeout=10_000)
        expect(page.locator("#ended-title")).to_have_text("Your meeting link is not valid")
        assert "jwt" not in page.url
        page.close()
    assert server.api("GET", "/api/rooms/token-room/lobby") == []
    assert server.api("GET", "/api/rooms/token-room/participants") == []


def test_the_last_moderator_leaving_hands_over_to_another_host(browser: Any,
                                                              module_switchboard: Any) -> None:
    server = module_switchboard
    make_room(server, "handover-room", lobby=True)
    first = open_host(browser, server, "handover-room", "First Host")
    second = open_host(browser, server, "handover-room", "Second Host")
    first.click("#btn-leave")
    expect(first.locator("#ended")).to_be_visible()
    wait_for(lambda: len(server.api("GET", "/api/rooms/handover-room/participants")) == 1,
             timeout=10, message="the first host gone")
    guest = browser.open(f"{server.url}/handover-room")
    ask_to_join(guest, "Late Guest")
    waiting(guest, "Asking to join")
    people_panel(second)  # the second host moderates: sees the knock and admits
    second.locator("#lobby-list [data-action=admit]").click()
    expect(guest.locator("#grid .tile")).to_have_count(2, timeout=15_000)
    for page in (first, second, guest):
        page.close()


def test_a_participant_made_moderator_is_shown_the_host_pin(browser: Any,
                                                           module_switchboard: Any) -> None:
    server = module_switchboard
    pin_number(server)
    room = make_room(server, "open-room")  # today's open room, a generated host PIN
    host_pin = room["host_pin"]
    assert host_pin and host_pin.isdigit() and host_pin != room["pin"], room
    spaced = " ".join(host_pin[i:i + 3] for i in range(0, len(host_pin), 3))
    first = browser.open(f"{server.url}/open-room")
    join_meeting(first, "First")  # the first in an open room moderates
    second = browser.open(f"{server.url}/open-room")
    join_meeting(second, "Second")
    expect(second.locator("#grid .tile")).to_have_count(2, timeout=15_000)
    first.keyboard.press("i")
    expect(first.locator("#dialin-host-pin")).to_have_text(spaced)
    second.keyboard.press("i")
    expect(second.locator("#dialin-pin")).to_be_visible()
    expect(second.locator("#dialin-host-row")).to_be_hidden()
    assert host_pin not in json.dumps(browser.messages(second))
    first.click("#btn-leave")  # the moderator leaves: the second is made moderator
    expect(second.locator("#dialin-host-row")).to_be_visible(timeout=10_000)
    expect(second.locator("#dialin-host-pin")).to_have_text(spaced)
    assert [m["dial_in"]["host_pin"] for m in browser.messages(second, "dial-in")] == [host_pin]
    for page in (first, second):
        page.close()


def test_a_hosts_only_room_makes_guests_wait_for_a_host(browser: Any,
                                                       module_switchboard: Any) -> None:
    server = module_switchboard
    make_room(server, "hosts-room", start="hosts")
    guest = browser.open(f"{server.url}/hosts-room")
    ask_to_join(guest, "Early Guest")
    waiting(guest, "Waiting for the host")
    host = open_host(browser, server, "hosts-room")
    expect(guest.locator("#meeting")).to_be_visible(timeout=10_000)  # let in by the host
    expect(guest.locator("#grid .tile")).to_have_count(2, timeout=15_000)
    # the moderator's controls: on the host's page, not on the guest's
    host.click("#topbar-info")
    expect(host.locator("#policy-block")).to_be_visible()
    expect(host.locator("#policy-hosts")).to_be_checked()
    host.locator("#policy-lobby").check()
    wait_for(lambda: server.api("GET", "/api/rooms/hosts-room")["lobby"] is True, timeout=10,
             message="the lobby turned on from the page")
    host.fill("#policy-password", "page-set-pass")
    SECRETS.add("page-set-pass")
    host.click("#policy-password-form button[type=submit]")
    wait_for(lambda: server.api("GET", "/api/rooms/hosts-room")["has_password"] is True,
             timeout=10, message="the password set from the page")
    expect(host.locator("#policy-password-remove")).to_be_visible()
    guest.click("#topbar-info")
    expect(guest.locator("#panel-info")).to_be_visible()
    expect(guest.locator("#policy-block")).to_be_hidden()
    for page in (host, guest):
        page.close()


def test_no_token_password_or_pin_in_the_log(module_switchboard: Any) -> None:
    """Runs last in this module: the server ran at debug level through all of the above."""
    log_text = Path(module_switchboard.log_path).read_text(errors="replace")
    assert " DEBUG " in log_text  # the level really was debug
    assert len(SECRETS) >= 10
    leaked = [s for s in SECRETS if s in log_text]
    # each part of a token too (a signature alone is as good as the token to nobody, but a
    # payload or header in a log is a sign of the token being written somewhere)
    parts = {p for s in SECRETS if s.count(".") == 2 for p in s.split(".")[1:] if len(p) > 20}
    leaked += [p for p in parts if p in log_text]
    assert leaked == [], f"secrets in the server log: {[s[:12] + '...' for s in leaked]}"

"""A cluster: the meeting page keeps the resume token its `joined` gave (sessionStorage, for
this tab and room) and presents it when it rejoins: after a 1001 on the same node, and on
another node after a room-elsewhere answer (handed over in window.name, taken and cleared
there at once, never in the URL). Leaving on purpose drops it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_harness import wait_for
from fake_signaling import Client, FakeSignalingServer, Json

ROOM = "team-standup"
TOKEN = "Rz0_" + "k" * 28  # the shape the server gives
KEY = f"switchboard.resume.{ROOM}"


class ResumingNode(FakeSignalingServer):
    """A node that gives `TOKEN` in `joined`; once `elsewhere` is set, it answers every join
    with room-elsewhere naming that URL."""

    elsewhere: str = ""

    async def _handle(self, c: Client, m: Json) -> None:
        if m.get("type") == "join" and self.elsewhere:
            await c.ws.send_json({"type": "error", "code": "room-elsewhere",
                                  "message": self.elsewhere, "ref": "join"})
            await c.ws.close(code=4029)
            return
        if m.get("type") == "join":
            send = c.ws.send_json

            async def with_token(data: Any, *args: Any, **kwargs: Any) -> None:
                if isinstance(data, dict) and data.get("type") == "joined":
                    data = {**data, "resume": TOKEN}
                await send(data, *args, **kwargs)

            c.ws.send_json = with_token  # type: ignore[method-assign]
        await super()._handle(c, m)


@pytest.fixture
def nodes() -> Iterator[tuple[ResumingNode, FakeSignalingServer]]:
    first, owner = ResumingNode(), FakeSignalingServer()
    first.start()
    owner.start()
    yield first, owner
    first.stop()
    owner.stop()


def _press_join(page: Any) -> None:
    page.wait_for_selector("#join-button:not([disabled])")
    page.fill("#name-input", "Linus Example")
    page.click("#join-button")


def test_the_page_rejoins_with_its_token_here_and_on_the_next_node(
        browser: Any, nodes: tuple[ResumingNode, FakeSignalingServer]) -> None:
    first, owner = nodes
    page = browser.open(f"{first.url}/{ROOM}?lang=en")
    _press_join(page)
    page.wait_for_selector("#meeting:not([hidden])")
    wait_for(lambda: page.evaluate(f"sessionStorage.getItem('{KEY}')") == TOKEN,
             message="the token kept")  # fmt: skip
    assert "resume" not in first.messages("join")[0]
    # the node goes away (1001): the page rejoins by itself, with its token
    first.close_clients(1001)
    wait_for(lambda: len(first.messages("join")) >= 2, timeout=15, message="the rejoin")
    assert first.messages("join")[1].get("resume") == TOKEN
    assert TOKEN not in page.url
    # the room moves: the next rejoin is answered room-elsewhere; the page goes to the owner
    # and its join there carries the token, which never was in a URL
    first.elsewhere = owner.url
    first.close_clients(1001)
    page.wait_for_url(f"{owner.url}/{ROOM}?lang=en", timeout=20000)
    assert page.evaluate("window.name") == ""  # taken and cleared at once
    # (it joins there by itself, under the same name: no pre-join screen again)
    wait_for(lambda: owner.messages("join"), message="the join at the owner")
    assert owner.messages("join")[0].get("resume") == TOKEN
    assert owner.messages("join")[0].get("name") == first.messages("join")[0].get("name")
    assert TOKEN not in page.url
    # leaving on purpose drops the token: the next join is a new participant
    page.wait_for_selector("#meeting:not([hidden])")
    page.evaluate("window.switchboard.meeting.leave()")
    assert page.evaluate(f"sessionStorage.getItem('{KEY}')") is None


def test_a_token_handed_over_for_another_origin_or_room_is_not_taken(
        browser: Any, nodes: tuple[ResumingNode, FakeSignalingServer]) -> None:
    _first, owner = nodes
    page = browser.open(f"{owner.url}/?lang=en")
    for origin, room in (("http://127.0.0.1:9", ROOM), (owner.url, "another-room")):
        page.evaluate("([o, r, t]) => { window.name = 'switchboard.resume:' + JSON.stringify("
                      "{room: r, origin: o, token: t}); }", [origin, room, TOKEN])
        page.goto(f"{owner.url}/{ROOM}?lang=en")
        page.wait_for_selector("#join-button")
        assert page.evaluate("window.name") == ""
        assert page.evaluate(f"sessionStorage.getItem('{KEY}')") is None

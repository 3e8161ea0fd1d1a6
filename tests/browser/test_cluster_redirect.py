"""A cluster: the meeting page whose join is answered "room-elsewhere" (another node hosts the
room) opens the room on that node, same path and query, and joins there by itself under the
same name; any other URL in that answer is not followed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_harness import wait_for
from fake_signaling import FakeSignalingServer, Json

ROOM = "team-standup"


class NotTheOwner(FakeSignalingServer):
    """A node that does not host the room: every join is refused, naming `owner_url`."""

    owner_url: str = ""

    async def _handle(self, c: Any, m: Json) -> None:
        if m.get("type") == "join":
            await c.ws.send_json({"type": "error", "code": "room-elsewhere",
                                  "message": self.owner_url, "ref": "join"})
            await c.ws.close(code=4029)
            return
        await super()._handle(c, m)


@pytest.fixture
def two_nodes() -> Iterator[tuple[NotTheOwner, FakeSignalingServer]]:
    owner = FakeSignalingServer()
    owner.start()
    other = NotTheOwner()
    other.owner_url = owner.url
    other.start()
    yield other, owner
    other.stop()
    owner.stop()


def _press_join(page: Any) -> None:
    page.wait_for_selector("#join-button:not([disabled])")
    page.fill("#name-input", "Linus Example")
    page.click("#join-button")


def test_a_join_on_another_node_opens_the_room_on_its_owner(
        browser: Any, two_nodes: tuple[NotTheOwner, FakeSignalingServer]) -> None:
    other, owner = two_nodes
    page = browser.open(f"{other.url}/{ROOM}?lang=en")
    _press_join(page)
    page.wait_for_url(f"{owner.url}/{ROOM}?lang=en", timeout=15000)  # (pumps events)
    assert other.messages("join") and not owner.messages("join")
    # the person had pressed Join: the page joins there by itself, as the same name
    page.wait_for_selector("#meeting:not([hidden])")
    wait_for(lambda: owner.messages("join"), message="the join at the owner")
    assert owner.messages("join")[0]["name"] == "Linus Example"
    assert page.is_hidden("#prejoin")


def test_an_answer_with_something_else_than_an_origin_is_not_followed(
        browser: Any, two_nodes: tuple[NotTheOwner, FakeSignalingServer]) -> None:
    other, _owner = two_nodes
    other.owner_url = "javascript:alert(1)"
    page = browser.open(f"{other.url}/{ROOM}")
    _press_join(page)
    page.wait_for_selector("#ended:not([hidden])", timeout=15000)
    assert page.url == f"{other.url}/{ROOM}"

"""Router: room headers, numbers (E.164 matching), default routes, display policy."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from dialplan.routing import Prompt, Reject, Room, Router, parse_default_route
from dialplan.store import Store


@pytest.fixture
def store(store_target: str) -> Iterator[Store]:
    s = Store(store_target)
    s.create_room("standup", "48213077")
    s.create_room("lobby", "51234987")
    s.add_number("+15550100", "pin", display="show")
    s.add_number("+15550101", "room", "standup", display="hide")
    s.add_number("4000", "room", "lobby")
    yield s
    s.close()


def test_pin_number_leads_to_prompt_with_its_display(store: Store) -> None:
    assert Router(store).route("+15550100", "+4930111", {}) == Prompt("show")


def test_room_number_leads_to_room(store: Store) -> None:
    assert Router(store).route("+15550101", None, {}) == Room("standup", "hide")


@pytest.mark.parametrize("dialled", ["15550101", "0015550101", "+1 555 0101", "1-555-0101"])
def test_dialled_forms_match_the_e164_number(store: Store, dialled: str) -> None:
    assert Router(store).route(dialled, None, {}) == Room("standup", "hide")


def test_number_without_plus_matches_as_given(store: Store) -> None:
    assert Router(store).route("4000", None, {}) == Room("lobby", "mask")


@pytest.mark.parametrize("header", ["X-Room-Name", "x-room-name", "Jitsi-Conference-Room"])
def test_room_header_skips_the_prompt(store: Store, header: str) -> None:
    router = Router(store)
    decision = router.route("+15550100", None, {header: "StandUp"}, trusted=True)
    assert decision == Room("standup", "show")


def test_room_header_wins_over_a_room_number(store: Store) -> None:
    decision = Router(store).route("+15550101", None, {"X-Room-Name": "lobby"}, trusted=True)
    assert decision == Room("lobby", "hide")


def test_jitsi_header_with_domain(store: Store) -> None:
    headers = {"Jitsi-Conference-Room": "standup@conference.meet.example.com"}
    assert Router(store).route(None, None, headers, trusted=True) == Room("standup")


@pytest.mark.parametrize("value", ["nosuch", "bad name", ""])
def test_unknown_room_header_is_rejected_404(store: Store, value: str) -> None:
    decision = Router(store).route("+15550100", None, {"X-Room-Name": value}, trusted=True)
    assert isinstance(decision, Reject) and decision.status == 404


@pytest.mark.parametrize("header", ["X-Room-Name", "x-room-name", "Jitsi-Conference-Room"])
def test_room_header_from_an_untrusted_peer_is_ignored(store: Store, header: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Untrusted: the header changes nothing (the number's route, or the default route)."""
    router = Router(store)
    with caplog.at_level(logging.INFO, logger="dialplan.routing"):
        assert router.route("+15550100", None, {header: "standup"}) == Prompt("show")
        assert router.route("+15550101", None, {header: "lobby"}) == Room("standup", "hide")
        assert router.route("9999", None, {header: "standup"}) == Prompt()
    ignored = [r.getMessage() for r in caplog.records if "untrusted" in r.getMessage()]
    assert len(ignored) == 3, caplog.text
    assert not any("standup" in m or "lobby" in m for m in ignored), ignored  # no value


@pytest.mark.parametrize("value", ["standup", "nosuch", "bad name", "", "x" * 300])
def test_untrusted_callers_get_the_same_answer_for_known_and_unknown_rooms(
        store: Store, value: str) -> None:
    router = Router(store)
    assert router.route("9999", None, {"X-Room-Name": value}) == Prompt()
    assert Router(store, "reject").route("9999", None, {"X-Room-Name": value}) == \
        Reject(404, "Not Found")


def test_room_headers_can_be_disabled(store: Store) -> None:
    router = Router(store, room_headers=False)
    decision = router.route("+15550100", None, {"X-Room-Name": "standup"}, trusted=True)
    assert decision == Prompt("show")


def test_headers_object_with_only_items_and_get(store: Store) -> None:
    class Headers:  # the gateway's Headers: case-insensitive get, items() as a list
        def __init__(self, pairs: list[tuple[str, str]]) -> None:
            self.pairs = pairs

        def get(self, name: str) -> str | None:
            return next((v for k, v in self.pairs if k.lower() == name.lower()), None)

        def items(self) -> list[tuple[str, str]]:
            return list(self.pairs)

    headers = Headers([("X-ROOM-NAME", "lobby")])
    decision = Router(store).route(None, None, headers, trusted=True)  # type: ignore[arg-type]
    assert decision == Room("lobby")


def test_default_pin(store: Store) -> None:
    assert Router(store, "pin").route("+19999999", None, {}) == Prompt("mask")
    assert Router(store).route(None, None, {}) == Prompt()
    assert Router(store).route("conference", None, {}) == Prompt()


def test_default_reject(store: Store) -> None:
    assert Router(store, "reject").route("+19999999", None, {}) == Reject(404, "Not Found")
    assert Router(store, "reject").route("+15550100", None, {}) == Prompt("show")


def test_default_room(store: Store) -> None:
    assert Router(store, "room:Lobby").route("+19999999", None, {}) == Room("lobby")


def test_default_room_that_does_not_exist_rejects(store: Store) -> None:
    decision = Router(store, "room:gone").route("+19999999", None, {})
    assert isinstance(decision, Reject) and decision.status == 404


def test_number_routed_to_a_room_deleted_behind_the_store(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as s:
        s.create_room("lobby")
        s.add_number("4000", "room", "lobby")
        other = sqlite3.connect(tmp_path / "s.db")  # foreign keys are off by default
        with other:
            other.execute("DELETE FROM rooms WHERE name = 'lobby'")
        other.close()
        decision = Router(s).route("4000", None, {})
    assert isinstance(decision, Reject) and decision.status == 404


@pytest.mark.parametrize("bad", ["", "room:", "prompt", "ROOM:x"])
def test_bad_default_route(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_default_route(bad)


def test_room_for_pin(store: Store) -> None:
    router = Router(store)
    assert router.room_for_pin("48213077") == "standup"
    assert router.room_for_pin("00000000") is None

"""Signaling protocol v1: every client message type, valid and invalid; server messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from focus import protocol as p
from focus.conference import ParticipantInfo


def parse(**fields: Any) -> p.ClientMessage:
    return p.parse_message(json.dumps(fields))


def refused(text: str | dict[str, Any]) -> p.ProtocolError:
    raw = text if isinstance(text, str) else json.dumps(text)
    with pytest.raises(p.ProtocolError) as info:
        p.parse_message(raw)
    assert info.value.code in p.ERROR_CODES
    return info.value


JOIN = {"type": "join", "version": 1, "room": "StandUp", "name": "  Ada  ", "audio": True,
        "video": False}  # fmt: skip


# -- valid messages ----------------------------------------------------------------------------


def test_join() -> None:
    msg = parse(**JOIN)
    assert msg == p.Join(room="standup", name="Ada", audio=True, video=False, version=1)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"type": "answer", "sdp": "v=0\r\n", "revision": 3},
         p.Answer(sdp="v=0\r\n", revision=3)),
        ({"type": "renegotiate"}, p.Renegotiate()),
        ({"type": "media", "audio": False, "video": True, "screen": False},
         p.Media(audio=False, video=True, screen=False)),
        ({"type": "chat", "text": " hello\nworld\t! "}, p.Chat(text="hello\nworld\t!")),
        ({"type": "hand", "raised": True}, p.Hand(raised=True)),
        ({"type": "set-name", "name": "Grace"}, p.SetName(name="Grace")),
        ({"type": "moderate", "action": "mute", "target": "b1-abc"},
         p.Moderate(action="mute", target="b1-abc")),
        ({"type": "moderate", "action": "kick", "target": "b1-abc"},
         p.Moderate(action="kick", target="b1-abc")),
        ({"type": "moderate", "action": "mute-all"}, p.Moderate(action="mute-all", target=None)),
        ({"type": "stats", "rtt_ms": 12.5, "bitrate_in": 100000, "bitrate_out": 0, "loss": 0.01},
         p.Stats(rtt_ms=12.5, bitrate_in=100000.0, bitrate_out=0.0, loss=0.01)),
        ({"type": "stats"}, p.Stats(rtt_ms=None, bitrate_in=None, bitrate_out=None, loss=None)),
        ({"type": "ping", "id": "x1"}, p.Ping(id="x1")),
        ({"type": "ping", "id": 7}, p.Ping(id=7)),
        ({"type": "ping"}, p.Ping(id=None)),
        ({"type": "leave"}, p.Leave()),
        ({"type": "leave", "room": "StandUp"}, p.Leave(room="standup")),
        ({"type": "chat", "text": "é 🎉", "room": "a.b_c-1"}, p.Chat(text="é 🎉", room="a.b_c-1")),
    ],
)  # fmt: skip
def test_valid_messages(fields: dict[str, Any], expected: p.ClientMessage) -> None:
    msg = parse(**fields)
    assert msg == expected
    assert fields["type"] == msg.TYPE


def test_every_type_has_a_schema() -> None:
    kinds = {"join", "answer", "renegotiate", "media", "chat", "hand", "set-name", "moderate",
             "stats", "ping", "leave"}  # fmt: skip
    for kind in kinds:
        with pytest.raises(p.ProtocolError) as info:
            p.parse_message(json.dumps({"type": kind, "bogus": 1}))
        assert info.value.code == "bad-message" and info.value.ref == kind
        assert "bogus" in info.value.message


# -- invalid messages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "not json", "{", "[1, 2]", '"join"', "null", "3", "{'type': 'ping'}",
     "[" * 30000 + "]" * 30000, '{"type": "ping", "id": ' + "9" * 5000 + "}"],
)  # fmt: skip
def test_bad_json(text: str) -> None:
    assert refused(text).code == "bad-json"


@pytest.mark.parametrize("kind", ["nope", "JOIN", "", "offer", "joined"])
def test_unknown_type(kind: str) -> None:
    error = refused({"type": kind})
    assert error.code == "unknown-type"


@pytest.mark.parametrize("kind", [None, 1, ["join"], {"a": 1}, True])
def test_type_must_be_a_string(kind: Any) -> None:
    assert refused({"type": kind}).code == "bad-message"


def test_oversized_text_is_refused() -> None:
    text = json.dumps({"type": "chat", "text": "x" * (p.MAX_MESSAGE_BYTES + 1)})
    assert refused(text).code == "bad-message"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": 2}, None),
        ({"version": "1"}, "version"),
        ({"version": True}, "version"),
        ({"room": ""}, "room"),
        ({"room": "a/b"}, "room"),
        ({"room": "x" * 65}, "room"),
        ({"room": 5}, "room"),
        ({"room": None}, "room"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": 5}, "name"),
        ({"audio": 1}, "audio"),
        ({"audio": "true"}, "audio"),
        ({"video": None}, "video"),
    ],
)  # fmt: skip
def test_bad_join(change: dict[str, Any], field: str | None) -> None:
    error = refused({**JOIN, **change})
    if field is None:
        assert error.code == "unsupported-version"
    else:
        assert error.code == "bad-message" and error.message.startswith(field)
    assert error.ref == "join"


def test_join_fields_are_required() -> None:
    for key in ("version", "room", "name", "audio", "video"):
        fields = {k: v for k, v in JOIN.items() if k != key}
        assert refused(fields).code in ("bad-message",)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "answer", "sdp": "hello", "revision": 1}, "sdp"),
        ({"type": "answer", "sdp": 5, "revision": 1}, "sdp"),
        ({"type": "answer", "revision": 1}, "sdp"),
        ({"type": "answer", "sdp": "v=0", "revision": 0}, "revision"),
        ({"type": "answer", "sdp": "v=0", "revision": "1"}, "revision"),
        ({"type": "answer", "sdp": "v=0", "revision": 1.5}, "revision"),
        ({"type": "answer", "sdp": "v=0", "revision": True}, "revision"),
        ({"type": "answer", "sdp": "v=0", "revision": 2**40}, "revision"),
        ({"type": "media", "audio": True, "video": True}, "screen"),
        ({"type": "media", "audio": "yes", "video": True, "screen": False}, "audio"),
        ({"type": "chat", "text": ""}, "text"),
        ({"type": "chat", "text": "   "}, "text"),
        ({"type": "chat", "text": "x" * 2001}, "text"),
        ({"type": "chat", "text": "bell\x07"}, "text"),
        ({"type": "chat", "text": ["hi"]}, "text"),
        ({"type": "hand"}, "raised"),
        ({"type": "hand", "raised": 0}, "raised"),
        ({"type": "set-name", "name": ""}, "name"),
        ({"type": "set-name", "name": "x\u0085y"}, "name"),
        ({"type": "moderate", "action": "unmute", "target": "b1"}, "action"),
        ({"type": "moderate", "action": "mute"}, "target"),
        ({"type": "moderate", "action": "kick", "target": ""}, "target"),
        ({"type": "moderate", "action": "kick", "target": 5}, "target"),
        ({"type": "moderate", "action": "mute", "target": "x" * 65}, "target"),
        ({"type": "moderate", "action": "mute-all", "target": "b1"}, "target"),
        ({"type": "moderate", "target": "b1"}, "action"),
        ({"type": "stats", "rtt_ms": -1}, "rtt_ms"),
        ({"type": "stats", "loss": "0.1"}, "loss"),
        ({"type": "stats", "bitrate_in": True}, "bitrate_in"),
        ({"type": "ping", "id": [1]}, "id"),
        ({"type": "ping", "id": "x" * 65}, "id"),
        ({"type": "ping", "id": 2**60}, "id"),
        ({"type": "leave", "room": "bad room"}, "room"),
        ({"type": "renegotiate", "room": 3}, "room"),
    ],
)  # fmt: skip
def test_bad_fields_name_the_field(fields: dict[str, Any], field: str) -> None:
    error = refused(fields)
    assert error.code == "bad-message"
    assert error.message.startswith(field + ":")
    assert error.ref == fields["type"]


def test_non_finite_numbers_are_refused() -> None:
    assert refused('{"type": "stats", "rtt_ms": NaN}').code == "bad-message"
    assert refused('{"type": "stats", "loss": Infinity}').code == "bad-message"


# -- server messages ---------------------------------------------------------------------------


def info(**changes: Any) -> ParticipantInfo:
    base = ParticipantInfo(id="b1-x", room="r", kind="browser", name="Ada")
    return ParticipantInfo(**{**{f: getattr(base, f) for f in base.__slots__}, **changes})


def test_participant_json_has_every_documented_field() -> None:
    data = p.participant_json(info(moderator=True, audio=True, hand=True))
    assert data == {"id": "b1-x", "name": "Ada", "kind": "browser", "role": "moderator",
                    "audio": True, "video": False, "screen": False, "muted": False,
                    "hand": True}  # fmt: skip
    assert p.participant_json(info())["role"] == "guest"


def test_participant_json_carries_the_token_avatar_only_when_there_is_one() -> None:
    url = "https://example.org/ada.png"
    assert p.participant_json(info(avatar=url))["avatar"] == url
    assert "avatar" not in p.participant_json(info())
    me = info(avatar=url)
    assert p.joined("r", me, [me], [], None, [])["self"]["avatar"] == url  # type: ignore[index]
    assert p.participant_joined(me)["participant"]["avatar"] == url  # type: ignore[index]


def test_server_messages_round_trip_through_json() -> None:
    me, other = info(), info(id="p2-y", kind="phone", name="+1 555 ***0100")
    messages = [
        p.joined("r", me, [other], [{"urls": ["stun:127.0.0.1:3478"]}],
                 {"pin": "12345678", "numbers": []}, [p.chat("p2-y", "x", "hi", 1.5)]),
        p.offer("v=0\r\n", 2, {"r1": {"participant": "p2-y", "kind": "audio",
                                      "video_type": None}}),
        p.participant_joined(other), p.participant_left("p2-y", "hangup"),
        p.participant_updated(me), p.dominant_speaker(None), p.muted("b9"), p.kicked("b9"),
        p.quality(20.0, 1000, 2000, 0.0), p.pong("x"), p.error("bad-json", "not JSON"),
    ]  # fmt: skip
    for message in messages:
        decoded = json.loads(p.encode(message))
        assert decoded == message
        assert isinstance(decoded["type"], str)
    joined: Any = json.loads(p.encode(messages[0]))
    assert joined["version"] == 1 and joined["self"]["id"] == "b1-x"
    assert joined["participants"][0]["kind"] == "phone"
    assert p.encode(p.chat("a", "é", "ü", 1.0)).count("\\u") == 0  # UTF-8, not escapes


def test_protocol_error_as_message() -> None:
    error = p.ProtocolError("forbidden", "only a moderator can do this", "moderate")
    assert error.as_message() == {"type": "error", "code": "forbidden",
                                  "message": "only a moderator can do this",
                                  "ref": "moderate"}  # fmt: skip

"""The signaling protocol, version 1 (docs/signaling.md): message schemas, sans-I/O.

`parse_message(text)` turns one WebSocket text frame into a frozen dataclass or raises
`ProtocolError(code, message, ref)`; the functions at the end build the server's messages
as JSON-ready dicts and `encode()` writes them. Nothing here does I/O or knows a socket.

Every client message may carry a `room` field (checked against the joined room by the
caller: `wrong-room`); any other field not listed for its type is refused (`bad-message`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from focus.conference import ParticipantInfo

__all__ = [
    "ERROR_CODES",
    "MAX_CHAT_TEXT",
    "MAX_MESSAGE_BYTES",
    "MAX_NAME",
    "PROTOCOL_VERSION",
    "REACTIONS",
    "Answer",
    "Chat",
    "ClientMessage",
    "Hand",
    "Join",
    "Leave",
    "LobbyAction",
    "Media",
    "Moderate",
    "Ping",
    "PolicyChange",
    "PrivateChat",
    "ProtocolError",
    "Reaction",
    "RecordingAction",
    "Renegotiate",
    "SetName",
    "Stats",
    "encode",
    "error",
    "parse_message",
    "participant_json",
]

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
MAX_NAME = 64
MAX_CHAT_TEXT = 2000
MAX_ID = 64
ROOM_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
# C0 and C1 control characters and DEL; chat text may keep newlines and tabs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

ERROR_CODES = frozenset({
    "bad-json", "unknown-type", "bad-message", "bad-sdp", "unsupported-version",
    "not-joined", "already-joined", "wrong-room", "forbidden", "unknown-participant",
    "rate-limited", "room-not-found", "room-full", "internal",
    "bad-token", "password-required", "wrong-password", "guests-not-allowed", "denied",
    "lobby-full", "in-lobby", "too-many-waiting", "recording-refused",
})  # fmt: skip
MAX_TOKEN = 8192
MAX_PASSWORD = 64
RESUME_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")  # `joined` gives one (focus/meeting_resume.py)
# The reactions a participant may send (the page's buttons); anything else is refused.
REACTIONS = ("\U0001f44d", "\U0001f44f", "\U0001f602", "\U0001f62e", "\u2764\ufe0f",
             "\U0001f389")  # fmt: skip


class ProtocolError(Exception):
    """The client sent something the protocol refuses; answered with an `error` message.
    `code` is one of ERROR_CODES, `ref` the offending message's type when known."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.ref = ref

    def as_message(self) -> dict[str, object]:
        return error(self.code, self.message, self.ref)


# -- client messages -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Join:
    TYPE: ClassVar[str] = "join"
    room: str  # lower case: rooms are stored in lower case
    name: str
    audio: bool
    video: bool
    version: int = PROTOCOL_VERSION
    token: str | None = None  # a JWT (the page's ?jwt=), never logged
    password: str | None = None  # the room's password, never logged
    resume: str | None = None  # the resume token of an earlier join (a cluster), never logged

    def __repr__(self) -> str:  # the token, password and resume token stay out of every log
        return (f"Join(room={self.room!r}, name={self.name!r}, audio={self.audio}, "
                f"video={self.video}, token={'...' if self.token else None}, "
                f"password={'...' if self.password else None}, "
                f"resume={'...' if self.resume else None})")


@dataclass(frozen=True, slots=True)
class Answer:
    TYPE: ClassVar[str] = "answer"
    sdp: str
    revision: int
    room: str | None = None


@dataclass(frozen=True, slots=True)
class Renegotiate:
    TYPE: ClassVar[str] = "renegotiate"
    room: str | None = None


@dataclass(frozen=True, slots=True)
class Media:
    TYPE: ClassVar[str] = "media"
    audio: bool
    video: bool
    screen: bool
    room: str | None = None


@dataclass(frozen=True, slots=True)
class Chat:
    TYPE: ClassVar[str] = "chat"
    text: str
    room: str | None = None


@dataclass(frozen=True, slots=True)
class PrivateChat:
    """A chat message for one participant of the room (`to`), never stored in the history."""

    TYPE: ClassVar[str] = "private-chat"
    to: str
    text: str
    room: str | None = None


@dataclass(frozen=True, slots=True)
class Reaction:
    TYPE: ClassVar[str] = "reaction"
    emoji: str  # one of REACTIONS
    room: str | None = None


@dataclass(frozen=True, slots=True)
class Hand:
    TYPE: ClassVar[str] = "hand"
    raised: bool
    room: str | None = None


@dataclass(frozen=True, slots=True)
class SetName:
    TYPE: ClassVar[str] = "set-name"
    name: str
    room: str | None = None


ModerateAction = Literal["mute", "mute-all", "kick"]


@dataclass(frozen=True, slots=True)
class Moderate:
    TYPE: ClassVar[str] = "moderate"
    action: ModerateAction
    target: str | None  # None exactly for "mute-all"
    room: str | None = None


LobbyActionKind = Literal["admit", "deny", "admit-all", "send-back"]


@dataclass(frozen=True, slots=True)
class LobbyAction:
    TYPE: ClassVar[str] = "lobby"
    action: LobbyActionKind
    target: str | None  # None exactly for "admit-all"
    room: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """A moderator changes the room's policy; None: unchanged. `password` "" removes it."""

    TYPE: ClassVar[str] = "policy"
    lobby: bool | None = None
    start: str | None = None
    password: str | None = None
    guests: bool | None = None
    room: str | None = None

    def __repr__(self) -> str:
        return (f"PolicyChange(lobby={self.lobby}, start={self.start!r}, "
                f"password={'...' if self.password is not None else None}, "
                f"guests={self.guests})")


@dataclass(frozen=True, slots=True)
class Stats:
    TYPE: ClassVar[str] = "stats"
    rtt_ms: float | None
    bitrate_in: float | None
    bitrate_out: float | None
    loss: float | None
    room: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    TYPE: ClassVar[str] = "ping"
    id: str | int | None
    room: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingAction:
    """A moderator starts or stops recording the room (docs/recording.md)."""

    TYPE: ClassVar[str] = "recording"
    action: Literal["start", "stop"]
    room: str | None = None
    video: bool = False  # "start": video.mp4 too
    stream: bool = False  # "start": a live stream to `url` or `youtube_key` instead
    url: str | None = None
    youtube_key: str | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    TYPE: ClassVar[str] = "leave"
    room: str | None = None


ClientMessage = Join | Answer | Renegotiate | Media | Chat | Hand | SetName | Moderate | \
    Stats | Ping | Leave | LobbyAction | PolicyChange | RecordingAction | Reaction | \
    PrivateChat  # fmt: skip


# -- parsing ---------------------------------------------------------------------------------


class _Fields:
    """Typed access to one message's fields; every failure names the field."""

    def __init__(self, data: Mapping[str, object], kind: str) -> None:
        self.data = data
        self.kind = kind

    def fail(self, name: str, expected: str) -> ProtocolError:
        return ProtocolError("bad-message", f"{name}: expected {expected}", self.kind)

    def boolean(self, name: str) -> bool:
        value = self.data.get(name)
        if not isinstance(value, bool):
            raise self.fail(name, "true or false")
        return value

    def integer(self, name: str, low: int, high: int) -> int:
        value = self.data.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(name, f"an integer from {low} to {high}")
        return value

    def number(self, name: str) -> float | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value) or value < 0:  # fmt: skip
            raise self.fail(name, "a number of at least 0, or null")
        return float(value)

    def text(self, name: str, longest: int, *, lines: bool = False) -> str:
        value = self.data.get(name)
        if not isinstance(value, str):
            raise self.fail(name, "a string")
        value = value.strip()
        if not 1 <= len(value) <= longest:
            raise self.fail(name, f"1 to {longest} characters")
        if (_CONTROL_BUT_LINES if lines else _CONTROL).search(value):
            raise self.fail(name, "no control characters")
        return value

    def room(self, *, required: bool) -> str | None:
        value = self.data.get("room")
        if value is None and not required:
            return None
        if not isinstance(value, str) or not ROOM_NAME.fullmatch(value):
            raise self.fail("room", "1 to 64 characters from A-Z, a-z, 0-9, '.', '_', '-'")
        return value.lower()


def _join(f: _Fields) -> Join:
    version = f.data.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise f.fail("version", "an integer")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            "unsupported-version", f"version {version}: this server speaks {PROTOCOL_VERSION}",
            "join",
        )  # fmt: skip
    room = f.room(required=True)
    assert room is not None
    token = f.data.get("token")
    if token is not None and (not isinstance(token, str) or not 1 <= len(token) <= MAX_TOKEN):
        raise f.fail("token", f"a string of at most {MAX_TOKEN} characters")
    password = f.data.get("password")
    if password is not None and (not isinstance(password, str)
                                 or not 1 <= len(password) <= MAX_PASSWORD):  # fmt: skip
        raise f.fail("password", f"a string of 1 to {MAX_PASSWORD} characters")
    resume = f.data.get("resume")
    if resume is not None and (not isinstance(resume, str)
                               or not RESUME_TOKEN.fullmatch(resume)):  # fmt: skip
        raise f.fail("resume", "the resume token a `joined` message gave")
    return Join(room=room, name=f.text("name", MAX_NAME), audio=f.boolean("audio"),
                video=f.boolean("video"), version=version, token=token,
                password=password, resume=resume)  # fmt: skip


def _lobby(f: _Fields) -> LobbyAction:
    action = f.data.get("action")
    target = f.data.get("target")
    room = f.room(required=False)
    if action == "admit-all":
        if target is not None:
            raise f.fail("target", "no target for admit-all")
        return LobbyAction(action="admit-all", target=None, room=room)
    if action in ("admit", "deny", "send-back"):
        if not isinstance(target, str) or not 1 <= len(target) <= MAX_ID:
            raise f.fail("target", "a participant id")
        kind: LobbyActionKind = "admit" if action == "admit" else \
            "deny" if action == "deny" else "send-back"  # fmt: skip
        return LobbyAction(action=kind, target=target, room=room)
    raise f.fail("action", '"admit", "deny", "admit-all" or "send-back"')


def _policy(f: _Fields) -> PolicyChange:
    lobby = f.boolean("lobby") if "lobby" in f.data else None
    guests = f.boolean("guests") if "guests" in f.data else None
    start = f.data.get("start")
    if start is not None and start not in ("anyone", "hosts"):
        raise f.fail("start", '"anyone" or "hosts"')
    password = f.data.get("password")
    if password is not None and (not isinstance(password, str) or len(password) > MAX_PASSWORD
                                 or 0 < len(password) < 4):  # fmt: skip
        raise f.fail("password", f'4 to {MAX_PASSWORD} characters, or "" to remove it')
    return PolicyChange(lobby=lobby, start=start if isinstance(start, str) else None,
                        password=password, guests=guests,
                        room=f.room(required=False))  # fmt: skip


def _reaction(f: _Fields) -> Reaction:
    emoji = f.data.get("emoji")
    if not isinstance(emoji, str) or emoji not in REACTIONS:
        raise f.fail("emoji", "one of " + " ".join(REACTIONS))
    return Reaction(emoji=emoji, room=f.room(required=False))


def _private_chat(f: _Fields) -> PrivateChat:
    to = f.data.get("to")
    if not isinstance(to, str) or not 1 <= len(to) <= MAX_ID:
        raise f.fail("to", "a participant id")
    return PrivateChat(to=to, text=f.text("text", MAX_CHAT_TEXT, lines=True),
                       room=f.room(required=False))  # fmt: skip


def _answer(f: _Fields) -> Answer:
    sdp = f.data.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise f.fail("sdp", "an SDP answer (a string starting with 'v=0')")
    return Answer(sdp=sdp, revision=f.integer("revision", 1, 2**31), room=f.room(required=False))


def _media(f: _Fields) -> Media:
    return Media(audio=f.boolean("audio"), video=f.boolean("video"), screen=f.boolean("screen"),
                 room=f.room(required=False))  # fmt: skip


def _moderate(f: _Fields) -> Moderate:
    action = f.data.get("action")
    target = f.data.get("target")
    room = f.room(required=False)
    if action == "mute-all":
        if target is not None:
            raise f.fail("target", "no target for mute-all")
        return Moderate(action="mute-all", target=None, room=room)
    if action in ("mute", "kick"):
        if not isinstance(target, str) or not 1 <= len(target) <= MAX_ID:
            raise f.fail("target", "a participant id")
        return Moderate(action="mute" if action == "mute" else "kick", target=target, room=room)
    raise f.fail("action", '"mute", "mute-all" or "kick" (nobody can unmute someone else)')


def _ping(f: _Fields) -> Ping:
    value = f.data.get("id")
    ok = value is None or (isinstance(value, str) and len(value) <= MAX_ID) or \
        (isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53)  # fmt: skip
    if not ok:
        raise f.fail("id", f"a string of at most {MAX_ID} characters or an integer")
    assert value is None or isinstance(value, str | int)
    return Ping(id=value, room=f.room(required=False))


def _recording(f: _Fields) -> RecordingAction:
    action = f.data.get("action")
    if action == "start":
        video = f.boolean("video") if "video" in f.data else False
        mode = f.data.get("mode", "file")
        if mode not in ("file", "stream"):
            raise f.fail("mode", '"file" or "stream"')
        url = f.text("url", 1024) if f.data.get("url") is not None else None
        key = f.text("youtube_key", 128) if f.data.get("youtube_key") is not None else None
        return RecordingAction(action="start", room=f.room(required=False), video=video,
                               stream=mode == "stream", url=url, youtube_key=key)
    if action == "stop":
        return RecordingAction(action="stop", room=f.room(required=False))
    raise f.fail("action", '"start" or "stop"')


def _stats(f: _Fields) -> Stats:
    return Stats(rtt_ms=f.number("rtt_ms"), bitrate_in=f.number("bitrate_in"),
                 bitrate_out=f.number("bitrate_out"), loss=f.number("loss"),
                 room=f.room(required=False))  # fmt: skip


_SCHEMAS: dict[str, tuple[frozenset[str], Callable[[_Fields], ClientMessage]]] = {
    "join": (frozenset({"version", "room", "name", "audio", "video", "token", "password",
                        "resume"}), _join),
    "lobby": (frozenset({"action", "target"}), _lobby),
    "policy": (frozenset({"lobby", "start", "password", "guests"}), _policy),
    "answer": (frozenset({"sdp", "revision"}), _answer),
    "renegotiate": (frozenset(), lambda f: Renegotiate(room=f.room(required=False))),
    "media": (frozenset({"audio", "video", "screen"}), _media),
    "chat": (frozenset({"text"}),
             lambda f: Chat(text=f.text("text", MAX_CHAT_TEXT, lines=True),
                            room=f.room(required=False))),
    "reaction": (frozenset({"emoji"}), _reaction),
    "private-chat": (frozenset({"to", "text"}), _private_chat),
    "hand": (frozenset({"raised"}),
             lambda f: Hand(raised=f.boolean("raised"), room=f.room(required=False))),
    "set-name": (frozenset({"name"}),
                 lambda f: SetName(name=f.text("name", MAX_NAME), room=f.room(required=False))),
    "moderate": (frozenset({"action", "target"}), _moderate),
    "stats": (frozenset({"rtt_ms", "bitrate_in", "bitrate_out", "loss"}), _stats),
    "ping": (frozenset({"id"}), _ping),
    "leave": (frozenset(), lambda f: Leave(room=f.room(required=False))),
    "recording": (frozenset({"action", "video", "mode", "url", "youtube_key"}), _recording),
}  # fmt: skip


def parse_message(text: str | bytes) -> ClientMessage:
    """One client message from one text frame; ProtocolError when it does not fit."""
    if len(text) > MAX_MESSAGE_BYTES:
        raise ProtocolError("bad-message", f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # JSON, UTF-8, and too-long integer literals
        raise ProtocolError("bad-json", "not JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad-json", "expected a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad-message", "type: expected a string")
    schema = _SCHEMAS.get(kind)
    if schema is None:
        raise ProtocolError("unknown-type", f"unknown message type {kind[:40]!r}", kind[:40])
    allowed, build = schema
    for key in data:
        if key != "type" and key != "room" and key not in allowed:
            raise ProtocolError("bad-message", f"{str(key)[:40]}: unknown field", kind)
    return build(_Fields(data, kind))


# -- server messages -------------------------------------------------------------------------


def encode(message: Mapping[str, object]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def error(code: str, message: str, ref: str | None = None) -> dict[str, object]:
    return {"type": "error", "code": code, "message": message, "ref": ref}


def participant_json(info: ParticipantInfo) -> dict[str, object]:
    """A participant for the roster; one whose token names a picture adds "avatar" (an
    https: URL), a called-out phone "state" (and "reason" once its call failed):
    docs/signaling.md."""
    data: dict[str, object] = {
        "id": info.id, "name": info.name, "kind": info.kind, "role": info.role,
        "audio": info.audio, "video": info.video, "screen": info.screen,
        "muted": info.muted, "hand": info.hand,
    }  # fmt: skip
    if info.avatar is not None:
        data["avatar"] = info.avatar
    if info.state is not None:
        data["state"] = info.state
        if info.state_reason is not None:
            data["reason"] = info.state_reason
    return data


def joined(
    room: str,
    me: ParticipantInfo,
    participants: Iterable[ParticipantInfo],
    ice_servers: Sequence[Mapping[str, object]],
    dial_in: Mapping[str, object] | None,
    chat: Iterable[Mapping[str, object]],
    policy: Mapping[str, object] | None = None,
) -> dict[str, object]:
    message: dict[str, object] = {
        "type": "joined", "version": PROTOCOL_VERSION, "room": room,
        "self": participant_json(me),
        "participants": [participant_json(p) for p in participants],
        "ice_servers": [dict(s) for s in ice_servers],
        "dial_in": dict(dial_in) if dial_in is not None else None,
        "chat": [dict(c) for c in chat],
    }  # fmt: skip
    if policy is not None:
        message["policy"] = dict(policy)
    return message


def dial_in(info: Mapping[str, object]) -> dict[str, object]:
    """To a participant who became a moderator: the dial-in details again, host PIN included."""
    return {"type": "dial-in", "dial_in": dict(info)}


def lobby_state(state: str, waiting_for: str | None = None) -> dict[str, object]:
    """To a participant in the lobby: "waiting" (for "moderator" or "host"), "denied"."""
    return {"type": "lobby", "state": state, "waiting_for": waiting_for}


def lobby_list(waiting: Iterable[Mapping[str, object]], knock: bool) -> dict[str, object]:
    """To moderators: who waits. `knock`: someone new knocked (the page plays a sound)."""
    return {"type": "lobby-list", "waiting": [dict(w) for w in waiting], "knock": knock}


def policy(room_policy: Mapping[str, object]) -> dict[str, object]:
    return {"type": "policy", "policy": dict(room_policy)}


def offer(
    sdp: str, revision: int, tracks: Mapping[str, Mapping[str, object]]
) -> dict[str, object]:
    return {"type": "offer", "sdp": sdp, "revision": revision,
            "tracks": {mid: dict(t) for mid, t in tracks.items()}}  # fmt: skip


def participant_joined(info: ParticipantInfo) -> dict[str, object]:
    return {"type": "participant-joined", "participant": participant_json(info)}


def participant_left(participant_id: str, reason: str) -> dict[str, object]:
    return {"type": "participant-left", "id": participant_id, "reason": reason}


def participant_updated(info: ParticipantInfo) -> dict[str, object]:
    return {"type": "participant-updated", "participant": participant_json(info)}


def dominant_speaker(participant_id: str | None) -> dict[str, object]:
    return {"type": "dominant-speaker", "id": participant_id}


def chat(sender: str, name: str, text: str, ts: float) -> dict[str, object]:
    return {"type": "chat", "from": sender, "name": name, "text": text, "ts": ts}


def reaction(sender: str, emoji: str) -> dict[str, object]:
    return {"type": "reaction", "from": sender, "emoji": emoji}


def private_chat(sender: str, name: str, to: str, to_name: str, text: str,
                 ts: float) -> dict[str, object]:  # fmt: skip
    return {"type": "private-chat", "from": sender, "name": name, "to": to, "to_name": to_name,
            "text": text, "ts": ts}  # fmt: skip


def muted(by: str) -> dict[str, object]:
    return {"type": "muted", "by": by, "kind": "audio"}


def kicked(by: str | None) -> dict[str, object]:
    return {"type": "kicked", "by": by}


def quality(
    rtt_ms: float | None, receive_bitrate: int, send_bitrate: int, loss: float
) -> dict[str, object]:
    return {"type": "quality", "rtt_ms": rtt_ms, "receive_bitrate": receive_bitrate,
            "send_bitrate": send_bitrate, "loss": loss}  # fmt: skip


def pong(ping_id: str | int | None) -> dict[str, object]:
    return {"type": "pong", "id": ping_id}


def recording(active: bool) -> dict[str, object]:
    """To everyone in the room: whether it is being recorded (on joining, on every change)."""
    return {"type": "recording", "active": active}

"""One phone call inside the gateway: its leg's media, its IVR, and its place in a room."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.ivr import PinIvr
from gateway.media.codecs import codec_by_name
from gateway.rtp_session import RtpSession
from gateway.sip.peer import Peer

log = logging.getLogger(__name__)

Pcm = npt.NDArray[np.int16]


class CallState(enum.Enum):
    SETUP = "setup"  # INVITE received, media being opened, not answered yet
    ANSWERED = "answered"  # 200 sent, waiting for the ACK
    IVR = "ivr"  # collecting the PIN
    JOINING = "joining"  # the joining prompt plays; the room is known
    ROOM = "room"  # a participant of a conference
    ENDING = "ending"  # a goodbye plays, then BYE
    ENDED = "ended"


class PhoneLeg:
    """The mixer's view of a call: the leg's decoded input and encoded output.

    ``sample_rate`` is the PCM rate of both (the session's codec: 8000 for G.711, 16000 for
    G.722, 8000 or 16000 for Opus): ``pull_frame`` gives ``sample_rate / 50`` samples and
    ``send_payload`` wants frames encoded from that many. ``new_encoder()`` gives the mixer an
    encoder set up as the phone negotiated it (``codec_options``: an Opus phone's fmtp as
    ``codec_by_name`` arguments, from ``opus_fmtp_options``)."""

    __slots__ = ("codec_name", "codec_options", "leg_id", "payload_type", "session")

    def __init__(self, leg_id: str, session: RtpSession, codec_name: str,
                 payload_type: int | None = None,
                 codec_options: Mapping[str, Any] | None = None) -> None:
        self.leg_id = leg_id
        self.session = session
        self.codec_name = codec_name
        self.payload_type = payload_type
        self.codec_options: dict[str, Any] = dict(codec_options or {})

    def new_encoder(self) -> Callable[[Pcm], bytes]:
        return codec_by_name(self.codec_name, self.payload_type, **self.codec_options).encode

    @property
    def sample_rate(self) -> int:
        return self.session.sample_rate

    def pull_frame(self, now: float) -> Pcm | None:
        return self.session.pull_frame(now)

    def send_payload(self, payload: bytes) -> None:
        self.session.send_payload(payload)

    def skip_frames(self, count: int) -> None:
        self.session.skip_frames(count)


@dataclass(eq=False)
class PhoneCall:
    call_id: str
    leg_id: str
    caller: str  # the From user part (a number, usually)
    name: str  # as the room sees it (caller ID policy applied)
    source: Peer
    route_room: str | None  # set when the dialplan sent the call straight to a room
    state: CallState = CallState.SETUP
    session: RtpSession | None = None
    leg: PhoneLeg | None = None
    ivr: PinIvr | None = None
    room: str | None = None
    participant_id: str | None = None
    offered_in_200: bool = False  # the INVITE had no SDP: our 200 carried the offer
    sdp_version: int = 0
    pending_star: float | None = None  # when '*' was pressed in a room (for *6)
    alone_prompt: bool = False  # "you are the only participant" is playing to this leg
    end_reason: str = ""
    local_sdp: bytes = b""
    extra: dict[str, object] = field(default_factory=dict)

    def set_state(self, state: CallState) -> None:
        if state is not self.state:
            log.info("call %s: %s -> %s", self.call_id, self.state.value, state.value)
            self.state = state

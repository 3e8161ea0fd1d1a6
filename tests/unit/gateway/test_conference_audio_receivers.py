"""ConferenceAudio: callers' voices go to the bridge only while the room has receivers."""

from __future__ import annotations

from gateway.browser_audio import parse_rtp
from gateway.conference_audio import ConferenceAudio
from gateway.media.codecs import codec_by_name
from gateway.mixer import ConferenceMixer
from gateway.uplink import TICKS_PER_FRAME
from tests.unit.gateway.test_conference_audio import Leg, Link, Provider, settle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def setup() -> tuple[ConferenceAudio, ConferenceMixer, Provider, dict[str, Link], Clock]:
    mixer = ConferenceMixer(lambda name: codec_by_name(name).encode)
    provider = Provider()
    links: dict[str, Link] = {}
    clock = Clock()

    def connect(media: str, on_rtp: object, on_rtcp: object) -> Link:
        links[media] = Link(media)
        return links[media]

    return ConferenceAudio(mixer, provider, connect, clock), mixer, provider, links, clock


def run(audio: ConferenceAudio, mixer: ConferenceMixer, clock: Clock, ticks: int) -> None:
    for _ in range(ticks):
        clock.now += 0.02
        audio.before_tick(clock.now)
        mixer.tick(clock.now)


def header(packet: bytes) -> tuple[int, int, bool]:
    """(seq, timestamp, marker)"""
    parsed = parse_rtp(packet, 1)
    assert parsed is not None
    return parsed[1], parsed[2], parsed[3]


async def test_a_phones_only_room_encodes_and_sends_nothing() -> None:
    audio, mixer, provider, links, clock = setup()
    mixer.add_leg("r", Leg("l1", 8000))
    mixer.add_leg("r", Leg("l2", 8000))
    audio.caller_joined("r", "p1", "l1", 8000)
    audio.caller_joined("r", "p2", "l2", 8000)
    await settle()
    assert provider.live == {("r", "mix"), ("r", "p1"), ("r", "p2")}  # sources kept allocated
    uplink = audio.callers["p1"].uplink
    assert uplink is not None and not uplink.running and uplink.encoder is None
    ts = uplink.timestamp
    run(audio, mixer, clock, 20)
    assert links["local:r/p1"].sent == [] and links["local:r/p2"].sent == []
    assert uplink.timestamp == ts  # the tap is off: the uplink is not even called per tick
    assert audio.stats()["uplinks_running"] == 0
    # an Opus phone's own packets are not passed through either
    audio.caller_codec_changed("p2", 8000, passthrough=True)
    audio.callers["p2"].on_phone_packet(111, b"\x0b\x01", 960, True)
    assert links["local:r/p2"].sent == []
    audio.caller_left("p1")
    audio.caller_left("p2")
    await audio.close()


async def test_first_receiver_starts_every_caller_and_the_last_stops_them() -> None:
    audio, mixer, _, links, clock = setup()
    mixer.add_leg("r", Leg("l1", 8000))
    mixer.add_leg("r", Leg("l2", 8000))
    audio.caller_joined("r", "p1", "l1", 8000)
    audio.caller_joined("r", "p2", "l2", 8000)
    await settle()
    run(audio, mixer, clock, 5)
    audio.set_receivers("r", 1)  # a browser joins the conference while both callers talk
    run(audio, mixer, clock, 1)
    assert len(links["local:r/p1"].sent) == 1 and len(links["local:r/p2"].sent) == 1
    assert header(links["local:r/p1"].sent[0])[2]  # a talkspurt starts: marker
    audio.set_receivers("r", 2)  # a second receiver changes nothing
    run(audio, mixer, clock, 9)
    assert len(links["local:r/p1"].sent) == 10 and audio.stats()["uplinks_running"] == 2
    assert not any(header(p)[2] for p in links["local:r/p1"].sent[1:])
    audio.set_receivers("r", 1)
    run(audio, mixer, clock, 1)
    assert len(links["local:r/p1"].sent) == 11
    audio.set_receivers("r", 0)  # the last one leaves
    run(audio, mixer, clock, 10)
    assert len(links["local:r/p1"].sent) == 11 and len(links["local:r/p2"].sent) == 11
    uplink = audio.callers["p1"].uplink
    assert uplink is not None and uplink.encoder is None and not uplink.running
    audio.caller_left("p1")
    audio.caller_left("p2")
    await audio.close()


async def test_seq_and_timestamps_continue_across_a_stop_and_start() -> None:
    """One second without receivers: the next packet's seq is the next one, its timestamp
    is 51 frames on (the 50 ticks stopped and the tick itself), and it is marked."""
    audio, mixer, _, links, clock = setup()
    mixer.add_leg("r", Leg("l1", 8000))
    audio.set_receivers("r", 1)
    audio.caller_joined("r", "p1", "l1", 8000)
    await settle()
    run(audio, mixer, clock, 10)
    sent = links["local:r/p1"].sent
    seq0, ts0, _ = header(sent[-1])
    audio.set_receivers("r", 0)
    run(audio, mixer, clock, 50)
    audio.set_receivers("r", 1)
    run(audio, mixer, clock, 2)
    assert len(sent) == 12
    seq1, ts1, marker1 = header(sent[10])
    assert seq1 == (seq0 + 1) & 0xFFFF and marker1
    assert ts1 == (ts0 + 51 * TICKS_PER_FRAME) & 0xFFFFFFFF
    seq2, ts2, marker2 = header(sent[11])
    assert (seq2, ts2, marker2) == ((seq1 + 1) & 0xFFFF, ts1 + TICKS_PER_FRAME, False)
    audio.caller_left("p1")
    await audio.close()


async def test_a_receiver_before_the_callers_endpoint_is_back_starts_it_on_arrival() -> None:
    audio, mixer, provider, links, clock = setup()
    mixer.add_leg("r", Leg("l1", 8000))
    provider.gate.clear()
    audio.caller_joined("r", "p1", "l1", 8000)
    audio.set_receivers("r", 1)
    run(audio, mixer, clock, 3)  # tapped, but no uplink yet: nothing to send
    provider.gate.set()
    await settle()
    run(audio, mixer, clock, 3)
    assert len(links["local:r/p1"].sent) == 3
    audio.caller_left("p1")
    await audio.close()


async def test_a_codec_change_while_stopped_is_used_at_the_next_start() -> None:
    from gateway.media.opus import OpusCodec

    audio, mixer, _, _, _ = setup()
    leg = Leg("l1", 8000)
    mixer.add_leg("r", leg)
    audio.caller_joined("r", "p1", "l1", 8000)
    await settle()
    audio.caller_codec_changed("p1", 16000)
    uplink = audio.callers["p1"].uplink
    assert uplink is not None and uplink.encoder is None
    audio.set_receivers("r", 3)
    assert isinstance(uplink.encoder, OpusCodec) and uplink.encoder.sample_rate == 16000
    audio.caller_left("p1")
    await audio.close()


async def test_receivers_of_other_rooms_do_not_start_this_one() -> None:
    audio, mixer, _, links, clock = setup()
    mixer.add_leg("r", Leg("l1", 8000))
    audio.set_receivers("other", 2)
    audio.caller_joined("r", "p1", "l1", 8000)
    await settle()
    run(audio, mixer, clock, 3)
    assert links["local:r/p1"].sent == []
    audio.set_receivers("other", 0)
    assert audio.receivers == {}
    audio.caller_left("p1")
    await audio.close()


class Session:
    on_audio_packet: object = None


async def test_phone_rooms_follow_the_focus_count_of_receivers() -> None:
    """Through PhoneRooms: callers of a phones-only room send nothing; a browser joining the
    conference (muted) starts them; its leaving stops them; another gateway's phone counts."""
    from focus import Focus
    from gateway.call import PhoneCall
    from gateway.phone_rooms import PhoneRooms
    from gateway.prompts import PromptSet

    audio, mixer, _, links, clock = setup()
    focus = Focus()
    rooms = PhoneRooms(focus, mixer, PromptSet.load(), audio)
    calls = []
    for n in (1, 2):
        leg = Leg(f"l{n}", 8000)
        mixer.add_leg(None, leg)
        call = PhoneCall(f"c{n}", f"l{n}", f"+{n}", f"+{n}", ("127.0.0.1", 5060), None)
        call.leg, call.session = leg, Session()  # type: ignore[assignment]
        assert rooms.join(call, "r")
        calls.append(call)
    await settle()
    pids = [c.participant_id for c in calls]
    assert all(p is not None for p in pids)
    sent = [links[f"local:r/{p}"].sent for p in pids]
    run(audio, mixer, clock, 5)
    assert sent == [[], []] and focus.audio_receivers("r", "gateway") == 0
    browser = focus.join("r", "browser", "Ann", audio=False)
    run(audio, mixer, clock, 5)
    assert [len(s) for s in sent] == [5, 5]
    focus.leave(browser.id)
    run(audio, mixer, clock, 5)
    assert [len(s) for s in sent] == [5, 5]
    remote = focus.join("r", "phone", "+3", mixed_by="gateway@node-b")
    run(audio, mixer, clock, 2)
    assert [len(s) for s in sent] == [7, 7]
    focus.leave(remote.id)
    for call in calls:
        rooms.leave(call, "hangup")
    assert audio.receivers == {} and audio.callers == {}
    await audio.close()

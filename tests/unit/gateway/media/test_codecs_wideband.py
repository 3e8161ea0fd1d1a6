"""The codec registry with G.722 and Opus, and the jitter buffer and concealer with them."""

from __future__ import annotations

import numpy as np
import opuslib
import pytest

from gateway.media.codecs import (
    SUPPORTED_CODECS,
    ConcealingCodec,
    codec_by_name,
    opus_fmtp_options,
)
from gateway.media.g722 import G722Codec
from gateway.media.jitterbuffer import FrameKind, JitterBuffer, JitterFrame
from gateway.media.opus import OpusCodec, packet_ticks
from gateway.media.plc import Concealer, FrameDecoder
from gateway.sip.sdp import parse_fmtp

SSRC = 0x77


def test_registry_makes_new_stateful_instances() -> None:
    assert SUPPORTED_CODECS == ("OPUS", "G722", "PCMU", "PCMA")
    a, b = codec_by_name("G722"), codec_by_name("g722")
    assert isinstance(a, G722Codec) and a is not b and a.payload_type == 9
    assert codec_by_name("G722", 109).payload_type == 109
    opus = codec_by_name("opus", 111)
    assert isinstance(opus, OpusCodec) and opus is not codec_by_name("OPUS", 111)
    assert (opus.payload_type, opus.sample_rate, opus.frame_samples) == (111, 16000, 320)
    narrow = codec_by_name("opus", 96, sample_rate=8000, complexity=3, fec=False)
    assert isinstance(narrow, OpusCodec)
    assert (narrow.sample_rate, narrow.frame_samples, narrow.complexity, narrow.fec) == (
        8000, 160, 3, False)
    assert codec_by_name("PCMU", sample_rate=8000).sample_rate == 8000
    assert codec_by_name("G722", sample_rate=16000).sample_rate == 16000


@pytest.mark.parametrize(("args", "kwargs"), [
    (("opus",), {}),                                  # dynamic: needs its payload type
    (("opus", 111), {"sample_rate": 11025}),
    (("opus", 111), {"colour": "blue"}),
    (("G722",), {"sample_rate": 8000}),
    (("G722",), {"complexity": 5}),
    (("PCMA",), {"sample_rate": 16000}),
    (("G7221", 100), {}),
])
def test_registry_refuses(args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        codec_by_name(*args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fmtp", "want"), [
    (None, {"fec": False}),                          # RFC 7587: useinbandfec defaults to 0
    ("useinbandfec=1", {"fec": True}),
    ("useinbandfec=0; maxplaybackrate=8000", {"fec": False, "sample_rate": 8000}),
    ("sprop-maxcapturerate=8000;useinbandfec=1", {"fec": True, "sample_rate": 8000}),
    ("maxplaybackrate=16000;stereo=1;sprop-stereo=1", {"fec": False}),
    ("maxplaybackrate=12000", {"fec": False}),       # mediumband renders our wideband
    ("maxaveragebitrate=12000;useinbandfec=1", {"fec": True, "max_bitrate": 12000}),
    ("MaxPlaybackRate=8000; MAXAVERAGEBITRATE=9000", {"fec": False, "sample_rate": 8000,
                                                      "max_bitrate": 9000}),
    # not numbers, or out of range: ignored
    ("maxplaybackrate=4000;maxaveragebitrate=999999999", {"fec": False}),
    ("maxplaybackrate=-8000;maxaveragebitrate=12k", {"fec": False}),
    ("maxplaybackrate=;maxaveragebitrate", {"fec": False}),
])
def test_opus_fmtp_asks_for_what_we_send(fmtp: str | None, want: dict[str, object]) -> None:
    options = opus_fmtp_options(parse_fmtp(fmtp))
    assert options == want
    codec = codec_by_name("opus", 102, **options)
    assert isinstance(codec, OpusCodec)
    assert codec.sample_rate == want.get("sample_rate", 16000)
    assert codec.max_bitrate == want.get("max_bitrate")


def test_only_opus_conceals_itself() -> None:
    assert isinstance(codec_by_name("opus", 111), ConcealingCodec)
    assert not isinstance(codec_by_name("G722"), ConcealingCodec)
    assert not isinstance(codec_by_name("PCMU"), ConcealingCodec)


# --- the jitter buffer with wideband codecs ---------------------------------------------


def test_g722_thirty_ms_packets_become_twenty_ms_frames() -> None:
    """G.722's 8 kHz RTP clock and one byte per tick: 240-byte packets are cut into
    160-byte frames that decode to exactly what the whole stream decodes to."""
    enc = G722Codec()
    n = np.arange(320 * 12)
    pcm = (6000 * np.sin(2 * np.pi * 5000 * n / 16000)).astype(np.int16)
    stream = b"".join(enc.encode(f) for f in np.split(pcm, 12))
    codec = codec_by_name("G722")
    jb = JitterBuffer(codec.clock_rate, codec.timestamp_step, codec.bytes_per_tick)
    frames = []
    for tick in range(40):                           # 8 x 30 ms = 12 frames of 20 ms
        now = 0.005 + 0.020 * tick
        for k in range(8):
            if now - 0.020 <= 0.030 * k < now:       # sent every 30 ms
                jb.insert(SSRC, k, 5000 + 240 * k, k == 0, stream[240 * k : 240 * (k + 1)],
                          0.030 * k)
        frame = jb.pop(now)
        if frame.kind is not FrameKind.EMPTY:
            frames.append(frame)
    assert [f.kind for f in frames[:12]] == [FrameKind.AUDIO] * 12
    frames = frames[:12]
    assert [f.timestamp - 5000 for f in frames] == [160 * i for i in range(12)]
    decoded = np.concatenate([codec.decode(f.payload) for f in frames])
    assert np.array_equal(decoded, G722Codec().decode(stream))


def opus_packets(count: int, ms: int = 20) -> list[bytes]:
    enc = opuslib.Encoder(16000, 1, opuslib.APPLICATION_VOIP)
    n = np.arange(16 * ms)
    return [enc.encode((5000 * np.sin(0.2 * (n + 16 * ms * k))).astype(np.int16).tobytes(),
                       16 * ms) for k in range(count)]


def run(jb: JitterBuffer, packets: list[tuple[int, bytes]], pops: int) -> list[JitterFrame]:
    for i, (ts, payload) in enumerate(packets):
        jb.insert(SSRC, i, ts, i == 0, payload, 0.001 * i)
    return [jb.pop(0.2 + 0.02 * i) for i in range(pops)]


def test_opus_loss_hands_over_the_next_packet_for_fec() -> None:
    packets = opus_packets(6)
    jb = JitterBuffer(48000, 960, None, packet_ticks=packet_ticks)
    frames = run(jb, [(960 * k, p) for k, p in enumerate(packets) if k != 3], 6)
    assert [f.kind for f in frames] == [FrameKind.AUDIO] * 3 + [FrameKind.LOST] + [
        FrameKind.AUDIO] * 2
    assert frames[3].payload == packets[4]           # FEC material for the lost frame
    assert frames[4].payload == packets[4] and frames[4].timestamp == 4 * 960
    assert jb.stats.lost == 1


def test_opus_loss_of_two_gives_fec_only_to_the_second() -> None:
    packets = opus_packets(7)
    jb = JitterBuffer(48000, 960, None)
    frames = run(jb, [(960 * k, p) for k, p in enumerate(packets) if k not in (2, 3)], 7)
    assert [f.kind for f in frames[2:4]] == [FrameKind.LOST, FrameKind.LOST]
    assert frames[2].payload == b"" and frames[3].payload == packets[4]


def test_forty_ms_opus_packets_play_as_audio_then_continued() -> None:
    packets = opus_packets(4, ms=40)
    assert all(packet_ticks(p) == 1920 for p in packets)
    jb = JitterBuffer(48000, 960, None, packet_ticks=packet_ticks)
    frames = run(jb, [(1920 * k, p) for k, p in enumerate(packets)], 8)
    assert [f.kind for f in frames] == [FrameKind.AUDIO, FrameKind.CONTINUED] * 4
    assert [f.timestamp for f in frames] == [960 * i for i in range(8)]
    assert [f.payload for f in frames[::2]] == packets
    assert jb.stats.lost == 0 and jb.stats.played == 8
    # without packet_ticks the buffer would think every second frame was lost
    plain = JitterBuffer(48000, 960, None)
    kinds = [f.kind for f in run(plain, [(1920 * k, p) for k, p in enumerate(packets)], 8)]
    assert FrameKind.LOST in kinds


def test_g711_loss_carries_the_next_packet_to_conceal_towards() -> None:
    jb = JitterBuffer()
    frames = run(jb, [(160 * k, bytes([k]) * 160) for k in range(5) if k != 2], 5)
    assert frames[2].kind is FrameKind.LOST and frames[2].payload == bytes([3]) * 160


# --- concealment at 16 kHz --------------------------------------------------------------


def test_concealer_at_16khz_repeats_the_pitch_and_fades() -> None:
    plc = Concealer(frame_samples=320, sample_rate=16000)
    n = np.arange(320 * 4)
    voiced = (6000 * np.sin(2 * np.pi * 200 * n / 16000)
              + 2000 * np.sin(2 * np.pi * 400 * n / 16000)).astype(np.int16)
    for good in np.split(voiced, 4):
        plc.good(good)
    first = plc.conceal()
    assert first is not None and first.shape == (320,)
    # the period is 80 samples (200 Hz at 16 kHz): the first 10 ms repeat it at full level
    continuation = np.resize(voiced[-80:], 160)
    assert np.max(np.abs(first[:160].astype(int) - continuation)) < 400
    levels = [first]
    while (frame := plc.conceal()) is not None:
        levels.append(frame)
    assert len(levels) == 3                          # 60 ms of concealment, then silence
    assert np.abs(levels[-1]).max() < np.abs(first).max()


# --- FrameDecoder: jitter buffer frames to PCM ------------------------------------------


def test_frame_decoder_splits_long_opus_packets_and_uses_fec() -> None:
    enc = opuslib.Encoder(16000, 1, opuslib.APPLICATION_VOIP)
    n = np.arange(960)
    sixty = enc.encode((5000 * np.sin(0.1 * n)).astype(np.int16).tobytes(), 960)
    reference = OpusCodec(111, 16000).decode(sixty)
    decoder = FrameDecoder(OpusCodec(111, 16000))
    out = [decoder.frame(JitterFrame(FrameKind.AUDIO, sixty)),
           decoder.frame(JitterFrame(FrameKind.CONTINUED)),
           decoder.frame(JitterFrame(FrameKind.CONTINUED))]
    assert all(f is not None and f.shape == (320,) for f in out)
    assert np.array_equal(np.concatenate([f for f in out if f is not None]), reference)
    # a CONTINUED with nothing left (a dropped frame) is concealed, still one frame
    extra = decoder.frame(JitterFrame(FrameKind.CONTINUED))
    assert extra is not None and extra.shape == (320,)
    # LOST with the next packet: the codec's FEC path, not the generic concealer
    packets = [OpusCodec(111, 16000).encode(np.zeros(320, np.int16)) for _ in range(2)]
    rebuilt = decoder.frame(JitterFrame(FrameKind.LOST, packets[1]))
    assert rebuilt is not None and rebuilt.shape == (320,)
    assert decoder.frame(JitterFrame(FrameKind.EMPTY)) is None
    bad = decoder.frame(JitterFrame(FrameKind.AUDIO, bytes([0x0B, 0xFF, 0xFF])))
    assert bad is not None and bad.shape == (320,) and decoder.undecodable == 1


def test_frame_decoder_conceals_g722_with_the_generic_concealer() -> None:
    enc = G722Codec()
    n = np.arange(320 * 4)
    voiced = (6000 * np.sin(2 * np.pi * 200 * n / 16000)).astype(np.int16)
    decoder = FrameDecoder(codec_by_name("G722"))
    for chunk in np.split(voiced, 4):
        frame = decoder.frame(JitterFrame(FrameKind.AUDIO, enc.encode(chunk)))
        assert frame is not None and frame.shape == (320,)
    concealed = [decoder.frame(JitterFrame(FrameKind.LOST)) for _ in range(4)]
    assert concealed[0] is not None and np.abs(concealed[0]).max() > 3000   # goes on
    assert concealed[3] is None                                             # faded out
    assert decoder.frame(JitterFrame(FrameKind.EMPTY)) is None

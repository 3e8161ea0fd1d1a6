"""Opus for phones: libopus at 8 and 16 kHz, separate states, PLC and in-band FEC."""

from __future__ import annotations

import numpy as np
import opuslib
import opuslib.api.decoder
import pytest

from gateway.media.opus import OpusCodec, OpusError, packet_ticks


def tones(rate: int, frames: int, freqs: list[int], amp: float = 7000.0) -> np.ndarray:
    """A tone that changes pitch every 5 frames (so a lost frame is not predictable)."""
    fs = rate // 50
    per_sample = np.repeat(np.resize(np.array(freqs, dtype=np.float64), frames // 5 + 1),
                           5 * fs)[: fs * frames]
    phase = np.cumsum(2 * np.pi * per_sample / rate)
    return np.rint(amp * np.sin(phase)).astype(np.int16)


def peak_hz(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    return float(np.argmax(spectrum) * rate / signal.size)


def frames_of(pcm: np.ndarray, size: int) -> list[np.ndarray]:
    return [pcm[i : i + size] for i in range(0, pcm.size, size)]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


@pytest.mark.parametrize("rate", [8000, 16000])
def test_attributes(rate: int) -> None:
    codec = OpusCodec(111, rate)
    assert (codec.name, codec.payload_type, codec.clock_rate, codec.channels) == (
        "OPUS", 111, 48000, 1)
    assert codec.sample_rate == rate and codec.frame_samples == rate // 50
    assert codec.timestamp_step == 960 and codec.bytes_per_tick is None
    with pytest.raises(ValueError):
        codec.encode(np.zeros(rate // 50 + 1, dtype=np.int16))


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        OpusCodec(111, 44100)
    with pytest.raises(ValueError):
        OpusCodec(111, 16000, complexity=11)


@pytest.mark.parametrize(("rate", "freq"), [(8000, 440), (16000, 440), (16000, 5000)])
def test_round_trip_keeps_frequency_and_level(rate: int, freq: int) -> None:
    fs = rate // 50
    n = np.arange(fs * 50)
    pcm = np.rint(6000 * np.sin(2 * np.pi * freq * n / rate)).astype(np.int16)
    enc, dec = OpusCodec(111, rate), OpusCodec(111, rate)
    out = [dec.decode(enc.encode(f)) for f in frames_of(pcm, fs)]
    assert all(f.shape == (fs,) and f.dtype == np.int16 for f in out)
    got = np.concatenate(out)[fs * 10 :]
    assert abs(peak_hz(got, rate) - freq) < 10
    assert abs(rms(got) - rms(pcm)) < 0.2 * rms(pcm)


def test_encoder_and_decoder_states_are_separate() -> None:
    pcm = tones(16000, 20, [300, 700, 450, 900])
    other = OpusCodec(111, 16000).encode(np.zeros(320, dtype=np.int16))
    alone = OpusCodec(111, 16000)
    both = OpusCodec(111, 16000)
    for frame in frames_of(pcm, 320):
        a = alone.encode(frame)
        both.decode(other)                 # decoding another stream in between ...
        assert both.encode(frame) == a     # ... does not change what the encoder makes


def test_silence_decodes_to_silence_and_leaves_the_encoder_alone() -> None:
    pcm = tones(16000, 10, [300, 700])
    plain, mixed = OpusCodec(111, 16000), OpusCodec(111, 16000)
    for frame in frames_of(pcm, 320):
        expected = plain.encode(frame)
        mixed.silence()
        assert mixed.encode(frame) == expected
    quiet = OpusCodec(111, 16000).decode(plain.silence())
    assert quiet.shape == (320,) and np.abs(quiet).max() < 50


def test_plc_continues_then_fades() -> None:
    rate, fs = 16000, 320
    pcm = tones(rate, 30, [440])
    enc, dec = OpusCodec(111, rate), OpusCodec(111, rate)
    for frame in frames_of(pcm, fs):
        dec.decode(enc.encode(frame))
    lost = [dec.decode_lost() for _ in range(10)]
    assert all(f.shape == (fs,) for f in lost)
    assert rms(lost[0]) > 0.3 * rms(pcm)               # the tone goes on at first
    assert abs(peak_hz(lost[0], rate) - 440) < 60
    assert rms(lost[-1]) < 0.5 * rms(lost[0])          # and fades


def test_fec_from_next_packet_rebuilds_a_lost_frame() -> None:
    rate, fs = 16000, 320
    pcm = tones(rate, 40, [300, 700, 450, 900, 350, 600, 500, 800])
    enc = OpusCodec(111, rate)
    packets = [enc.encode(f) for f in frames_of(pcm, fs)]
    reference = OpusCodec(111, rate)
    expected = [reference.decode(p).astype(np.float64) for p in packets]
    fec_errors, plc_errors = [], []
    for lost in range(8, 35):                  # each position in turn is the lost one
        with_fec, without = OpusCodec(111, rate), OpusCodec(111, rate)
        for p in packets[:lost]:
            with_fec.decode(p)
            without.decode(p)
        fec = with_fec.decode_lost(packets[lost + 1])
        plc = without.decode_lost(None)
        assert fec.shape == plc.shape == (fs,)
        level = rms(expected[lost])
        fec_errors.append(rms(fec - expected[lost]) / level)
        plc_errors.append(rms(plc - expected[lost]) / level)
        # the next packet still decodes normally afterwards
        assert with_fec.decode(packets[lost + 1]).shape == (fs,)
    # FEC rebuilds the frame (error ~8 % of its level); PLC can only guess (~70 %)
    assert np.mean(fec_errors) < 0.2 < 0.5 < np.mean(plc_errors)
    assert sum(f < p for f, p in zip(fec_errors, plc_errors, strict=True)) == len(fec_errors)


def test_fec_off_falls_back_to_plc() -> None:
    enc = OpusCodec(111, 16000, fec=False)
    packets = [enc.encode(f) for f in frames_of(tones(16000, 12, [300, 700]), 320)]
    a, b = OpusCodec(111, 16000), OpusCodec(111, 16000)
    for p in packets[:5]:
        a.decode(p)
        b.decode(p)
    assert np.array_equal(a.decode_lost(packets[6]), b.decode_lost(None))


def test_corrupt_packet_raises_value_error() -> None:
    dec = OpusCodec(111, 16000)
    with pytest.raises(OpusError):
        dec.decode(bytes([0x0B]) + b"\xff" * 3)        # code 3 with an impossible count
    with pytest.raises(ValueError):
        dec.decode(b"\x03")


def test_bitrate_and_complexity_are_applied() -> None:
    pcm = frames_of(tones(16000, 25, [300, 700, 450, 900, 350]), 320)
    low = OpusCodec(111, 16000, bitrate=8000, complexity=0)
    high = OpusCodec(111, 16000, bitrate=32000, complexity=10)
    low_bytes = sum(len(low.encode(f)) for f in pcm)
    high_bytes = sum(len(high.encode(f)) for f in pcm)
    assert low_bytes * 2 < high_bytes


def test_max_bitrate_lowers_the_rate_and_never_raises_it() -> None:
    """A receiver's maxaveragebitrate caps what we send: below our rate it lowers it, above
    it changes nothing (24 kbit/s at 16 kHz, libopus's own rate at 8 kHz)."""
    def sent(codec: OpusCodec) -> int:
        rate = codec.sample_rate
        pcm = frames_of(tones(rate, 50, [300, 700, 450, 900, 350]), rate // 50)
        return sum(len(codec.encode(f)) for f in pcm)

    wide = sent(OpusCodec(111, 16000))
    assert sent(OpusCodec(111, 16000, max_bitrate=64000)) == wide
    assert sent(OpusCodec(111, 16000, max_bitrate=10000)) * 1.8 < wide
    narrow = sent(OpusCodec(111, 8000))
    assert sent(OpusCodec(111, 8000, max_bitrate=64000)) == narrow
    assert sent(OpusCodec(111, 8000, max_bitrate=6000)) * 1.15 < narrow  # 10 -> 8.5 kb/s


def test_packet_ticks_from_toc() -> None:
    assert packet_ticks(b"") == 0
    assert packet_ticks(bytes([1 << 3])) == 960              # SILK NB 20 ms, one frame
    assert packet_ticks(bytes([(2 << 3) | 1])) == 2 * 1920   # SILK 40 ms, two frames
    assert packet_ticks(bytes([(1 << 3) | 3, 3])) == 3 * 960  # code 3: three frames
    assert packet_ticks(bytes([16 << 3])) == 120             # CELT 2.5 ms
    assert packet_ticks(bytes([(13 << 3)])) == 960           # hybrid 20 ms
    assert packet_ticks(bytes([(3 << 3) | 3, 63])) == 0      # 63 x 60 ms: not a packet
    # agrees with libopus on packets from a real encoder (20, 40 and 60 ms)
    dec48 = opuslib.Decoder(48000, 1)
    for ms in (20, 40, 60):
        enc = opuslib.Encoder(48000, 1, opuslib.APPLICATION_VOIP)
        data = enc.encode(np.zeros(48 * ms, dtype=np.int16).tobytes(), 48 * ms)
        assert packet_ticks(data) == 48 * ms == opuslib.api.decoder.get_nb_samples(
            dec48.decoder_state, data, len(data))


def test_a_40ms_packet_decodes_to_two_frames() -> None:
    enc = opuslib.Encoder(16000, 1, opuslib.APPLICATION_VOIP)
    pcm = tones(16000, 2, [440])
    data = enc.encode(pcm.tobytes(), 640)
    out = OpusCodec(111, 16000).decode(data)
    assert out.shape == (640,)

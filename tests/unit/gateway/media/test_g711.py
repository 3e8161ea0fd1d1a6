"""G.711 tables against the reference (audioop, tests only), codecs and loss concealment."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gateway.media import g711
from gateway.media.codecs import SUPPORTED_CODECS, codec_by_name
from gateway.media.plc import Concealer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # ITU G.711 reference behaviour (Sun g711.c); deprecated, tests only

ALL_INT16 = np.arange(65536, dtype=np.uint16).view(np.int16)
ALL_CODES = bytes(range(256))


def test_ulaw_matches_reference_for_every_sample_and_code() -> None:
    assert g711.ulaw_encode(ALL_INT16) == audioop.lin2ulaw(ALL_INT16.tobytes(), 2)
    assert g711.ulaw_decode(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES, 2)


def test_alaw_matches_reference_for_every_sample_and_code() -> None:
    assert g711.alaw_encode(ALL_INT16) == audioop.lin2alaw(ALL_INT16.tobytes(), 2)
    assert g711.alaw_decode(ALL_CODES).tobytes() == audioop.alaw2lin(ALL_CODES, 2)


def test_known_code_points() -> None:
    zero = np.zeros(1, dtype=np.int16)
    assert g711.ulaw_encode(zero) == b"\xff" and g711.alaw_encode(zero) == b"\xd5"
    assert g711.ulaw_decode(b"\x00")[0] == -32124 and g711.ulaw_decode(b"\x80")[0] == 32124
    assert g711.alaw_decode(b"\x55")[0] == -8 and g711.alaw_decode(b"\xd5")[0] == 8
    assert g711.alaw_decode(b"\xaa")[0] == 32256


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_decode_encode_is_identity_on_codes(name: str) -> None:
    codec = codec_by_name(name)
    codes = bytes(range(256))
    again = codec.encode(codec.decode(codes))
    if name == "PCMU":
        # 0x7f and 0xff both decode to 0 (the two zeros); 0 encodes to 0xff
        assert again == codes.replace(b"\x7f", b"\xff")
    else:
        assert again == codes


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_codec_round_trip_snr_on_speech_like_frame(name: str) -> None:
    codec = codec_by_name(name)
    t = np.arange(160) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t) + 3000 * np.sin(2 * np.pi * 1250 * t)).astype(
        np.int16
    )
    payload = codec.encode(pcm)
    assert len(payload) == 160
    out = codec.decode(payload)
    assert out.dtype == np.int16 and out.shape == (160,)
    noise = np.sum((out.astype(np.float64) - pcm) ** 2)
    snr = 10 * np.log10(np.sum(pcm.astype(np.float64) ** 2) / noise)
    assert snr > 33          # G.711 gives about 38 dB on loud signals


def test_codec_by_name_and_attributes() -> None:
    pcmu = codec_by_name("pcmu")
    pcma = codec_by_name("PCMA")
    assert (pcmu.name, pcmu.payload_type, pcmu.clock_rate, pcmu.frame_samples) == (
        "PCMU", 0, 8000, 160)
    assert (pcma.name, pcma.payload_type, pcma.timestamp_step, pcma.sample_rate) == (
        "PCMA", 8, 160, 8000)
    assert pcmu.silence() == b"\xff" * 160 and pcma.silence() == b"\xd5" * 160
    assert codec_by_name("PCMU", 96).payload_type == 96
    assert SUPPORTED_CODECS == ("OPUS", "G722", "PCMU", "PCMA")
    with pytest.raises(ValueError):
        codec_by_name("G729")
    with pytest.raises(ValueError):
        codec_by_name("PCMU", 200)


def test_encode_accepts_wider_ints_by_clipping() -> None:
    codec = codec_by_name("PCMU")
    wide = np.array([40000, -40000, 0], dtype=np.int32)
    expect = codec.encode(np.array([32767, -32768, 0], dtype=np.int16))
    assert codec.encode(wide) == expect  # type: ignore[arg-type]


# --- loss concealment -----------------------------------------------------------------


def voiced_frames(count: int, period: int = 57, amp: float = 6000.0) -> list[np.ndarray]:
    n = np.arange(count * 160)
    signal = amp * np.sin(2 * np.pi * n / period) + 0.3 * amp * np.sin(4 * np.pi * n / period)
    pcm = signal.astype(np.int16)
    return [pcm[k * 160 : (k + 1) * 160] for k in range(count)]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def test_concealment_repeats_pitch_then_fades_to_silence() -> None:
    plc = Concealer()
    frames = voiced_frames(6)
    for f in frames[:3]:
        assert plc.good(f) is f
    first = plc.conceal()
    assert first is not None and first.dtype == np.int16 and first.shape == (160,)
    # a periodic signal is continued: the first 10 ms (full level) match what would follow
    expected_next = voiced_frames(4)[3]
    err = rms(first[:80] - expected_next[:80])
    assert err < 0.15 * rms(expected_next)
    second = plc.conceal()
    third = plc.conceal()
    assert second is not None and third is not None
    assert rms(first) > rms(second) > rms(third) > 0
    assert plc.conceal() is None            # 60 ms after the loss: silence
    assert plc.conceal() is None


def test_recovery_crossfades_without_a_jump() -> None:
    plc = Concealer()
    frames = voiced_frames(8)
    for f in frames[:4]:
        plc.good(f)
    assert plc.conceal() is not None
    real = frames[5]
    out = plc.good(real)
    assert out is not real and out.shape == (160,)
    assert np.array_equal(out[32:], real[32:])
    assert not plc.concealing


def test_conceal_without_history_is_silence_and_reset_forgets() -> None:
    plc = Concealer()
    assert plc.conceal() is None
    plc.good(voiced_frames(1)[0])
    plc.reset()
    assert plc.conceal() is None

"""G.722 through PyAV: wideband, 8 kHz RTP clock, stateful, cuttable at any byte."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.media.g722 import G722Codec


def tone(freq: float, frames: int, amp: float = 8000.0) -> np.ndarray:
    n = np.arange(320 * frames)
    return np.rint(amp * np.sin(2 * np.pi * freq * n / 16000)).astype(np.int16)


def snr_db(signal: np.ndarray, freq: float) -> tuple[float, float, float]:
    """(SNR of the best-fitting sinusoid at ``freq``, its amplitude, the peak frequency)."""
    n = np.arange(signal.size)
    basis = np.stack([np.sin(2 * np.pi * freq * n / 16000), np.cos(2 * np.pi * freq * n / 16000)],
                     axis=1)
    coef, *_ = np.linalg.lstsq(basis, signal.astype(np.float64), rcond=None)
    fitted = basis @ coef
    noise = np.mean((signal - fitted) ** 2)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    peak = float(np.argmax(spectrum) * 16000 / signal.size)
    return float(10 * np.log10(np.mean(fitted**2) / noise)), float(np.hypot(*coef)), peak


def round_trip(pcm: np.ndarray) -> np.ndarray:
    enc, dec = G722Codec(), G722Codec()
    out = []
    for i in range(0, pcm.size, 320):
        payload = enc.encode(pcm[i : i + 320])
        assert len(payload) == 160
        frame = dec.decode(payload)
        assert frame.shape == (320,) and frame.dtype == np.int16
        out.append(frame)
    return np.concatenate(out)


def test_attributes() -> None:
    codec = G722Codec()
    assert (codec.name, codec.payload_type, codec.clock_rate, codec.sample_rate) == (
        "G722", 9, 8000, 16000)
    assert codec.frame_samples == 320 and codec.timestamp_step == 160
    assert codec.bytes_per_tick == 1 and codec.channels == 1
    assert G722Codec(100).payload_type == 100


@pytest.mark.parametrize(("freq", "min_snr"), [(1000, 40.0), (3000, 35.0), (5000, 20.0),
                                               (6500, 20.0)])
def test_tone_survives_with_its_frequency(freq: int, min_snr: float) -> None:
    """5 and 6.5 kHz are beyond G.711's band: only a wideband codec carries them."""
    out = round_trip(tone(freq, 50))[3200:]
    snr, amp, peak = snr_db(out, freq)
    assert abs(peak - freq) < 10
    assert abs(amp - 8000) < 0.05 * 8000
    assert snr > min_snr


def test_encoder_and_decoder_states_are_separate() -> None:
    pcm = tone(440, 10) + tone(5000, 10, 2000)
    other = G722Codec().encode(tone(1000, 1))
    alone, both = G722Codec(), G722Codec()
    for i in range(0, pcm.size, 320):
        expected = alone.encode(pcm[i : i + 320])
        both.decode(other)
        assert both.encode(pcm[i : i + 320]) == expected


def test_state_matters_across_frames() -> None:
    """ADPCM: decoding a frame with a fresh decoder differs from decoding it in sequence."""
    enc = G722Codec()
    payloads = [enc.encode(f) for f in np.split(tone(700, 5), 5)]
    dec = G722Codec()
    in_sequence = [dec.decode(p) for p in payloads][-1]
    assert not np.array_equal(G722Codec().decode(payloads[-1]), in_sequence)


def test_payload_can_be_cut_at_any_byte() -> None:
    """One byte is two samples and one RTP tick: pieces decode to the same samples."""
    enc = G722Codec()
    stream = b"".join(enc.encode(f) for f in np.split(tone(440, 6) + tone(5000, 6, 3000), 6))
    whole = G722Codec().decode(stream)
    assert whole.shape == (len(stream) * 2,)
    dec = G722Codec()
    pieces, pos = [], 0
    for size in (100, 160, 220, 1, 59, 160, 260):
        pieces.append(dec.decode(stream[pos : pos + size]))
        pos += size
    assert pos == len(stream)
    assert np.array_equal(np.concatenate(pieces), whole)


def test_silence_and_edge_cases() -> None:
    codec = G722Codec()
    silent = G722Codec().decode(codec.silence())
    assert len(codec.silence()) == 160 and np.abs(silent).max() < 50
    assert codec.decode(b"").shape == (0,)
    with pytest.raises(ValueError):
        codec.encode(np.zeros(160, dtype=np.int16))
    # a float frame is clipped and converted
    loud = np.full(320, 40000.0)
    assert len(codec.encode(loud)) == 160

"""Loss concealment (gateway/media/plc.py): G.711 Appendix I style extrapolation, the
look-ahead interpolation of FrameDecoder, at 8 and 16 kHz."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.media.codecs import codec_by_name
from gateway.media.jitterbuffer import FrameKind, JitterFrame
from gateway.media.plc import Concealer, FrameDecoder

Pcm = npt.NDArray[np.int16]
Float = npt.NDArray[np.float64]


def voiced(samples: int, period: float, amp: float = 5000.0, glide: float = 0.0) -> Float:
    """A vowel-like tone with two harmonics; ``glide``: relative change of the frequency per
    second (a pitch that moves)."""
    t = np.arange(samples, dtype=np.float64)
    phase = 2 * np.pi * (t + 0.5 * glide * t * t / 8000) / period
    return amp * np.sin(phase) + 0.4 * amp * np.sin(2 * phase + 0.7) + 0.2 * amp * np.sin(
        3 * phase + 1.9)


def frames(signal: Float, size: int) -> list[Pcm]:
    pcm = np.clip(np.rint(signal), -32768, 32767).astype(np.int16)
    return [pcm[k : k + size] for k in range(0, pcm.size - size + 1, size)]


def rms(x: npt.NDArray[np.generic]) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def max_step(x: npt.NDArray[np.generic]) -> float:
    return float(np.max(np.abs(np.diff(np.asarray(x, dtype=np.float64)))))


def expected_gain(samples: int, rate: int = 8000) -> Float:
    """The documented level: full for 10 ms, then down 20 % per 10 ms."""
    t = np.arange(samples, dtype=np.float64)
    return np.clip(1.0 - (t - rate / 100) / (rate / 20), 0.0, 1.0)


def test_steady_voiced_loss_is_continued_closely_then_fades_to_silence() -> None:
    parts = frames(voiced(160 * 8, period=57), 160)
    plc = Concealer()
    for f in parts[:4]:
        assert plc.good(f) is f                  # good frames pass untouched, undelayed
    out = []
    while (frame := plc.conceal()) is not None:
        assert frame.dtype == np.int16 and frame.shape == (160,)
        out.append(frame)
    assert len(out) == 3                         # 60 ms of concealment, then silence
    assert plc.conceal() is None and plc.concealing
    synthetic = np.concatenate(out).astype(np.float64)
    truth = np.concatenate(parts[4:7]).astype(np.float64) * expected_gain(480)
    # a periodic signal: the loop (and its widening to 2 and 3 periods) is the continuation
    assert rms(synthetic - truth) < 0.02 * rms(parts[3])
    assert rms(out[0]) > rms(out[1]) > rms(out[2]) > 0
    assert np.abs(synthetic[-8:]).max() < 0.01 * np.abs(parts[3]).max()    # down to silence


def test_no_step_at_loss_start_nor_at_recovery() -> None:
    # a gliding pitch: the last period does not loop onto itself seamlessly
    signal = voiced(160 * 8, period=47.3, glide=-1.5)
    parts = frames(signal, 160)
    natural = max_step(signal)
    plc = Concealer()
    for f in parts[:4]:
        plc.good(f)
    lost = plc.conceal()
    assert lost is not None
    recovered = plc.good(parts[5])
    assert not plc.concealing
    played = np.concatenate((parts[3], lost, recovered))
    assert max_step(played[150:175]) <= 1.2 * natural     # into the loss
    assert max_step(played[310:335]) <= 1.2 * natural     # out of it
    # the recovery cross-fade lasts 4 ms after a 20 ms loss; then the frame is the real one
    assert np.array_equal(recovered[32:], parts[5][32:])
    assert not np.array_equal(recovered[:32], parts[5][:32])


def test_recovery_cross_fade_grows_with_longer_losses() -> None:
    parts = frames(voiced(160 * 10, period=61), 160)
    plc = Concealer()
    for f in parts[:4]:
        plc.good(f)
    for _ in range(2):                            # 40 ms lost: 4 + 2 * 4 = 12, at most 10 ms
        assert plc.conceal() is not None
    shifted = np.roll(parts[6], 20)               # out of phase with the synthetic signal
    out = plc.good(shifted)
    assert np.array_equal(out[80:], shifted[80:])
    assert not np.array_equal(out[72:80], shifted[72:80])


def test_the_loop_widens_to_older_periods_from_the_second_lost_frame() -> None:
    period = 100
    signal = voiced(480, period=period)
    signal[480 - 3 * period : 480 - 2 * period] *= 0.5   # the third period from the end
    plc = Concealer()
    for f in frames(signal, 160):
        plc.good(f)
    out = np.concatenate([plc.conceal() for _ in range(2)])
    level = out / np.maximum(expected_gain(320), 1e-9)
    # the first 20 ms loop the last period: full level throughout
    assert abs(rms(level[:period]) / rms(signal[-period:]) - 1.0) < 0.02
    # 30 ms in, three periods loop: the weaker one plays for most of a period (a loop of
    # one period would keep the full level)
    def loudest(x: Float) -> float:
        return max(rms(x[i : i + 30]) for i in range(x.size - 29))

    assert 0.4 < loudest(level[250:300]) / loudest(level[:160]) < 0.8


def test_a_dying_signal_keeps_dying() -> None:
    n = np.arange(160 * 5)
    decaying = voiced(n.size, period=50) * 0.97 ** (n / 10)     # -13 dB per 20 ms
    parts = frames(decaying, 160)
    plc = Concealer()
    for f in parts[:3]:
        plc.good(f)
    lost = plc.conceal()
    assert lost is not None
    truth = parts[3].astype(np.float64) * expected_gain(160)
    assert rms(lost) < 0.85 * rms(parts[2][-100:]) * np.mean(expected_gain(160))
    assert rms(lost.astype(np.float64) - truth) < 0.15 * rms(truth)


def test_conceal_without_history_is_silence_and_reset_forgets() -> None:
    plc = Concealer()
    assert plc.conceal() is None
    first = frames(voiced(160, period=57), 160)[0]
    assert plc.good(first) is first               # nothing to cross-fade from
    plc.reset()
    assert plc.conceal() is None


def both_ways(parts: list[Pcm], frame_samples: int = 160,
              rate: int = 8000) -> tuple[Pcm, Pcm, Concealer]:
    """Frame 4 lost after frames 0-3: what extrapolation and interpolation towards frame 5
    make of it, and the interpolating concealer."""
    extrapolating, interpolating = (Concealer(frame_samples, rate) for _ in range(2))
    for f in parts[:4]:
        extrapolating.good(f)
        interpolating.good(f)
    guessed = extrapolating.conceal()
    assert guessed is not None
    return guessed, interpolating.interpolate(parts[5]), interpolating


def test_interpolation_matches_the_truth_better_and_joins_the_next_frame() -> None:
    signal = voiced(160 * 8, period=52.0, glide=-1.0)
    parts = frames(signal, 160)
    truth = parts[4].astype(np.float64)
    guessed, bridged, interpolating = both_ways(parts)
    assert bridged.dtype == np.int16 and bridged.shape == (160,)
    assert rms(bridged - truth) < 0.7 * rms(guessed - truth)
    # no recovery cross-fade: the next frame plays as it is, and joins without a step
    assert not interpolating.concealing
    assert interpolating.good(parts[5]) is parts[5]
    joined = np.concatenate((parts[3], bridged, parts[5]))
    assert max_step(joined) <= 1.2 * max_step(signal)


def test_interpolation_without_history_fades_the_next_frame_in() -> None:
    parts = frames(voiced(160 * 2, period=40), 160)
    plc = Concealer()
    bridged = plc.interpolate(parts[1])
    assert rms(bridged[:40]) < 0.35 * rms(bridged[120:])
    assert max_step(np.concatenate((bridged, parts[1]))) <= 1.2 * max_step(parts[1])


def _decoder_run(codec_name: str, kinds: list[FrameKind], parts: list[Pcm]) -> list[Pcm | None]:
    """Feed a FrameDecoder a run of frames: AUDIO carries frame k's payload, LOST the next
    frame's payload when that one is AUDIO (what the jitter buffer hands out)."""
    encoder = codec_by_name(codec_name)
    payloads = [encoder.encode(p) for p in parts]
    decoder = FrameDecoder(codec_by_name(codec_name))
    out = []
    for k, kind in enumerate(kinds):
        if kind is FrameKind.AUDIO:
            jf = JitterFrame(kind, payloads[k])
        else:
            after = k + 1 < len(kinds) and kinds[k + 1] is FrameKind.AUDIO
            jf = JitterFrame(kind, payloads[k + 1] if after else b"")
        out.append(decoder.frame(jf))
    return out


def test_frame_decoder_interpolates_g711_after_consecutive_losses() -> None:
    signal = voiced(160 * 9, period=44.0, glide=1.0)
    parts = frames(signal, 160)
    pcmu = codec_by_name("PCMU")
    decoded = [pcmu.decode(pcmu.encode(p)) for p in parts]
    audio, lost = FrameKind.AUDIO, FrameKind.LOST
    kinds = [audio] * 4 + [lost, lost] + [audio] * 3
    out = _decoder_run("PCMU", kinds, parts)
    assert all(f is not None and f.shape == (160,) for f in out)
    played = np.concatenate([f for f in out if f is not None])
    # the first lost frame is extrapolated, the second bridges into frame 6, which plays as
    # decoded: no recovery cross-fade
    assert out[6] is not None and np.array_equal(out[6], decoded[6])
    assert max_step(played) <= 1.2 * max_step(np.concatenate(decoded))
    # the bridged frame is closer to the truth than plain concealment of the same run
    plain = _decoder_run("PCMU", [*kinds[:6], FrameKind.EMPTY], parts)
    assert plain[5] is not None and out[5] is not None
    truth = decoded[5].astype(np.float64)
    assert rms(out[5] - truth) < 0.7 * rms(plain[5] - truth)


def test_frame_decoder_looks_ahead_only_for_stateless_codecs() -> None:
    assert getattr(codec_by_name("PCMA"), "stateless", False) is True
    assert getattr(codec_by_name("G722"), "stateless", False) is False
    parts = frames(voiced(320 * 7, period=90.0, glide=2.0), 320)
    kinds = [FrameKind.AUDIO] * 4 + [FrameKind.LOST] + [FrameKind.AUDIO] * 2
    with_next = _decoder_run("G722", kinds, parts)
    without = _decoder_run("G722", [*kinds[:5], FrameKind.EMPTY], parts)
    # G.722 keeps decoder state: the next payload is not decoded ahead, the loss is
    # extrapolated exactly as without it
    assert with_next[4] is not None and without[4] is not None
    assert np.array_equal(with_next[4], without[4])


def test_wideband_concealment_and_interpolation_at_16khz() -> None:
    signal = voiced(320 * 8, period=2 * 77.0, glide=-0.5)     # 104 Hz at 16 kHz
    parts = frames(signal, 320)
    plc = Concealer(frame_samples=320, sample_rate=16000)
    for f in parts[:4]:
        plc.good(f)
    out = []
    while (frame := plc.conceal()) is not None:
        assert frame.shape == (320,)
        out.append(frame)
    assert len(out) == 3
    truth = parts[4].astype(np.float64)
    assert rms(out[0][:160] - truth[:160]) < 0.25 * rms(truth)
    recovered = plc.good(parts[7])               # after 60 ms and more: faded in from silence
    assert np.array_equal(recovered[160:], parts[7][160:])
    assert abs(int(recovered[0])) < 0.1 * np.abs(parts[7][:160]).max()

    guessed, bridged, _ = both_ways(parts, 320, 16000)
    assert rms(bridged - truth) < 0.7 * rms(guessed - truth)
    assert max_step(np.concatenate((parts[3], bridged, parts[5]))) <= 1.2 * max_step(signal)

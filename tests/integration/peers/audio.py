"""Make and measure test audio: tones as 16-bit WAV (8 kHz mono by default) or raw mu-law,
and the measurements integration tests assert on (dominant frequency, RMS, Goertzel tone
energy, the energy in bands around given frequencies).

Samples are float64 numpy arrays scaled to [-1.0, 1.0).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.float64]

RATE = 8000
_FRAME_S = 0.05  # analysis block: 50 ms, 20 Hz resolution at 8 kHz


# --- making audio ------------------------------------------------------------------------


def tone(freq: float, seconds: float, *, rate: int = RATE, amplitude: float = 0.5,
         fade_s: float = 0.005) -> Samples:
    """A sine tone (or silence when freq is 0) with short fades against clicks."""
    n = round(seconds * rate)
    t = np.arange(n, dtype=np.float64) / rate
    out: Samples = amplitude * np.sin(2 * np.pi * freq * t) if freq > 0 else np.zeros(n)
    fade = min(round(fade_s * rate), n // 2)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade)
        out[:fade] *= ramp
        out[-fade:] *= ramp[::-1]
    return out


def tones(parts: Iterable[tuple[float, float]], *, rate: int = RATE,
          amplitude: float = 0.5) -> Samples:
    """Concatenate (freq, seconds) parts; freq 0 is silence."""
    chunks = [tone(f, s, rate=rate, amplitude=amplitude) for f, s in parts]
    return np.concatenate(chunks) if chunks else np.zeros(0)


def to_pcm16(samples: Samples) -> npt.NDArray[np.int16]:
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)


def write_wav(path: Path, samples: Samples, *, rate: int = RATE, channels: int = 1) -> Path:
    """Write 16-bit signed PCM WAV; mono samples are copied to every one of `channels`."""
    pcm16 = to_pcm16(samples)
    if channels > 1:
        pcm16 = np.repeat(pcm16, channels)  # interleaved: the same sample in every channel
    pcm = pcm16.astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels,
                                    2 * channels, 16)
    header += b"data" + struct.pack("<I", len(pcm))
    path.write_bytes(header + pcm)
    return path


def make_tone_wav(path: Path, freq: float, seconds: float, *, rate: int = RATE,
                  amplitude: float = 0.5, channels: int = 1) -> Path:
    """An 8 kHz (by default) 16-bit mono (by default) WAV of one tone."""
    return write_wav(path, tone(freq, seconds, rate=rate, amplitude=amplitude), rate=rate,
                     channels=channels)


def make_tone_wav_sox(path: Path, freq: float, seconds: float, *, rate: int = RATE,
                      volume: float = 0.5) -> Path:
    """The same with sox (`synth sine`), for tests that want sox's output."""
    sox = _sox()
    subprocess.run([sox, "-n", "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer",
                    str(path), "synth", f"{seconds}", "sine", f"{freq}", "vol", f"{volume}"],
                   check=True, capture_output=True, timeout=30)
    return path


def ulaw_encode(samples: Samples) -> bytes:
    """G.711 mu-law encode (the classic CLIP 32635, BIAS 0x84 algorithm)."""
    x = to_pcm16(samples).astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    code = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return bytes(code.astype(np.uint8).tobytes())


def ulaw_decode(data: bytes) -> Samples:
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + 0x84) << exponent) - 0x84
    pcm = np.where(sign != 0, -mag, mag)
    return pcm.astype(np.float64) / 32768.0


def alaw_decode(data: bytes) -> Samples:
    """G.711 A-law decode (ITU-T G.711: even bits inverted, sign bit set for positive)."""
    a = np.frombuffer(data, dtype=np.uint8).astype(np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    mag = np.where(exponent == 0, (mantissa << 4) + 8,
                   ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    pcm = np.where(a & 0x80, mag, -mag)
    return pcm.astype(np.float64) / 32768.0


def make_tone_ulaw(path: Path, freq: float, seconds: float, *,
                   amplitude: float = 0.5) -> Path:
    """Headerless 8 kHz mu-law, what sipp's `<exec rtp_stream="file.ulaw,loops,0"/>` sends."""
    path.write_bytes(ulaw_encode(tone(freq, seconds, rate=RATE, amplitude=amplitude)))
    return path


def wav_to_ulaw(src: Path, dst: Path) -> Path:
    """Any WAV to headerless 8 kHz mono mu-law with sox."""
    subprocess.run([_sox(), str(src), "-t", "raw", "-r", "8000", "-c", "1", "-e", "mu-law",
                    str(dst)], check=True, capture_output=True, timeout=60)
    return dst


def _sox() -> str:
    sox = shutil.which("sox")
    if sox is None:
        raise RuntimeError("sox is not installed: run scripts/install-peers.sh")
    return sox


# --- reading audio -----------------------------------------------------------------------


def read_wav(path: Path) -> tuple[Samples, int]:
    """Read a mono or multichannel 16-bit PCM (or 8-bit mu-law) WAV; returns the first
    channel and the rate. Tolerates the header of a recording that was never finalised
    (data size 0 or too large): the data then runs to the end of the file."""
    data = path.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(data):
        cid = data[pos:pos + 4]
        size = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body_start = pos + 8
        if cid == b"fmt ":
            tag, channels, rate = struct.unpack("<HHI", data[body_start:body_start + 8])
            bits = struct.unpack("<H", data[body_start + 14:body_start + 16])[0]
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise ValueError(f"{path}: data chunk before fmt chunk")
            end = body_start + size
            if size == 0 or end > len(data):
                end = len(data)
            return _decode(data[body_start:end], fmt, path), fmt[2]
        pos = body_start + size + (size & 1)
    raise ValueError(f"{path}: no data chunk")


def _decode(raw: bytes, fmt: tuple[int, int, int, int], path: Path) -> Samples:
    tag, channels, _rate, bits = fmt
    channels = max(channels, 1)
    if tag in (1, 0xFFFE) and bits == 16:
        usable = len(raw) - len(raw) % (2 * channels)
        pcm = np.frombuffer(raw[:usable], dtype="<i2").reshape(-1, channels)[:, 0]
        return pcm.astype(np.float64) / 32768.0
    if tag == 7 and bits == 8:
        usable = len(raw) - len(raw) % channels
        return ulaw_decode(raw[:usable])[::channels]
    raise ValueError(f"{path}: unsupported WAV format tag {tag} with {bits} bits")


def wav_format(path: Path) -> tuple[int, int]:
    """(sample rate, channels) from a WAV file's fmt chunk."""
    with path.open("rb") as fh:
        data = fh.read(4096)
    pos = 12
    while pos + 8 <= len(data):
        cid = data[pos:pos + 4]
        size = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == b"fmt ":
            channels, rate = struct.unpack("<HI", data[pos + 10:pos + 16])
            return int(rate), int(channels)
        pos += 8 + size + (size & 1)
    raise ValueError(f"{path}: no fmt chunk")


def read_ulaw(path: Path) -> Samples:
    return ulaw_decode(path.read_bytes())


# --- measuring ---------------------------------------------------------------------------


def rms(samples: Samples) -> float:
    return float(np.sqrt(np.mean(samples * samples))) if samples.size else 0.0


def rms_dbfs(samples: Samples) -> float:
    value = rms(samples)
    return 20.0 * float(np.log10(value)) if value > 0 else float("-inf")


def frames(samples: Samples, rate: int, frame_s: float = _FRAME_S) -> list[Samples]:
    n = max(int(rate * frame_s), 1)
    return [samples[i:i + n] for i in range(0, len(samples) - n + 1, n)]


def active(samples: Samples, rate: int, *, min_rms: float = 0.01,
           frame_s: float = _FRAME_S) -> Samples:
    """Only the analysis frames louder than `min_rms` (silence and gaps dropped)."""
    loud = [f for f in frames(samples, rate, frame_s) if rms(f) >= min_rms]
    return np.concatenate(loud) if loud else np.zeros(0)


def dominant_frequency(samples: Samples, rate: int) -> float:
    """The strongest frequency (Hz) of the signal: Hann-windowed FFT with parabolic
    interpolation of the peak. 0.0 for an empty or silent signal."""
    if samples.size < 16 or not np.any(samples):
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    spectrum[0] = 0.0  # ignore DC
    k = int(np.argmax(spectrum))
    shift = 0.0
    if 0 < k < spectrum.size - 1:
        a, b, c = (float(np.log(spectrum[i] + 1e-12)) for i in (k - 1, k, k + 1))
        denom = a - 2 * b + c
        if denom != 0:
            shift = 0.5 * (a - c) / denom
    return (k + shift) * rate / samples.size


def band_energy(samples: Samples, rate: int, freq: float, *,
                half_width: float = 30.0) -> float:
    """The mean power of the signal in [freq - half_width, freq + half_width] Hz (Hann-windowed
    FFT): about A**2 / 2 for a sine of amplitude A in the band, about 0 for silence or a tone
    elsewhere. 0.0 for an empty signal."""
    if samples.size < 16:
        return 0.0
    window = np.hanning(samples.size)
    spectrum = np.abs(np.fft.rfft(samples * window)) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1.0 / rate)
    band = (freqs >= freq - half_width) & (freqs <= freq + half_width)
    # Parseval with the window's energy: sum |X|^2 over both sides = N * sum(w^2) * power.
    return float(2.0 * np.sum(spectrum[band]) / (samples.size * np.sum(window * window)))


def band_energies(samples: Samples, rate: int, freqs: Iterable[float], *,
                  half_width: float = 30.0) -> dict[float, float]:
    """`band_energy` at each frequency."""
    return {f: band_energy(samples, rate, f, half_width=half_width) for f in freqs}


def describe_bands(energies: dict[float, float]) -> str:
    """'500 Hz: -23.1 dBFS, 900 Hz: -70.0 dBFS' (power relative to a full-scale sine's)."""
    def dbfs(power: float) -> float:
        return 10.0 * float(np.log10(power / 0.5)) if power > 0 else float("-inf")

    return ", ".join(f"{f:g} Hz: {dbfs(p):.1f} dBFS" for f, p in energies.items())


def goertzel_power(samples: Samples, rate: int, freq: float) -> float:
    """|X(freq)|^2 of the block by the Goertzel recurrence (any frequency, not only bins)."""
    coeff = 2.0 * np.cos(2.0 * np.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples.tolist():
        s1, s2 = x + coeff * s1 - s2, s1
    return float(s1 * s1 + s2 * s2 - coeff * s1 * s2)


def tone_ratio(samples: Samples, rate: int, freq: float, *, min_rms: float = 0.01,
               frame_s: float = _FRAME_S) -> float:
    """Share of the energy of the loud frames that lies at `freq` (about 1.0 for a pure tone
    at `freq`, about 0.0 for a tone elsewhere or silence). Per-frame Goertzel, so a packet
    gap or phase jump costs one frame, not the whole measurement."""
    ratios = []
    for frame in frames(samples, rate, frame_s):
        energy = float(np.sum(frame * frame))
        if rms(frame) < min_rms or energy <= 0:
            continue
        # A sinusoid of amplitude A over N samples gives |X|^2 = (A N / 2)^2 and energy
        # A^2 N / 2, so 2 |X|^2 / (N * energy) is 1 for a pure tone.
        ratios.append(2.0 * goertzel_power(frame, rate, freq) / (frame.size * energy))
    return float(np.mean(ratios)) if ratios else 0.0


@dataclass(frozen=True, slots=True)
class AudioReport:
    seconds: float
    active_seconds: float
    rms: float
    dominant_hz: float

    def __str__(self) -> str:
        return (f"{self.seconds:.2f} s ({self.active_seconds:.2f} s loud), rms {self.rms:.3f}, "
                f"dominant {self.dominant_hz:.0f} Hz")


def analyse(samples: Samples, rate: int, *, min_rms: float = 0.01) -> AudioReport:
    loud = active(samples, rate, min_rms=min_rms)
    return AudioReport(seconds=samples.size / rate, active_seconds=loud.size / rate,
                       rms=rms(loud), dominant_hz=dominant_frequency(loud, rate))


def hears_tone(samples: Samples, rate: int, freq: float, *, min_ratio: float = 0.5,
               min_rms: float = 0.01, min_active_s: float = 0.5,
               tolerance: float = 0.05) -> bool:
    """True if the signal holds a tone at `freq`: at least `min_active_s` of frames louder
    than `min_rms`, whose dominant frequency is within `tolerance` (relative) of `freq` and
    which carry at least `min_ratio` of their energy at `freq`."""
    loud = active(samples, rate, min_rms=min_rms)
    if loud.size < min_active_s * rate:
        return False
    if abs(dominant_frequency(loud, rate) - freq) > tolerance * freq:
        return False
    return tone_ratio(loud, rate, freq, min_rms=min_rms) >= min_ratio


def hears_tone_in_file(path: Path, freq: float, **kwargs: float) -> bool:
    samples, rate = read_wav(path)
    return hears_tone(samples, rate, freq, **kwargs)


def without_tones(samples: Samples, tones: Iterable[float], *, rate: int = 8000,
                  width: float = 40.0) -> Samples:
    """The signal with the given tones (and their neighbourhood) cut out of its spectrum."""
    spectrum = np.fft.rfft(samples)
    hz = np.fft.rfftfreq(samples.size, 1 / rate)
    for freq in tones:
        spectrum[np.abs(hz - freq) < width] = 0
    return np.fft.irfft(spectrum, samples.size)


def prompt_score(heard: Samples, prompt_wav: Path, tones: Iterable[float] = ()) -> float:
    """Normalised cross-correlation peak of a prompt (an 8 kHz WAV, its first 1.5 s) in what
    a phone heard (8 kHz), the given tones cut out of both: near 1 when it was heard."""
    tones = tuple(tones)
    prompt, _ = read_wav(prompt_wav)
    prompt = without_tones(prompt[:12000], tones)
    heard = without_tones(heard, tones)
    if heard.size < prompt.size:
        return 0.0
    n = 1 << int(np.ceil(np.log2(heard.size + prompt.size)))
    corr = np.fft.irfft(np.fft.rfft(heard, n) * np.conj(np.fft.rfft(prompt, n)), n)
    corr = corr[: heard.size - prompt.size + 1]
    power = np.concatenate(([0.0], np.cumsum(heard ** 2)))
    energy = power[prompt.size:] - power[:-prompt.size]  # each window's energy
    score = np.abs(corr) / (np.sqrt(np.maximum(energy, 1e-12)) * np.linalg.norm(prompt))
    return float(score.max())

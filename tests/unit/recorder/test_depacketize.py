"""Video frames out of RTP (recorder/depacketize.py): real VP8 and H.264 from FFmpeg's
encoders, packetized here as browsers do, reassembled and decoded back."""

from __future__ import annotations

import random
from fractions import Fraction

import av
import numpy as np
import pytest

from recorder.depacketize import (
    DepacketizeError,
    FrameAssembler,
    VideoFrame,
    h264_payload,
    vp8_payload,
)

W, H = 160, 120
MTU = 300  # small, so that frames span several packets


def pictures(count: int) -> list[np.ndarray]:
    out = []
    for i in range(count):
        img = np.zeros((H, W, 3), dtype=np.uint8)
        img[:, :, 0] = (i * 40) % 256
        img[20:60, (i * 7) % 100:(i * 7) % 100 + 40, 1] = 255
        out.append(img)
    return out


def encode(codec: str, count: int) -> list[tuple[bytes, bool]]:
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = W, H, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.gop_size = 10
    if codec == "libx264":
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency"}
    packets: list[tuple[bytes, bool]] = []
    for i, img in enumerate(pictures(count)):
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += [(bytes(p), bool(p.is_keyframe)) for p in ctx.encode(frame)]
    packets += [(bytes(p), bool(p.is_keyframe)) for p in ctx.encode(None)]
    return packets


def vp8_rtp(frame: bytes, picture_id: int) -> list[bytes]:
    """RFC 7741 payloads with the extended descriptor and a 15-bit picture id."""
    chunks = [frame[i:i + MTU] for i in range(0, len(frame), MTU)]
    return [bytes([0x90 if i == 0 else 0x80, 0x80, 0x80 | (picture_id >> 8) & 0x7F,
                   picture_id & 0xFF]) + chunk for i, chunk in enumerate(chunks)]


def h264_rtp(annexb: bytes) -> list[bytes]:
    """Single NAL units when they fit, FU-A otherwise (RFC 6184)."""
    nals = [n for n in annexb.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01")
            .split(b"\x00\x00\x01") if n]
    out: list[bytes] = []
    for nal in nals:
        if len(nal) <= MTU:
            out.append(nal)
            continue
        head, body = nal[0], nal[1:]
        pieces = [body[i:i + MTU] for i in range(0, len(body), MTU)]
        for i, piece in enumerate(pieces):
            fu_header = (head & 0x1F) | (0x80 if i == 0 else 0) | \
                (0x40 if i == len(pieces) - 1 else 0)
            out.append(bytes([(head & 0xE0) | 28, fu_header]) + piece)
    return out


def feed(codec: str, payloads_per_frame: list[list[bytes]], *, lose: set[int] = frozenset(),
         ) -> list[VideoFrame]:
    asm = FrameAssembler(7, codec)
    seq = 65530  # wraps around
    got: list[VideoFrame] = []
    for n, payloads in enumerate(payloads_per_frame):
        for i, payload in enumerate(payloads):
            if seq & 0xFFFF not in lose:
                frame = asm.push(seq & 0xFFFF, n * 3000, i == len(payloads) - 1, payload)
                if frame is not None:
                    got.append(frame)
            seq += 1
    return got


def decode(codec: str, frames: list[VideoFrame]) -> list[np.ndarray]:
    ctx = av.CodecContext.create(codec, "r")
    out = []
    for f in frames:
        out += [d.to_ndarray(format="rgb24") for d in ctx.decode(av.Packet(f.data))]
    return out


@pytest.mark.parametrize(("encoder", "decoder", "codec"), [
    ("libvpx", "vp8", "VP8"), ("libx264", "h264", "H264")])
def test_frames_come_back_whole_and_decode_to_the_pictures(encoder: str, decoder: str,
                                                           codec: str) -> None:
    encoded = encode(encoder, 12)
    if codec == "VP8":
        per_frame = [vp8_rtp(data, n) for n, (data, _) in enumerate(encoded)]
    else:
        per_frame = [h264_rtp(data) for data, _ in encoded]
    assert max(len(p) for p in per_frame) > 1  # frames span packets
    frames = feed(codec, per_frame)
    assert frames[0].data[:4] == (b"\x00\x00\x00\x01" if codec == "H264"
                                  else encoded[0][0][:4])
    assert len(frames) == len(encoded)
    assert [f.keyframe for f in frames] == [k for _, k in encoded]
    images = decode(decoder, frames)
    originals = pictures(12)
    assert len(images) == 12
    for img, orig in zip(images, originals, strict=True):
        assert np.abs(img.astype(int) - orig.astype(int)).mean() < 12


def test_a_lost_packet_drops_frames_until_the_next_key_frame() -> None:
    encoded = encode("libvpx", 25)  # key frames at 0, 10, 20
    per_frame = [vp8_rtp(data, n) for n, (data, _) in enumerate(encoded)]
    first_of = []
    seq = 65530
    for payloads in per_frame:
        first_of.append(seq & 0xFFFF)
        seq += len(payloads)
    frames = feed("VP8", per_frame, lose={first_of[3]})
    asm_frames = [f.timestamp // 3000 for f in frames]
    assert asm_frames == [0, 1, 2, *range(10, 25)]
    assert len(decode("vp8", frames)) == len(frames)


def test_waiting_for_a_key_frame_asks_for_one_at_most_once_a_second() -> None:
    asm = FrameAssembler(9, "VP8")
    assert asm.needs_keyframe(10.0)
    assert not asm.needs_keyframe(10.5)
    assert asm.needs_keyframe(11.0)
    asm.waiting_keyframe = False
    assert not asm.needs_keyframe(20.0)


def test_descriptor_parsing() -> None:
    data, start, key = vp8_payload(bytes([0x10, 0x00]) + b"rest")  # S, PID 0, P bit clear
    assert (data, start, key) == (b"\x00rest", True, True)
    data, start, key = vp8_payload(bytes([0x00, 0x01]))  # not a start; P set
    assert (start, key) == (False, False)
    with pytest.raises(DepacketizeError):
        vp8_payload(bytes([0x90, 0x80]))  # picture id announced, missing
    nal, start, key = h264_payload(bytes([0x65, 1, 2]))  # IDR slice, single NAL
    assert nal == b"\x00\x00\x00\x01\x65\x01\x02" and start and key
    stap = bytes([24, 0, 2, 0x67, 9, 0, 2, 0x68, 8])  # SPS + PPS
    nal, start, key = h264_payload(stap)
    assert nal == b"\x00\x00\x00\x01\x67\x09\x00\x00\x00\x01\x68\x08" and not key
    with pytest.raises(DepacketizeError):
        h264_payload(bytes([24, 0, 9, 0x67]))  # unit longer than the packet
    with pytest.raises(DepacketizeError):
        h264_payload(bytes([25, 1, 2]))  # STAP-B: not what browsers send


def test_hostile_payloads_never_raise_out_of_the_assembler() -> None:
    rng = random.Random(5)
    for codec in ("VP8", "H264"):
        asm = FrameAssembler(3, codec)
        for seq in range(3000):
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
            frame = asm.push(seq, seq // 3, rng.random() < 0.3, payload)
            assert frame is None or isinstance(frame.data, bytes)
        assert asm.malformed > 0

"""The forwarder's per-packet loop: one received RTP packet to every receiver of its source.

Compiled by Cython with C types for the projections and receivers (bridge/fanout.pxd,
bridge/rtcp_feedback.pxd): it runs once per forwarded packet, nine times per received one
in a room of ten, and was the largest part of the forwarder's interpreter time. It is the
only implementation: the .py runs as plain Python where it is not built.

For each projection (receiver, source) in `src.out`:
- a projection waiting for a start point starts here, except for video that does not start
  a key frame here (the caller then asks the sender for one: the second value returned);
- packets older than the start point are not sent;
- the receiver's sequence number is the extended one minus the projection's offset, and its
  transport-wide sequence number (when the packet has the extension) the receiver's own
  counter;
- the receiver's `output` (its transport's C sink: rewrite, protect, queue) gets the packet
  and the numbers; a receiver without one gets `send(receiver_id, copy)` with the copy
  rewritten (`with_sequence`), or the packet itself when nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable

from bridge.rtcp_feedback import SourceState
from bridge.rtp import starts_keyframe, with_sequence


def fan_out(src: SourceState, data: bytes, ext: int, seq: int, twcc: int,
            send: Callable[[str, bytes], None], vp8: int, h264: int) -> tuple[int, bool]:
    """(receivers sent to, whether a key frame should be asked of the sender)."""
    size = len(data)
    keyframe = -1
    sent = 0
    need = False
    for p in src.out:
        if p.pending:
            if not src.audio:
                if keyframe < 0:
                    keyframe = 1 if starts_keyframe(data, vp8, h264) else 0
                if not keyframe:
                    need = True
                    continue
            p.begin(ext)
        elif ext < p.start_ext:
            continue
        r = p.receiver
        out_seq = (ext - p.offset) & 0xFFFF
        t = 0
        if twcc >= 0:
            t = (r.twcc_seq + 1) & 0xFFFF
            r.twcc_seq = t
        r.out_bytes += size
        output = r.output
        if output is not None:
            output(data, out_seq, twcc, t)
        elif twcc >= 0 or out_seq != seq:
            send(r.id, with_sequence(data, out_seq, twcc, t))
        else:
            send(r.id, data)
        sent += 1
    return sent, need

"""The room mix as AAC in M4A (`recording.mix_format = "m4a"`), through PyAV (FFmpeg's AAC
encoder and MP4 muxer; PyAV comes with aiortc).

Written as fragmented MP4 (an empty `moov`, then one `moof` + `mdat` fragment a second,
each flushed as it is made), so a crash or kill -9 leaves a file that plays up to its last
whole fragment, as the Ogg mix does page by page. The frames it gets are the mix's 20 ms of
48 kHz mono PCM; the encoder regroups them into AAC's 1024-sample frames.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

RATE = 48000


class AacM4aWriter:
    def __init__(self, path: Path, *, bitrate: int = 64000) -> None:
        self.path = path
        self.container = av.open(str(path), "w", format="mp4", options={
            "movflags": "frag_keyframe+empty_moov+default_base_moof",
            "frag_duration": "1000000", "flush_packets": "1"})
        stream = self.container.add_stream("aac", rate=RATE)
        stream.codec_context.layout = "mono"
        stream.codec_context.bit_rate = bitrate
        self.stream = stream
        self.samples = 0
        self.closed = False

    @property
    def bytes(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def write(self, pcm: npt.NDArray[np.int16]) -> None:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.samples
        self.samples += pcm.size
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()

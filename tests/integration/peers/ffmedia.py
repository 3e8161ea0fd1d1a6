"""Reading recordings and streams with FFmpeg's own tools (Debian ffmpeg): ffprobe for what a
file holds, ffmpeg to decode its audio or pictures. Fails loudly when they are missing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (Debian ffmpeg: scripts/install-peers.sh)",
                    pytrace=False)
    return path


def streams(path: Path) -> list[dict[str, Any]]:
    """ffprobe's streams of a file (codec_name, codec_type, width, tags, ...)."""
    out = subprocess.run([tool("ffprobe"), "-v", "error", "-show_streams", "-show_format",
                          "-of", "json", str(path)], capture_output=True, timeout=30, check=True)
    found = json.loads(out.stdout)["streams"]
    assert isinstance(found, list)
    return found


def decode_audio(path: Path, stream: int, rate: int = 16000) -> np.ndarray:
    """One audio stream decoded to mono float samples at ``rate``."""
    out = subprocess.run([tool("ffmpeg"), "-v", "error", "-i", str(path), "-map",
                          f"0:a:{stream}", "-ac", "1", "-ar", str(rate), "-f", "s16le", "-"],
                         capture_output=True, timeout=60, check=True)
    return np.frombuffer(out.stdout, dtype=np.int16).astype(np.float64) / 32768.0


def gray_frames(path: Path, width: int, height: int, fps: float = 2.0) -> np.ndarray:
    """The first video stream's pictures, ``fps`` a second, as 8-bit gray arrays."""
    out = subprocess.run([tool("ffmpeg"), "-v", "error", "-i", str(path), "-map", "0:v:0",
                          "-r", str(fps), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         capture_output=True, timeout=60, check=True)
    frames = np.frombuffer(out.stdout, dtype=np.uint8)
    return frames[: frames.size - frames.size % (width * height)].reshape(-1, height, width)

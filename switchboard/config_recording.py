"""The `[recording]` section: where recordings go, their limits, video and live streams
(docs/recording.md; switchboard/config.py re-exports it)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from switchboard.config_base import ConfigError

__all__ = ["RecordingConfig", "validate_recording"]


@dataclass(frozen=True, slots=True)
class RecordingConfig:
    """Recordings (recorder/, docs/recording.md)."""

    path: str = "./recordings"
    mix_format: str = "ogg"  # "ogg" (Opus) or "m4a" (AAC)
    rtmp_allow: tuple[str, ...] = ()  # live streams: the hosts (patterns) they may go to
    video_width: int = 1280  # video recordings and live streams: H.264 at this size
    video_height: int = 720
    video_fps: int = 30
    video_bitrate: int = 2500  # kbit/s
    video_preset: str = "veryfast"  # libx264's speed/quality trade
    video_layout: str = "speaker"  # "speaker" (the active speaker) or "grid" (every camera)
    max_duration: float = 14400.0
    max_mb: int = 2048
    min_free_mb: int = 1024
    idle_timeout: float = 300.0
    finalize_command: str = ""
    webhook_url: str = ""
    webhook_secret: str = ""


def _validate_recording(r: RecordingConfig) -> None:
    if not r.path:
        raise ConfigError("recording.path: expected a folder")
    if r.mix_format not in ("ogg", "m4a"):
        raise ConfigError("recording.mix_format: expected 'ogg' or 'm4a'")
    if not 1 <= r.max_duration <= 86400 * 7:
        raise ConfigError("recording.max_duration: expected 1 to 604800 seconds")
    if r.max_mb < 1 or r.min_free_mb < 0:
        raise ConfigError("recording.max_mb: expected at least 1; recording.min_free_mb: "
                          "at least 0")
    if r.idle_timeout <= 0:
        raise ConfigError("recording.idle_timeout: expected a positive number of seconds")
    if r.webhook_url and not r.webhook_url.startswith(("http://", "https://")):
        raise ConfigError(f"recording.webhook_url: expected an http:// or https:// URL, got "
                          f"{r.webhook_url!r}")
    if r.webhook_secret and not r.webhook_url:
        raise ConfigError("recording.webhook_secret: set without recording.webhook_url")
    if not (160 <= r.video_width <= 3840 and 120 <= r.video_height <= 2160) \
            or r.video_width % 2 or r.video_height % 2:
        raise ConfigError("recording.video_width/video_height: expected even sizes from "
                          "160x120 to 3840x2160")
    if not 1 <= r.video_fps <= 60:
        raise ConfigError("recording.video_fps: expected 1 to 60")
    if not 100 <= r.video_bitrate <= 50000:
        raise ConfigError("recording.video_bitrate: expected 100 to 50000 kbit/s")
    if r.video_preset not in ("ultrafast", "superfast", "veryfast", "faster", "fast",
                              "medium"):
        raise ConfigError("recording.video_preset: expected one of ultrafast, superfast, "
                          "veryfast, faster, fast, medium")
    if r.video_layout not in ("speaker", "grid"):
        raise ConfigError("recording.video_layout: expected 'speaker' or 'grid'")
    for i, host in enumerate(r.rtmp_allow):
        if not re.fullmatch(r"[A-Za-z0-9*.:_-]{1,253}", host):
            raise ConfigError(f"recording.rtmp_allow[{i}]: expected a host pattern like "
                              f"'*.rtmp.youtube.com', got {host!r}")


validate_recording = _validate_recording

"""Where a live stream may go: RTMP URLs checked against `recording.rtmp_allow`, YouTube
stream keys expanded, and the stream key kept out of every log line and file.

- `{"url": "rtmp://host[:port]/app/key"}` (or `rtmps://`): the host must match one of the
  allow-list's patterns: a host name or address exactly, or `*.example.com` for any name
  under it (one label or more). No user or password in the URL, no query, no fragment.
- `{"youtube_key": "xxxx-xxxx-xxxx-xxxx"}`: `rtmp://a.rtmp.youtube.com/live2/<key>`, as
  Jibri expands it; `a.rtmp.youtube.com` must be allowed like any host.
- An empty allow-list means no live streaming at all (the default): a server that streams
  anywhere it is told would be a relay for whoever can start one.

The URL's path is the stream key; `redact()` gives what logs and metadata.json show.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

YOUTUBE = "rtmp://a.rtmp.youtube.com/live2/"
_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
_PATH = re.compile(r"(/[A-Za-z0-9._~-]{1,256}){2,4}")


class StreamRefused(ValueError):
    """A stream target that is not allowed; the message says why (without the key).
    `forbidden`: well formed, but this server does not stream there."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            suffix = pattern[1:]
            if host.endswith(suffix) and len(host) > len(suffix):
                return True
        elif host == pattern:
            return True
    return False


def stream_target(url: str | None, youtube_key: str | None,
                  allow: tuple[str, ...]) -> str:
    """The RTMP URL to stream to; StreamRefused when it may not be used."""
    if url and youtube_key:
        raise StreamRefused('give "url" or "youtube_key", not both')
    if youtube_key is not None:
        if not _KEY.fullmatch(youtube_key):
            raise StreamRefused("youtube_key: expected letters, digits, '-' and '_'")
        url = YOUTUBE + youtube_key
    if not url:
        raise StreamRefused('a stream needs "url" (rtmp://...) or "youtube_key"')
    if len(url) > 1024:
        raise StreamRefused("url: too long")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise StreamRefused("url: not a valid URL") from exc
    if parts.scheme not in ("rtmp", "rtmps"):
        raise StreamRefused("url: expected rtmp:// or rtmps://")
    if parts.username is not None or parts.password is not None:
        raise StreamRefused("url: no user or password in the URL")
    if parts.query or parts.fragment:
        raise StreamRefused("url: no query or fragment")
    host = parts.hostname or ""
    if not host:
        raise StreamRefused("url: no host")
    if not _PATH.fullmatch(parts.path):
        raise StreamRefused("url: expected /application/stream-key")
    if not allow:
        raise StreamRefused("live streaming is off on this server (recording.rtmp_allow "
                            "is empty)", forbidden=True)
    if not host_allowed(host, allow):
        raise StreamRefused(f"url: streaming to {host} is not allowed (recording.rtmp_allow)",
                            forbidden=True)
    if port is not None and not 1 <= port <= 65535:
        raise StreamRefused("url: bad port")
    return url


def redact(url: str) -> str:
    """The URL without its stream key: `rtmp://host:port/app/***`."""
    parts = urlsplit(url)
    path = parts.path.rsplit("/", 1)[0]
    return f"{parts.scheme}://{parts.netloc}{path}/***"

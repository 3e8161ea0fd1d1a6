"""Last-N: which senders' camera video one receiver gets.

A receiver gets camera video from at most N other endpoints: the most recent speakers
first (the dominant speaker's order), then the others in the order they joined. Screen
shares are not counted and always forwarded, and audio is never limited: the forwarder
decides those; this module only ranks cameras. N = -1 means no limit, 0 no camera video.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def effective_last_n(server: int, endpoint: int) -> int:
    """The N that applies to a receiver: its own wish (-1: none) capped by the server's."""
    if server < 0:
        return endpoint
    if endpoint < 0:
        return server
    return min(server, endpoint)


def select_video_senders(receiver_id: str, last_n: int, recent_speakers: Sequence[str],
                         camera_senders: Iterable[str]) -> frozenset[str]:
    """The endpoints whose camera video `receiver_id` gets.

    `camera_senders`: endpoints that send camera video, in join order; `recent_speakers`:
    most recent first. The receiver itself is never chosen.
    """
    candidates = [e for e in camera_senders if e != receiver_id]
    if last_n < 0 or len(candidates) <= last_n:
        return frozenset(candidates)
    if last_n == 0:
        return frozenset()
    present = set(candidates)
    chosen: list[str] = []
    seen: set[str] = set()
    for endpoint_id in (*recent_speakers, *candidates):
        if endpoint_id in present and endpoint_id not in seen:
            seen.add(endpoint_id)
            chosen.append(endpoint_id)
            if len(chosen) == last_n:
                break
    return frozenset(chosen)

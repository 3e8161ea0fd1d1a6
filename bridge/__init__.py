"""The SFU: endpoints, packet forwarding, RTCP, audio levels (the browser-meetings issue).

`bridge.api` holds the focus -> bridge seam (plain dataclasses); `Bridge` (bridge.service)
implements it in-process. The service names load on first use, so importing the api types
does not import aiortc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.api import (
    BridgeEvent,
    BridgeListener,
    BridgeSession,
    DominantSpeakerChanged,
    DtlsFingerprint,
    EndpointAllocation,
    EndpointConnected,
    EndpointFailed,
    EndpointStats,
    EndpointUpdate,
    HeaderExtension,
    IceCandidate,
    MediaSource,
    PayloadType,
    ReceiveSource,
    TransportDescription,
)

if TYPE_CHECKING:
    from bridge.service import Bridge, BridgeSettings, UnknownEndpoint

__all__ = [
    "Bridge",
    "BridgeEvent",
    "BridgeListener",
    "BridgeSession",
    "BridgeSettings",
    "DominantSpeakerChanged",
    "DtlsFingerprint",
    "EndpointAllocation",
    "EndpointConnected",
    "EndpointFailed",
    "EndpointStats",
    "EndpointUpdate",
    "HeaderExtension",
    "IceCandidate",
    "MediaSource",
    "PayloadType",
    "ReceiveSource",
    "TransportDescription",
    "UnknownEndpoint",
]

_SERVICE_NAMES = frozenset({"Bridge", "BridgeSettings", "UnknownEndpoint"})


def __getattr__(name: str) -> Any:
    if name in _SERVICE_NAMES:
        from bridge import service

        return getattr(service, name)
    raise AttributeError(f"module 'bridge' has no attribute {name!r}")

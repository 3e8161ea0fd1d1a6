"""Errors of the SIP core, named after who is at fault (as in h11).

``RemoteProtocolError``: the network sent something we cannot accept; ``status`` is the
response code to answer a request with (400 by default, 505 for a SIP version we do not
speak, 513 for a message over our limits). ``LocalProtocolError``: our own code misused an API.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "RemoteProtocolError", "SipError"]


class SipError(Exception):
    """Base class of every error raised by ``gateway.sip``."""


class RemoteProtocolError(SipError):
    """The peer sent a malformed or unacceptable message."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason, status)
        self.reason = reason
        self.status = status

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


class LocalProtocolError(SipError):
    """Our own code used the SIP core wrongly (a bug on this side, never the peer's)."""

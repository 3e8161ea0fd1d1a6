"""The address a SIP message comes from or goes to: transport, host and port."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_PORTS", "Peer"]

DEFAULT_PORTS: dict[str, int] = {"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 80, "wss": 443}


@dataclass(frozen=True, slots=True)
class Peer:
    """A transport address. ``transport`` is lower case ("udp" | "tcp")."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        """True for stream transports: no retransmissions, timers D/I/J/K are zero."""
        return self.transport != "udp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{self.transport}:{host}:{self.port}"

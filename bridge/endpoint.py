"""One browser endpoint at the bridge: its transport, its connection task and its liveness.

The endpoint owns exactly one task while ICE and DTLS come up (none afterwards: media
arrives through the shared port's datagram callback) and its place on the shared media
ports. `close()` releases both. States, in one table:

    allocated --start()--> connecting --DTLS up--> connected
    allocated | connecting | connected --failure or timeout--> failed
    any --close()--> closed
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bridge.aiortc_adapter import EndpointTransport, TransportFailed
from bridge.api import EndpointAllocation, TransportDescription

log = logging.getLogger(__name__)

TRANSITIONS: dict[str, frozenset[str]] = {
    "allocated": frozenset({"connecting", "failed", "closed"}),
    "connecting": frozenset({"connected", "failed", "closed"}),
    "connected": frozenset({"failed", "closed"}),
    "failed": frozenset({"closed"}),
    "closed": frozenset(),
}


class Endpoint:
    def __init__(
        self,
        allocation: EndpointAllocation,
        transport: EndpointTransport,
        *,
        timeout: float,
        now: float,
        on_connected: Callable[[Endpoint], None],
        on_failed: Callable[[Endpoint, str], None],
    ) -> None:
        self.allocation = allocation
        self.conference_id = allocation.conference_id
        self.endpoint_id = allocation.endpoint_id
        self.transport = transport
        self.timeout = timeout
        self.created = now
        self.state = "allocated"
        self.remote: TransportDescription | None = None
        self._on_connected = on_connected
        self._on_failed = on_failed
        self._task: asyncio.Task[None] | None = None
        transport.on_closed = self._transport_closed

    def __repr__(self) -> str:
        return f"Endpoint({self.conference_id}/{self.endpoint_id} {self.state})"

    def _set_state(self, state: str) -> bool:
        if state not in TRANSITIONS[self.state]:
            return False
        log.info("endpoint %s/%s: %s -> %s", self.conference_id, self.endpoint_id,
                 self.state, state)
        self.state = state
        return True

    @property
    def has_task(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, remote: TransportDescription) -> None:
        """Begin ICE and DTLS towards the browser's answer (once; a later transport with
        the same credentials is ignored, different ones are logged and ignored: no ICE
        restart yet)."""
        if self.remote is not None:
            if (remote.ice_ufrag, remote.ice_pwd) != (self.remote.ice_ufrag,
                                                      self.remote.ice_pwd):
                log.warning("endpoint %s/%s: ICE restart is not supported; ignored",
                            self.conference_id, self.endpoint_id)
            return
        if not self._set_state("connecting"):
            return
        self.remote = remote
        self._task = asyncio.get_running_loop().create_task(
            self._connect(remote), name=f"bridge-connect-{self.endpoint_id}"
        )

    async def _connect(self, remote: TransportDescription) -> None:
        try:
            await self.transport.connect(remote)
        except TransportFailed as exc:
            self.fail(exc.reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # aiortc/aioice raised something unexpected: same outcome
            log.exception("endpoint %s/%s: connect failed", self.conference_id,
                          self.endpoint_id)
            self.fail(f"transport error: {exc!r}")
        else:
            if self._set_state("connected"):
                self._on_connected(self)
        finally:
            self._task = None

    def _transport_closed(self, reason: str) -> None:
        self.fail(reason)

    def fail(self, reason: str) -> None:
        """Mark failed and tell the owner once (it expires the endpoint)."""
        if self._set_state("failed"):
            # the browser closing DTLS itself (a tab closed) is routine; the rest is not
            log.log(logging.INFO if reason == "DTLS closed" else logging.WARNING,
                    "endpoint %s/%s failed: %s", self.conference_id, self.endpoint_id, reason)
            self._on_failed(self, reason)

    def deadline(self) -> float:
        """When this endpoint times out if nothing arrives before then."""
        if self.state == "connected":
            return self.transport.last_receive + self.timeout
        return self.created + self.timeout

    def check_timeout(self, now: float) -> None:
        if self.state in ("failed", "closed") or now < self.deadline():
            return
        if self.state == "connected":
            self.fail(f"no packets for {self.timeout:g} s")
        else:
            self.fail(f"not connected within {self.timeout:g} s")

    async def close(self) -> None:
        """Cancel the connection task and close the transport (its attachment to
        the shared ports, aiortc's tasks)."""
        self._set_state("closed")
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])
        await self.transport.close()

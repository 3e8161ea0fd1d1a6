"""The cluster as the gateway sees it (gateway.handoff_token.ClusterSeat), over cluster.node.

The gateway imports nothing of `cluster/`: this adapter, in the composition root, answers its
three questions from this node's `ClusterNode`, and says where other nodes reach this one's
SIP (`sip_address`, put in the node's heartbeat).
"""

from __future__ import annotations

from cluster.node import ClusterNode
from gateway.handoff_token import HandOffTarget, OwnerSilent, parse_sip_target

__all__ = ["NodeSeat", "sip_address"]


class NodeSeat:
    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.node_id = node.id

    async def place_call(self, room: str) -> HandOffTarget | None:
        where = await self.node.place(room)  # ClusterUnavailable is a ConnectionError
        if where.here:
            return None
        if not where.fresh:
            raise OwnerSilent(f"node {where.node} hosts the room but stopped beating")
        target = parse_sip_target(where.node, where.sip)
        if target is None:
            raise ConnectionError(f"node {where.node} hosts the room but gives no SIP address")
        return target

    def still_hosts(self, room: str, node: str) -> bool | None:
        return self.node.hosts(room, node)

    async def key(self) -> bytes | None:
        return await self.node.handoff_key()


def sip_address(listen: list[tuple[str, str, int]] | tuple[tuple[str, str, int], ...],
                announce: str) -> str:
    """"TRANSPORT:HOST:PORT" of this node's SIP for the other nodes: its first UDP listener
    (else TCP), a wildcard address replaced by the announced one; "" when there is none."""
    for wanted in ("udp", "tcp"):
        for transport, host, port in listen:
            if transport.lower() != wanted:
                continue
            if host in ("0.0.0.0", "::", ""):
                host = announce
            return f"{wanted}:[{host}]:{port}" if ":" in host else f"{wanted}:{host}:{port}"
    return ""

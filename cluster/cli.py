"""`switchboard cluster status [--json]`: the nodes (alive, load, rooms, draining) and the
room-to-node map, read from the configured Redis (what GET /api/cluster gives, without a
running node). `switchboard cluster drain NODE_ID [--force]` and `undrain NODE_ID` write the
drain order in the same Redis (what POST and DELETE /api/cluster/nodes/{id}/drain do): the
node acts on it at once (a message) or at its next heartbeat."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from cluster.node import ClusterNode, ClusterSettings, ClusterUnavailable
from switchboard.config import Config

__all__ = ["format_status", "run_cluster"]


def run_cluster(config: Config, args: argparse.Namespace) -> int:
    if not config.cluster.redis_url:
        sys.stderr.write("switchboard: not a cluster: cluster.redis_url is empty\n")
        return 1
    if args.action in ("drain", "undrain"):
        try:
            order = asyncio.run(_drain(config.cluster.redis_url, args.node_id,
                                       args.action == "drain", getattr(args, "force", False)))
        except (ClusterUnavailable, LookupError) as exc:
            sys.stderr.write(f"switchboard: {exc}\n")
            return 1
        sys.stdout.write(f"node {order['id']}: " + (
            ("draining, its rooms move now" if order["force"] else
             "draining, its rooms move when they become empty")
            if order["draining"] else "takes new rooms again") + "\n")  # fmt: skip
        return 0
    try:
        status = asyncio.run(_status(config.cluster.redis_url))
    except ClusterUnavailable as exc:
        sys.stderr.write(f"switchboard: {exc}\n")
        return 1
    sys.stdout.write(json.dumps(status, indent=2) + "\n" if args.json else format_status(status))
    return 0


async def _status(redis_url: str) -> dict[str, Any]:
    reader = ClusterNode(ClusterSettings(redis_url, "status-reader"), dict)
    try:
        return await reader.status()
    finally:
        await reader.close()


async def _drain(redis_url: str, node: str, drain: bool, force: bool) -> dict[str, Any]:
    writer = ClusterNode(ClusterSettings(redis_url, "cli"), dict)
    try:
        return await writer.drain(node, drain=drain, force=force)
    finally:
        await writer.close()


def format_status(status: dict[str, Any]) -> str:
    nodes = status["nodes"]
    width = max([4, *(len(n["id"]) for n in nodes)])
    lines = [f"{'NODE':<{width}}  ALIVE  LOAD   ROOMS  DRAINING"]
    lines += [f"{n['id']:<{width}}  {'yes' if n['alive'] else 'no':<5}  {n['load']:<5.3f}  "
              f"{n['rooms']:<5}  {'yes' if n.get('draining') else 'no'}"
              for n in nodes]  # fmt: skip
    rooms = status["rooms"]
    if rooms:
        rwidth = max([4, *(len(r) for r in rooms)])
        lines += ["", f"{'ROOM':<{rwidth}}  NODE"]
        lines += [f"{room:<{rwidth}}  {node}" for room, node in rooms.items()]
    return "\n".join(lines) + "\n"

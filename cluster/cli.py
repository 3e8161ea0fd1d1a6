"""`switchboard cluster status [--json]`: the nodes (alive, load, rooms) and the room-to-node
map, read from the configured Redis (what GET /api/cluster gives, without a running node)."""

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


def format_status(status: dict[str, Any]) -> str:
    nodes = status["nodes"]
    width = max([4, *(len(n["id"]) for n in nodes)])
    lines = [f"{'NODE':<{width}}  ALIVE  LOAD   ROOMS"]
    lines += [f"{n['id']:<{width}}  {'yes' if n['alive'] else 'no':<5}  {n['load']:<5.3f}  "
              f"{n['rooms']}" for n in nodes]  # fmt: skip
    rooms = status["rooms"]
    if rooms:
        rwidth = max([4, *(len(r) for r in rooms)])
        lines += ["", f"{'ROOM':<{rwidth}}  NODE"]
        lines += [f"{room:<{rwidth}}  {node}" for room, node in rooms.items()]
    return "\n".join(lines) + "\n"

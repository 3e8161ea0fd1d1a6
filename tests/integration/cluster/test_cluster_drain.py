"""Draining a node (issue 19, "Operations"), with two `python -m switchboard serve` nodes on
one Redis and one PostgreSQL: a drained node takes no new room (a browser arriving there for
one is sent to the other node, its page by a redirect, its WebSocket join by room-elsewhere)
but keeps the rooms it hosts while people are in them; forced, it moves its room with two
WebSocket clients to the other node (they are closed with 1001, their rejoin there is told
the new host, and they join it); undrained (the command line), it takes rooms again."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import aiohttp
from conftest import REPO, SwitchboardServer
from test_cluster_nodes import Nodes, browser, cluster, nodes, wait_for

__all__ = ["nodes"]  # the fixture, borrowed


def draining(server: SwitchboardServer) -> dict[str, bool]:
    return {n["id"]: n["draining"] for n in cluster(server)["nodes"]}


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> int | None:
    """Read on until the server closes `ws` (within `timeout`); its close code."""
    deadline = time.monotonic() + timeout
    while not ws.closed and time.monotonic() < deadline:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            break
    return ws.close_code


def cli(server: SwitchboardServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchboard", "cluster", *args, "--config",
                           str(server.config_path)], capture_output=True, text=True,
                          timeout=60, cwd=REPO, check=False)  # fmt: skip


async def test_a_drained_node_takes_no_new_room_and_forced_moves_its_room(nodes: Nodes) -> None:
    n1, n2 = nodes.start("n1"), nodes.start("n2")
    for name in ("standup", "retro", "later"):
        assert n1.api("POST", "/api/rooms", {"name": name}).status == 201
    wait_for("two live nodes", lambda: {n["id"]: n["alive"] for n in cluster(n2)["nodes"]}
             == {"n1": True, "n2": True}, 5, nodes)  # fmt: skip
    assert n2.api("POST", "/api/cluster/nodes/nobody/drain", {}).status == 404
    async with browser(n1, "standup") as ann:
        assert ann["type"] == "joined", ann
        assert cluster(n2)["rooms"] == {"standup": "n1"}
        # drained through its own API: in effect at once
        resp = n1.api("POST", "/api/cluster/nodes/n1/drain", {"force": False})
        assert resp.status == 200, resp.text
        assert resp.json() == {"id": "n1", "draining": True, "force": False}
        assert draining(n2) == {"n1": True, "n2": False}
        # a new room asked of n1 goes where a new room would go: n2
        async with browser(n1, "retro") as refused:
            assert refused["type"] == "error" and refused["code"] == "room-elsewhere", refused
            assert refused["message"] == n2.base_url and refused["close"] == 4029
        async with aiohttp.ClientSession() as s, s.get(n1.base_url + "/retro?x=1",
                                                       allow_redirects=False) as page:
            assert page.status == 307
            assert page.headers["Location"] == n2.base_url + "/retro?x=1"
        async with browser(n2, "retro") as joined:
            assert joined["type"] == "joined", joined
            assert cluster(n1)["rooms"]["retro"] == "n2"
        # the room it hosts stays while people are in it, and still takes joins there
        async with browser(n1, "standup") as bob:
            assert bob["type"] == "joined", bob
            await asyncio.sleep(2.5)  # two heartbeats of the draining node
            assert cluster(n2)["rooms"].get("standup") == "n1"
            stats = n1.api("GET", "/api/stats").json()
            assert stats["cluster_draining"] == 1 and stats["cluster_rooms_owned"] == 1
            # forced, through the other node: the room moves to n2 and its browsers leave n1
            resp = n2.api("POST", "/api/cluster/nodes/n1/drain", {"force": True})
            assert resp.status == 200, resp.text
            began = time.monotonic()
            assert await closed_with(ann["ws"], 5.0) == 1001
            assert await closed_with(bob["ws"], 5.0) == 1001
            wait_for("standup moved to n2", lambda: cluster(n1)["rooms"].get("standup") == "n2",
                     5 - (time.monotonic() - began), nodes)  # fmt: skip
    # their pages rejoin n1, are told the new host, and join it there
    async with browser(n1, "standup") as again:
        assert again["type"] == "error" and again["code"] == "room-elsewhere", again
        assert again["message"] == n2.base_url
    async with browser(n2, "standup") as there:
        assert there["type"] == "joined", there
        assert cluster(n1)["rooms"]["standup"] == "n2"
        status = cli(n2, "status")
        assert status.returncode == 0, status.stderr
        assert any(line.split()[0] == "n1" and line.split()[-1] == "yes"
                   for line in status.stdout.splitlines()[1:3]), status.stdout
        # undrained from the command line: n1 takes new rooms again
        out = cli(n2, "undrain", "n1")
        assert out.returncode == 0, out.stderr
        wait_for("n1 undrained", lambda: draining(n2) == {"n1": False, "n2": False}, 3, nodes)
        deadline = time.monotonic() + 3  # n1 applies it at once (a message) or next beat
        while True:
            async with browser(n1, "later") as later:
                if later["type"] == "joined" or time.monotonic() > deadline:
                    assert later["type"] == "joined", (later, nodes.logs())
                    assert cluster(n2)["rooms"]["later"] == "n1"
                    break
            await asyncio.sleep(0.3)
        # and the command line drains too
        out = cli(n2, "drain", "n1", "--force")
        assert out.returncode == 0, out.stderr
        assert "move now" in out.stdout
        assert json.loads(cli(n2, "status", "--json").stdout)["nodes"][0]["draining"] is True

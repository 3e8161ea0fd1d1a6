"""`switchboard cluster status`: the table, and a clear answer without a cluster."""

from __future__ import annotations

import pytest

from cluster.cli import format_status
from switchboard.cli import main


def test_the_table_lists_nodes_and_rooms() -> None:
    text = format_status({"nodes": [{"id": "node-1", "alive": True, "load": 0.125, "rooms": 1},
                                    {"id": "n2", "alive": False, "load": 0.0, "rooms": 0}],
                          "rooms": {"standup": "node-1"}})  # fmt: skip
    assert text.splitlines() == [
        "NODE    ALIVE  LOAD   ROOMS",
        "node-1  yes    0.125  1",
        "n2      no     0.000  0",
        "",
        "ROOM     NODE",
        "standup  node-1",
    ]


def test_without_a_cluster_it_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cluster", "status"]) == 1
    assert "cluster.redis_url is empty" in capsys.readouterr().err

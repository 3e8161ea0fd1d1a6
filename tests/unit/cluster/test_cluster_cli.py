"""`switchboard cluster status`: the table, and a clear answer without a cluster."""

from __future__ import annotations

import pytest

from cluster.cli import format_status
from switchboard.cli import main


def test_the_table_lists_nodes_and_rooms() -> None:
    text = format_status({"nodes": [{"id": "node-1", "alive": True, "load": 0.125, "rooms": 1,
                                     "draining": True},
                                    {"id": "n2", "alive": False, "load": 0.0, "rooms": 0}],
                          "rooms": {"standup": "node-1"}})  # fmt: skip
    assert text.splitlines() == [
        "NODE    ALIVE  LOAD   ROOMS  DRAINING",
        "node-1  yes    0.125  1      yes",
        "n2      no     0.000  0      no",
        "",
        "ROOM     NODE",
        "standup  node-1",
    ]


def test_without_a_cluster_it_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["status"], ["drain", "n1"], ["drain", "n1", "--force"], ["undrain", "n1"]):
        assert main(["cluster", *args]) == 1
        assert "cluster.redis_url is empty" in capsys.readouterr().err

"""The verdicts of issue 19's benchmarks (tests/bench/cluster_failover.py, cluster_capacity.py
and cluster_idle.py): median and worst of the failover trials, the two-node ratio, the idle
cost."""

from __future__ import annotations

from typing import Any

from tests.bench.cluster_capacity import (
    GOAL_RATIO,
    ClusterStep,
    best_phones,
    cluster_ladder,
    ratio_figure,
)
from tests.bench.cluster_failover import GOAL_S, Trial, failover_figure, hears
from tests.bench.cluster_idle import idle_figure, info_counter
from tests.bench.common import Figure
from tests.bench.conference_capacity import CAPACITY_LADDER, CapacityStep


def trial(seconds: float | None, error: str = "") -> Trial:
    return Trial(owner="f1", seconds=seconds, rehomed_to="f2", attempts=["A: joined at f2"],
                 error=error)


def test_failover_median_and_worst() -> None:
    fig = failover_figure([trial(t) for t in (4.0, 7.5, 3.0, 6.0, 5.0)], how="h")
    assert fig.measured.startswith("5.0 s median, worst 7.5 s over 5 trials (best 3.0 s)")
    assert fig.met is True
    assert fig.details["seconds"] == [4.0, 7.5, 3.0, 6.0, 5.0]
    assert "owner f1 killed -> 4.00 s (room now on f2; A: joined at f2)" in fig.details["trials"]


def test_failover_worst_over_the_goal_or_a_lost_trial_fails() -> None:
    assert failover_figure([trial(3.0), trial(GOAL_S + 0.1)], how="h").met is False
    lost = failover_figure([trial(3.0), trial(None, "a browser could not rejoin")], how="h")
    assert lost.met is False
    assert "1 of 2 trials did not recover" in lost.measured
    assert "no recovery" in lost.details["trials"][1]
    assert "could not rejoin" in lost.details["trials"][1]
    none = failover_figure([trial(None)], how="h")
    assert none.met is False and none.measured.startswith("no recovery in 1 trials")
    empty = failover_figure([], how="h")
    assert empty.met is None and empty.measured == "not measured"


class FakeBrowser:
    def __init__(self, self_id: str, levels: dict[str, list[Any]]) -> None:
        self.self_id, self.levels_in = self_id, levels


def test_hearing_needs_packets_from_the_other_participant() -> None:
    b = FakeBrowser("b", {})
    a = FakeBrowser("a", {"b": [(0.0, 1, 30)] * 5, "old-b": [(0.0, 1, 30)] * 50})
    assert hears(a, b) and not hears(b, a)
    assert not hears(a, FakeBrowser("", {}))  # not joined yet
    assert not hears(FakeBrowser("a", {"b": [(0.0, 1, 30)] * 4}), b)


def node_step(n: int, ok: bool, wait: float = 0.0) -> CapacityStep:
    step = CapacityStep(n, ok=ok, wait_percent=wait)
    if not ok:
        step.reasons.append("2.00% late ticks")
    return step


def one_node(best: int) -> Figure:
    return Figure("capacity", f"{best} phones", "g", "h", details={"best_phones": best})


def test_ladder_and_the_one_node_best() -> None:
    assert cluster_ladder() == [2 * n for n in CAPACITY_LADDER]
    assert best_phones(one_node(152)) == 152
    assert best_phones(Figure("c", "not measured", "g", "h")) == 0


def test_ratio_of_the_two_bests() -> None:
    steps = [ClusterStep(40, [node_step(20, True), node_step(20, True)]),
             ClusterStep(280, [node_step(140, True), node_step(140, True)]),
             ClusterStep(320, [node_step(160, True), node_step(160, False)])]
    fig = ratio_figure(one_node(152), steps, "N=320 failed", "h")
    assert fig.measured.startswith("1.84x: one node 152 phones, two nodes: 280 phones + 140 "
                                   "browsers in all (140, 140 a node)")
    assert "N=320 fails: 2.00% late ticks" in fig.measured
    assert fig.met is True and fig.details["ratio"] == round(280 / 152, 3)
    low = ratio_figure(one_node(200), steps, "", "h")
    assert low.met is False and GOAL_RATIO > 280 / 200


def test_a_failure_on_a_busy_core_is_a_lower_bound_not_a_verdict() -> None:
    steps = [ClusterStep(40, [node_step(20, True), node_step(20, True)]),
             ClusterStep(80, [node_step(40, False, wait=30.0), node_step(40, True)])]
    fig = ratio_figure(one_node(40), steps, "", "h")
    assert fig.met is None and "a lower bound" in fig.measured
    assert ClusterStep(80, steps[1].nodes).contended


def test_no_figure_without_both_runs() -> None:
    assert ratio_figure(one_node(0), [], "", "h").met is None
    nothing = ratio_figure(one_node(100), [ClusterStep(40, [node_step(20, False),
                                                            node_step(20, True)])], "", "h")
    assert nothing.met is False and "no step passed" in nothing.measured
    browsers = ClusterStep(40, [node_step(20, True), node_step(20, True)],
                           reasons=["2 browsers could not join (x)"])
    assert not browsers.ok and "could not join" in browsers.summary()


def test_idle_reads_redis_info_and_says_the_difference() -> None:
    info = "$60\r\n# Stats\r\ntotal_connections_received:4\r\ntotal_commands_processed:1234\r\n"
    assert info_counter(info, "total_commands_processed") == 1234
    assert info_counter(info, "total_connections_received") == 4
    assert info_counter(info, "missing") == 0
    fig = idle_figure(10.0, 0.5, [0.7, 0.9], 0.4, 0.2, 144, how="h")
    assert fig.measured == ("0.80% of a core per idle cluster node against 0.50% for a node "
                            "without a cluster (+0.30%); Redis 7.2 commands/s per node, Redis "
                            "0.20% and PostgreSQL 0.10% of a core per node")
    assert fig.met is None and fig.details["cluster_node_percent"] == [0.7, 0.9]
    assert idle_figure(0.0, 0.5, [], 0.0, 0.0, 0, how="h").measured == "not measured"

"""Issue 19's capacity figure: two nodes on the 2-core machine against one node, with the
yardstick of the phone-and-browser capacity benchmark (conference_capacity.py, "all"): rooms
of 4 sipp phones and 2 synthetic browsers, everyone talking; a step passes when the mix
clock is late on < 1% of its ticks, every leg and browser is up and the RTP flows.

- one node: conference_capacity.measure_capacity as `--only capacity` runs it (the server
  pinned to core 0, sipp and the browsers in this process on core 1);
- two nodes (cluster_nodes.py: one Redis, one PostgreSQL as `switchboard nodes` runs them),
  node 1 pinned to core 0 and node 2 to core 1, and the load (this process and its sipps) on
  both cores, sharing them with the nodes: there is no third core. Each node gets half the
  rooms: their browsers join it first (so the room lives there) and their phones call its SIP
  port; a step passes when both nodes pass. N (phones in all) climbs 2x the one-node ladder,
  then bisection on fresh nodes.

The figure is the ratio of the two bests (goal: at least 1.8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import Budget, Figure, SwitchboardServer, create_rooms, stats
from .conference_capacity import (
    BROWSERS_PER_ROOM,
    CAPACITY_LADDER,
    PHONES_PER_ROOM,
    RAMP_RATE,
    SETTLE_S,
    CapacityStep,
    _start_phones,
    _stream_scenario,
    _window,
)

log = logging.getLogger("bench.cluster_capacity")

FIGURES: dict[str, tuple[str, str]] = {
    "cluster-capacity": ("Capacity of two nodes on the 2-core machine against one node",
                         "at least 1.8x one node's (phones + browsers, capacity's yardstick)"),
}
GOAL_RATIO = 1.8
NODES = 2


@dataclass
class ClusterStep:
    n: int                                   # phones in all
    nodes: list[CapacityStep] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # beyond the nodes' own

    @property
    def ok(self) -> bool:
        return bool(self.nodes) and all(s.ok for s in self.nodes) and not self.reasons

    @property
    def contended(self) -> bool:
        return any(s.contended for s in self.nodes)

    def summary(self) -> str:
        parts = [f"node {i + 1}: {s.summary()}" for i, s in enumerate(self.nodes)]
        return (f"N={self.n} in all: " + " | ".join(parts) + (
            f" | {'; '.join(self.reasons)}" if self.reasons else "")
            + (" -> pass" if self.ok else " -> FAIL"))


def cluster_ladder(nodes: int = NODES, ladder: Sequence[int] = CAPACITY_LADDER) -> list[int]:
    """Phones in all at each step: the one-node ladder per node."""
    return [n * nodes for n in ladder]


def best_phones(figure: Figure) -> int:
    """The one-node figure's best N (0 when it has none)."""
    value = figure.details.get("best_phones", 0)
    return int(value) if isinstance(value, int | float) else 0


def ratio_figure(one: Figure, steps: list[ClusterStep], stopped: str, how: str, *,
                 title: str = FIGURES["cluster-capacity"][0],
                 goal: str = FIGURES["cluster-capacity"][1]) -> Figure:
    """Two nodes' best N over one node's, with both figures said."""
    single = best_phones(one)
    passed = [s for s in steps if s.ok]
    best = max(passed, key=lambda s: s.n) if passed else None
    failing = [s for s in steps if not s.ok and (best is None or s.n > best.n)]
    failed = min(failing, key=lambda s: s.n) if failing else None
    details: dict[str, Any] = {"one_node_best": single, "two_nodes_best": best.n if best else 0,
                               "one_node": one.measured, "steps": [s.summary() for s in steps],
                               "stopped": stopped}
    two = (f"two nodes: {best.n} phones + {best.n // 2} browsers in all "
           f"({', '.join(str(p.n) for p in best.nodes)} a node)" if best
           else "two nodes: no step passed")
    if failed is not None:
        reasons = [r for s in failed.nodes for r in s.reasons] + failed.reasons
        two += f"; N={failed.n} fails: {'; '.join(reasons)[:300]}"
        if failed.contended:
            two += " (while a core was busy: a lower bound)"
    if not single:
        return Figure(title, f"not measured: one node gave no figure ({one.measured}); {two}",
                      goal, how, details=details)
    if best is None:
        return Figure(title, f"one node: {single} phones; {two}", goal, how,
                      met=None if failed is not None and failed.contended else False,
                      details=details)
    ratio = best.n / single
    details["ratio"] = round(ratio, 3)
    measured = f"{ratio:.2f}x: one node {single} phones, {two}"
    met: bool | None = ratio >= GOAL_RATIO
    if not met and failed is not None and failed.contended:
        met = None
    return Figure(title, measured, goal, how, met=met, details=details)


@contextlib.contextmanager
def all_cores() -> Iterator[set[int]]:
    """This process (and the sipps it starts) on every core for the block."""
    before = os.sched_getaffinity(0)
    every = set(range(os.cpu_count() or 1))
    os.sched_setaffinity(0, every)
    try:
        yield every
    finally:
        os.sched_setaffinity(0, before)


async def _steps(nodes: list[SwitchboardServer], workdir: Path, budget: Budget,
                 window_s: float, ladder: Sequence[int], sipps: list[Any],
                 tag: str) -> tuple[list[ClusterStep], str]:
    from .conference_load import BrowserLoad
    from .conference_peers import make_speech, opus_frames

    speech = make_speech(workdir)
    talk = _stream_scenario(workdir, "speech", speech[8000])
    frames = opus_frames(speech[48000])
    loads = [BrowserLoad(node.base_url, frames) for node in nodes]
    for load in loads:
        load.start_clock()
    steps: list[ClusterStep] = []
    per_up, stopped = 0, ""
    try:
        for n in ladder:
            per = n // len(nodes)
            rooms = [[f"{tag}-{k}-{i}" for i in range(per_up, per // PHONES_PER_ROOM)]
                     for k in range(len(nodes))]
            calls = sum(len(r) for r in rooms) * PHONES_PER_ROOM
            cost = sum(len(r) for r in rooms) * 0.8 + calls / RAMP_RATE + SETTLE_S + window_s + 8
            if not budget.fits(cost):
                stopped = f"time budget spent before N={n}"
                break
            step = ClusterStep(n)
            for node, names in zip(nodes, rooms, strict=True):
                await asyncio.to_thread(create_rooms, node, names)
            # the browsers first: a room lives where it is first joined
            errors = await asyncio.gather(*(load.add(names, BROWSERS_PER_ROOM)
                                            for load, names in zip(loads, rooms, strict=True)))
            hold_s = budget.left() + 60
            for k, (node, names) in enumerate(zip(nodes, rooms, strict=True)):
                sipps.append(_start_phones(node, workdir, f"{tag}{n}-{k}", talk, names,
                                           PHONES_PER_ROOM, hold_s))
            per_up = per // PHONES_PER_ROOM
            loop = asyncio.get_running_loop()
            deadline = loop.time() + calls / RAMP_RATE + 10
            while loop.time() < deadline:
                legs = [(await asyncio.to_thread(stats, node)).get("legs", 0) for node in nodes]
                if min(legs) >= per:
                    break
                await asyncio.sleep(0.25)
            await asyncio.sleep(SETTLE_S)
            step.nodes = list(await asyncio.gather(*(
                _window(node, load, per, window_s) for node, load in zip(nodes, loads,
                                                                         strict=True))))
            for _ in range(2):  # another process on a core: measure the window again
                if step.ok or not step.contended or not budget.fits(window_s + 2):
                    break
                log.info("cluster capacity: N=%d failed while contended: measuring again", n)
                step.nodes = list(await asyncio.gather(*(
                    _window(node, load, per, window_s) for node, load in zip(nodes, loads,
                                                                             strict=True))))
            failed = [e for errs in errors for e in errs]
            if failed:
                step.reasons.append(f"{len(failed)} browsers could not join ({failed[0]})")
            log.info("cluster capacity %s", step.summary())
            steps.append(step)
            if not step.ok:
                stopped = f"N={n} failed"
                break
        else:
            stopped = "end of the ladder"
    finally:
        await asyncio.gather(*(asyncio.wait_for(load.close(), 60.0) for load in loads),
                             return_exceptions=True)
    return steps, stopped


def measure_cluster_capacity(workdir: Path, *, budget_s: float = 1100.0,
                             window_s: float = 10.0, one_node: Figure | None = None,
                             ladder: Sequence[int] | None = None) -> Figure:
    """One node with conference_capacity's own run (unless `one_node` is given), then two
    nodes up the doubled ladder and bisection, with what is left of the budget."""
    from .cluster_nodes import start_cluster
    from .conference import _quiet_aiortc
    from .conference_capacity import measure_capacity
    from .conference_peers import use_loopback_only

    title, goal = FIGURES["cluster-capacity"]
    budget = Budget(budget_s)
    workdir.mkdir(parents=True, exist_ok=True)
    if one_node is None:
        one_node = measure_capacity(workdir / "one-node", budget_s=budget_s * 0.4,
                                    window_s=window_s)
    use_loopback_only()
    _quiet_aiortc()
    cpus = os.cpu_count() or 1
    steps_in = list(ladder) if ladder is not None else cluster_ladder()
    how = (f"one node: the capacity figure's run (server on core 0, the load on core 1); "
           f"two nodes on one Redis and one PostgreSQL (as `switchboard nodes` runs them), "
           f"node 1 on core 0, node 2 on core {min(1, cpus - 1)}, the load (sipp and the "
           f"synthetic browsers of the capacity figure, half the rooms to each node: browsers "
           f"first, so the room lives there, then its phones on that node's SIP port) on all "
           f"{cpus} cores, sharing them with the nodes; a step passes when both nodes pass "
           f"capacity's test (< 1% late mix ticks, every leg and browser up, RTP both ways); "
           f"N in all up {', '.join(map(str, steps_in))}, then bisection on fresh nodes; "
           f"{window_s:g} s windows")
    cluster = start_cluster()
    runs = 0

    def run(steps: Sequence[int]) -> tuple[list[ClusterStep], str]:
        nonlocal runs
        runs += 1
        tag = f"r{runs}"
        nodes = [cluster.start_node(f"{tag}n{k + 1}", cpu=k if k < cpus else None,
                                    rtp_ports=2 * max(steps) // NODES + 100,
                                    bridge_ports=max(steps) // NODES + 200,
                                    workdir=workdir / tag)
                 for k in range(NODES)]
        sipps: list[Any] = []
        try:
            cluster.wait_alive([f"{tag}n{k + 1}" for k in range(NODES)])
            with all_cores():
                return asyncio.run(asyncio.wait_for(
                    _steps(nodes, workdir / tag, budget, window_s, steps, sipps, tag),
                    budget.left() + 60))
        finally:
            for sipp in sipps:
                if sipp.proc is not None:
                    sipp.proc.stop()
            for node in nodes:
                from .common import stop_server

                stop_server(node)

    try:
        steps, stopped = run(steps_in)
        unit = PHONES_PER_ROOM * NODES
        while True:
            good = max((x.n for x in steps if x.ok), default=0)
            bad = min((x.n for x in steps if not x.ok and x.n > good and not x.contended),
                      default=0)
            mid = (good + bad) // 2 // unit * unit
            if not bad or mid <= good or mid >= bad or \
                    not budget.fits(20 + mid / PHONES_PER_ROOM + mid / RAMP_RATE + 2 * window_s):
                break
            more, why = run((mid,))
            if not more:
                stopped += f"; N={mid} not measured ({why})"
                break
            steps += more
    finally:
        cluster.stop()
    return ratio_figure(one_node, steps, stopped, how, title=title, goal=goal)

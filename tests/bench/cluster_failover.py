"""Issue 19's failover figure: from kill -9 of the node that hosts a room to audio flowing
again between the room's two browsers, median and worst of 5 (goal: under 10 s).

Three nodes (cluster_nodes.py: Redis and PostgreSQL as `switchboard nodes` runs them, each
node `switchboard serve` on its own ports, not pinned: the machine's cores are shared by the
nodes and this process). Each trial: two bench browsers
(conference_load.BenchBrowser: aiortc over /ws, sending audio) open a new room on two
different nodes; the second is told "room-elsewhere" and goes to the owner, as the page does;
once each hears the other, the owner is killed with SIGKILL and the clock starts. Each browser
then does what the page does (web/static/js/room.js): its WebSocket closes; after the page's
first cluster retry delay (1 s) it finds its node not answering, waits until NODE_DEAD_S have
passed since the loss, and joins at the next node its `joined` listed (`nodes`), following
"room-elsewhere" except to the node it fled; a refusal ("try again": 4029) waits the page's
next delay (1, 1, 2, 2, 3, 5, 10 s). The clock stops when each new browser has received 5
audio packets from the other's new participant. The killed node is started again (its own
configuration) before the next trial.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import Budget, Figure, SwitchboardServer

log = logging.getLogger("bench.failover")

FIGURES: dict[str, tuple[str, str]] = {
    "failover": ("Kill -9 of a room's node to audio flowing again between its browsers",
                 "under 10 s (median and worst of 5)"),
}
GOAL_S = 10.0
NODES = 3
CLUSTER_RETRY_S = (1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 5.0, 10.0)  # the page's, in a cluster (room.js)
NODE_DEAD_S = 3.5  # room.js NODE_DEAD_MS: a lost node is left only once it is declared dead
HEARD_PACKETS = 5
MAX_HOPS = 3
GIVE_UP_S = 40.0  # a trial that has not recovered by then counts as failed


@dataclass
class Trial:
    owner: str = ""
    seconds: float | None = None    # kill -9 to audio both ways again; None: not within GIVE_UP_S
    rehomed_to: str = ""
    attempts: list[str] = field(default_factory=list)  # what each rejoin met, in order
    error: str = ""

    def summary(self) -> str:
        took = f"{self.seconds:.2f} s" if self.seconds is not None else "no recovery"
        error = f" {self.error}" if self.error else ""
        return (f"owner {self.owner} killed -> {took} (room now on {self.rehomed_to or '?'}; "
                f"{', '.join(self.attempts) or 'no rejoin'}){error}")


def failover_figure(trials: list[Trial], *, how: str, title: str = FIGURES["failover"][0],
                    goal: str = FIGURES["failover"][1]) -> Figure:
    """Median and worst of the trials' times; a trial without recovery is a failure (the goal
    is then not met, and it is said)."""
    details = {"trials": [t.summary() for t in trials]}
    if not trials:
        return Figure(title, "not measured", goal, how, details=details)
    times = [t.seconds for t in trials if t.seconds is not None]
    failed = len(trials) - len(times)
    if not times:
        return Figure(title, f"no recovery in {len(trials)} trials (each given "
                      f"{GIVE_UP_S:.0f} s)", goal, how, met=False, details=details)
    measured = (f"{statistics.median(times):.1f} s median, worst {max(times):.1f} s over "
                f"{len(times)} trials (best {min(times):.1f} s)")
    if failed:
        measured += f"; {failed} of {len(trials)} trials did not recover within {GIVE_UP_S:.0f} s"
    details |= {"seconds": [round(t, 3) for t in times], "failed": failed}
    return Figure(title, measured, goal, how, met=not failed and max(times) < GOAL_S,
                  details=details)


# --- the browser's side: join as the page does -------------------------------------------


async def _join_once(url: str, room: str, name: str) -> tuple[Any, str]:
    """(a joined BenchBrowser, "") or (None, what refused it: "room-elsewhere URL", "refused",
    an error code)."""
    from .conference_load import BenchBrowser

    browser = BenchBrowser(url, room, name=name)
    try:
        await browser.signaling.open()
    except Exception as err:  # refused, reset, an HTTP error instead of the upgrade
        await browser.close()
        return None, f"refused ({type(err).__name__})"
    await browser.signaling.send({"type": "join", "version": 1, "room": room, "name": name,
                                  "audio": True, "video": False})
    error: dict[str, Any] = {}
    while True:
        try:
            msg = await browser.signaling.next("joined", "error", timeout=10.0)
        except TimeoutError:
            await browser.close()
            return None, "no answer"
        if msg["type"] == "error":
            error = msg
            continue
        break
    if msg["type"] != "joined":
        await browser.close()
        code = error.get("code", f"closed {msg.get('code')}")
        return None, f"{code} {error.get('message', '')}".strip()
    # the rest of BenchBrowser.join: the same steps, after our own join message
    browser.self_id = msg["self"]["id"]
    browser.people = {p["id"]: p for p in msg.get("participants", [])}
    browser.peer_nodes = [u for u in msg.get("nodes", []) if isinstance(u, str)]
    browser._tasks.append(asyncio.get_running_loop().create_task(browser._run()))
    return browser, ""


async def join_like_the_page(urls: list[str], first: str, room: str, name: str,
                             attempts: list[str]) -> Any:
    """Join at `first`; "room-elsewhere" is followed; a refused connection passes to the
    next node of `urls`; returns the joined browser, or None when every node was tried."""
    order = [first, *[u for u in urls if u != first]]
    for url in order:
        target = url
        for _ in range(MAX_HOPS):
            browser, why = await _join_once(target, room, name)
            if browser is not None:
                attempts.append(f"joined at {target}")
                return browser
            attempts.append(f"{target}: {why}")
            if why.startswith("room-elsewhere "):
                target = why.split(" ", 1)[1]
                continue
            break
    return None


def hears(browser: Any, other: Any, packets: int = HEARD_PACKETS) -> bool:
    return bool(other.self_id) and len(browser.levels_in.get(other.self_id, ())) >= packets


async def _until(predicate: Any, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _answers(url: str) -> bool:
    """Whether the node at `url` accepts a TCP connection (the page's /api/health probe)."""
    host, _, port = url.split("//", 1)[1].partition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.5)
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    return True


async def _rejoin(peers: list[str], home: str, room: str, name: str,
                  attempts: list[str], deadline: float) -> Any:
    """The page after its WebSocket closed (room.js `end` and `rejoin`): returns the joined
    browser, or None by `deadline`."""
    loop = asyncio.get_running_loop()
    lost = loop.time()
    here, fled = home, ""
    for index, delay in enumerate(CLUSTER_RETRY_S):
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        if loop.time() >= deadline:
            return None
        others = [u for u in peers if u != here]
        if others and not await _answers(here):
            await asyncio.sleep(max(0.0, lost + NODE_DEAD_S - loop.time()))
            fled, here = here, others[index % len(others)]
            attempts.append(f"left {fled} for {here}")
        for _ in range(MAX_HOPS):
            browser, why = await _join_once(here, room, name)
            if browser is not None:
                attempts.append(f"joined at {here}")
                return browser
            attempts.append(f"{here}: {why}")
            target = why.split(" ", 1)[1] if why.startswith("room-elsewhere ") else ""
            if not target or target == fled:
                break  # the page retries after its next delay
            here = target
    return None


async def _trial(nodes: dict[str, SwitchboardServer], room: str, index: int,
                 killed_pids: list[int]) -> Trial:
    trial = Trial()
    urls = [s.base_url for s in nodes.values()]
    by_url = {s.base_url: node for node, s in nodes.items()}
    a_home, b_home = urls[index % len(urls)], urls[(index + 1) % len(urls)]
    made: list[Any] = []
    try:
        a = await join_like_the_page(urls, a_home, room, "A", [])
        if a is None:
            trial.error = "browser A could not join"
            return trial
        made.append(a)
        b = await join_like_the_page(urls, b_home, room, "B", [])
        if b is None:
            trial.error = "browser B could not join"
            return trial
        made.append(b)
        if a.signaling.base_url != b.signaling.base_url:
            trial.error = "the two browsers joined on different nodes"
            return trial
        if not await _until(lambda: hears(a, b) and hears(b, a), 20.0):
            trial.error = "no audio both ways before the kill"
            return trial
        trial.owner = by_url[a.signaling.base_url]
        owner = nodes[trial.owner]
        pid = owner.pid
        loop = asyncio.get_running_loop()
        os.kill(pid, signal.SIGKILL)
        killed = loop.time()
        killed_pids.append(pid)
        deadline = killed + GIVE_UP_S
        # each page sees its WebSocket close, then rejoins on its own schedule
        for old in (a, b):
            await _until(lambda o=old: o.signaling.ws is None or o.signaling.ws.closed, 5.0)
        attempts_a: list[str] = []
        attempts_b: list[str] = []
        a2, b2 = await asyncio.gather(
            # both pages are at the owner's address (B followed room-elsewhere there)
            _rejoin(a.peer_nodes, owner.base_url, room, "A", attempts_a, deadline),
            _rejoin(b.peer_nodes, owner.base_url, room, "B", attempts_b, deadline))
        made += [x for x in (a2, b2) if x is not None]
        trial.attempts = [f"A: {x}" for x in attempts_a] + [f"B: {x}" for x in attempts_b]
        for url, node in by_url.items():  # node ids read better than ports
            trial.attempts = [x.replace(url, node) for x in trial.attempts]
        if a2 is None or b2 is None:
            trial.error = "a browser could not rejoin"
            return trial
        trial.rehomed_to = by_url.get(a2.signaling.base_url, a2.signaling.base_url)
        if await _until(lambda: hears(a2, b2) and hears(b2, a2),
                        max(0.0, deadline - loop.time())):
            trial.seconds = loop.time() - killed
        else:
            trial.error = "rejoined, but no audio both ways"
        return trial
    finally:
        for browser in made:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(browser.close(), 10.0)


def measure_failover(workdir: Path, *, budget_s: float = 300.0, trials: int = 5) -> Figure:
    from .cluster_nodes import start_cluster
    from .conference import _quiet_aiortc
    from .conference_peers import use_loopback_only

    title, goal = FIGURES["failover"]
    mine = sorted(os.sched_getaffinity(0))
    how = (f"{NODES} nodes (switchboard serve, one Redis, one PostgreSQL, as `switchboard "
           f"nodes` runs them) not pinned, on the machine's {os.cpu_count()} cores, this "
           f"process (the browsers) on core{'s' if len(mine) > 1 else ''} "
           f"{', '.join(map(str, mine))}; per trial two aiortc browsers "
           f"(tests/bench/conference_load.py BenchBrowser, sending audio) open a new room on "
           f"two nodes (the second follows room-elsewhere to the owner); SIGKILL to the "
           f"owner; each browser rejoins as the page does (room.js: {CLUSTER_RETRY_S[0]:g} s "
           f"after its WebSocket closes its node does not answer; {NODE_DEAD_S:g} s after "
           f"the loss it joins at the next node `joined` listed, follows room-elsewhere but "
           f"not back to the dead node, retries 'try again' after the page's next delays); "
           f"time to {HEARD_PACKETS} audio packets each way between the new "
           f"participants; the killed node restarted before the next trial")
    budget = Budget(budget_s)
    workdir.mkdir(parents=True, exist_ok=True)
    use_loopback_only()
    _quiet_aiortc()
    cluster = start_cluster()
    done: list[Trial] = []
    try:
        ids = [f"f{i + 1}" for i in range(NODES)]
        for node_id in ids:
            cluster.start_node(node_id, cpu=None, workdir=workdir)
        cluster.wait_alive(ids)
        for i in range(trials):
            if not budget.fits(GIVE_UP_S + 30):
                log.warning("failover: time budget spent after %d trials", len(done))
                break
            killed: list[int] = []
            trial = asyncio.run(asyncio.wait_for(
                _trial(dict(cluster.nodes), f"failover-{i}-{int(time.time())}", i, killed),
                GIVE_UP_S + 120))
            log.info("failover trial %d: %s", i + 1, trial.summary())
            done.append(trial)
            if trial.owner:  # the killed node comes back for the next trial
                cluster.nodes[trial.owner].proc.wait(timeout=10)
                cluster.start_node(trial.owner, cpu=None)
                cluster.wait_alive(ids)
            elif trial.error:
                break  # not a failover: something else is wrong, say it
    finally:
        cluster.stop()
    figure = failover_figure(done, how=how, title=title, goal=goal)
    if done and done[-1].error and not done[-1].owner:
        figure.measured = f"{figure.measured}; stopped: {done[-1].error}"
    return figure

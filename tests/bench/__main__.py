"""Run the benchmarks and print one table: figure | measured | goal | how.

    python -m tests.bench                   # all figures against switchboard (~25 min)
    python -m tests.bench --only legs       # one figure
    python -m tests.bench --only callrate-digest   # the call rate through a digest trunk (4 min)
    python -m tests.bench --only forwarding --only endpoints --only join   # the bridge's (~4 min)
    python -m tests.bench --only https-join  # 10 joins over HTTPS from another host (~2 min)
    python -m tests.bench --only quality --only latency --only capacity   # with phones (<= 9 min)
    python -m tests.bench --only conversation   # phones and browsers, one talker a room (4 min)
    python -m tests.bench --only flood      # genuine calls under an INVITE flood (2 min)
    python -m tests.bench --only dialout    # dial-out setup time through kamailio (<= 2 min)
    python -m tests.bench --only versus-janus   # side by side with Janus AudioBridge (~20 min)
    python -m tests.bench --only recordings --only video-recording   # the recorder (~3 min)
    python -m tests.bench --only failover   # kill -9 of a room's node, 5 times (~3 min)
    python -m tests.bench --only cluster-capacity   # two nodes against one (~15 min)
    python -m tests.bench --only cluster-idle   # what an idle cluster node costs (1 min)
    python -m tests.bench --against uas     # prove the load side against sipp's own uas
    python -m tests.bench --quick           # shorter trials and windows

The table is also written to bench-results.json in the current directory. Every process
started here is stopped by PID at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from . import (
    bridge,
    callrate,
    callrate_digest,
    cluster_capacity,
    cluster_failover,
    cluster_idle,
    conference,
    conference_capacity,
    dialout,
    flood,
    https_join,
    janus_bench,
    legs,
    memory,
    recording,
)
from .common import BenchError, Figure, pin_self, procs, require_programs

log = logging.getLogger("bench")

FIGURES: dict[str, tuple[str, str]] = {
    "callrate": ("Call setup rate (RFC 7502)", "500 calls/s on one core"),
    "callrate-digest": (callrate_digest.TITLE, callrate_digest.GOAL),
    "legs": ("Phone legs mixed in real time", "300 legs with <1% late ticks on one core"),
    "memory": ("Memory per call", "report (no target set)"),
    "flood": ("Genuine calls under an INVITE flood (3x capacity)",
              "99% of genuine calls succeed"),
    "dialout": ("Dial-out setup time (API to 200 OK via kamailio)", "report (no target set)"),
    **bridge.FIGURES,  # forwarding, endpoints, join
    **https_join.FIGURES,  # https-join (test hosts in network namespaces)
    **conference.FIGURES,  # quality, latency, capacity, conversation
    **janus_bench.FIGURES,  # versus-g711, versus-mixed (side by side with Janus)
    **recording.FIGURES,  # recordings, video-recording
    **cluster_failover.FIGURES,  # failover (issue 19: kill -9 of a room's node)
    **cluster_capacity.FIGURES,  # cluster-capacity (issue 19: two nodes against one)
    **cluster_idle.FIGURES,  # cluster-idle (issue 19: heartbeats and coordination, idle)
}


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted([*FIGURES, *janus_bench.ALIASES]),
                        help="run only this figure (repeatable)")
    parser.add_argument("--against", choices=("server", "uas"), default="server",
                        help="the system under test (uas: sipp's built-in uas, a self-test)")
    parser.add_argument("--quick", action="store_true", help="shorter trials and windows")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep configs, logs and sipp traces here (default: a temp dir)")
    parser.add_argument("--output", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--calls", type=int, default=200, help="calls held for memory")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


# Figures measured in this run, by name: cluster-capacity reuses capacity's one-node figure
# when the run has just measured it (with a result), instead of measuring it again.
_MEASURED: dict[str, Figure] = {}


def _one_node() -> Figure | None:
    done = _MEASURED.get("capacity")
    return done if done is not None and cluster_capacity.best_phones(done) > 0 else None


def _run(name: str, workdir: Path, args: argparse.Namespace) -> Figure:
    quick = args.quick
    runners: dict[str, Callable[[], Figure]] = {
        "callrate": lambda: callrate.measure(
            workdir / "callrate", against=args.against, budget_s=90 if quick else 240,
            duration_s=5 if quick else 10),
        "callrate-digest": lambda: callrate_digest.measure(
            workdir / "callrate-digest", against=args.against, budget_s=90 if quick else 240,
            duration_s=5 if quick else 10),
        "legs": lambda: legs.measure(
            workdir / "legs", against=args.against, budget_s=120 if quick else 300,
            window_s=6 if quick else 15),
        "memory": lambda: memory.measure(
            workdir / "memory", against=args.against, n=args.calls,
            budget_s=60 if quick else 120),
        "flood": lambda: flood.measure(
            workdir / "flood", budget_s=120 if quick else 200, duration_s=8 if quick else 20),
        "dialout": lambda: dialout.measure(
            workdir / "dialout", budget_s=60 if quick else 120, trials=5 if quick else 20),
        "forwarding": lambda: bridge.measure_forwarding(
            workdir / "forwarding", budget_s=50 if quick else 80, window_s=5 if quick else 10),
        "endpoints": lambda: bridge.measure_endpoints(
            workdir / "endpoints", budget_s=120 if quick else 260, window_s=4 if quick else 8),
        "join": lambda: bridge.measure_join(
            workdir / "join", budget_s=80 if quick else 100, joins=3 if quick else 5),
        "https-join": lambda: https_join.measure_https_join(
            workdir / "https-join", budget_s=120 if quick else 200, joins=3 if quick else 10),
        "quality": lambda: conference.measure_quality(
            workdir / "quality", budget_s=100 if quick else 180, quick=quick),
        "latency": lambda: conference.measure_latency(
            workdir / "latency", budget_s=40 if quick else 60, pairs=2 if quick else 5),
        "capacity": lambda: conference_capacity.measure_capacity(
            workdir / "capacity", budget_s=150 if quick else 300, window_s=5 if quick else 10),
        "conversation": lambda: conference_capacity.measure_capacity(
            workdir / "conversation", budget_s=150 if quick else 240,
            window_s=5 if quick else 10, talkers="one"),
        "versus-g711": lambda: janus_bench.measure(
            "versus-g711", workdir / "versus-g711", budget_s=300 if quick else 600,
            window_s=5 if quick else 10),
        "recordings": lambda: recording.measure_recordings(window_s=5 if quick else 10),
        "video-recording": lambda: recording.measure_video(window_s=5 if quick else 10),
        "versus-mixed": lambda: janus_bench.measure(
            "versus-mixed", workdir / "versus-mixed", budget_s=240 if quick else 480,
            window_s=5 if quick else 10),
        "failover": lambda: cluster_failover.measure_failover(
            workdir / "failover", budget_s=200 if quick else 400, trials=2 if quick else 5),
        "cluster-capacity": lambda: cluster_capacity.measure_cluster_capacity(
            workdir / "cluster-capacity", budget_s=500 if quick else 1100,
            window_s=5 if quick else 10, one_node=_one_node()),
        "cluster-idle": lambda: cluster_idle.measure_idle(
            workdir / "cluster-idle", budget_s=120, window_s=10 if quick else 30),
    }
    title, goal = FIGURES[name]
    started = time.monotonic()
    try:
        figure = runners[name]()
    except Exception as err:  # one figure's failure must not lose the others
        log.exception("%s failed", name)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        figure = Figure(title, "not measured", goal, f"error: {first}")
    finally:
        leftovers = procs.stop_all()
        if leftovers:
            log.warning("%s: stopped leftover processes %s", name, ", ".join(leftovers))
    log.info("%s done in %.0f s: %s", name, time.monotonic() - started, figure.measured)
    _MEASURED[name] = figure
    return figure


def render(figures: list[Figure], width: int = 44) -> str:
    """A plain-text table; long cells wrap inside their column."""
    headers = ("figure", "measured", "goal", "how")
    widths = (30, width, 26, 60)
    rows = [headers] + [(f.figure, f.measured + _met(f), f.goal, f.how) for f in figures]
    lines: list[str] = []
    sep = "-+-".join("-" * w for w in widths)
    for index, row in enumerate(rows):
        cells = [textwrap.wrap(str(c), w) or [""] for c, w in zip(row, widths, strict=True)]
        for i in range(max(len(c) for c in cells)):
            lines.append(" | ".join((c[i] if i < len(c) else "").ljust(w)
                                    for c, w in zip(cells, widths, strict=True)).rstrip())
        if index == 0:
            lines.append(sep)
    return "\n".join(lines)


def _met(figure: Figure) -> str:
    return {True: "  [goal met]", False: "  [below goal]", None: ""}[figure.met]


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    if not args.verbose:  # the harness logs every process it starts
        logging.getLogger("peers").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _on_sigterm)
    names = [n for name in args.only or list(FIGURES)
             for n in janus_bench.ALIASES.get(name, (name,))]
    figures: list[Figure] = []
    started = time.monotonic()
    tmp: tempfile.TemporaryDirectory[str] | None = None
    try:
        require_programs("sipp", "taskset")
        if args.workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="switchboard-bench-")
            workdir = Path(tmp.name)
        else:
            workdir = args.workdir.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        pin_self()
        for name in names:
            figures.append(_run(name, workdir, args))
    except KeyboardInterrupt:
        log.error("interrupted: stopping every process started here")
        return 130
    except BenchError as err:
        log.error("%s", err)
        return 2
    finally:
        leftovers = procs.stop_all()
        if leftovers:
            log.warning("stopped leftover processes: %s", ", ".join(leftovers))
        strays = procs.stray_processes()
        if strays:
            log.error("processes still alive after stopping (pgid: pids): %s", strays)
        if figures:
            _report(figures, args, time.monotonic() - started)
        if tmp is not None:
            tmp.cleanup()
    return 0


def _report(figures: list[Figure], args: argparse.Namespace, seconds: float) -> None:
    out = {"against": args.against, "quick": args.quick, "seconds": round(seconds, 1),
           "figures": [f.as_json() for f in figures]}
    try:
        args.output.write_text(json.dumps(out, indent=2) + "\n")
    except OSError as err:
        log.error("cannot write %s: %s", args.output, err)
    sys.stdout.write(f"\nSwitchboard benchmarks against {args.against} "
                     f"({seconds / 60:.1f} min; details in {args.output})\n\n")
    sys.stdout.write(render(figures) + "\n")
    sys.stdout.write("\nThe server runs pinned to core 0 and sipp to core 1, but the machine may "
                     "be shared: 'waited' is the share of the window the server was ready to run "
                     "while another process held core 0. A figure measured with much waiting "
                     "is a lower bound.\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())

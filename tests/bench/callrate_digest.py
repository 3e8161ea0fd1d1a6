"""Issue 16 section 5: calls per second accepted through a trunk with digest on every INVITE,
beside the figure without digest.

The same ladder, bisection and trials as the call setup rate (callrate.py, `search`), with
another `Setup`: the server refuses calls that match no trunk (`sip.require_trunk`), and a
trunk created over the API (as tests/integration/test_trunks_kamailio.py does) has
`auth: true`, sipp's address (127.0.0.1/32) in its `allowed_addresses` and the number
dialled; that number routes to the bench room (POST /api/numbers). Every call is then
INVITE -> 407 (one MD5 challenge) -> ACK -> INVITE with Proxy-Authorization -> 200 -> ACK ->
hold -> BYE (scenarios/call_digest.xml): the server matches the trunk by address, checks
the digest, routes the number. sipp 3.6 reads only the first Proxy-Authenticate header and
answers only MD5, so the server offers MD5 alone (`sip.digest_algorithms = ["MD5"]`; the
default offers SHA-256 first, and SHA-256 costs the server about what MD5 does per call).

The figure's text gives both numbers: the rate and CPU per call with digest from this run,
and the plain figure as docs/benchmarks.md has it (its row "Call setup rate", with the date
it was taken): the two were not measured in one run, and the text says so.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from . import callrate
from .common import REPO, BenchError, Figure, Target, procs

log = logging.getLogger("bench.callrate_digest")

TITLE = "Call setup rate through a trunk with digest on every INVITE (issue 16)"
GOAL = "report, beside the rate without digest"
NUMBER = "+15550100"
TRUNK = "bench-trunk"
USERNAME = "bench"
PASSWORD = "bench-digest-password"  # a bench server's own trunk, on loopback; also in
# scenarios/call_digest.xml's [authentication] (sipp 3.6 takes no [field] inside it)
BENCHMARKS_MD = REPO / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class PlainFigure:
    """The call setup rate without digest, as docs/benchmarks.md states it."""

    rate: int
    cpu_ms_per_call: float | None
    taken: str  # the date it was taken, "" when the row gives none


_ROW = re.compile(r"^\|\s*Call setup rate, zero failed calls[^|]*\|([^|]*)\|", re.M)
_RATE = re.compile(r"\*\*(\d+) calls/s\*\*")
_CPU = re.compile(r"(\d+(?:\.\d+)?) ms CPU per call")
_TAKEN = re.compile(r"taken (\d{4}-\d\d-\d\d)")


def plain_figure(markdown: str) -> PlainFigure | None:
    """The measured cell of the "Call setup rate, zero failed calls" row of a
    docs/benchmarks.md text: its first bold rate, the first CPU per call and the date after
    "taken" in it; None when there is no such row or no rate in it."""
    row = _ROW.search(markdown)
    if row is None:
        return None
    cell = row.group(1)
    rate = _RATE.search(cell)
    if rate is None:
        return None
    cpu = _CPU.search(cell)
    taken = _TAKEN.search(cell)
    return PlainFigure(int(rate.group(1)), float(cpu.group(1)) if cpu else None,
                       taken.group(1) if taken else "")


def _prepare(target: Target) -> None:
    """The bench room, the trunk with digest, the number routed to the room."""
    server = target.server
    assert server is not None
    target.create_rooms([callrate.ROOM])
    resp = server.api("POST", "/api/trunks", {
        "name": TRUNK, "address": f"{procs.LOOPBACK}:5060", "transport": "udp",
        "username": USERNAME, "password": PASSWORD, "register": False, "auth": True,
        "numbers": [NUMBER], "allowed_addresses": [f"{procs.LOOPBACK}/32"],
        "media_encryption": "off"})
    if resp.status != 201:
        raise BenchError(f"POST /api/trunks: HTTP {resp.status} {resp.text[:200]}")
    resp = server.api("POST", "/api/numbers",
                      {"number": NUMBER, "route": "room", "room": callrate.ROOM})
    if resp.status not in (200, 201):
        raise BenchError(f"POST /api/numbers: HTTP {resp.status} {resp.text[:200]}")


DIGEST = callrate.Setup(
    scenario="call_digest.xml",
    service=NUMBER,
    inf_lines=(callrate.ROOM,),  # unused: the credentials are in the scenario
    extra={"sip": {"require_trunk": True, "digest_algorithms": ["MD5"]}},
    prepare=_prepare,
    call=f"INVITE+SDP to {NUMBER} -> 407 (MD5, qop=auth) -> ACK -> INVITE with "
         f"Proxy-Authorization -> 200 -> ACK",
)


def measure(workdir: Path, *, against: str = "server", budget_s: float = 240.0,
            duration_s: float = 10.0, hold_ms: int = 1000,
            benchmarks_md: Path = BENCHMARKS_MD) -> Figure:
    if against != "server":
        # sipp's built-in uas answers without a challenge: there is no self-test of this one
        return Figure(TITLE, "not measured", GOAL,
                      f"needs the server (sipp's uas sends no 407); against {against}")
    try:
        plain = plain_figure(benchmarks_md.read_text())
    except OSError:
        plain = None
    found = callrate.search(workdir, DIGEST, against=against, budget_s=budget_s,
                            duration_s=duration_s, hold_ms=hold_ms)
    return figure(found, plain, duration_s=duration_s, hold_ms=hold_ms)


def figure(found: callrate.Search, plain: PlainFigure | None, *, duration_s: float,
           hold_ms: int) -> Figure:
    best, trials = found.best, found.trials
    without = "without digest: not in docs/benchmarks.md"
    if plain is not None:
        cpu = f", {plain.cpu_ms_per_call:g} ms CPU per call" if plain.cpu_ms_per_call else ""
        when = f", taken {plain.taken}" if plain.taken else ""
        without = (f"without digest: {plain.rate} calls/s{cpu} (docs/benchmarks.md{when}; "
                   f"not this run)")
    if best is None:
        measured = "0 calls/s with digest (no rate passed)" if trials else "not measured"
    else:
        measured = (f"{best.rate} calls/s with digest ({best.cpu_ms_per_call:.2f} ms CPU per "
                    f"call, server CPU {best.cpu_percent:.0f}% of one core, waited "
                    f"{best.cpu_wait_percent:.0f}% for it; INVITE->200 mean "
                    f"{best.setup_ms:.0f} ms incl. the challenge)")
    measured += f"; {without}"
    how = (f"sipp uac on core 1 -> server pinned to core 0, sip.require_trunk, a trunk with "
           f"auth = true matched by address; {DIGEST.call} -> {hold_ms} ms hold -> BYE; "
           f"{duration_s:g} s trials on the call rate's ladder then bisection, same pass rule "
           f"(0 failed calls, sipp exit 0, >=90% of the rate held, 0 live calls after)")
    if found.first_bad is not None:
        reason = next(("; ".join(t.reasons[1:] or t.reasons) for t in reversed(trials)
                       if t.rate == found.hi and t.reasons), "")
        how += f"; first failing rate {found.hi}/s ({reason[:160]})"
    elif trials:
        how += f"; no failure up to {trials[-1].rate}/s (ladder or time budget ended)"
    return Figure(
        figure=TITLE, measured=measured, goal=GOAL, how=how,
        met=None,  # a report: no goal of its own
        details={"best_rate": best.rate if best else 0,
                 "server_cpu_ms_per_call": round(best.cpu_ms_per_call, 3) if best else None,
                 "server_cpu_percent": round(best.cpu_percent, 1) if best else None,
                 "server_waited_for_core_percent":
                     round(best.cpu_wait_percent, 1) if best else None,
                 "setup_ms_mean": round(best.setup_ms, 1) if best else None,
                 "first_failing_rate": found.first_bad.rate if found.first_bad else None,
                 "without_digest": None if plain is None else {
                     "rate": plain.rate, "cpu_ms_per_call": plain.cpu_ms_per_call,
                     "taken": plain.taken, "source": "docs/benchmarks.md"},
                 "trials": [t.summary() for t in trials],
                 "seconds": round(found.budget.elapsed(), 1)},
    )

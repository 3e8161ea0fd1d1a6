"""Figure: dial-out setup time (issue 16, section 5).

The server (core 0) dials a phone through kamailio as the carrier, on loopback: a room, a
trunk at kamailio (UDP, digest on every INVITE: each call is a 407 and a second INVITE),
and a baresip phone (core 1, auto-answer) registered at kamailio under +15550199. Each
trial times `POST /api/rooms/{room}/dial` to the moment `GET /api/calls/{id}` says
"connected" (the 200 OK has come through kamailio and the callee is in the room), polling
every 5 ms; then the call is hung up (DELETE) and the next one waits until the phone has
closed it. The figure is the median and the 90th percentile over the trials; it includes
the phone's own answering (baresip answers at once) and the polling's 5 ms grain.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

from peers.baresip import Baresip
from peers.kamailio_carrier import KamailioCarrier

from .common import Budget, Figure, procs, start_server, stop_server

log = logging.getLogger("bench.dialout")

ROOM = "bench-dialout"
CALLEE = "+15550199"
PASSWORD = "bench-trunk-pw-1"
POLL_S = 0.005


def _connected(server: object, call_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = server.api("GET", f"/api/calls/{call_id}").json()["state"]  # type: ignore[attr-defined]
        if state == "connected":
            return True
        if state == "ended":
            return False
        time.sleep(POLL_S)
    return False


def measure(workdir: Path, *, budget_s: float = 120.0, trials: int = 20) -> Figure:
    title, goal = "Dial-out setup time (API to 200 OK via kamailio)", "report (no target set)"
    budget = Budget(budget_s)
    server = start_server(workdir, {"dialplan": {"default_country": "1"}})
    times: list[float] = []
    failed = 0
    try:
        assert server.api("POST", "/api/rooms", {"name": ROOM}).status == 201
        with KamailioCarrier(workdir, subscribers={"sb": PASSWORD, "callee": "callee-pw"},
                             number="+15550100", trunk_user="sb") as kam, \
                Baresip(workdir, "callee", user=CALLEE, registrar=kam.address,
                        auth_user="callee", auth_pass="callee-pw", tone_hz=440.0,
                        codecs=("PCMU/8000/1",), timeout_s=budget_s + 60) as phone:
            resp = server.api("POST", "/api/trunks", {
                "name": "carrier", "address": kam.address, "username": "sb",
                "password": PASSWORD, "numbers": ["+15550100"],
                "allowed_destinations": ["+1555"]})
            assert resp.status == 201, resp.text
            phone.wait_registered(10)
            for n in range(trials):
                if not budget.fits(15):
                    break
                mark = time.monotonic()
                resp = server.api("POST", f"/api/rooms/{ROOM}/dial", {"number": CALLEE})
                if resp.status != 202:
                    failed += 1
                    continue
                call_id = resp.json()["id"]
                if _connected(server, call_id, 10):
                    times.append(time.monotonic() - mark)
                else:
                    failed += 1
                server.api("DELETE", f"/api/calls/{call_id}")
                phone.wait_event("CALL_CLOSED", 10, predicate=lambda e, m=mark: e.at > m)
                log.info("dial-out %d: %.1f ms", n, (times[-1] * 1000) if times else -1)
    finally:
        stop_server(server)
        procs.stop_all()
    if not times:
        return Figure(title, "not measured", goal, f"no call connected ({failed} failed)")
    ms = sorted(t * 1000 for t in times)
    p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
    return Figure(title, f"median {statistics.median(ms):.0f} ms, p90 {p90:.0f} ms "
                         f"({len(ms)} calls)", goal,
                  "POST /dial to GET /api/calls/{id} connected; kamailio (digest 407 on each "
                  "INVITE) to a baresip phone that answers at once; loopback",
                  None, {"ms": ms, "failed": failed})

"""The figure "join time over HTTPS from another host" (issue 15, section 5): median and worst
of 10 joins, from the click on Join to the first remote audio.

The test hosts of tests/browser/netlab.py, inside one `unshare -n bash -c ...`:
`switchboard serve` on the server host (10.99.1.1) serves HTTPS (http.tls_cert, a leaf for
switchboard.test from a throwaway CA); two headless Chromiums run on the client host behind
the NAT (10.99.2.2), resolve switchboard.test to the server (--host-resolver-rules) and
trust the CA from the NSS database of their HOME. One page is in the room and sends its fake
microphone; the other opens https://switchboard.test:8080/ROOM and joins `joins` times (audio
only, a new page each time, leaving in between). The joining page's own clock times the click
on Join to the first inbound audio RTP packet in getStats() (polled every 5 ms), as the
loopback `join` figure of tests/bench/bridge.py does; the page load before the click (HTTPS
by name across the NAT) is timed apart.

    python -m tests.bench --only https-join
    python -m tests.bench.https_join join-browser --out FILE   # the part inside the namespace
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from .bridge import _JOIN_JS, _machine, join_child_main, run_join_child
from .common import REPO, Figure

log = logging.getLogger("bench.https_join")

FIGURES: dict[str, tuple[str, str]] = {
    "https-join": ("Join over HTTPS from another host, to first remote audio",
                   "report (no target set)"),
}
NAME = "switchboard.test"
ROOM = "bench-https-join"


def measure_https_join(workdir: Path, *, budget_s: float = 200.0, joins: int = 10) -> Figure:
    title, goal = FIGURES["https-join"]
    machine = _machine()
    how = (f"network namespaces (tests/browser/netlab.py) in `unshare -n`, all cores: "
           f"switchboard serve on one host with HTTPS (a test CA's leaf for {NAME}); two "
           f"headless Chromiums on another host behind a NAT, trusting that CA, by name; one "
           f"page in the room sends its fake microphone, the other joins {joins} times (audio "
           f"only, a new page each time); its clock from the click on Join to the first "
           f"inbound audio RTP packet in getStats() (polled every 5 ms); {machine}")
    missing = [p for p in ("unshare", "bash", "ip", "nft", "certutil", "/usr/bin/chromium")
               if shutil.which(p) is None]  # fmt: skip
    if missing:
        return Figure(title, "not measured", goal, f"{how}; missing {', '.join(missing)}")
    result, times, error = run_join_child("tests.bench.https_join", "https-join",
                                          "https-join.json", workdir, joins, budget_s)
    if error:
        return Figure(title, "not measured", goal, f"{how}; error: {error}"[:900],
                      details=result or {})
    assert result is not None
    loads = [t for t in result.get("page_load_ms", []) if t is not None]
    measured = (f"{statistics.median(times):.0f} ms median, worst {max(times):.0f} ms over "
                f"{len(times)} joins (best {min(times):.0f})")
    if loads:
        measured += (f"; the page load before it (HTTPS, by name): median "
                     f"{statistics.median(loads):.0f} ms, worst {max(loads):.0f} ms")
    if len(times) < joins:
        measured += f"; {joins - len(times)} joins heard nothing"
    if result.get("error"):
        measured += f"; stopped early: {result['error']}"[:200]
    result["machine"] = machine
    return Figure(title, measured, goal, how, details=result)


def join_browser(out: Path, joins: int, workdir: Path, budget_s: float) -> None:
    """Inside `unshare -n`: the test hosts, the server, a host page, `joins` timed joins."""
    for folder in (REPO / "tests" / "browser", REPO / "tests" / "integration"):
        sys.path.insert(0, str(folder))
    from browser_harness import Browser, join_meeting, loopback_up, network_interfaces
    from netlab import SERVER, NetLab
    from peers.certs import LocalCA
    from playwright.sync_api import sync_playwright
    from real_server import SwitchboardProcess

    result: dict[str, Any] = {"first_audio_ms": [], "page_load_ms": [], "breakdown": [],
                              "error": None}  # fmt: skip
    deadline = time.monotonic() + budget_s

    def save() -> None:
        out.write_text(json.dumps(result, indent=1) + "\n")

    if network_interfaces() != ["lo"] or not loopback_up():
        result["error"] = f"not in a loopback-only namespace: {network_interfaces()}"
        save()
        return
    lab = NetLab(secrets.token_hex(3))
    server: SwitchboardProcess | None = None
    try:
        lab.up()
        ca = LocalCA.create(workdir / "ca", "bench HTTPS CA")
        cert, key = ca.issue(workdir / "tls", [NAME])
        home = workdir / "home"
        NetLab.trust_ca(home, ca.path, "bench-ca")
        wrapper = lab.chromium_wrapper(workdir / "bin", home=home)
        server = SwitchboardProcess.start(
            workdir / "server", {"http": {"tls_cert": str(cert), "tls_key": str(key)},
                                 "bridge": {"tcp_port": 0}},
            max_seconds=int(budget_s) + 30, netns=lab.server, host=SERVER)  # fmt: skip
        port = server.url.rsplit(":", 1)[1]
        url = f"https://{NAME}:{port}/{ROOM}"
        args = [f"--host-resolver-rules=MAP {NAME} {SERVER}"]
        with sync_playwright() as p:
            host = Browser(p, workdir / "host-profile", executable=wrapper, extra_args=args)
            guest = Browser(p, workdir / "guest-profile", executable=wrapper, extra_args=args)
            try:
                join_meeting(host.open(url), "Host", mic=True, camera=False)
                for _ in range(joins):
                    if time.monotonic() > deadline - 20:
                        result["error"] = "time budget spent"
                        break
                    started = time.monotonic()
                    page = guest.open(url)
                    page.wait_for_selector("#join-button:not([disabled])")
                    result["page_load_ms"].append((time.monotonic() - started) * 1000.0)
                    if page.evaluate("window.isSecureContext") is not True:
                        raise RuntimeError(f"{url} is not a secure context")
                    page.fill("#name-input", "Guest")
                    if page.get_attribute("#pre-cam", "aria-pressed") == "true":
                        page.click("#pre-cam")
                    marks = page.evaluate(_JOIN_JS)
                    result["breakdown"].append(marks)
                    result["first_audio_ms"].append(marks.get("first_audio_ms"))
                    save()
                    page.close()
                    time.sleep(1.0)  # the server notices the leave before the next join
            finally:
                guest.close()
                host.close()
    except Exception as err:
        result["error"] = f"{type(err).__name__}: {err}"
        if server is not None:
            result["server_log"] = server.log_tail(20)
    finally:
        if server is not None:
            server.stop()
        lab.down()
        save()


def main() -> None:
    join_child_main(join_browser, "https-join", 10, 180.0)


if __name__ == "__main__":
    main()

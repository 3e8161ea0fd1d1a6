"""kamailio (5.6) as a carrier: a registrar and proxy with digest against a SQLite
subscriber table (db_sqlite, auth, auth_db with calculate_ha1 on plain passwords).

- REGISTER: `www_authorize` (401) in realm REALM, then saved in memory (usrloc db_mode 0);
  `min_expires` with `min_expires_mode 1`, so a too short expiry gets 423 + Min-Expires.
- Initial INVITEs from anyone need `proxy_authorize` (407); then a call to the trunk's
  number (`number`) is sent to the registered contact of the trunk's user (`trunk_user`):
  Switchboard's registration. Other users go to their registered contact, else 404.
- In-dialog requests follow their Route (record_route on INVITEs).
- With `tls=(cert, key)` it also listens on tls:127.0.0.1:<tls_port> (kamailio-tls-modules),
  presenting that certificate and verifying nobody (a carrier's usual setup); requests
  are relayed over TLS to contacts that say transport=tls.
Restartable on the same port (`restart()`): registrations and nonces are forgotten, as a
real carrier's restart forgets them.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from . import procs
from .kamailio import Kamailio, _binary, module_path

log = logging.getLogger(__name__)

REALM = "carrier.test"

CONFIG = r"""#!KAMAILIO
debug=2
log_stderror=yes
log_prefix="{$mt $hdr(CSeq) $ci} "
children=2
__TRANSPORTS__
auto_aliases=no
listen=udp:127.0.0.1:__PORT__
alias="127.0.0.1:__PORT__"
__TLS_LISTEN__
dns=no
rev_dns=no
use_dns_cache=off
server_header="Server: kamailio-carrier"
user_agent_header="User-Agent: kamailio-carrier"

mpath="__MPATH__"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "db_sqlite.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
__TLS_MODULE__

modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", __MIN_EXPIRES__)
modparam("registrar", "min_expires_mode", 1)
modparam("registrar", "max_expires", 3600)
modparam("auth_db", "db_url", "sqlite://__DB__")
modparam("auth_db", "calculate_ha1", 1)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "load_credentials", "")
modparam("rr", "enable_full_lr", 1)
modparam("tm", "fr_timer", 5000)
modparam("tm", "fr_inv_timer", 30000)

request_route {
    xlog("L_INFO", "request $rm $ru from $si:$sp expires $hdr(Expires)\n");
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    if (is_method("OPTIONS") && uri==myself && $rU==$null) {
        sl_send_reply("200", "OK");
        exit;
    }
    if (is_method("REGISTER")) {
        if (!www_authorize("__REALM__", "subscriber")) {
            xlog("L_INFO", "challenge REGISTER of $tU\n");
            www_challenge("__REALM__", "0");
            exit;
        }
        consume_credentials();
        if (!save("location")) {
            sl_reply_error();
        }
        xlog("L_INFO", "registered $tU expires $hdr(Expires)\n");
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans()) {
            route(RELAY);
        }
        exit;
    }
    if (has_totag()) {
        if (loose_route()) {
            route(RELAY);
            exit;
        }
        if (uri!=myself) {
            route(RELAY);
            exit;
        }
        route(LOCATION);
        exit;
    }
    if (is_method("ACK")) {
        if (t_check_trans()) {
            route(RELAY);
        }
        exit;
    }
    if (!proxy_authorize("__REALM__", "subscriber")) {
        xlog("L_INFO", "challenge $rm from $fU\n");
        proxy_challenge("__REALM__", "0");
        exit;
    }
    consume_credentials();
    remove_hf("Route");
    if (is_method("INVITE")) {
        record_route();
    }
    if ($rU == "__NUMBER__") {
        xlog("L_INFO", "number $rU belongs to trunk user __TRUNK_USER__\n");
        $rU = "__TRUNK_USER__";
    }
    route(LOCATION);
}

route[LOCATION] {
    if (!lookup("location")) {
        sl_send_reply("404", "Not Found");
        exit;
    }
    route(RELAY);
}

route[RELAY] {
    xlog("L_INFO", "relay $rm to $ru\n");
    if (!t_relay()) {
        sl_reply_error();
    }
    exit;
}

onreply_route {
    xlog("L_INFO", "reply $rs $rr for $rm from $si:$sp\n");
}
"""


class KamailioCarrier(Kamailio):
    """A carrier on udp:127.0.0.1:<port> with subscribers {user: password}."""

    def __init__(self, workdir: Path, *, subscribers: dict[str, str], number: str,
                 trunk_user: str, min_expires: int = 20, port: int | None = None,
                 timeout_s: float = 180.0, tls: tuple[Path, Path] | None = None) -> None:
        super().__init__(workdir, trunk_uri="sip:127.0.0.1:9", port=port, timeout_s=timeout_s)
        self.dir = workdir / "kamailio-carrier"
        self.cfg_path = self.dir / "kamailio.cfg"
        self.db_path = self.dir / "subscriber.db"
        self.subscribers = dict(subscribers)
        self.number = number
        self.trunk_user = trunk_user
        self.min_expires = min_expires
        self.logs: list[str] = []  # the log of each earlier run (restart)
        self.tls = tls
        self.tls_port = procs.free_port(kinds=("tcp",)) if tls is not None else 0

    @property
    def tls_address(self) -> str:
        return f"{procs.LOOPBACK}:{self.tls_port}"

    def _tls_parts(self) -> tuple[str, str, str]:
        if self.tls is None:
            return "disable_tcp=yes", "", ""
        cert, key = self.tls
        cfg = self.dir / "tls.cfg"
        cfg.write_text(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
            f"require_certificate = no\nprivate_key = {key}\ncertificate = {cert}\n\n"
            "[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
            "require_certificate = no\n")
        return ("enable_tls=yes\ntcp_accept_no_cl=yes",
                f'listen=tls:127.0.0.1:{self.tls_port}\nalias="127.0.0.1:{self.tls_port}"',
                f'loadmodule "tls.so"\nmodparam("tls", "config", "{cfg}")')

    def _write_database(self) -> None:
        if self.db_path.exists():
            self.db_path.unlink()
        db = sqlite3.connect(self.db_path)
        for name in ("standard", "auth_db"):
            db.executescript(Path(f"/usr/share/kamailio/db_sqlite/{name}-create.sql")
                             .read_text())
        db.executemany("INSERT INTO subscriber (username, domain, password) VALUES (?, ?, ?)",
                       [(u, REALM, p) for u, p in self.subscribers.items()])
        db.commit()
        db.close()

    def render(self) -> str:
        transports, listen, module = self._tls_parts()
        return (CONFIG.replace("__TRANSPORTS__", transports).replace("__TLS_LISTEN__", listen)
                .replace("__TLS_MODULE__", module).replace("__PORT__", str(self.port))
                .replace("__MPATH__", f"{module_path()}/")
                .replace("__DB__", str(self.db_path)).replace("__REALM__", REALM)
                .replace("__MIN_EXPIRES__", str(self.min_expires))
                .replace("__NUMBER__", self.number).replace("__TRUNK_USER__", self.trunk_user))

    def defines(self) -> list[str]:
        return []

    def start(self, ready_timeout: float = 10.0) -> KamailioCarrier:
        rundir = self.dir / "run"
        rundir.mkdir(parents=True, exist_ok=True)
        self._write_database()
        self.cfg_path.write_text(self.render())
        self.check_config()
        argv = [_binary(), "-f", str(self.cfg_path), "-DD", "-E", "-Y", str(rundir),
                "-P", str(rundir / "kamailio.pid"), "-m", "64", "-M", "8"]
        self.proc = procs.start_process(argv, name="kamailio-carrier", log_dir=self.dir,
                                        timeout_s=self.timeout_s, cwd=self.dir)
        deadline = time.monotonic() + ready_timeout
        while not self.ping(timeout=0.5):
            if not self.proc.running():
                raise RuntimeError(f"kamailio exited ({self.proc.returncode}):\n"
                                   f"{self.proc.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not answer OPTIONS in {ready_timeout:.0f} s:"
                                   f"\n{self.proc.log_tail()}")
        log.info("kamailio carrier up on %s", self.address)
        return self

    def stop(self) -> int | None:
        if self.proc is not None:
            self.logs.append(self.proc.log_text())
        return super().stop()

    def all_logs(self) -> str:
        current = self.proc.log_text() if self.proc is not None and self.proc.running() else ""
        return "\n".join([*self.logs, current])

    def __enter__(self) -> KamailioCarrier:
        return self.start()

"""The `switchboard` command: serve, nodes (several on one machine), check-config, the
rooms/numbers/trunks admin commands, and `recordings` (which asks the running server)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from switchboard.config import Config, ConfigError, load_config

log = logging.getLogger("switchboard")


def _config_arg(p: argparse.ArgumentParser, *, nested: bool = False) -> None:
    """--config on a command, and on its actions too (`rooms add X --config F`); an action's
    copy does not overwrite a value given before the action."""
    p.add_argument(
        "--config", "-c", metavar="FILE", help="TOML configuration file",
        default=argparse.SUPPRESS if nested else None,
    )  # fmt: skip


def _policy_args(p: argparse.ArgumentParser, *, creating: bool) -> None:
    """The room policy's options; the password is read from standard input (one line), so
    it never shows in a process list or a shell history."""
    p.add_argument("--host-pin", help="digits that make a phone caller a host" +
                   (" (default: a generated one)" if creating else ""))
    p.add_argument("--lobby", choices=("on", "off"), help="guests knock and wait")
    p.add_argument("--start", choices=("anyone", "hosts"),
                   help="hosts: guests wait until a host is in")
    p.add_argument("--guests", choices=("on", "off"), help="off: hosts and token holders only")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the room's password from standard input")
    p.add_argument("--no-host-pin", action="store_true",
                   help="no host PIN" if creating else "remove the host PIN")
    if not creating:
        p.add_argument("--no-password", action="store_true", help="remove the password")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard", description="Telephony-first conferencing server"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run every component in one process")
    _config_arg(serve)

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", metavar="FILE")

    server = sub.add_parser("server-config",
                            help="print the configuration of a server on the internet")
    server.add_argument("--domain", required=True, help="its DNS name (HTTPS certificate)")
    server.add_argument("--email", default="", help="contact for the ACME account")
    server.add_argument("--public-ip", default="",
                        help="the address phones and browsers reach (1:1 NAT); default: "
                             "the address media binds to")
    server.add_argument("--bind-ip", default="",
                        help="the interface media binds to; default: the host's route "
                             "address towards the internet")
    server.add_argument("--data-dir", default="/var/lib/switchboard")

    rooms = sub.add_parser("rooms", help="manage rooms and their PINs")
    _config_arg(rooms)
    rsub = rooms.add_subparsers(dest="action", required=True)
    radd = rsub.add_parser("add", help="create a room (a PIN is generated unless given)")
    _config_arg(radd, nested=True)
    radd.add_argument("name")
    radd.add_argument("--pin", help="digits; generated unpredictably when omitted")
    _policy_args(radd, creating=True)
    rset = rsub.add_parser("set", help="change a room's policy (lobby, start, password...)")
    _config_arg(rset, nested=True)
    rset.add_argument("name")
    _policy_args(rset, creating=False)
    rshow = rsub.add_parser("show", help="one room and its policy")
    _config_arg(rshow, nested=True)
    rshow.add_argument("name")
    _config_arg(rsub.add_parser("list", help="list rooms and PINs"), nested=True)
    rrm = rsub.add_parser("remove", help="delete a room")
    _config_arg(rrm, nested=True)
    rrm.add_argument("name")

    cluster = sub.add_parser("cluster", help="the cluster of nodes ([cluster] redis_url)")
    _config_arg(cluster)
    csub = cluster.add_subparsers(dest="action", required=True)
    cstatus = csub.add_parser("status", help="nodes (alive, load, rooms) and the room map")
    _config_arg(cstatus, nested=True)
    cstatus.add_argument("--json", action="store_true", help="GET /api/cluster's JSON")
    cdrain = csub.add_parser("drain", help="a node takes no new rooms; its rooms move when "
                             "empty (--force: now, its browsers sent to another node)")
    _config_arg(cdrain, nested=True)
    cdrain.add_argument("node_id")
    cdrain.add_argument("--force", action="store_true", help="move its rooms now")
    cundrain = csub.add_parser("undrain", help="a drained node takes new rooms again")
    _config_arg(cundrain, nested=True)
    cundrain.add_argument("node_id")

    numbers = sub.add_parser("numbers", help="manage dial-in numbers")
    _config_arg(numbers)
    nsub = numbers.add_subparsers(dest="action", required=True)
    nadd = nsub.add_parser("add", help="add a number (E.164) and where it leads")
    _config_arg(nadd, nested=True)
    nadd.add_argument("number")
    nadd.add_argument("--route", choices=("pin", "room"), default="pin")
    nadd.add_argument("--room", help="the room, with --route room")
    nadd.add_argument("--display", choices=("show", "mask", "hide"), default="mask",
                      help="how callers' numbers are shown to the room")
    nadd.add_argument("--toll-free", action="store_true")
    nadd.add_argument("--country", help="ISO country code for the dial-in list")
    _config_arg(nsub.add_parser("list", help="list numbers"), nested=True)
    nrm = nsub.add_parser("remove", help="delete a number")
    _config_arg(nrm, nested=True)
    nrm.add_argument("number")

    trunks = sub.add_parser("trunks", help="manage SIP trunks (carriers, PBXs)")
    _config_arg(trunks)
    tsub = trunks.add_subparsers(dest="action", required=True)
    tadd = tsub.add_parser("add", help="add a trunk (through the running server, which "
                                       "registers it at once; else in the store)")
    _config_arg(tadd, nested=True)
    tadd.add_argument("name")
    tadd.add_argument("--address", required=True, help="HOST[:PORT] of the peer")
    tadd.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    tadd.add_argument("--failover-address", help="a second HOST[:PORT]")
    tadd.add_argument("--username", default="")
    tadd.add_argument("--password-file", metavar="FILE",
                      help="a file holding the password ('-': standard input); never on the "
                           "command line, where every user can read it")
    tadd.add_argument("--register", action="store_true", help="register to the peer")
    tadd.add_argument("--register-in", action="store_true",
                      help="the peer (a PBX) registers to us with the username and password")
    tadd.add_argument("--expires", type=int, default=300)
    tadd.add_argument("--number", action="append", default=[], dest="numbers")
    tadd.add_argument("--allow", action="append", default=[], dest="allowed_addresses",
                      metavar="CIDR", help="a network the trunk may send calls from")
    tadd.add_argument("--auth", action="store_true", help="its calls must pass digest")
    tadd.add_argument("--codec", action="append", default=[], dest="codecs")
    tadd.add_argument("--media-encryption", choices=("off", "optional", "required"),
                      default="off")
    tadd.add_argument("--destination", action="append", default=[],
                      dest="allowed_destinations", metavar="PREFIX")
    tadd.add_argument("--no-tls-verify", action="store_false", dest="tls_verify",
                      help="over TLS, do not verify the peer's certificate (testing only)")
    tadd.add_argument("--tls-ca", default="", metavar="FILE",
                      help="the CA bundle this trunk's certificate is checked against "
                           "(default: sip.tls_ca, else the system's)")
    _config_arg(tsub.add_parser("list", help="list trunks and their registration state "
                                             "(never their passwords)"), nested=True)
    trm = tsub.add_parser("remove", help="delete a trunk (the running server un-REGISTERs it)")
    _config_arg(trm, nested=True)
    trm.add_argument("name")

    from switchboard.nodes import add_parser as add_nodes

    add_nodes(sub, _config_arg)
    from switchboard.record_cli import add_parser as add_recordings

    add_recordings(sub, _config_arg)
    from switchboard.dial_cli import add_dial_parsers

    add_dial_parsers(sub)  # dial, calls: through the running server's API
    return parser


def _load(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        sys.stderr.write(f"switchboard: configuration error: {exc}\n")
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check-config":
        _load(args.file)
        sys.stdout.write(f"{args.file}: ok\n")
        return 0
    if args.command == "server-config":
        from switchboard.server_config import ServerConfigError, render

        try:
            sys.stdout.write(render(args.domain, email=args.email, public_ip=args.public_ip,
                                    bind_ip=args.bind_ip, data_dir=args.data_dir))
        except (ServerConfigError, OSError) as exc:
            sys.stderr.write(f"switchboard: {exc}\n")
            return 2
        return 0
    config = _load(args.config)
    logging.basicConfig(
        level=getattr(logging, config.log.level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        from switchboard.app import serve

        return serve(config)
    if args.command == "nodes":
        from switchboard.nodes import run_nodes

        return run_nodes(config, args.config, args)
    if args.command == "recordings":
        from switchboard.record_cli import CliError
        from switchboard.record_cli import run as run_recordings

        try:
            answer = run_recordings(config, args)
        except CliError as exc:
            sys.stderr.write(f"switchboard: {exc}\n")
            return 1
        sys.stdout.write(json.dumps(answer, indent=2) + "\n")
        return 0
    if args.command in ("dial", "calls"):
        from switchboard.dial_cli import run_dial_command

        return run_dial_command(config, args)
    if args.command == "trunks":
        from switchboard.trunks_cli import run_trunks

        return run_trunks(config, args)
    if args.command == "cluster":
        from cluster.cli import run_cluster

        return run_cluster(config, args)
    from dialplan.models import DialplanError
    from switchboard.admin import run_admin

    try:
        result = run_admin(config, args)
    except DialplanError as exc:
        sys.stderr.write(f"switchboard: {exc}\n")
        return 1
    if result is not None:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

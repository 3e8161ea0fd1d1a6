#!/bin/sh
# Install the real SIP peers and audio tools that the integration tests run against:
# sipp (sip-tester), baresip, kamailio (with its SQLite module, for the carrier tests'
# subscriber table, and its TLS module, for the carrier over SIP/TLS), sox, espeak-ng, opus, iproute2, sipvicious, pebble (ACME test server),
# nginx (reverse proxy in front of the server), systemd (systemd-analyze checks the unit),
# coturn (TURN for browsers on networks that block UDP), nftables (NAT and dropped UDP
# between test namespaces), libnss3-tools (certutil: a test CA Chromium trusts),
# redis-server and postgresql (throwaway instances for the cluster tests:
# tests/integration/peers/redis.py, postgres.py), dnsmasq-base (a DNS server with SRV records
# for trunk host names: tests/integration/peers/dnsmasq.py), and
# Chromium for the browser tests (driven by Python playwright, no browser download).
# Idempotent: when every package is already installed it changes nothing and needs no network.
# Runs `apt-get update` once, only when something is missing. Needs root (or sudo).
# Exits non-zero, naming what is missing, if anything is still absent afterwards.
# Usage: scripts/install-peers.sh
set -eu

# PACKAGES, PROGRAMS, FILES and NAME may be given by a caller (scripts/install-bench.sh).
PACKAGES="${PACKAGES:-sip-tester baresip-core kamailio kamailio-sqlite-modules kamailio-tls-modules sox espeak-ng libopus0 iproute2 sipvicious chromium
fonts-dejavu-core util-linux pebble nginx libnginx-mod-rtmp systemd coturn nftables ffmpeg
libnss3-tools redis-server postgresql dnsmasq-base}"
# Programs the tests call, checked after the install: "program:package".
PROGRAMS="${PROGRAMS:-sipp:sip-tester baresip:baresip-core kamailio:kamailio sox:sox espeak-ng:espeak-ng
ip:iproute2 svmap:sipvicious chromium:chromium unshare:util-linux pebble:pebble
pebble-challtestsrv:pebble nginx:nginx systemd-analyze:systemd turnserver:coturn nft:nftables
ffprobe:ffmpeg ffmpeg:ffmpeg certutil:libnss3-tools redis-server:redis-server
dnsmasq:dnsmasq-base}"

NAME="${NAME:-install-peers}"
FILES="${FILES:-/usr/share/sip-tester/dtmf_2833_1.pcap /usr/share/sip-tester/dtmf_2833_pound.pcap
/usr/lib/nginx/modules/ngx_rtmp_module.so /usr/lib/postgresql/15/bin/postgres
/usr/lib/postgresql/15/bin/initdb}"

log() { echo "$NAME: $*" >&2; }

installed() {
    # dpkg-query prints "install ok installed" for a fully installed package.
    status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ]
}

missing_packages() {
    out=""
    for p in $PACKAGES; do
        installed "$p" || out="$out $p"
    done
    echo "$out"
}

find_program() {
    # /usr/sbin is not on every user's PATH (kamailio lives there).
    PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    fi
fi

# Wait (bounded) for another apt/dpkg run to release its locks instead of failing or racing it.
wait_for_apt() {
    i=0
    while pgrep -x apt-get >/dev/null 2>&1 || pgrep -x dpkg >/dev/null 2>&1 \
        || pgrep -x apt >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -gt 300 ]; then
            log "ERROR: another apt/dpkg process is still running after 600 s; giving up"
            exit 1
        fi
        [ "$i" -eq 1 ] && log "waiting for another apt/dpkg process to finish..."
        sleep 2
    done
}

missing="$(missing_packages)"
if [ -n "$missing" ]; then
    log "installing:$missing"
    wait_for_apt
    export DEBIAN_FRONTEND=noninteractive
    if ! $SUDO apt-get update; then
        log "ERROR: apt-get update failed"
        exit 1
    fi
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    if ! $SUDO apt-get install -y --no-install-recommends $PACKAGES; then
        log "ERROR: apt-get install failed for: $PACKAGES"
        exit 1
    fi
else
    log "all packages already installed"
fi

failed=0
missing="$(missing_packages)"
if [ -n "$missing" ]; then
    log "ERROR: packages still not installed:$missing"
    failed=1
fi
for entry in $PROGRAMS; do
    prog="${entry%%:*}"
    pkg="${entry#*:}"
    if ! find_program "$prog"; then
        log "ERROR: program '$prog' (package $pkg) not found on PATH"
        failed=1
    fi
done
for f in $FILES; do
    if [ ! -f "$f" ]; then
        log "ERROR: $f is missing"
        failed=1
    fi
done
if [ "$failed" -ne 0 ]; then
    log "FAILED: not everything is installed"
    exit 1
fi
log "ok: everything is installed"

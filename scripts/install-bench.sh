#!/bin/sh
# Install what `make bench` needs beyond the test peers (scripts/install-peers.sh): Janus
# (Debian package `janus`, 1.1.2 on bookworm) for the side-by-side figures
# (`python -m tests.bench --only versus-janus`), which start it with a config folder of their
# own (AudioBridge and the HTTP transport only, on 127.0.0.1). The package's own service is
# not started here (and is not needed).
# Idempotent: when everything is installed it changes nothing and needs no network.
# Runs `apt-get update` once, only when something is missing. Needs root (or sudo).
# Exits non-zero, naming what is missing, if anything is still absent afterwards.
# Usage: scripts/install-bench.sh
set -eu

PACKAGES="janus"
LIBDIR=/usr/lib/x86_64-linux-gnu/janus
FILES="$LIBDIR/plugins/libjanus_audiobridge.so $LIBDIR/transports/libjanus_http.so"

log() { echo "install-bench: $*" >&2; }

installed() {
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

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

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
    if ! $SUDO apt-get install -y --no-install-recommends $missing; then
        log "ERROR: apt-get install failed for:$missing"
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
if ! command -v janus >/dev/null 2>&1; then
    log "ERROR: program 'janus' (package janus) not found on PATH"
    failed=1
fi
for f in $FILES; do
    if [ ! -f "$f" ]; then
        log "ERROR: $f is missing (package janus)"
        failed=1
    fi
done
if [ "$failed" -ne 0 ]; then
    log "FAILED: the bench's side-by-side peers are not all installed"
    exit 1
fi
log "ok: janus $(janus --version 2>/dev/null | head -1 || true) is installed"

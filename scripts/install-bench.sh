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
libdir="$(dpkg -L janus 2>/dev/null | grep -m1 '/janus/plugins$' | sed 's#/plugins$##')"
[ -n "$libdir" ] || libdir=/usr/lib/x86_64-linux-gnu/janus
# The same install-and-check as the test peers', with the bench's own list.
PACKAGES="janus" PROGRAMS="janus:janus" NAME="install-bench" \
    FILES="$libdir/plugins/libjanus_audiobridge.so $libdir/transports/libjanus_http.so" \
    exec sh "$(dirname "$0")/install-peers.sh"

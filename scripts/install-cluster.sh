#!/usr/bin/env bash
# What `make run NODES=...` needs on top of scripts/install-system.sh, as root: Redis and
# PostgreSQL (Debian packages; `switchboard nodes` runs them as processes under its own
# folder, not as the system's services). Idempotent: installs only what is missing.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v setpriv >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    echo "install-cluster: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y --no-install-recommends "${need[@]}"
fi

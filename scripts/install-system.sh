#!/usr/bin/env bash
# System packages that `make run` needs on a fresh Debian (bookworm) machine, as root.
# Idempotent: installs only what is missing.
set -euo pipefail
need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
[ -e /usr/lib/x86_64-linux-gnu/libopus.so.0 ] || [ -e /usr/lib/aarch64-linux-gnu/libopus.so.0 ] \
    || ldconfig -p 2>/dev/null | grep -q 'libopus.so.0' || need+=(libopus0)
command -v sox >/dev/null || need+=(sox)
# A C compiler and Python's headers: `pip install` of the project builds its C extension
# (native/_fastsend.c, needed to run), and the dev extras build `pesq` (ITU-T P.862) from source.
command -v gcc >/dev/null || need+=(gcc libc6-dev)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "install-system: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y --no-install-recommends "${need[@]}"
fi
python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"switchboard needs Python 3.11 or newer, this python3 is {sys.version.split()[0]}")
PY

#!/usr/bin/env bash
# Creates ./.venv (if missing) and installs what the project needs. Idempotent: a second run installs nothing.
# Usage: scripts/setup.sh [test]   ("test" adds the test tools and Debian's chromium for browser tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
# torch first, so nothing else pulls a different build: 2.13.0 is the CPU wheel on this kind of machine and the
# default (CUDA) wheel on a Linux machine with the regular PyPI index.
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    "$VPY" -m pip install -q torch==2.13.0
fi
REQ=requirements.txt
[ "${1:-}" = "test" ] && REQ=requirements-test.txt
STAMP=".venv/.installed-$(sha1sum "$REQ" requirements.txt | sha1sum | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
    "$VPY" -m pip install -q -r "$REQ"
    touch "$STAMP"
fi
if [ "${1:-}" = "test" ] && [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = "0" ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "setup: could not install chromium; browser tests will be skipped" >&2
    else
        echo "setup: /usr/bin/chromium missing (install Debian's chromium); browser tests will be skipped" >&2
    fi
fi

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
# torch and torchvision first, as a matching pair, so nothing else pulls a different build (spandrel, the upscaler
# library, needs torchvision; docs/torch.md has why this pair). On Linux from PyPI these are CUDA builds; they run on
# a machine without a GPU too. A venv whose torchvision does not import (an older torch) gets the pair installed.
TORCH_PAIR="torch==2.14.1 torchvision==0.29.1"
if ! "$VPY" -c "import torch, torchvision; assert torch.__version__.startswith('2.14.1')" >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    "$VPY" -m pip install -q $TORCH_PAIR
fi
REQ=requirements.txt
[ "${1:-}" = "test" ] && REQ=requirements-test.txt
STAMP=".venv/.installed-$(sha1sum "$REQ" requirements.txt requirements-ray.txt requirements-reference.txt | sha1sum | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
    "$VPY" -m pip install -q -r "$REQ"
    if [ "${1:-}" = "test" ]; then  # the samplers' reference implementation, without its training dependencies
        "$VPY" -m pip install -q --no-deps -r requirements-reference.txt
    fi
    touch "$STAMP"
fi
# TCMalloc, which ./webui.sh preloads (docs/performance.md): installed here when we may, else webui.sh says how.
if [ "$(uname -s)" = "Linux" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null \
        && ! ldconfig -p 2>/dev/null | grep -q 'libtcmalloc_minimal\.so\.4 '; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1 \
        || (apt-get update -qq >/dev/null 2>&1 \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1) \
        || echo "setup: could not install libtcmalloc-minimal4; generation on the CPU will be slower" >&2
fi
if [ "${1:-}" = "test" ] && [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = "0" ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "setup: could not install chromium; browser tests will be skipped" >&2
    else
        echo "setup: /usr/bin/chromium missing (install Debian's chromium); browser tests will be skipped" >&2
    fi
fi

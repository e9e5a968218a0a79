#!/usr/bin/env bash
# Set up (first run only) and launch the web UI. Extra arguments go to webui.py, e.g. ./webui.sh --listen
# On Linux, TCMalloc is preloaded when the system has it, as A1111's launcher does (CPU generation is 15-25 % faster
# with it: docs/performance.md); NO_TCMALLOC=1 turns that off.
# As A1111's: webui-user.sh beside this script, when present, is sourced first (it may export COMMANDLINE_ARGS,
# whose flags follow the ones given here).
set -euo pipefail
cd "$(dirname "$0")"
if [ -f webui-user.sh ]; then
    # shellcheck disable=SC1091
    source ./webui-user.sh
    export COMMANDLINE_ARGS="${COMMANDLINE_ARGS:-}"
fi
scripts/setup.sh
if [ "$(uname -s)" = "Linux" ] && [ -z "${NO_TCMALLOC:-}" ] && [[ "${LD_PRELOAD:-}" != *tcmalloc* ]]; then
    TCMALLOC="$(ldconfig -p 2>/dev/null | awk '/libtcmalloc_minimal\.so\.4 |libtcmalloc\.so\.4 /{print $NF; exit}')"
    if [ -n "$TCMALLOC" ]; then
        echo "Using TCMalloc: $TCMALLOC"
        export LD_PRELOAD="${LD_PRELOAD:+$LD_PRELOAD:}$TCMALLOC"
    else
        echo "TCMalloc not found: install libtcmalloc-minimal4 (Debian/Ubuntu) for faster CPU generation"
    fi
fi
exec .venv/bin/python webui.py "$@"

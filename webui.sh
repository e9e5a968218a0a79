#!/usr/bin/env bash
# Set up (first run only) and launch the web UI. Extra arguments go to webui.py, e.g. ./webui.sh --listen
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/python webui.py "$@"

#!/usr/bin/env bash
# Set up (first run only), type-check and run the whole test suite. Arguments go to pytest (and skip the type
# check): ./test.sh -m "not slow and not browser" is the inner loop.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh test
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
if [ $# -eq 0 ]; then
    .venv/bin/mypy  # the type check of modules/ and webui.py (mypy.ini); with arguments only pytest runs
fi
exec .venv/bin/python -m pytest -q "$@"

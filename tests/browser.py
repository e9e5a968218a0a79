"""The one headless Chromium the browser tests share (Debian's /usr/bin/chromium driven by Playwright).

Playwright's sync API allows one running instance per thread, so all browser tests (tests/ui, tests/e2e) use the
session fixture `chromium` from tests/conftest.py instead of starting their own. Never run `playwright install`:
it downloads browsers, which this project does not need.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-quic", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]

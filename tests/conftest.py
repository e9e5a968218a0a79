"""Fixtures shared by every test folder."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.browser import CHROMIUM, LAUNCH_ARGS


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium for one test module (skips the test when Debian's chromium is not installed).

    Module scope, not session: while Playwright's sync API is active it keeps an event loop running in this
    thread, which would break later tests that call `asyncio.run`."""
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()

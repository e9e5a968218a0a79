"""Fixtures shared by every test folder, and the markers' rules: a test that drives Chromium is `browser` (set
here from its fixtures, so none can be missed); a `gpu` test is skipped where CUDA is absent."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import torch

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


BROWSER_FIXTURES = frozenset({"chromium"})  # every Playwright test reaches Chromium through this fixture


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cuda = torch.cuda.is_available()
    for item in items:
        if BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)
        if item.get_closest_marker("gpu") is not None and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The API fuzzer's count of generated requests (tests/api/test_fuzz_api.py), when it ran."""
    import sys

    fuzz = sys.modules.get("tests.api.test_fuzz_api")
    cases = getattr(fuzz, "CASES", None)
    if cases and cases["count"]:
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(cases["by_status"].items()))
        terminalreporter.write_line(f"API fuzzing: {cases['count']} generated requests ({statuses})")

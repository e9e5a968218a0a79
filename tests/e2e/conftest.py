"""Fixtures of the end-to-end browser tests: the real application on a free port, one Chromium, a page per test.

The server (see `harness.RealServer`) lives for the whole session on a temporary data folder with a tiny SD 1.x
checkpoint and a tiny 9-channel SD 1.x inpaint checkpoint. Every test gets a fresh page (so widgets start from
their defaults); its requests and console errors are recorded, and no request may leave 127.0.0.1.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.e2e.harness import CHROMIUM, PageWatch, RealServer, open_page, start_real_server


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium")
    server = start_real_server(tmp_path_factory.mktemp("e2e_data"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(real_server: RealServer, chromium: Any) -> Any:
    """The session's shared Chromium (tests/conftest.py), once the server is up."""
    return chromium


@pytest.fixture(scope="session")
def shared() -> dict[str, Any]:
    """Results one test leaves for another (the txt2img PNG for the PNG Info test), to avoid generating twice."""
    return {}


@pytest.fixture
def ui(browser: Any, real_server: RealServer) -> Iterator[tuple[Any, PageWatch]]:
    page, watch = open_page(browser, real_server.url)
    try:
        yield page, watch
    finally:
        page.close()
    assert not watch.external, f"the page fetched resources from outside 127.0.0.1: {watch.external}"


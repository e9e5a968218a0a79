"""Fixtures for the API tests (helpers in api_helpers.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from tests.api.api_helpers import FakeApp, LiveServer, build_fake_app, fastapi_for


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., tuple[FakeApp, httpx.Client]]]:
    """Factory: (fake app, httpx client bound to a live server for it); everything is stopped afterwards."""
    started: list[tuple[FakeApp, LiveServer, httpx.Client]] = []

    def make(api_auth: tuple[tuple[str, str], ...] = ()) -> tuple[FakeApp, httpx.Client]:
        app = build_fake_app(tmp_path / f"data{len(started)}", api_auth)
        server = LiveServer(fastapi_for(app)).start()
        client = httpx.Client(base_url=server.url, timeout=60)
        started.append((app, server, client))
        return app, client

    yield make
    for app, server, client in started:
        app.generation.gate.release()
        client.close()
        server.stop()
        app.jobs.stop()

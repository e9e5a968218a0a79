"""A1111's `X-Process-Time` header on API answers and `--api-log`'s line per request, over real HTTP."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import httpx
import pytest

from tests.api.api_helpers import LiveServer, build_fake_app, fastapi_for


@pytest.mark.parametrize("api_log", [False, True])
def test_api_answers_carry_their_time_and_are_logged_with_api_log(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                  api_log: bool) -> None:
    app = build_fake_app(tmp_path)
    app.launch = dataclasses.replace(app.launch, api_log=api_log)
    server = LiveServer(fastapi_for(app)).start()
    caplog.set_level(logging.INFO, logger="modules.api.timing")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            answer = client.get("/sdapi/v1/samplers")
            missing = client.get("/sdapi/v1/no-such-route")
    finally:
        server.stop()
        app.jobs.stop()
    assert answer.status_code == 200 and float(answer.headers["x-process-time"]) >= 0
    assert missing.status_code == 404 and "x-process-time" in missing.headers
    lines = [record.getMessage() for record in caplog.records if record.name == "modules.api.timing"]
    if not api_log:
        assert lines == []
        return
    assert len(lines) == 2
    assert lines[0].startswith("API 200 GET /sdapi/v1/samplers 127.0.0.1 ") and lines[0].endswith("s")
    assert lines[1].startswith("API 404 GET /sdapi/v1/no-such-route")

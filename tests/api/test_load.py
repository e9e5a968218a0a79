"""A bounded load test over real HTTP (bench/load_test.py's runner): 16 concurrent clients mixing txt2img, img2img,
progress polling, options reads and jobs they cancel, against the real app on tiny checkpoints. Every picture
reaches the client that asked for it (checked by seed, in the info and the PNG), none is lost or duplicated, no
answer is a 5xx, and resident memory at the end is within 10 % of the start. `LOAD_SECONDS` sets the duration
(default 20; the bench script's default is 60 and prints latencies)."""

from __future__ import annotations

import os

import psutil
import pytest

from bench.load_test import run_load
from tests.api.api_helpers import LiveServer, fastapi_for
from tests.api.test_real_app import make_real_app

pytestmark = pytest.mark.slow


def test_sixteen_clients_each_get_their_own_pictures(tmp_path) -> None:
    app = make_real_app(tmp_path)
    server = LiveServer(fastapi_for(app)).start()
    process = psutil.Process()
    try:
        report = run_load(server.url, 16, float(os.environ.get("LOAD_SECONDS", "20")),
                          lambda: process.memory_info().rss)
    finally:
        server.stop()
        app.close()
    summary = report.summary()
    print(summary)
    assert not report.problems, summary
    assert report.received and not report.lost and not report.duplicated, summary
    assert all(status < 500 for status in report.statuses), summary
    assert {"txt2img", "img2img", "progress", "options", "cancel"} <= set(report.latencies), summary
    assert report.rss_after <= report.rss_before * 1.10, summary

"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (schemathesis, hypothesis) against a
real server on tiny SD 1.x checkpoints: whatever a client sends, no answer is a 5xx and the server keeps answering.

Generated sizes are capped (`_capped`; steps, width and height get small values where a body leaves them out) so
every case runs in about a second on the CPU; everything else (types, missing and extra fields, odd strings, nulls)
is as schemathesis draws it. The number of requests is printed in the test summary (tests/conftest.py);
`FUZZ_EXAMPLES` (environment) sets the examples per operation (default 25).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.api.api_helpers import LiveServer, fastapi_for
from tests.api.test_real_app import make_real_app

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
CAPS = {"width": 128, "height": 128, "steps": 2, "batch_size": 2, "n_iter": 2, "hr_second_pass_steps": 2,
        "hr_resize_x": 128, "hr_resize_y": 128, "firstphase_width": 128, "firstphase_height": 128,
        "upscaling_resize_w": 128, "upscaling_resize_h": 128, "num_vectors_per_token": 4}
FLOAT_CAPS = {"hr_scale": 2.0, "upscaling_resize": 2.0}
SMALL_DEFAULTS = {"steps": 2, "width": 64, "height": 64}
"""Set where a generation body leaves them out (A1111's API defaults are 50 steps at 512x512)."""
CASES = {"count": 0, "by_status": {}}


def _capped(value: Any) -> Any:
    """The body with its size fields capped (recursively; only numbers are changed)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in CAPS and isinstance(item, (int, float)) and not isinstance(item, bool) and item > CAPS[key]:
                item = CAPS[key]
            elif key in FLOAT_CAPS and isinstance(item, (int, float)) and not isinstance(item, bool) \
                    and item > FLOAT_CAPS[key]:
                item = FLOAT_CAPS[key]
            out[key] = _capped(item)
        return out
    if isinstance(value, list):
        return [_capped(item) for item in value]
    return value


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    app = make_real_app(data_dir)
    server = LiveServer(fastapi_for(app)).start()
    yield server.url
    server.stop()
    app.close()


def _fuzz(operation: Any) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        if isinstance(case.body, dict) and operation.method.upper() == "POST":
            case.body = {**SMALL_DEFAULTS, **case.body}
        if isinstance(case.body, (dict, list)):
            case.body = _capped(case.body)
        response = case.call(timeout=120)
        CASES["count"] += 1
        CASES["by_status"][response.status_code] = CASES["by_status"].get(response.status_code, 0) + 1
        assert response.status_code < 500, f"{response.status_code} {response.text[:500]}"

    run()


def test_no_request_makes_the_server_fail(fuzz_server: str) -> None:
    """Every operation under /sdapi and /api, each with EXAMPLES drawn requests; failures are collected so one
    broken route does not hide another."""
    schema = schemathesis.openapi.from_url(f"{fuzz_server}/openapi.json").include(path_regex=r"^/(sdapi|api)/")
    failures = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        started = time.monotonic()
        try:
            _fuzz(operation)
        except AssertionError as error:  # hypothesis re-raises the (shrunk) failing example's assertion
            failures.append(f"{operation.method.upper()} {operation.path}: {str(error)[:600]}")
        if os.environ.get("FUZZ_VERBOSE"):
            print(f"{operation.method.upper()} {operation.path}: {time.monotonic() - started:.1f} s", flush=True)
    assert operations > 30
    assert not failures, "\n".join(failures)


def test_the_server_answers_after_the_fuzzing(fuzz_server: str) -> None:
    response = httpx.get(f"{fuzz_server}/sdapi/v1/samplers", timeout=30)
    assert response.status_code == 200 and response.json()

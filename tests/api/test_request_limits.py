"""The API's request size limit over real HTTP: a body above `api_max_request_mb` is a 413 in A1111's error shape,
whether it declares its length or streams in chunks; smaller bodies pass; the server keeps answering."""

from __future__ import annotations

from typing import Callable, Iterator

import httpx
import pytest

from tests.api.api_helpers import FakeApp


@pytest.fixture()
def client(make_server: Callable[..., tuple[FakeApp, httpx.Client]]) -> Iterator[tuple[FakeApp, httpx.Client]]:
    app, http = make_server()
    app.settings.update({"api_max_request_mb": 1})
    yield app, http


def test_a_declared_body_above_the_limit_is_a_413(client) -> None:
    _, http = client
    response = http.post("/sdapi/v1/png-info", content=b'{"image": "' + b"A" * (2 * 2**20) + b'"}',
                         headers={"content-type": "application/json"})
    assert response.status_code == 413
    body = response.json()
    assert body["error"] == "HTTPException" and "limit of 1 MB" in body["detail"]
    assert http.get("/sdapi/v1/samplers").status_code == 200


def test_a_chunked_body_is_stopped_at_the_limit(client) -> None:
    _, http = client

    def chunks() -> Iterator[bytes]:
        yield b'{"image": "'
        for _ in range(40):
            yield b"A" * 65536
        yield b'"}'

    response = http.post("/sdapi/v1/png-info", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit of 1 MB" in response.json()["detail"]


def test_the_limit_follows_the_setting(client) -> None:
    app, http = client
    payload = b'{"image": "' + b"A" * (2 * 2**20) + b'"}'
    app.settings.update({"api_max_request_mb": 4})
    response = http.post("/sdapi/v1/png-info", content=payload, headers={"content-type": "application/json"})
    assert response.status_code != 413

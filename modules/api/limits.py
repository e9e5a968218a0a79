"""Request size limit of the HTTP API: a body larger than the `api_max_request_mb` setting is refused with a 413 in
A1111's error shape, before it is read (by its Content-Length) or as soon as it grows past the limit (a chunked
body), so one upload cannot fill the server's memory. The web UI's uploads have the same limit (Gradio's
`max_file_size`, set at start-up).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modules.api.error_responses import API_PREFIXES, error_content

MiB = 2**20


def _too_large(limit: int) -> HTTPException:
    return HTTPException(status_code=413, detail=f"The request body is larger than the limit of {limit // MiB} MB "
                                                 "(setting: Largest API request).")


class RequestSizeLimit:
    """Plain ASGI middleware for the API prefixes; `limit` returns the current limit in bytes."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(API_PREFIXES):
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            error = _too_large(limit)
            await JSONResponse(status_code=413, content=error_content(error, error.detail))(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)  # FastAPI passes HTTPExceptions from body reading on: a 413
            return message

        await self.app(scope, counting_receive, send)


def max_request_mb(snapshot: Mapping[str, Any]) -> int:
    """The `api_max_request_mb` setting of a settings snapshot (at least 1)."""
    return max(1, int(snapshot["api_max_request_mb"]))


def max_request_bytes(settings: Callable[[], Mapping[str, Any]]) -> Callable[[], int]:
    """The limit, read from the current settings at each request."""
    return lambda: max_request_mb(settings()) * MiB

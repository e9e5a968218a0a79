"""`ApiTiming`: A1111's `X-Process-Time` header on every API answer, and with `--api-log` one log line per API
request (status, method, path, client, seconds), as A1111's `--api-log` prints them."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modules.api.error_responses import API_PREFIXES

log = logging.getLogger(__name__)


class ApiTiming:
    """Plain ASGI middleware for the API prefixes (streaming answers pass through untouched but for the header)."""

    def __init__(self, app: ASGIApp, log_requests: bool = False) -> None:
        self.app = app
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not path.startswith(API_PREFIXES):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                seconds = f"{time.perf_counter() - started:.4f}".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"x-process-time", seconds)]}
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if self.log_requests:
                client = scope.get("client") or ("-", 0)
                log.info("API %d %s %s %s %.4fs", status, scope.get("method", "-"), path, client[0],
                         time.perf_counter() - started)

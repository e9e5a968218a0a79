"""Error responses of the HTTP API, in the JSON shape of A1111's API middleware.

Every error under the API prefixes is answered as `{"error": <exception type>, "detail": <message>, "body": ...,
"errors": <text>}`:
- `UserError` (bad input the user can fix: unknown sampler or checkpoint, bad base64, out-of-range values) gets its
  class's `http_status` (4xx); the message is the detail;
- request validation (wrong JSON types) is a 422 whose detail is pydantic's error list (what FastAPI's own 422
  carries, so FastAPI clients keep working) and whose body is the request body as received;
- `HTTPException` keeps its status and headers (401 with `WWW-Authenticate` from the auth dependency);
- anything else is a real fault: 500, logged with its traceback (`FaultMiddleware`).
Paths outside the API (the web UI mounted on the same server) keep FastAPI's default handling.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modules.errors import UserError

log = logging.getLogger(__name__)

API_PREFIXES = ("/sdapi/", "/api/v1/")


def is_api_path(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIXES)


def error_content(exc: BaseException, detail: Any, body: Any = "") -> dict[str, Any]:
    """The A1111 error object for `exc`."""
    try:
        encoded_body = jsonable_encoder(body)
    except (TypeError, ValueError, UnicodeDecodeError):
        encoded_body = ""
    return {"error": type(exc).__name__, "detail": jsonable_encoder(detail), "body": encoded_body,
            "errors": str(exc)}


async def _user_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UserError)
    status = int(getattr(type(exc), "http_status", 400))
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    return JSONResponse(status_code=status, content=error_content(exc, str(exc)))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not is_api_path(request):
        return await http_exception_handler(request, exc)
    return JSONResponse(status_code=exc.status_code, content=error_content(exc, exc.detail),
                        headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not is_api_path(request):
        return await request_validation_exception_handler(request, exc)
    return JSONResponse(status_code=422, content=error_content(exc, exc.errors(), exc.body))


class FaultMiddleware:
    """Answers an unexpected exception of an API route with a 500 in the A1111 shape and logs its traceback.

    A plain ASGI middleware inside Starlette's ServerErrorMiddleware: that one re-raises after answering, which
    makes the server drop the (keep-alive) connection; catching here keeps the connection usable.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(API_PREFIXES):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - every fault becomes a 500 answer
            log.error("API error: %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
            if started:
                raise
            response = JSONResponse(status_code=500, content=error_content(exc, f"{type(exc).__name__}: {exc}"))
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers and the fault middleware above (before the server starts)."""
    app.add_exception_handler(UserError, _user_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(FaultMiddleware)

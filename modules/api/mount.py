"""`mount_api`: put the HTTP API on the FastAPI application that serves the web UI (or on its own with --nowebui).

Routes: A1111's /sdapi/v1 (`modules.api.sdapi`) and our job API /api/v1 (`modules.api.jobs_api`). With
`--api-auth` every API route requires HTTP basic auth; the OpenAPI page (/docs) stays readable. Bodies above the
`api_max_request_mb` setting are refused with a 413 (`modules.api.limits`). Every answer carries A1111's
`X-Process-Time` header; `--api-log` logs each request (`modules.api.timing`). Errors are answered
in A1111's JSON shape (`modules.api.error_responses`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI

from modules.api.auth import make_authenticator
from modules.api.error_responses import install_error_handlers
from modules.api.extras_api import build_extras_router
from modules.api.interrogate_api import build_interrogate_router
from modules.api.jobs_api import build_jobs_router
from modules.api.limits import RequestSizeLimit, max_request_bytes
from modules.api.sdapi import build_sdapi_router
from modules.api.timing import ApiTiming

if TYPE_CHECKING:
    from modules.app import App

log = logging.getLogger(__name__)


def mount_api(app_fastapi: FastAPI, app: "App") -> None:
    """Add the API routes and error handlers to `app_fastapi`; routes are closures over `app`."""
    auth = make_authenticator(app.launch.api_auth)
    app_fastapi.add_middleware(RequestSizeLimit, limit=max_request_bytes(app.settings.get))  # inside the fault one
    app_fastapi.add_middleware(ApiTiming, log_requests=app.launch.api_log)  # outside: times the whole answer
    install_error_handlers(app_fastapi)
    app_fastapi.include_router(build_sdapi_router(app, auth))
    app_fastapi.include_router(build_jobs_router(app, auth))
    app_fastapi.include_router(build_extras_router(app, auth))
    app_fastapi.include_router(build_interrogate_router(app, auth))
    users = len(app.launch.api_auth)
    log.info("API mounted at /sdapi/v1 and /api/v1 (%s)", f"basic auth, {users} user(s)" if users else "no auth")

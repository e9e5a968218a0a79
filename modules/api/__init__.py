"""The HTTP API: AUTOMATIC1111's /sdapi/v1 and our job API /api/v1. Entry point: `mount_api(fastapi_app, app)`."""

from __future__ import annotations

from modules.api.mount import mount_api

__all__ = ["mount_api"]

"""--listen without passwords is warned about; --cors-allow-origins lets the named origins call the API (CORS)."""

from __future__ import annotations

import httpx

import webui
from modules.cli import parse_args
from tests.api.api_helpers import LiveServer, build_fake_app


def test_listening_without_auth_is_warned_about_per_surface():
    assert webui.exposure_warnings(parse_args([])) == []
    warnings = webui.exposure_warnings(parse_args(["--listen", "--api"]))
    assert len(warnings) == 2 and "--gradio-auth" in warnings[0] and "--api-auth" in warnings[1]
    assert webui.exposure_warnings(parse_args(["--listen", "--nowebui", "--api-auth", "a:b"])) == []
    assert len(webui.exposure_warnings(parse_args(["--server-name", "0.0.0.0", "--gradio-auth", "a:b"]))) == 0


def test_cors_origins_over_http(tmp_path):
    launch = parse_args(["--nowebui", "--cors-allow-origins", "https://a.example, https://b.example",
                         "--data-dir", str(tmp_path)])
    assert launch.cors_allow_origins == ("https://a.example", "https://b.example")
    app = build_fake_app(tmp_path / "data")
    server = LiveServer(webui.build_server(app, launch)).start()
    try:
        allowed = httpx.get(f"{server.url}/sdapi/v1/samplers", headers={"Origin": "https://b.example"})
        assert allowed.headers.get("access-control-allow-origin") == "https://b.example"
        other = httpx.get(f"{server.url}/sdapi/v1/samplers", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        server.stop()
        app.jobs.stop()

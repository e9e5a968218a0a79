"""A1111's server-stop / server-restart / server-kill: only with --api-server-stop; over HTTP against the routes,
and against a real `webui.py` process (stop ends it, restart brings it back in the same process, kill ends it)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from modules.models.convert import save_single_file
from modules.models.identity import Family, ModelIdentity
from modules.models.tiny import build_tiny_components
from modules.paths import REPO_ROOT
from modules.server_control import ServerControl
from tests.api.api_helpers import LiveServer, build_fake_app, fastapi_for


def _served(tmp_path: Path, allowed: bool):
    app = build_fake_app(tmp_path / "data")
    app.launch = dataclasses.replace(app.launch, api_server_stop=allowed)
    exits: list[int] = []
    app.server = ServerControl(exit_process=exits.append)
    server = LiveServer(fastapi_for(app)).start()
    return app, server, httpx.Client(base_url=server.url, timeout=30), exits


def test_the_routes_exist_only_with_the_flag(tmp_path):
    app, server, client, _ = _served(tmp_path, allowed=False)
    try:
        for route in ("server-stop", "server-restart", "server-kill"):
            assert client.post(f"/sdapi/v1/{route}").status_code == 404
    finally:
        client.close(), server.stop(), app.jobs.stop()


def test_stop_restart_kill_call_the_attached_server(tmp_path):
    app, server, client, exits = _served(tmp_path, allowed=True)
    stops: list[str] = []
    try:
        assert client.post("/sdapi/v1/server-restart").status_code == 501  # nothing attached: cannot restart
        app.server.attach(lambda: stops.append("stop"))
        response = client.post("/sdapi/v1/server-stop")
        assert (response.status_code, response.text, stops) == (200, "Stopping.", ["stop"])
        assert client.post("/sdapi/v1/server-restart").text == "Restarting."
        assert stops == ["stop", "stop"] and app.server.restart_requested
        assert client.post("/sdapi/v1/server-kill").text == "Killing."
        deadline = time.monotonic() + 5
        while not exits and time.monotonic() < deadline:
            time.sleep(0.05)
        assert exits == [0]
    finally:
        client.close(), server.stop(), app.jobs.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(client: httpx.Client, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "webui.py exited"
        try:
            if client.get("/sdapi/v1/sd-models").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("webui.py did not become ready")


@contextmanager
def _real_server(data_dir: Path, scheme: str = "http", **env: str) -> Iterator[tuple[httpx.Client, subprocess.Popen]]:
    """`webui.py --nowebui --api-server-stop` on a tiny checkpoint in its own process (`env` added to its
    environment), with a client once it answers; killed afterwards if it still runs."""
    folder = data_dir / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    save_single_file(build_tiny_components(ModelIdentity(Family.SD1)), folder / "tiny.safetensors")
    port = _free_port()
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "webui.py"), "--nowebui", "--api-server-stop",
                                "--data-dir", str(data_dir), "--port", str(port), "--skip-load-model-at-start"],
                               env={**os.environ, "NO_TCMALLOC": "1", **env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    client = httpx.Client(base_url=f"{scheme}://127.0.0.1:{port}", timeout=30, verify=False)
    try:
        _wait_ready(client, process)
        yield client, process
    finally:
        client.close()
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_a_real_server_restarts_in_place_and_stops(tmp_path):
    with _real_server(tmp_path) as (client, process):
        assert client.post("/sdapi/v1/server-restart").text == "Restarting."
        time.sleep(1.0)
        _wait_ready(client, process)  # the same process (execv) serves again
        assert client.post("/sdapi/v1/server-stop").text == "Stopping."
        assert process.wait(60) == 0


@pytest.mark.slow
def test_a_real_server_serves_https_with_the_flags_of_commandline_args(tmp_path):
    """A1111's --tls-keyfile/--tls-certfile, given through COMMANDLINE_ARGS as webui-user.sh sets it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    with _real_server(tmp_path, "https", COMMANDLINE_ARGS=f"--tls-keyfile {key} --tls-certfile {cert}") as (
            client, process):
        flags = client.get("/sdapi/v1/cmd-flags").json()
        assert (flags["tls_keyfile"], flags["tls_certfile"]) == (str(key), str(cert))
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served
            httpx.get(f"{str(client.base_url).replace('https', 'http')}/sdapi/v1/sd-models", timeout=5)
        assert client.post("/sdapi/v1/server-stop").text == "Stopping."
        assert process.wait(60) == 0

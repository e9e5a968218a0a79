"""A real HTTP server for API tests: uvicorn on an ephemeral port in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator

import uvicorn
from fastapi import FastAPI


class LiveServer:
    """Serves `asgi_app` on 127.0.0.1:<free port> until `stop()`; `url` is the base URL."""

    def __init__(self, asgi_app: FastAPI) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(asgi_app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self) -> "LiveServer":
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


def serve(asgi_app: FastAPI) -> Iterator[LiveServer]:
    """Generator for fixtures: start, yield the server, stop."""
    server = LiveServer(asgi_app).start()
    try:
        yield server
    finally:
        server.stop()

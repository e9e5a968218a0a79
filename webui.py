"""Composition root: parse flags -> build the App -> serve the UI and/or the API on one uvicorn server.

    python webui.py [--listen] [--port 7860] [--api] [--nowebui] ...   (see --help)

The page comes up before any model is loaded: checkpoints load lazily on the first generation (or in the
background when the checkpoint is changed in the UI), so start-up takes seconds.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

if TYPE_CHECKING:
    from fastapi import FastAPI

    from modules.app import App
    from modules.cli import LaunchOptions

STARTED = time.perf_counter()
log = logging.getLogger("webui")


def build_server(app: "App", launch: "LaunchOptions") -> "FastAPI":
    """The FastAPI application serving the UI at / (unless --nowebui) and /sdapi/v1 (with --api/--nowebui).

    Extensions' APP_STARTED callbacks run last, with this application (they may add routes)."""
    import gradio as gr
    from fastapi import FastAPI

    from modules.api.mount import mount_api

    server = FastAPI(title="sdwebui", docs_url="/docs", redoc_url="/redoc")
    if launch.cors_allow_origins or launch.cors_allow_origins_regex:
        from starlette.middleware.cors import CORSMiddleware

        server.add_middleware(CORSMiddleware, allow_origins=list(launch.cors_allow_origins),
                              allow_origin_regex=launch.cors_allow_origins_regex, allow_methods=["*"],
                              allow_headers=["*"], allow_credentials=True)
    if launch.api_enabled:
        mount_api(server, app)
    if launch.webui_enabled:
        from modules.ui import build_ui, launch_kwargs

        blocks = build_ui(app)
        auth = list(launch.gradio_auth) or None
        server = gr.mount_gradio_app(server, blocks, path="/", auth=auth, **launch_kwargs(app))
    app.extensions.hooks.app_started(server)  # after every route is mounted, so extensions can add their own
    _keep_ui_mount_last(server)
    return server


def exposure_warnings(launch: "LaunchOptions") -> list[str]:
    """Warnings for a server reachable from the network without a password (--listen without auth)."""
    if launch.host in ("127.0.0.1", "localhost", "::1"):
        return []
    missing = []
    if launch.webui_enabled and not launch.gradio_auth:
        missing.append("the web UI has no password (--gradio-auth USER:PASS)")
    if launch.api_enabled and not launch.api_auth:
        missing.append("the API has no password (--api-auth USER:PASS)")
    return [f"Listening on the network and {reason}: anyone who can reach this machine can use it"
            for reason in missing]


def _keep_ui_mount_last(server: "FastAPI") -> None:
    """Move the web UI's mount at "/" behind every other route: a mount matches every path below it, so routes that
    extensions add after it (APP_STARTED) would otherwise never be reached."""
    from starlette.routing import Mount

    def is_root_mount(route: object) -> bool:
        return isinstance(route, Mount) and route.path in ("", "/")

    routes = server.router.routes
    routes[:] = sorted(routes, key=is_root_mount)  # stable: the order within both groups is kept


def main(argv: list[str] | None = None) -> int:
    from modules.cli import flag_hint, parse_args

    launch = parse_args(argv)
    logging.basicConfig(level=launch.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    from modules.allocator import tune_allocator

    tune_allocator()  # before any model thread exists (docs/performance.md: "CPU allocator")
    for flag in launch.ignored_flags:
        hint = flag_hint(flag)
        log.warning("Flag %s is accepted for A1111/Forge compatibility but has no effect here%s", flag,
                    f" ({hint})" if hint else "")
    for warning in exposure_warnings(launch):
        log.warning(warning)

    import uvicorn

    from modules.bootstrap import build_app, ensure_a_checkpoint

    app = build_app(launch)
    ensure_a_checkpoint(app)
    server = build_server(app, launch)
    config = uvicorn.Config(server, host=launch.host, port=launch.port, log_level="warning",
                            timeout_keep_alive=launch.timeout_keep_alive,
                            ssl_keyfile=str(launch.tls_keyfile) if launch.tls else None,
                            ssl_certfile=str(launch.tls_certfile) if launch.tls else None)
    uvicorn_server = uvicorn.Server(config)

    def announce() -> None:
        while not uvicorn_server.started:
            time.sleep(0.05)
        what = "API" if not launch.webui_enabled else "web UI"
        log.info("%s ready at %s://%s:%d in %.1fs", what, "https" if launch.tls else "http", launch.host, launch.port,
                 time.perf_counter() - STARTED)
        threading.Thread(target=_warm_up, args=(app, not launch.skip_load_model_at_start), name="warm-up",
                         daemon=True).start()
        threading.Thread(target=_sync_gallery, args=(app,), name="gallery-sync", daemon=True).start()

    threading.Thread(target=announce, name="announce", daemon=True).start()
    app.server.attach(lambda: setattr(uvicorn_server, "should_exit", True))
    try:
        uvicorn_server.run()
    finally:
        app.close()
    if app.server.restart_requested:
        log.warning("Restarting")
        arguments = sys.argv[1:] if argv is None else argv
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), *arguments])
    return 0


def _sync_gallery(app: "App") -> None:
    """After the server is ready, in the background: bring the gallery index in line with the output folders
    (pictures added or removed while the server was down; only new or changed files are read)."""
    started = time.perf_counter()
    try:
        count = app.gallery.rebuild()
    except Exception as error:  # noqa: BLE001 - the gallery is never worth failing the server for
        log.warning("Gallery index not synchronised: %s", error)
        return
    log.info("Gallery index: %d pictures (synchronised in %.1fs)", count, time.perf_counter() - started)


def _warm_up(app: "App", load_checkpoint: bool) -> None:
    """After the server is ready, in the background: import the generation core (torch, diffusers: start-up does
    not), choose the device, scan the extra networks and load the current checkpoint (unless
    --skip-load-model-at-start), so the first generation does not wait for them."""
    from modules.errors import UserError

    started = time.perf_counter()
    app.core.ensure()  # torch, diffusers, transformers: one thread at a time (modules/core_loader.py)

    log.debug("Device plan: %s", app.models.plan.describe())  # made here: it imports torch
    app.networks.refresh()
    log.info("Generation core ready in %.1fs", time.perf_counter() - started)
    if not load_checkpoint:
        return
    try:
        with app.models.get():
            pass
    except UserError as error:
        log.warning("Checkpoint not loaded at start: %s", error)


if __name__ == "__main__":
    sys.exit(main())

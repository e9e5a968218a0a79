"""Fixtures for the API tests: an App whose generation is fake (fast, controllable) and live HTTP servers.

The fake App is the real `App` class with the real settings store, sampler registry, job queue and model manager
(scanning made-up checkpoint files, never loading them); only `submit` runs a stand-in generation that reports
progress, honours interrupt/skip, can be held at a gate, and returns solid pictures whose colour encodes the seed,
with A1111 infotexts naming the checkpoint it resolved.
"""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from api_helpers import LiveServer
from modules import infotext
from modules.api import mount_api
from modules.app import App
from modules.cli import LaunchOptions
from modules.jobs import Job, JobContext, JobQueue
from modules.models.manager import ModelManager, ModelOptions
from modules.paths import DataPaths
from modules.prompts.styles import StyleDatabase
from modules.samplers.registry import default_registry
from modules.settings import Settings, SettingsStore, UiConfig
from modules.types import GenerationRequest, GenerationResult, ProgressEvent

CHECKPOINTS = ("alpha.safetensors", "beta.safetensors")


def write_safetensors(path: Path, tensors: dict[str, list[int]], metadata: dict[str, str] | None = None) -> None:
    """A valid safetensors file of zero-filled float32 tensors with the given shapes."""
    header: dict[str, object] = {}
    offset = 0
    for name, shape in tensors.items():
        size = 4
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    encoded = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + bytes(offset))


def seed_colour(seed: int) -> tuple[int, int, int]:
    return (seed % 256, (seed // 256) % 256, 77)


class Gate:
    """Holds fake jobs at their first step until released (to observe progress, interrupt, queueing)."""

    def __init__(self) -> None:
        self.closed = False
        self.reached = threading.Event()
        self._open = threading.Event()

    def close(self) -> None:
        self.closed = True
        self._open.clear()
        self.reached.clear()

    def release(self) -> None:
        self.closed = False
        self._open.set()

    def wait(self, ctx: JobContext) -> None:
        if not self.closed:
            return
        self.reached.set()
        while not self._open.wait(0.01):
            if ctx.cancel.should_stop_batch():
                return


class FakeApp(App):
    """The real App with a stand-in generation (see the module doc)."""

    gate: Gate

    def submit(self, request: GenerationRequest, *, owner: str | None = None, task_id: str | None = None,
               save: bool | None = None) -> Job:
        def work(ctx: JobContext) -> GenerationResult:
            return self.fake_generation(request, ctx)

        return self.jobs.submit(work, owner=owner, task_id=task_id, description=f"{request.mode}: {request.prompt}")

    def fake_generation(self, request: GenerationRequest, ctx: JobContext) -> GenerationResult:
        settings = self.settings.get().with_overrides(request.overrides)
        record = self.models.resolve_checkpoint(request.checkpoint, ModelOptions.from_mapping(settings))
        sampler = self.samplers.resolve(request.sampler, request.schedule)
        if request.steps < 1:
            from modules.errors import InvalidRequest
            raise InvalidRequest(f"steps must be between 1 and 1000, got {request.steps}")
        count = request.batch_size * request.n_iter
        base = request.seed if request.seed >= 0 else 4242
        for step in range(request.steps):
            preview = Image.new("RGB", (8, 8), (step, 0, 0))
            ctx.report(ProgressEvent(step + 1, request.steps, 0, request.n_iter, preview, f"step {step + 1}"))
            self.gate.wait(ctx)
            if ctx.cancel.interrupted:
                count = 1
                break
        seeds = tuple(base + i for i in range(count))
        images = tuple(Image.new("RGB", (request.width, request.height), seed_colour(s)) for s in seeds)
        texts = tuple(infotext.build(request.prompt, request.negative_prompt, infotext.request_params(
            request, seed=s, subseed=7, model_name=record.model_name, model_hash="abcdef1234",
            sampler_label=sampler.label, schedule_label=sampler.schedule_label)) for s in seeds)
        return GenerationResult(images, seeds, (7,) * count, (request.prompt,) * count,
                                (request.negative_prompt,) * count, texts, request,
                                interrupted=ctx.cancel.interrupted)


def build_fake_app(data_dir: Path, api_auth: tuple[tuple[str, str], ...] = ()) -> FakeApp:
    for name in CHECKPOINTS:
        write_safetensors(data_dir / "models" / "Stable-diffusion" / name, {"x": [1]})
    launch = LaunchOptions(data_dir=data_dir, api=True, api_auth=api_auth)
    paths = DataPaths(data_dir)
    settings = SettingsStore(Settings(launch=launch), paths.config_file)
    models = ModelManager(paths, no_hashing=True)
    app = FakeApp(launch=launch, paths=paths, settings=settings, ui_config=UiConfig(), models=models,
                  samplers=default_registry(), jobs=JobQueue(), styles=StyleDatabase(paths.styles_file))
    app.gate = Gate()
    return app


def fastapi_for(app: App) -> FastAPI:
    server = FastAPI()
    mount_api(server, app)
    return server


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., tuple[FakeApp, httpx.Client]]]:
    """Factory: (fake app, httpx client bound to a live server for it); everything is stopped afterwards."""
    started: list[tuple[FakeApp, LiveServer, httpx.Client]] = []

    def make(api_auth: tuple[tuple[str, str], ...] = ()) -> tuple[FakeApp, httpx.Client]:
        app = build_fake_app(tmp_path / f"data{len(started)}", api_auth)
        server = LiveServer(fastapi_for(app)).start()
        client = httpx.Client(base_url=server.url, timeout=60)
        started.append((app, server, client))
        return app, client

    yield make
    for app, server, client in started:
        app.gate.release()
        client.close()
        server.stop()
        app.jobs.stop()

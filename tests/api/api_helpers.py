"""Helpers for the API tests: a live uvicorn server, and an App whose generation is fake (fast, controllable).

The fake App is the real `App` with the real settings store, sampler registry, job queue and model manager
(scanning made-up checkpoint files; "loading" one caches a `StandInModel`, and fails for a file whose name starts
with "broken"); only its generation is `FakeGeneration`, plugged in where the `GenerationService` goes: it reports
progress, honours interrupt/skip, can be held at a gate (`app.generation.gate`), and returns solid pictures whose
colour encodes the seed, with A1111 infotexts naming the checkpoint it resolved.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import httpx
import uvicorn
from fastapi import FastAPI
from PIL import Image

from modules import infotext
from modules.api import mount_api
from modules.app import App
from modules.cli import LaunchOptions
from modules.errors import CorruptFile, InvalidRequest
from modules.jobs import JobContext, JobQueue, LocalThreadExecutor
from modules.models.identity import Family, ModelIdentity
from modules.models.manager import ModelManager, ModelOptions
from modules.models.records import CheckpointRecord
from modules.paths import DataPaths
from modules.prompts.styles import StyleDatabase
from modules.samplers.registry import SamplerRegistry, default_registry
from modules.settings import Settings, SettingsStore, UiConfig
from modules.types import GenerationRequest, GenerationResult, ProgressEvent

CHECKPOINTS = ("alpha.safetensors", "beta.safetensors")


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


class FakeGeneration:
    """A `GenerationRunner` with a stand-in generation (see the module doc), over the App's real services."""

    def __init__(self, settings: SettingsStore, models: ModelManager, samplers: SamplerRegistry) -> None:
        self.settings = settings
        self.models = models
        self.samplers = samplers
        self.gate = Gate()
        self.last_request: GenerationRequest | None = None

    def run(self, request: GenerationRequest, ctx: JobContext, *, save: bool | None = None) -> GenerationResult:
        self.last_request = request
        settings = self.settings.get().with_overrides(request.overrides)
        record = self.models.resolve_checkpoint(request.checkpoint, ModelOptions.from_mapping(settings))
        sampler = self.samplers.resolve(request.sampler, request.schedule)
        if request.steps < 1:
            raise InvalidRequest(f"steps must be between 1 and 1000, got {request.steps}")
        if request.prompt == "explode":
            raise RuntimeError("a fault inside the generation")
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


class StandInModel:
    """What the fake App's model manager loads: an SD1 "model" named after the checkpoint whose one text encoder
    has width 0 (so no embedding fits it); the model cache moves it between devices."""

    identity = ModelIdentity(Family.SD1)
    text_encoders = (SimpleNamespace(config=SimpleNamespace(hidden_size=0)),)

    def __init__(self, title: str) -> None:
        self.title = title

    def to(self, device: object) -> "StandInModel":
        return self


def stand_in_load(record: CheckpointRecord, plan: object) -> StandInModel:
    if record.path.name.startswith("broken"):
        raise CorruptFile(f"{record.path}: not a readable checkpoint (test stand-in).")
    return StandInModel(record.title)


FakeApp = App  # the API tests' name for an App built by `build_fake_app` (its generation is a FakeGeneration)


def build_fake_app(data_dir: Path, api_auth: tuple[tuple[str, str], ...] = ()) -> App:
    for name in CHECKPOINTS:
        write_safetensors(data_dir / "models" / "Stable-diffusion" / name, {"x": [1]})
    launch = LaunchOptions(data_dir=data_dir, api=True, api_auth=api_auth)
    paths = DataPaths(data_dir)
    settings = SettingsStore(Settings(launch=launch), paths.config_file)
    models = ModelManager(paths, no_hashing=True, load_fn=stand_in_load)  # type: ignore[arg-type]
    samplers = default_registry()
    generation = FakeGeneration(settings, models, samplers)
    return App(launch=launch, paths=paths, settings=settings, ui_config=UiConfig(), models=models,
               samplers=samplers, jobs=JobQueue(executor=LocalThreadExecutor(generation)),
               styles=StyleDatabase(paths.styles_file), generation=generation)


@contextmanager
def serving(app: App, timeout: float = 120) -> Iterator[httpx.Client]:
    """A client of `app` served over real HTTP; on exit the client, the server and the app are closed."""
    server = LiveServer(fastapi_for(app)).start()
    client = httpx.Client(base_url=server.url, timeout=timeout)
    try:
        yield client
    finally:
        client.close()
        server.stop()
        app.close()


def fastapi_for(app: App) -> FastAPI:
    server = FastAPI()
    mount_api(server, app)
    return server

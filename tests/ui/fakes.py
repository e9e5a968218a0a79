"""A real `App` wired to fake models and a fake generation, for UI tests (no weights, no torch work).

Settings, ui-config, sampler registry, job queue (with its local executor) and styles are the real classes; the
model manager lists two made-up checkpoints and one VAE; the generation (`FakeGeneration`, plugged in where the
`GenerationService` goes) reports progress with a preview and returns solid-colour pictures with real A1111
infotexts. `app.generation.requests` records what the UI submitted.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from PIL import Image

from modules import infotext
from modules.app import App
from modules.cli import LaunchOptions
from modules.errors import ModelNotFound
from modules.jobs import JobContext, JobQueue, LocalThreadExecutor
from modules.paths import DataPaths
from modules.prompts.styles import StyleDatabase
from modules.samplers.registry import default_registry
from modules.settings import Settings, SettingsStore, UiConfig
from modules.types import GenerationRequest, GenerationResult, ProgressEvent
from modules.upscalers.registry import UpscalerRegistry

COLOUR = (200, 40, 40)


@dataclass
class FakeRecord:
    title: str
    name: str
    native_resolution: tuple[int, int] | None = None


@dataclass
class FakeModels:
    """The parts of ModelManager the UI uses."""

    checkpoints: list[FakeRecord] = field(default_factory=lambda: [FakeRecord("tiny.safetensors [0123456789]",
                                                                              "tiny.safetensors"),
                                                                  FakeRecord("other.safetensors", "other.safetensors")])
    vaes: list[FakeRecord] = field(default_factory=lambda: [FakeRecord("tiny.vae.pt", "tiny.vae.pt")])
    loaded: list[str] = field(default_factory=list)
    refreshed: int = 0
    upscalers: UpscalerRegistry = field(default_factory=UpscalerRegistry)

    def list_checkpoints(self) -> list[FakeRecord]:
        return list(self.checkpoints)

    def list_vaes(self) -> list[FakeRecord]:
        return list(self.vaes)

    def refresh(self) -> None:
        self.refreshed += 1

    @property
    def catalog(self) -> "FakeModels":
        """The catalog's `match` (the top bar's checkpoint size lookup), answered from the same records."""
        return self

    def match(self, title: str) -> FakeRecord | None:
        return next((record for record in self.checkpoints if title in (record.title, record.name)), None)

    def resolve_checkpoint(self, name: str | None = None, options: Any = None) -> FakeRecord:
        for record in self.checkpoints:
            if name in (None, record.title, record.name):
                return record
        raise ModelNotFound(f"No checkpoint {name!r}.")

    @contextmanager
    def get(self, checkpoint: str | None = None, vae: str | None = None, **_: Any) -> Iterator[object]:
        self.loaded.append(self.resolve_checkpoint(checkpoint).title)
        yield object()

    def unload(self) -> None:
        pass


def fake_result(request: GenerationRequest, count: int | None = None) -> GenerationResult:
    count = request.batch_size * request.n_iter if count is None else count
    seed = request.seed if request.seed >= 0 else 1234
    seeds = tuple(seed + index for index in range(count))
    subseeds = tuple((request.subseed if request.subseed >= 0 else 99) + index for index in range(count))
    texts = tuple(
        infotext.build(request.prompt, request.negative_prompt, infotext.request_params(
            request, seed=s, subseed=sub, model_name="tiny", model_hash="0123456789",
            sampler_label=request.sampler, schedule_label=request.schedule))
        for s, sub in zip(seeds, subseeds, strict=True)
    )
    images = tuple(Image.new("RGB", (request.width, request.height), COLOUR) for _ in range(count))
    return GenerationResult(images=images, seeds=seeds, subseeds=subseeds, prompts=(request.prompt,) * count,
                            negative_prompts=(request.negative_prompt,) * count, infotexts=texts, request=request,
                            timings={"total": 0.5})


class FakeGeneration:
    """A `GenerationRunner` whose result is `fake_result`; `requests` records what it was asked to run."""

    def __init__(self, step_delay: float = 0.0) -> None:
        self.requests: list[GenerationRequest] = []
        self.step_delay = step_delay

    def run(self, request: GenerationRequest, ctx: JobContext, *, save: bool | None = None) -> GenerationResult:
        self.requests.append(request)
        for step in range(1, request.steps + 1):
            if ctx.cancel.interrupted:
                return fake_result(request, count=0)
            preview = Image.new("RGB", (8, 8), (step * 10 % 255, 0, 0))
            ctx.report(ProgressEvent(step=step, total_steps=request.steps, preview=preview))
            threading.Event().wait(self.step_delay)
        return fake_result(request)


FakeApp = App  # the UI tests' name for an App built by `make_app` (its generation is a FakeGeneration)


def make_app(tmp: Path, *, settings: Settings | None = None, step_delay: float = 0.0,
             styles_csv: str | None = None) -> App:
    paths = DataPaths(tmp)
    if styles_csv is not None:
        paths.styles_file.write_text(styles_csv, encoding="utf-8")
    store = SettingsStore(settings or Settings(), paths.config_file)
    generation = FakeGeneration(step_delay)
    return App(launch=LaunchOptions(data_dir=tmp), paths=paths, settings=store,
               ui_config=UiConfig.load(paths.ui_config_file), models=FakeModels(),  # type: ignore[arg-type]
               samplers=default_registry(), jobs=JobQueue(executor=LocalThreadExecutor(generation)),
               styles=StyleDatabase(paths.styles_file), generation=generation)

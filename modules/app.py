"""The composition root's product: one `App` object that owns every long-lived service.

`webui.py` builds exactly one `App` (see `modules.bootstrap.build_app`) and hands it to the UI and the API;
nothing else holds process-wide state. Gradio handlers and FastAPI routes are closures over it. `App` is a plain
container: a generation is queued as data (`GenerationWork`) and run by the job queue's executor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from modules.cli import LaunchOptions
from modules.core_loader import CoreLoader
from modules.extensions.host import ExtensionHost
from modules.jobs import GenerationRunner, GenerationWork, Job, JobContext, JobQueue
from modules.paths import DataPaths
from modules.prompts.styles import StyleDatabase
from modules.server_control import ServerControl
from modules.settings import SettingsStore, UiConfig
from modules.types import GenerationRequest

if TYPE_CHECKING:
    from pathlib import Path

    from PIL import Image

    from modules.extras import ExtrasRequest, ExtrasResult
    from modules.gallery.index import GalleryIndex
    from modules.models.manager import ModelManager
    from modules.models.merge import MergeRequest
    from modules.networks.service import ExtraNetworks
    from modules.samplers.registry import SamplerRegistry

log = logging.getLogger(__name__)


@dataclass
class App:
    """Settings, model manager, sampler registry, job queue, styles, extensions and extra networks of one web UI.

    `generation` runs the jobs that `submit` queues (the object the queue's executor was built with).
    `networks` (textual inversion embeddings and LoRAs) defaults to unscanned databases over `paths`' folders,
    which scan themselves on first use; `build_app` passes scanned ones.
    """

    launch: LaunchOptions
    paths: DataPaths
    settings: SettingsStore
    ui_config: UiConfig
    models: ModelManager
    samplers: SamplerRegistry
    jobs: JobQueue
    styles: StyleDatabase
    generation: GenerationRunner
    extensions: ExtensionHost = field(default_factory=ExtensionHost)
    networks: ExtraNetworks = None  # type: ignore[assignment]  # None: built from `paths` in __post_init__
    server: ServerControl = field(default_factory=ServerControl)
    """Stop/restart/kill of the server that runs this App (webui.py attaches it; `--api-server-stop` routes)."""
    admission: Callable[[GenerationRequest], None] | None = None
    """Checks a request before it is queued (raises a UserError such as JobTooLarge); `build_app` passes
    `modules.admission.SubmitAdmission`."""
    gallery: GalleryIndex = None  # type: ignore[assignment]  # None: built from `paths` in __post_init__
    """The index of saved pictures (the Gallery tab); every file the generation and Extras save is recorded."""
    core: CoreLoader = field(default_factory=CoreLoader)
    """Imports torch, diffusers and transformers once, whichever thread asks first (`modules.core_loader`); the
    generation service is given the same one."""

    def __post_init__(self) -> None:
        if self.networks is None:
            from modules.networks.service import ExtraNetworks

            self.networks = ExtraNetworks.for_folders(self.paths.embeddings, self.paths.lora)
        if self.gallery is None:
            from modules.gallery.index import GalleryIndex

            self.gallery = GalleryIndex.for_paths(self.paths, self.settings)

    def submit(self, request: GenerationRequest, *, owner: str | None = None, task_id: str | None = None,
               save: bool | None = None, group: str | None = None) -> Job:
        """Queue a generation; the job's result is a `GenerationResult`. `save=None` follows the samples_save option.
        `owner` may see and cancel the job; `group` is who it counts for in the queue's round-robin (default: the
        owner; see `modules.jobs.fair_group`)."""
        if self.admission is not None:
            self.admission(request)
        description = f"{request.mode}: {request.prompt[:60]}"
        return self.jobs.submit(GenerationWork(request, save), owner=owner, task_id=task_id, description=description,
                                group=group)

    def submit_extras(self, request: "ExtrasRequest", *, owner: str | None = None, group: str | None = None) -> Job:
        """Queue an Extras upscale (`modules.extras`); the job's result is an `ExtrasResult`. It runs as an in-process
        function of the job context (`CallableWork`), like checkpoint switches."""
        from modules.extras import ExtrasService

        service = ExtrasService(self.models.upscalers, self.settings, self.paths, on_saved=self.gallery.record)

        def run(ctx: "JobContext") -> "ExtrasResult":
            self.core.ensure()  # torch, spandrel: not beside the warm-up's import
            return service.run(request, ctx)

        return self.jobs.submit(run, owner=owner, group=group,
                                description=f"extras: {len(request.images)} picture(s)")

    def submit_interrogate(self, image: "Image.Image", model: str = "clip", *, owner: str | None = None,
                           group: str | None = None) -> Job:
        """Queue a caption of `image` (`modules.interrogate`, A1111's interrogate); the job's result is the caption.
        It runs in the queue (`CallableWork`) so it never shares the device with a generation."""
        from modules.interrogate import InterrogateService

        service = InterrogateService(self.paths.models, self.models.hold_captioner)

        def run(ctx: "JobContext") -> str:
            self.core.ensure()
            return service.interrogate(image, model)

        return self.jobs.submit(run, owner=owner, group=group,
                                description=f"interrogate ({model})")

    def submit_merge(self, request: "MergeRequest", *, owner: str | None = None, group: str | None = None) -> Job:
        """Queue a Checkpoint Merger run (`modules.models.merge`); the job's result is the new checkpoint's path,
        listed by the model manager once written. It runs in the queue so that it never competes with a generation
        for memory; the checkpoints and VAE are resolved when it starts (`ModelNotFound` names a missing one)."""
        from modules.models.merge import MergeInputs, run_merge
        from modules.types import ProgressEvent

        def run(ctx: "JobContext") -> "Path":
            self.core.ensure()  # torch: not beside the warm-up's import
            models = self.models
            inputs = MergeInputs(
                models.resolve_checkpoint(request.primary),
                models.resolve_checkpoint(request.secondary) if request.secondary else None,
                models.resolve_checkpoint(request.tertiary) if request.tertiary else None,
                models.catalog.find_vae(request.bake_in_vae) if request.bake_in_vae else None)

            def progress(text: str, fraction: float) -> None:
                ctx.report(ProgressEvent(int(fraction * 100), 100, textinfo=text))

            path = run_merge(request, inputs, models.catalog.roots.checkpoint_dirs[0], progress)
            models.refresh()
            return path

        return self.jobs.submit(run, owner=owner, group=group, description=f"merge: {request.primary}")

    def close(self) -> None:
        """Stop the worker and release models (used by tests and on shutdown)."""
        self.jobs.stop()
        self.models.unload()
        self.gallery.close()

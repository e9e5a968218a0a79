"""Builds the one `App` from launch options: the composition root's wiring, kept out of webui.py's CLI code."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

from modules.admission import SubmitAdmission
from modules.allocator import release_free_memory
from modules.app import App
from modules.cli import LaunchOptions
from modules.core_loader import CoreLoader
from modules.devices import plan_devices
from modules.extensions.host import ExtensionHost
from modules.gallery.index import GalleryIndex
from modules.jobs import Executor, JobQueue, LocalThreadExecutor
from modules.models.manager import ModelManager, default_load_fn
from modules.networks.service import ExtraNetworks
from modules.paths import REPO_ROOT
from modules.processing import GenerationService
from modules.prompts.styles import StyleDatabase
from modules.samplers.registry import SamplerRegistry, default_registry
from modules.settings import Settings, SettingsStore, UiConfig
from modules.types import GenerationRequest

log = logging.getLogger(__name__)

FALLBACK_CHECKPOINT = "tiny-sd1-random.safetensors"
BUNDLED_DEMO = REPO_ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"


@dataclasses.dataclass
class GenerationStack:
    """What runs generations: extensions, model manager, samplers, extra networks, styles and the service over them.
    `build_app` makes one for the App; each Ray worker (`modules.jobs.ray_executor`) makes its own."""

    extensions: ExtensionHost
    models: ModelManager
    samplers: SamplerRegistry
    networks: ExtraNetworks
    styles: StyleDatabase
    generation: GenerationService


def build_generation_stack(launch: LaunchOptions, settings: SettingsStore,
                           on_saved: Callable[[Path], None] | None) -> GenerationStack:
    """The generation side for `launch` over `settings`; `on_saved` hears of every file the service saves."""
    paths = launch.paths
    extensions = ExtensionHost.for_launch(launch, settings)
    extensions.load()
    # the device plan needs torch: made with the first model, so the page and the API come up without it
    device_plan = functools.partial(plan_devices, launch.device, launch.precision, launch.no_half,
                                    launch.no_half_vae, medvram=launch.medvram, lowvram=launch.lowvram,
                                    medvram_sdxl=launch.medvram_sdxl)
    models = ModelManager(paths, settings.get(), device_plan=device_plan, ckpt_dir=launch.ckpt_dir,
                          ckpt=launch.ckpt, vae_dir=launch.vae_dir, vae_path=launch.vae_path,
                          no_hashing=launch.no_hashing,
                          load_fn=extensions.hooks.wrap_model_loader(default_load_fn))
    settings.subscribe(lambda _old, new: models.update_options(new))
    samplers = default_registry()
    extensions.setup(samplers, settings, choices=lambda kind: _choices(kind, models, samplers),
                     hold_model=models.hold_extension_model)
    networks = ExtraNetworks.for_folders(paths.embeddings, paths.lora)  # scanned on first use (webui.py warms)
    styles = StyleDatabase(paths.styles_file)
    generation = GenerationService(settings=settings, models=models, samplers=samplers, networks=networks,
                                   extensions=extensions, styles=styles, paths=paths, core=CoreLoader(),
                                   on_saved=on_saved)
    return GenerationStack(extensions, models, samplers, networks, styles, generation)


def build_app(launch: LaunchOptions,
              worker_launch: Callable[[int, LaunchOptions], LaunchOptions] | None = None) -> App:
    """Settings (config.json), model manager, sampler registry, styles, extra networks, extensions for `launch`;
    the generation service over them, and the job queue whose executor runs it: a local thread, or Ray workers
    with `--workers` / `--ray-address` (Ray is imported only then; `worker_launch`: see `build_executor`)."""
    paths = launch.paths
    settings = SettingsStore.open(launch.settings_file, launch=launch)
    for problem in settings.problems:
        log.warning("config.json: %s", problem)
    gallery = GalleryIndex.for_paths(paths, settings)  # opens its database on first use
    stack = build_generation_stack(launch, settings, gallery.record)
    return App(
        launch=launch,
        paths=paths,
        settings=settings,
        ui_config=UiConfig.load(launch.ui_config_path),
        models=stack.models,
        samplers=stack.samplers,
        jobs=JobQueue("default", executor=build_executor(launch, stack, settings, gallery.record, worker_launch)),
        styles=stack.styles,
        generation=stack.generation,
        extensions=stack.extensions,
        networks=stack.networks,
        admission=SubmitAdmission(stack.models),
        gallery=gallery,
        core=stack.generation.core,
    )


def build_executor(launch: LaunchOptions, stack: GenerationStack, settings: SettingsStore,
                   on_saved: Callable[[Path], None] | None,
                   worker_launch: Callable[[int, LaunchOptions], LaunchOptions] | None = None) -> Executor:
    """The local thread, or with `--workers` / `--ray-address` the Ray workers (their saved files reach `on_saved`
    here; in-process work such as checkpoint switches and Extras runs on this process's `stack`).
    `worker_launch(index, launch)`: a Ray worker's own launch options (e.g. its node's data folder)."""
    if not launch.ray_enabled:
        return LocalThreadExecutor(stack.generation, name="default", on_idle=release_free_memory)
    from modules.jobs.job_files import JobFiles, job_files
    from modules.jobs.ray_executor import RayExecutor

    def files_of(request: GenerationRequest, snapshot: Settings | None) -> JobFiles:
        return job_files(stack.generation, request, snapshot or settings.get())

    return RayExecutor(launch, settings=settings, on_saved=on_saved, files_of=files_of,
                       worker_launch=worker_launch)


def _choices(kind: str, models: ModelManager, samplers: SamplerRegistry) -> list[str]:
    """Dynamic choice lists offered to extension UIs and scripts ("samplers", "checkpoints", "upscalers": the image
    upscalers in A1111's `sd_upscalers` order, "hires_upscalers": the latent modes, then the image upscalers)."""
    if kind == "samplers":
        return samplers.visible()
    if kind == "checkpoints":
        return [record.title for record in models.list_checkpoints()]
    if kind == "upscalers":
        return [upscaler.name for upscaler in models.upscalers.image_upscalers()]
    if kind == "hires_upscalers":
        return list(models.upscalers.names())
    return []


def ensure_a_checkpoint(app: App) -> Path | None:
    """With no checkpoint installed, provide one so the UI can run; returns the file added, or None.

    The bundled demo model (models/Stable-diffusion/demo-shapes.safetensors in the repository) is linked or copied
    into a separate --data-dir. Without it (a checkout that dropped the file), a tiny randomly initialised SD 1.x
    model with the real architecture is written instead: it loads through the normal path but draws noise.
    """
    if app.models.list_checkpoints():
        return None
    target_dir = app.paths.checkpoints
    target_dir.mkdir(parents=True, exist_ok=True)
    if BUNDLED_DEMO.is_file():
        target = target_dir / BUNDLED_DEMO.name
        try:
            os.link(BUNDLED_DEMO, target)
        except OSError:
            shutil.copy2(BUNDLED_DEMO, target)
        log.info("No checkpoint found in %s: added the bundled demo model %s", target_dir, target.name)
    else:
        from modules.models.convert import save_single_file
        from modules.models.identity import Family, ModelIdentity
        from modules.models.tiny import build_tiny_components

        target = target_dir / FALLBACK_CHECKPOINT
        save_single_file(build_tiny_components(ModelIdentity(Family.SD1)), target)
        log.warning("No checkpoint found in %s: created %s (random weights, for trying the UI; it draws noise)",
                    target_dir, target.name)
    app.models.refresh()
    return target

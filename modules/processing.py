"""One generation job, end to end: request -> settings -> model -> core -> infotexts -> saved images.

This is the job function the queue's worker runs (`App.submit`). The generation core (`modules.core.generate`)
knows nothing about settings files, checkpoint titles, infotexts or output folders; this module is where those
meet. Steps:

1. the settings snapshot for this job (`override_settings` applied to a copy, never to the shared store);
2. styles applied to the prompts; the sampler resolved by the registry (unknown names are refused here);
3. the checkpoint (and VAE) resolved and held locked in the model cache for the duration of the job; the first
   prompt's `<lora:...>` references resolved (A1111 applies them to the whole job; unknown names are logged and
   skipped) and merged into the model for the job (`apply_loras` restores it bit-exactly afterwards, also on
   errors; the refiner is left as it is); a LoRA that does not fit the model is skipped and reported in the
   result's `comments` ("Networks with errors: name (count)", as A1111);
4. the core runs, reporting progress and honouring the job's cancel token; textual-inversion embeddings
   compatible with each model reach the prompt encoder through `ExtraNetworks.textual_inversion`;
5. one A1111 infotext per image (with "Lora hashes" / "TI hashes" when networks were used); images saved (PNG
   `parameters` chunk) when saving is on.

Extensions (`app.extensions`, modules/extensions/host.py) take part at fixed points: BEFORE_JOB after step 2's
prompt/style handling, POST_CFG inside the core (step 4), AFTER_IMAGE before saving, IMAGE_SAVED after each file. A
request that selects a script (A1111's "Script" dropdown) runs that script instead; it may call `generate_once`
many times (X/Y/Z plot).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from tqdm import tqdm

from modules import images, infotext
from modules.core.denoise import StepHook, UNetHook
from modules.core.generate import CoreOutput, generate
from modules.core.plan import CoreOptions
from modules.extensions.scripts import RunServices
from modules.models.manager import ModelOptions, Selection
from modules.networks.lora import LoraUse, apply_loras
from modules.networks.service import job_infotext
from modules.prompts.parser import extract_extra_networks_batch
from modules.types import GenerationRequest, GenerationResult, ProgressEvent

if TYPE_CHECKING:
    from modules.app import App
    from modules.jobs import JobContext
    from modules.samplers.registry import ResolvedSampler
    from modules.settings import Settings

log = logging.getLogger(__name__)

VERSION = "sdwebui-0.1"


def job_settings(app: "App", request: GenerationRequest) -> "Settings":
    """The settings in force for one job: the current snapshot with the request's overrides on a copy."""
    return app.settings.get().with_overrides(request.overrides)


def effective_request(app: "App", request: GenerationRequest, settings: Mapping[str, Any]) -> GenerationRequest:
    """The request as the core sees it: styles merged into the prompts, CLIP skip and eta from settings."""
    changes: dict[str, Any] = {}
    if request.styles:
        prompt, negative = app.styles.apply(request.prompt, request.negative_prompt, list(request.styles))
        changes.update(prompt=prompt, negative_prompt=negative, styles=())
    if request.clip_skip <= 1:
        changes["clip_skip"] = max(1, int(settings.get("CLIP_stop_at_last_layers", 1)))
    if request.eta is None:
        changes["eta"] = float(settings.get("eta_ddim", 0.0))
    return request.with_changes(**changes) if changes else request


def run_generation(app: "App", request: GenerationRequest, ctx: "JobContext", *, save: bool | None = None
                   ) -> GenerationResult:
    """Run `request` on the job's worker thread: the selected extension script, or one plain generation."""
    script = app.extensions.scripts.selected_script(request)
    if script is None:
        return generate_once(app, request, ctx, save=save)
    settings = job_settings(app, request)
    services = RunServices(
        generate=lambda inner: generate_once(app, inner, ctx, save=save),
        resolve_sampler=lambda name: app.samplers.resolve(name).label,
        resolve_checkpoint=lambda name: app.models.resolve_checkpoint(name).title,
        save_grid=lambda image, text: save_grid(app, request, image, text, settings, save),
        interrupted=lambda: ctx.cancel.interrupted,
    )
    return app.extensions.scripts.run_script(script, request, services, settings)


def generate_once(app: "App", request: GenerationRequest, ctx: "JobContext", *, save: bool | None = None
                  ) -> GenerationResult:
    """One generation; see the module docstring for the steps."""
    # 1. settings for this job
    settings = job_settings(app, request)
    # 2. prompts, extensions' BEFORE_JOB, sampler
    request = app.extensions.hooks.before_job(effective_request(app, request, settings), settings)
    sampler = app.samplers.resolve(request.sampler, request.schedule)
    hooks = app.extensions.hooks.step_hooks(request)
    unet_hooks = app.extensions.hooks.unet_hooks(request)
    # 3. model, extra networks
    model_options = ModelOptions.from_mapping(settings)
    selection = app.models.select(request.checkpoint, request.vae, options=model_options)
    refiner_selection = app.models.select(request.refiner_checkpoint, None, options=model_options) \
        if request.refiner_checkpoint else None
    uses = app.networks.lora_uses(extract_extra_networks_batch([request.prompt])[1])
    app.networks.refresh_embeddings()
    # 4. the core
    core = CoreCall(request, sampler, hooks, CoreOptions.from_mapping(settings), uses, unet_hooks)
    output, comments = run_core(app, core, ctx, selection, refiner_selection)
    # 5. infotexts, extensions' AFTER_IMAGE, saving
    texts = build_infotexts(request, output, selection, sampler, refiner_selection,
                            networks=job_infotext(uses, output.used_embeddings))
    pictures, texts = app.extensions.hooks.after_images(request, output.images, texts, output.seeds, settings)
    output = dataclasses.replace(output, images=pictures)
    if save if save is not None else bool(settings.get("samples_save", True)):
        save_outputs(app, request, output, texts, settings)
    return GenerationResult(
        images=output.images, seeds=output.seeds, subseeds=output.subseeds, prompts=output.prompts,
        negative_prompts=output.negative_prompts, infotexts=texts, request=request, timings=output.timings,
        interrupted=output.interrupted, comments=comments,
    )


@dataclasses.dataclass(frozen=True)
class CoreCall:
    """What `run_core` passes to the generation core besides the models."""

    request: GenerationRequest
    sampler: "ResolvedSampler"
    hooks: Sequence[StepHook]
    options: CoreOptions
    loras: Sequence[LoraUse] = ()
    unet_hooks: Sequence[UNetHook] = ()


def run_core(app: "App", core: CoreCall, ctx: "JobContext", selection: Selection,
             refiner_selection: Selection | None) -> tuple[CoreOutput, tuple[str, ...]]:
    """Step 4: the core on the selected model(s), held in the cache, with the job's LoRAs merged in meanwhile.
    Returns the output and the comments for the user (LoRAs that could not be applied)."""
    with app.models.use(selection) as components, apply_loras(components, core.loras) as loras, \
            ConsoleProgress(ctx.report) as report:
        kwargs: dict[str, Any] = {"hooks": core.hooks, "cancel": ctx.cancel, "on_progress": report,
                                  "options": core.options, "textual_inversion": app.networks.textual_inversion,
                                  "unet_hooks": core.unet_hooks}
        if refiner_selection is None:
            return generate(core.request, components, core.sampler, **kwargs), loras.comments()
        with app.models.use(refiner_selection) as refiner:
            return generate(core.request, components, core.sampler, refiner=refiner, **kwargs), loras.comments()


class ConsoleProgress:
    """Forwards progress events to the job and draws them as one tqdm bar on the console (A1111's console bar)."""

    def __init__(self, forward: Callable[[ProgressEvent], None]) -> None:
        self._forward = forward
        self._bar: tqdm | None = None

    def __enter__(self) -> "ConsoleProgress":
        return self

    def __call__(self, event: ProgressEvent) -> None:
        total = event.total_steps * event.job_count
        if self._bar is None:
            self._bar = tqdm(total=total, desc="Generating", unit="step", leave=False, dynamic_ncols=True)
        self._bar.total = total
        self._bar.n = min(total, event.job_no * event.total_steps + event.step)
        self._bar.refresh()
        self._forward(event)

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.close()


def build_infotexts(request: GenerationRequest, output: CoreOutput, selection: Selection,
                    sampler: "ResolvedSampler", refiner: Selection | None = None,
                    networks: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """One A1111 `parameters` text per image, from the request and the values the core actually used.

    `networks` holds the "Lora hashes" / "TI hashes" values (`modules.networks.service.job_infotext`)."""
    record = selection.checkpoint
    vae = selection.vae
    extra: dict[str, Any] = {}
    if refiner is not None:
        extra["Refiner"] = refiner.checkpoint.title
        extra["Refiner switch at"] = request.refiner_switch_at
    extra.update(networks or {})
    texts = []
    for seed, subseed, prompt, negative in zip(output.seeds, output.subseeds, output.prompts,
                                               output.negative_prompts):
        params = infotext.request_params(
            request, seed=seed, subseed=subseed, model_name=record.model_name, model_hash=record.shorthash,
            sampler_label=sampler.label, schedule_label=sampler.schedule_label, eta=output.plan.eta or None,
            vae_name=vae.name if vae is not None else None,
            vae_hash=vae.shorthash if vae is not None else None, extra=extra, rng="CPU", version=VERSION,
        )
        texts.append(infotext.build(prompt, negative, params))
    return tuple(texts)


def output_directory(app: "App", mode: str, settings: Mapping[str, Any]) -> Path:
    """`outputs/<txt2img|img2img>-images/<date>` under the data directory, following the outdir_* options."""
    key = "outdir_txt2img_samples" if mode == "txt2img" else "outdir_img2img_samples"
    configured = str(settings.get("outdir_samples") or "") or str(settings.get(key) or "")
    if configured:
        base = Path(configured)
        base = base if base.is_absolute() else app.paths.data_dir / base
        return base / datetime.date.today().isoformat()
    return images.outputs_dir_for(app.paths.outputs, mode, datetime.date.today())


def save_outputs(app: "App", request: GenerationRequest, output: CoreOutput, texts: tuple[str, ...],
                 settings: Mapping[str, Any]) -> list[Path]:
    """Save every image with its infotext; never overwrites (see `images.save_image`)."""
    directory = output_directory(app, request.mode, settings)
    extension = str(settings.get("samples_format", "png"))
    quality = int(settings.get("jpeg_quality", 80))
    with_info = bool(settings.get("enable_pnginfo", True))
    saved = []
    for image, seed, text in zip(output.images, output.seeds, texts):
        path = images.save_image(image, directory, seed=seed, infotext=text if with_info else None,
                                 extension=extension, jpeg_quality=quality)
        saved.append(path)
        log.info("Saved %s", path)
        app.extensions.hooks.image_saved(request, path, image, text)
    return saved


def save_grid(app: "App", request: GenerationRequest, image: Any, text: str, settings: Mapping[str, Any],
              save: bool | None) -> Path | None:
    """Save a grid made by a script (X/Y/Z plot) when grid saving is on: `outputs/<mode>-grids/<date>`."""
    if save is False or not bool(settings.get("grid_save", True)):
        return None
    key = "outdir_txt2img_grids" if request.mode == "txt2img" else "outdir_img2img_grids"
    configured = str(settings.get("outdir_grids") or "") or str(settings.get(key) or "")
    base = Path(configured) if configured else app.paths.outputs / key.removeprefix("outdir_").replace("_", "-")
    base = base if base.is_absolute() else app.paths.data_dir / base
    directory = base / datetime.date.today().isoformat()
    seed = infotext.parse(text).get("Seed") or str(request.seed)
    path = images.save_image(image, directory, seed=int(seed) if seed.lstrip("-").isdigit() else request.seed,
                             infotext=text, extension=str(settings.get("grid_format", "png")))
    log.info("Saved grid %s", path)
    return path

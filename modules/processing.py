"""One generation job, end to end: request -> settings -> model -> core -> infotexts -> saved images.

`GenerationService` is what the executor runs for a `GenerationWork`; it holds its dependencies explicitly (never
the App). The generation core (`modules.core.generate`) knows nothing about settings, checkpoint titles, infotexts
or folders; this module is where they meet. The steps of `generate_once`: the job's settings (overrides on a
copy), styles and the sampler, the checkpoint/VAE held in the model cache with the first prompt's LoRAs merged in
for the job (restored afterwards, also on errors), the core with progress and the job's cancel token, one infotext
per image, and saving. Extensions take part at fixed points (before the job, per step, after the images, after
each save); a request that selects a script runs the script, which may call `generate_once` many times.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from PIL import Image
from tqdm import tqdm

from modules import images, infotext
from modules.core.plan import CoreOptions
from modules.core_loader import CoreLoader
from modules.errors import Interrupted
from modules.extensions.api import Generate
from modules.extensions.scripts import RunServices
from modules.filenames import NameFields
from modules.grids import image_grid
from modules.job_options import OutputKind, OutputOptions, RequestDefaults, output_folder
from modules.models.manager import ModelOptions, Selection
from modules.picture_names import JobNames
from modules.prompts.parser import extract_extra_networks_batch
from modules.types import GenerationRequest, GenerationResult, ProgressEvent
from modules.upscalers.registry import UpscaleContext

if TYPE_CHECKING:  # the core (torch, diffusers) loads with the first job, not at start-up
    from modules.core.denoise import StepHook, UNetHook
    from modules.core.generate import CoreOutput
    from modules.extensions.host import ExtensionHost
    from modules.jobs.executor import JobContext
    from modules.models.manager import ModelManager
    from modules.networks.lora import LoraUse
    from modules.networks.service import ExtraNetworks
    from modules.paths import DataPaths
    from modules.prompts.styles import StyleDatabase
    from modules.samplers.registry import ResolvedSampler, SamplerRegistry
    from modules.settings import Settings, SettingsStore

log = logging.getLogger(__name__)

VERSION = "sdwebui-0.1"


@dataclasses.dataclass
class GenerationService:
    """Runs a `GenerationRequest` to a `GenerationResult` (a `GenerationRunner` for the job executor)."""

    settings: "SettingsStore"
    models: "ModelManager"
    samplers: "SamplerRegistry"
    networks: "ExtraNetworks"
    extensions: "ExtensionHost"
    styles: "StyleDatabase"
    paths: "DataPaths"
    core: CoreLoader = dataclasses.field(default_factory=CoreLoader)
    """Imports the generation core before the first job (shared with the App's warm-up: `modules.core_loader`)."""
    on_saved: Callable[[Path], None] | None = None
    """Called with every file this service saves (samples, pictures before hires fix, scripts' pictures, grids):
    the App's gallery index (`GalleryIndex.record`)."""

    def run(self, request: GenerationRequest, ctx: "JobContext", *, save: bool | None = None) -> GenerationResult:
        """Run `request` on the executor's worker: the selected extension script, or one plain generation."""
        self.core.ensure()
        script = self.extensions.scripts.selected_script(request)
        if script is None:
            return self.with_grid(request, self.generate_once(request, ctx, save=save), save)
        settings = self.job_settings(request)
        names = self.job_names(request, settings)
        services = RunServices(
            generate=self.script_generate(ctx, save),
            resolve_sampler=lambda name: self.samplers.resolve(name).label,
            resolve_checkpoint=lambda name: self.models.resolve_checkpoint(name).title,
            save_grid=lambda image, text: self.save_grid(request, image, text, settings, save, names),
            interrupted=lambda: ctx.cancel.interrupted,
            choices=self.extensions.choices,
            upscale=lambda image, name, scale: self.upscale_for_script(image, name, scale, ctx, settings),
            save_image=lambda image, text, seed: self.save_script_image(request, image, text, seed, settings, save,
                                                                        names),
            interrogate=self.interrogate_for_script,
        )
        return self.extensions.scripts.run_script(script, request, services, settings)

    def with_grid(self, request: GenerationRequest, result: GenerationResult, save: bool | None) -> GenerationResult:
        """A1111's grid of a plain job's pictures: made when the job has more than one picture (or any, without
        `grid_only_if_multiple`), saved with `grid_save`, put in front of the result with `return_grid`. None when
        the job saves nothing (`save=False`: the API without `save_images`, as A1111's `do_not_save_grid`)."""
        if save is False or not result.images:
            return result
        settings = self.job_settings(request)
        options = OutputOptions.from_mapping(settings)
        if len(result.images) < 2 and options.grid_only_if_multiple or not (options.grid_save or options.return_grid):
            return result
        grid = image_grid(result.images, result.request.batch_size, options.n_rows)
        text = result.infotexts[0] if result.infotexts else ""
        if options.grid_save:
            fields = self.job_names(request, settings).fields(grid, text, result.seeds[0], 0, result.seeds)
            log.info("Saved grid %s", self.save_picture(request.mode, "grids", grid, text, fields, options))
        if not options.return_grid:
            return result
        return dataclasses.replace(
            result, images=(grid, *result.images), seeds=result.seeds[:1] + result.seeds,
            subseeds=result.subseeds[:1] + result.subseeds, prompts=result.prompts[:1] + result.prompts,
            negative_prompts=result.negative_prompts[:1] + result.negative_prompts,
            infotexts=result.infotexts[:1] + result.infotexts, grids=1)

    def script_generate(self, ctx: "JobContext", job_save: bool | None) -> Generate:
        """`RunContext.generate` of a script's job: one generation, saved as the job is unless `save=False`, its
        progress reported as a part of the job's with `part=(index, count)`."""
        def generate(inner: GenerationRequest, /, *, save: bool = True,
                     part: tuple[int, int] | None = None) -> GenerationResult:
            job = ctx if part is None else part_context(ctx, *part)
            return self.generate_once(inner, job, save=job_save if save else False)
        return generate

    def upscale_for_script(self, image: Image.Image, name: str, scale: float, ctx: "JobContext",
                           settings: Mapping[str, Any]) -> Image.Image | None:
        """`RunContext.upscale`: `image` enlarged by `scale` with the image upscaler `name` (A1111's
        `Upscaler.upscale`), tiled by the `ESRGAN_tile` settings; None when interrupted between tiles."""
        upscaler = self.models.upscalers.find_image(name, "Upscaler")
        options = CoreOptions.from_mapping(settings)

        def on_tile(done: int, total: int) -> None:  # the job's parts start after this: no fraction of it
            ctx.report(ProgressEvent(0, 1, 0, 1, None, f"Upscaling: tile {done} of {total}"))

        context = UpscaleContext(options.ESRGAN_tile, options.ESRGAN_tile_overlap, lambda: ctx.cancel.interrupted,
                                 on_tile)
        try:
            return upscaler.upscale_by(image, scale, context)
        except Interrupted:
            return None

    def interrogate_for_script(self, image: Image.Image, model: str = "clip") -> str:
        """`RunContext.interrogate`: a caption of `image` (`modules.interrogate`), between the script's generations
        on this job's worker."""
        from modules.interrogate import InterrogateService

        return InterrogateService(self.paths.models, self.models.hold_captioner).interrogate(image, model)

    def save_script_image(self, request: GenerationRequest, image: Image.Image, text: str, seed: int,
                          settings: Mapping[str, Any], save: bool | None, names: JobNames) -> None:
        """`RunContext.save_image`: save a script's finished picture as a generated one (when samples are saved)."""
        options = OutputOptions.from_mapping(settings)
        if not (save if save is not None else options.samples_save):
            return
        path = self.save_picture(request.mode, "samples", image, text, names.fields(image, text, seed), options)
        log.info("Saved %s", path)
        self.extensions.hooks.image_saved(request, path, image, text)

    def job_names(self, request: GenerationRequest, settings: Mapping[str, Any], styles: Sequence[str] | None = None,
                  started: datetime.datetime | None = None) -> JobNames:
        """The name fields the job's pictures share; `styles` are the styles the user picked (the request's own
        when None), `started` when the job started (now when None)."""
        picked = tuple(request.styles if styles is None else styles)
        found = (self.styles.get(name) for name in picked)
        words = OutputOptions.from_mapping(settings).directories_max_prompt_words
        return JobNames(request, picked, tuple(style.prompt for style in found if style is not None),
                        started or datetime.datetime.now(), words)

    def save_picture(self, mode: str, kind: OutputKind, image: Image.Image, text: str, fields: NameFields,
                     options: OutputOptions, suffix: str = "") -> Path:
        """Save one picture (or grid) where and as the saving settings say, and tell `on_saved`.

        Samples are named by the file name pattern (plus `suffix`), grids `grid-NNNN` as in A1111; the folder is
        `output_folder`'s; `save_txt` writes the infotext beside the picture."""
        directory = output_folder(options, self.paths, mode, kind, fields)
        arguments = options.save_arguments(text, fields, grid=kind == "grids", suffix=suffix)
        return self.notify_saved(images.save_image(image, directory, **arguments))

    def notify_saved(self, path: Path) -> Path:
        """Tell `on_saved` about a file just written; returns the path."""
        if self.on_saved is not None:
            self.on_saved(path)
        return path

    def job_settings(self, request: GenerationRequest) -> "Settings":
        """The settings in force for one job: the current snapshot with the request's overrides on a copy."""
        return self.settings.get().with_overrides(request.overrides)

    def effective_request(self, request: GenerationRequest, settings: Mapping[str, Any]) -> GenerationRequest:
        """The request as the core sees it: styles merged into the prompts, CLIP skip from settings."""
        changes: dict[str, Any] = {}
        if request.styles:
            names = list(request.styles)
            prompt, negative = self.styles.apply(request.prompt, request.negative_prompt, names)
            changes.update(prompt=prompt, negative_prompt=negative, styles=())
            if request.hr_prompt:  # an empty hires prompt stays empty: it means the (styled) prompt
                changes["hr_prompt"] = self.styles.apply(request.hr_prompt, "", names)[0]
            if request.hr_negative_prompt:
                changes["hr_negative_prompt"] = self.styles.apply("", request.hr_negative_prompt, names)[1]
        defaults = RequestDefaults.from_mapping(settings)
        if request.clip_skip <= 1:
            changes["clip_skip"] = max(1, defaults.CLIP_stop_at_last_layers)
        return request.with_changes(**changes) if changes else request

    def generate_once(self, request: GenerationRequest, ctx: "JobContext", *, save: bool | None = None
                      ) -> GenerationResult:
        """One generation; see the module docstring for the steps. The `<lora:...>` references of the first prompt
        apply to the whole job: unknown names are logged and skipped, one that does not fit the model is reported
        in the result's `comments`, and the refiner is left as it is."""
        # 1. settings for this job
        settings = self.job_settings(request)
        picked_styles, started = request.styles, datetime.datetime.now()
        # 2. prompts, extensions' BEFORE_JOB, sampler
        request = self.extensions.hooks.before_job(self.effective_request(request, settings), settings)
        sampler = self.samplers.resolve(request.sampler, request.schedule)
        hires_sampler = self.hires_sampler(request)
        hooks = self.extensions.hooks.step_hooks(request)
        unet_hooks = self.extensions.hooks.unet_hooks(request)
        # 3. model, extra networks
        model_options = ModelOptions.from_mapping(settings)
        selection = self.models.select(request.checkpoint, request.vae, options=model_options)
        refiner_selection = self.models.select(request.refiner_checkpoint, None, options=model_options) \
            if request.refiner_checkpoint else None
        hires_selection = self.hires_selection(request, selection, model_options)
        uses = self.networks.lora_uses(extract_extra_networks_batch([request.prompt])[1])
        hires_uses = self.hires_lora_uses(request, uses)
        self.networks.refresh_embeddings()
        # 4. the core
        core = CoreCall(request, sampler, hooks, CoreOptions.from_mapping(settings), uses, unet_hooks, hires_sampler,
                        hires_uses)
        output, comments = self.run_core(core, ctx, selection, refiner_selection, hires_selection)
        # 5. infotexts, extensions' AFTER_IMAGE, saving
        from modules.networks.service import job_infotext

        texts = build_infotexts(request, output, selection, sampler, refiner_selection,
                                networks=job_infotext([*uses, *(hires_uses or ())], output.used_embeddings),
                                hires=hires_selection)
        pictures, texts = self.extensions.hooks.after_images(request, output.images, texts, output.seeds, settings)
        output = dataclasses.replace(output, images=pictures)
        outputs = OutputOptions.from_mapping(settings)
        if save if save is not None else outputs.samples_save:
            self.save_outputs(request, output, texts, outputs, self.job_names(request, settings, picked_styles,
                                                                                  started))
        return GenerationResult(
            images=output.images, seeds=output.seeds, subseeds=output.subseeds, prompts=output.prompts,
            negative_prompts=output.negative_prompts, infotexts=texts, request=request, timings=output.timings,
            interrupted=output.interrupted, comments=comments + output.notes,
        )

    def hires_sampler(self, request: GenerationRequest) -> "ResolvedSampler | None":
        """The second pass's sampler of a hires-fix request when it differs from the first's (else None)."""
        if request.mode != "txt2img" or not request.enable_hr:
            return None
        if not request.hr_sampler_name and not request.hr_scheduler:
            return None
        return self.samplers.resolve(request.hr_sampler_name or request.sampler,
                                     request.hr_scheduler or request.schedule)

    def hires_lora_uses(self, request: GenerationRequest, uses: Sequence["LoraUse"]) -> "list[LoraUse] | None":
        """The LoRAs of a hires prompt that names other LoRAs (or other multipliers) than the first prompt; None
        when the second pass keeps the first prompt's (no hires fix, no hires prompt of its own, the same LoRAs).
        As in A1111, a hires prompt without `<lora:...>` tags runs its pass without LoRAs."""
        from modules.networks.lora import same_loras

        if request.mode != "txt2img" or not request.enable_hr or not request.hr_prompt:
            return None
        hires_uses = self.networks.lora_uses(extract_extra_networks_batch([request.hr_prompt])[1])
        return None if same_loras(uses, hires_uses) else hires_uses

    def hires_selection(self, request: GenerationRequest, selection: Selection,
                        options: ModelOptions) -> Selection | None:
        """The second pass's checkpoint of a hires-fix request (`hr_checkpoint_name`), with the job's VAE choice;
        None when there is none or it is the first pass's."""
        if request.mode != "txt2img" or not request.enable_hr or not request.hr_checkpoint_name:
            return None
        chosen = self.models.select(request.hr_checkpoint_name, request.vae, options=options)
        return None if chosen.checkpoint is selection.checkpoint else chosen

    def run_core(self, core: "CoreCall", ctx: "JobContext", selection: Selection,
                 refiner_selection: Selection | None, hires_selection: Selection | None = None
                 ) -> tuple[CoreOutput, tuple[str, ...]]:
        """Step 4: the core on the selected model(s), held in the cache, with the job's LoRAs merged in meanwhile
        (into the hires checkpoint too, as A1111 applies them to whichever model runs). Returns the output and the
        comments for the user (LoRAs that could not be applied)."""
        from modules.core.generate import generate
        from modules.networks.lora import apply_loras, switched_loras

        with contextlib.ExitStack() as stack:
            components = stack.enter_context(self.models.use(selection))
            loras = stack.enter_context(apply_loras(components, core.loras))
            report = stack.enter_context(ConsoleProgress(ctx.report))
            kwargs: dict[str, Any] = {"hooks": core.hooks, "cancel": ctx.cancel, "on_progress": report,
                                      "options": core.options, "textual_inversion": self.networks.textual_inversion,
                                      "unet_hooks": core.unet_hooks, "hires_sampler": core.hires_sampler,
                                      "upscalers": self.models.upscalers}
            applied = [loras]
            second = core.loras if core.hires_loras is None else core.hires_loras
            if hires_selection is not None:
                kwargs["hires_components"] = hires = stack.enter_context(self.models.use(hires_selection))
                applied.append(stack.enter_context(apply_loras(hires, second)))
            elif core.hires_loras is not None:
                kwargs["hires_networks"] = lambda: switched_loras(components, core.loras, second)
            if refiner_selection is not None:
                kwargs["refiner"] = stack.enter_context(self.models.use(refiner_selection))
            output = generate(core.request, components, core.sampler, **kwargs)
            return output, tuple(dict.fromkeys(comment for each in applied for comment in each.comments()))

    def save_outputs(self, request: GenerationRequest, output: CoreOutput, texts: tuple[str, ...],
                     options: OutputOptions, names: JobNames) -> list[Path]:
        """Save every image with its infotext; never overwrites (see `images.save_image`)."""
        saved = []
        if options.save_images_before_highres_fix:
            for index, (image, seed, text) in enumerate(zip(output.first_pass_images, output.seeds, texts)):
                if image is not None:
                    fields = names.fields(image, text, seed, index, output.seeds)
                    saved.append(self.save_picture(request.mode, "samples", image, text, fields, options,
                                                   suffix="-before-highres-fix"))
        for index, (image, seed, text) in enumerate(zip(output.images, output.seeds, texts)):
            if index in output.incomplete and not options.save_incomplete_images:
                continue  # stopped early (A1111's `save_incomplete_images`, off by default)
            fields = names.fields(image, text, seed, index, output.seeds)
            path = self.save_picture(request.mode, "samples", image, text, fields, options)
            saved.append(path)
            log.info("Saved %s", path)
            self.extensions.hooks.image_saved(request, path, image, text)
        return saved

    def save_grid(self, request: GenerationRequest, image: Any, text: str, settings: Mapping[str, Any],
                  save: bool | None, names: JobNames) -> None:
        """Save a grid made by a script (X/Y/Z plot) when grid saving is on: `outputs/<mode>-grids/<date>`."""
        options = OutputOptions.from_mapping(settings)
        if save is False or not options.grid_save:
            return
        seed = infotext.parse(text).get("Seed") or str(request.seed)
        fields = names.fields(image, text, int(seed) if seed.lstrip("-").isdigit() else request.seed)
        path = self.save_picture(request.mode, "grids", image, text, fields, options)
        log.info("Saved grid %s", path)


def part_context(job: "JobContext", index: int, count: int) -> "JobContext":
    """The job context of one part of a script's job (`RunContext.generate(..., part=(index, count))`): progress
    is reported as part `index` of `count` equal parts; cancelling is the job's."""
    from modules.jobs.executor import JobContext

    def report(event: ProgressEvent) -> None:
        inner = max(1, event.job_count)
        job.report(dataclasses.replace(event, job_no=index * inner + event.job_no, job_count=max(1, count) * inner))

    return JobContext(job.job_id, job.cancel, report)


@dataclasses.dataclass(frozen=True)
class CoreCall:
    """What `run_core` passes to the generation core besides the models."""

    request: GenerationRequest
    sampler: "ResolvedSampler"
    hooks: Sequence[StepHook]
    options: CoreOptions
    loras: Sequence[LoraUse] = ()
    unet_hooks: Sequence[UNetHook] = ()
    hires_sampler: "ResolvedSampler | None" = None
    hires_loras: "Sequence[LoraUse] | None" = None
    """The hires prompt's LoRAs when they differ from the first prompt's (None: the same)."""


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
                    networks: Mapping[str, str] | None = None, hires: Selection | None = None) -> tuple[str, ...]:
    """One A1111 `parameters` text per image, from the request and the values the core actually used.

    `networks` holds the "Lora hashes" / "TI hashes" values (`modules.networks.service.job_infotext`); `hires` is
    the second pass's checkpoint ("Hires checkpoint", A1111's short title "name [hash]")."""
    record = selection.checkpoint
    vae = selection.vae
    extra: dict[str, Any] = {}
    options = output.plan.options
    if options.emphasis != "Original":
        extra["Emphasis"] = options.emphasis
    if options.tiling:
        extra["Tiling"] = True
    if request.mode != "txt2img" and options.initial_noise_multiplier != 1.0:
        extra["Noise multiplier"] = options.initial_noise_multiplier
    ensd = options.eta_noise_seed_delta if options.eta_noise_seed_delta and "ancestral" in sampler.sampler.flags \
        else None
    extra.update(output.plan.token_merging_infotext)
    extra.update(options.uncond_skip().infotext())
    if refiner is not None:
        extra["Refiner"] = refiner.checkpoint.title
        extra["Refiner switch at"] = request.refiner_switch_at
    extra.update(networks or {})
    plan_hires = output.plan.hires
    # A1111 records the settings each pass's sampler ran with (the second pass's last)
    sampler_params = {**output.plan.tuning.infotext, **(plan_hires.tuning.infotext if plan_hires else {})}
    labels = None if plan_hires is None else infotext.HiresLabels(
        plan_hires.sampler, plan_hires.schedule, plan_hires.upscaler,
        None if hires is None else hires.checkpoint.short_title)
    texts = []
    for seed, subseed, prompt, negative in zip(output.seeds, output.subseeds, output.prompts,
                                               output.negative_prompts):
        params = infotext.request_params(
            request, seed=seed, subseed=subseed, model_name=record.model_name, model_hash=record.shorthash,
            sampler_label=sampler.label, schedule_label=sampler.schedule_label, sampler_params=sampler_params,
            vae_name=vae.name if vae is not None else None,
            vae_hash=vae.shorthash if vae is not None else None, extra=extra,
            rng=None if output.noise_source == "GPU" else output.noise_source, ensd=ensd, version=VERSION,
            hires=labels,
        )
        texts.append(infotext.build(prompt, negative, params))
    return tuple(texts)

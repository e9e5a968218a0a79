"""The generation core: request + loaded components + resolved sampler -> images, seeds and the resolved plan.

`generate()` is a plain function with no global state: the caller passes the loaded `ComponentSet` (and a
refiner's), the resolved sampler, the job's `CoreOptions`, hooks and a cancel token. It never reads settings
files, formats infotexts or saves files; `CoreOutput.plan` carries what the infotext is built from. LoRAs are
applied by the caller around the call; textual inversion comes in as a lookup per text encoder.

Flow: 1. options, validation, plan (seeds, prompts, steps); 2. img2img/inpaint init image, mask, init latents;
3. per batch (`batch.run_batch`): conditioning, seeded noise, the denoise loop (base, then refiner), VAE decode,
paste-back (with hires fix, `hires.run_hires_batch`: the same for both passes, the upscale between them);
4. interrupt keeps the finished batches and the current one's latest estimate; skip ends one batch.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from PIL import Image

from modules.cancel import CancelToken
from modules.core import vae
from modules.core.batch import InitState, PreparedJob, run_batch
from modules.core.denoise import StepHook, UNetHook
from modules.core.hires import HiresPass, run_hires_batch
from modules.core.init_image import inpaint_conditioning, latent_repaint_mask, prepare_init_image
from modules.core.latents import noise_generator_device, noise_source_label, pil_to_tensor, vae_scale_factor
from modules.core.memory import admit
from modules.core.plan import CoreOptions, HiresPlan, JobPlan, SamplerLabels, plan_hires, plan_job, random_seed
from modules.core.seamless import circular_padding
from modules.core.vae import VaePolicy
from modules.core.validate import validate_hires, validate_hires_inputs, validate_request
from modules.devices import empty_cache
from modules.errors import OutOfMemory
from modules.models.components import ComponentSet
from modules.prompts.encode import TextualInversion
from modules.samplers.protocol import SamplingMethod
from modules.types import GenerationRequest, ProgressEvent
from modules.upscalers.registry import UpscalerRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoreOutput:
    """Images of the finished (or interrupted) job with one seed/subseed/prompt per image, and the plan used."""

    images: tuple[Image.Image, ...]
    seeds: tuple[int, ...]
    subseeds: tuple[int, ...]
    prompts: tuple[str, ...]
    negative_prompts: tuple[str, ...]
    plan: JobPlan
    interrupted: bool = False
    timings: Mapping[str, float] = field(default_factory=dict)
    used_embeddings: tuple[object, ...] = ()
    """Textual-inversion embeddings found in the prompts (the lookups' `source` objects), for "TI hashes"."""
    first_pass_images: tuple[Image.Image | None, ...] = ()
    """Hires fix with `save_images_before_highres_fix`: the picture before the second pass, one per image (None
    where the second pass did not run); empty otherwise."""
    notes: tuple[str, ...] = ()
    """Messages for the user about fallbacks the job took (VAE in tiles or in 32-bit floats, noise on the CPU)."""
    incomplete: tuple[int, ...] = ()
    """Positions in `images` of pictures whose denoising was stopped early (interrupt or skip): A1111 saves them
    only with `save_incomplete_images`."""
    noise_source: str = "CPU"
    """Where the seeded noise was drawn, as A1111's "RNG" names it: "CPU", "GPU" (its default) or "NV"."""


TextualInversionFor = Callable[[ComponentSet], Sequence[TextualInversion | None] | None]
"""One textual-inversion lookup per text encoder of a model (None: no embeddings for that model)."""


def _inpainting_unet(components: ComponentSet) -> bool:
    return components.unet.config.in_channels == 9


def _image_cond(
    components: ComponentSet, request: GenerationRequest, pixels: torch.Tensor | None, mask: Image.Image | None,
    options: CoreOptions,
) -> torch.Tensor | None:
    if not _inpainting_unet(components):
        return None
    size = (request.height, request.width)
    return inpaint_conditioning(components.vae, pixels, mask, size, options.inpainting_mask_weight,
                                components.vae_dtype)


def _prepare_init(
    request: GenerationRequest, components: ComponentSet, refiner: ComponentSet | None, options: CoreOptions,
    policy: VaePolicy,
) -> InitState:
    """Step 2: processed init image, its latents, the latent repaint mask and 9-channel conditionings."""
    if request.mode == "txt2img":
        refiner_cond = None if refiner is None else _image_cond(refiner, request, None, None, options)
        return InitState(image_cond=_image_cond(components, request, None, None, options),
                         refiner_image_cond=refiner_cond)
    init = prepare_init_image(request, options)
    pixels = pil_to_tensor([init.image])
    latents = vae.encode(components, pixels, policy)
    repaint = None
    if init.mask is not None:
        repaint = latent_repaint_mask(init.mask, latents.shape[-2], latents.shape[-1])
    refiner_cond = None if refiner is None else _image_cond(refiner, request, pixels, init.mask, options)
    return InitState(
        init=init,
        latents=latents,
        repaint=repaint,
        image_cond=_image_cond(components, request, pixels, init.mask, options),
        refiner_image_cond=refiner_cond,
    )


def _run_job(job: PreparedJob, hires: HiresPass | None) -> tuple[list[tuple[int, Image.Image]], bool]:
    """Steps 3-4: the batches in order; an interrupt stops before the next batch, a skip ends one batch."""
    images: list[tuple[int, Image.Image]] = []
    cancel = job.cancel
    for batch_no in range(job.plan.n_iter):
        cancel.clear_skip()
        if cancel.interrupted:
            break
        images.extend(run_batch(job, batch_no) if hires is None else run_hires_batch(job, hires, batch_no))
    return images, cancel.interrupted


def _hires(request: GenerationRequest, components: ComponentSet, options: CoreOptions, sampler: SamplingMethod,
           hires_sampler: SamplingMethod | None, upscalers: UpscalerRegistry | None,
           hires_components: ComponentSet | None,
           networks: Callable[[], contextlib.AbstractContextManager[object]] | None = None
           ) -> tuple[HiresPlan, HiresPass] | None:
    """The second pass of a txt2img request with `enable_hr` (None for anything else)."""
    if request.mode != "txt2img" or not request.enable_hr:
        return None
    upscaler = (upscalers or UpscalerRegistry()).find(request.hr_upscaler)
    second = hires_sampler or sampler
    labels = SamplerLabels(second.label, second.schedule_label, second.tune(options.sampler_settings(request.eta)))
    factor = vae_scale_factor(components.vae)
    validate_hires(request, factor)
    validate_hires_inputs(request, components, hires_components, upscaler.is_latent, factor)
    plan = plan_hires(request, options, upscaler.name, labels, factor)
    return plan, HiresPass(upscaler, second, hires_components, networks)


def _used_embeddings(job: PreparedJob) -> tuple[object, ...]:
    """Embeddings any of the job's prompt encoders applied (base and refiner), each once, in order of first use."""
    used: dict[int, object] = {}
    for encoder in job.encoders.values():
        used.update(encoder.used_embeddings)
    return tuple(used.values())


def _output_size(plan: JobPlan) -> str:
    width, height = (plan.width, plan.height) if plan.hires is None else plan.hires.target.upscale_to
    return f"{width}x{height}"


def generate(
    request: GenerationRequest,
    components: ComponentSet,
    sampler: SamplingMethod,
    *,
    hooks: Sequence[StepHook] = (),
    cancel: CancelToken | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    refiner: ComponentSet | None = None,
    options: CoreOptions | None = None,
    seed_resolver: Callable[[], int] = random_seed,
    textual_inversion: TextualInversionFor | None = None,
    unet_hooks: Sequence[UNetHook] = (),
    hires_sampler: SamplingMethod | None = None,
    upscalers: UpscalerRegistry | None = None,
    hires_components: ComponentSet | None = None,
    hires_networks: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
) -> CoreOutput:
    """Run one txt2img/img2img/inpaint job. Raises InvalidRequest for bad fields, OutOfMemory when the device is
    too small; an interrupt returns what was finished with `interrupted=True`.

    `hooks` run at every step after CFG (`StepContext`); `unet_hooks` wrap every UNet call (`UNetHook`).
    With `enable_hr`, `hires_sampler` runs the second pass (None: `sampler`) and `upscalers` finds
    `hr_upscaler` (None: the built-in ones); `hires_components` is the second pass's model (`hr_checkpoint_name`;
    None: `components`); `hires_networks` is entered around each second pass (the hires prompt's own LoRAs)."""
    started = time.perf_counter()
    # 1. options, validation, plan
    options = (options or CoreOptions()).with_overrides(request.overrides)
    validate_request(request, components, refiner)
    tuning = sampler.tune(options.sampler_settings(request.eta))
    hires = _hires(request, components, options, sampler, hires_sampler, upscalers, hires_components,
                   hires_networks)
    # 2. admission: the job's working memory is free now
    admit(request, components.identity, components.device, components.dtype, components.vae_dtype, now=True)
    plan = plan_job(request, options, sampler.label, sampler.schedule_label, tuning, seed_resolver,
                    None if hires is None else hires[0])
    timings: dict[str, float] = {}
    log.info("%s %dx%d, %d x %d images, %s steps %d (start %d of %d), seed %d", request.mode, plan.width,
             plan.height, plan.n_iter, plan.batch_size, plan.sampler, plan.steps.run_steps,
             plan.steps.start_index, plan.steps.schedule_steps, plan.seed)
    failure: OutOfMemory | None = None
    try:
        tiled = [model for each in (components, refiner, hires_components) if each is not None
                 for model in (each.unet, each.vae)]
        with torch.inference_mode(), circular_padding(tiled, options.tiling):
            # 2. init image (img2img/inpaint) and inpaint conditioning
            prepare_started = time.perf_counter()
            policy = VaePolicy(tiled=options.tiled_vae, auto_precision=options.auto_vae_precision)
            init_state = _prepare_init(request, components, refiner, options, policy)
            timings["prepare"] = time.perf_counter() - prepare_started
            # 3-4. batches
            job = PreparedJob(request, components, sampler, plan, init_state, refiner, tuple(hooks),
                              cancel or CancelToken(), on_progress, timings, textual_inversion,
                              tuple(unet_hooks), vae=policy)
            images, interrupted = _run_job(job, None if hires is None else hires[1])
    except torch.OutOfMemoryError as error:
        # not chained: the error's traceback holds the job's tensors; leaving this block frees them
        failure = OutOfMemory(
            f"Out of memory on {components.device} generating {plan.batch_size} image(s) of "
            f"{_output_size(plan)}: lower the size or the batch size, or free memory ({error})")
    if failure is not None:
        empty_cache(components.device)
        raise failure
    timings["total"] = time.perf_counter() - started
    kept = [index for index, _ in images]
    noise_source = noise_source_label(noise_generator_device(options.randn_source, components.device))
    notes = list(policy.notes)
    if options.randn_source == "GPU" and noise_source == "CPU":
        notes.append(f"Random number generator source GPU: no CUDA device here ({components.device}), so the noise "
                     "was drawn on the CPU (RNG: CPU).")
    return CoreOutput(
        images=tuple(image for _, image in images),
        seeds=tuple(plan.seeds[i] for i in kept),
        subseeds=tuple(plan.subseeds[i] for i in kept),
        prompts=tuple(plan.prompts[i] for i in kept),
        negative_prompts=tuple(plan.negative_prompts[i] for i in kept),
        plan=plan,
        interrupted=interrupted,
        timings=timings,
        used_embeddings=_used_embeddings(job),
        first_pass_images=tuple(job.first_pass.get(i) for i in kept) if job.first_pass else (),
        incomplete=tuple(position for position, index in enumerate(kept) if index in job.incomplete),
        notes=tuple(notes),
        noise_source=noise_source,
    )


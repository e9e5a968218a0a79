"""One batch of a job: conditioning, noise, scheduler, initial latents, the denoise loop, decode, paste-back.

The same path serves txt2img, img2img and inpaint; the modes differ only in the initial latents (pure noise, or
the init latents noised to the plan's first timestep), the inpaint blend and the 9-channel conditioning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from diffusers import SchedulerMixin
from PIL import Image

from modules.cancel import CancelToken
from modules.core import masks, vae
from modules.core.conditioning import Conditioning, ConditioningSchedule, encode_prompts, sdxl_added_cond
from modules.core.denoise import (
    InpaintBlend,
    LoopInputs,
    LoopResult,
    StepHook,
    TextInputs,
    UNetCall,
    UNetHook,
    UNetPass,
    pass_for,
    run_denoise,
)
from modules.core.init_image import InitImage
from modules.core.latents import (
    PHILOX,
    NoiseGenerator,
    NoiseSpec,
    batch_noise,
    noise_generator_device,
    seed_noise,
    tensor_to_pil,
    vae_scale_factor,
)
from modules.core.plan import JobPlan
from modules.core.preview import PREVIEW_FULL, cheap_preview
from modules.core.token_merging import token_merging
from modules.core.vae import VaePolicy
from modules.errors import InvalidRequest
from modules.models.components import ComponentSet
from modules.prompts.encode import EncodeOptions, PromptEncoder, TextualInversion
from modules.prompts.parser import ScheduleParser, shared_parser
from modules.samplers.protocol import SamplingMethod
from modules.types import GenerationRequest, InpaintFill, ProgressEvent


@dataclass(frozen=True)
class InitState:
    """Per-job img2img/inpaint inputs: `latents` (1, C, h, w), `repaint` (1, 1, h, w), 9-channel conditionings."""

    init: InitImage | None = None
    latents: torch.Tensor | None = None
    repaint: torch.Tensor | None = None
    image_cond: torch.Tensor | None = None
    refiner_image_cond: torch.Tensor | None = None


@dataclass
class PreparedJob:
    """One job, planned and ready to run batch by batch: what every batch of it shares (models, sampler, plan,
    init state, hooks) and the per-job caches (text encoders, timings)."""

    request: GenerationRequest
    components: ComponentSet
    sampler: SamplingMethod
    plan: JobPlan
    init: InitState
    refiner: ComponentSet | None
    hooks: Sequence[StepHook]
    cancel: CancelToken
    on_progress: Callable[[ProgressEvent], None] | None
    timings: dict[str, float]
    textual_inversion: Callable[[ComponentSet], Sequence[TextualInversion | None] | None] | None = None
    """Seam for textual inversion: the lookups (one per text encoder) for a model; None (or a None result): none."""
    unet_hooks: Sequence[UNetHook] = ()
    pass_index: int = 0
    """Which sampling pass of a batch this job runs (hires fix: 0 the first, 1 the second), for progress."""
    first_pass: dict[int, Image.Image] = field(default_factory=dict)
    """Hires fix with `save_images_before_highres_fix`: each image's first-pass picture, by index in the job."""
    incomplete: set[int] = field(default_factory=set)
    """Indices (in the job) of pictures whose denoising was stopped early (interrupt or skip)."""
    encoders: dict[int, PromptEncoder] = field(default_factory=dict)
    """Per-job text encoding caches, one per model (base, refiner), so each prompt is encoded once per job."""
    parser: ScheduleParser = field(default_factory=shared_parser)
    vae: VaePolicy = field(default_factory=VaePolicy)
    """How the job's VAE passes run (tiles, the NaN fallback) and the notes of the fallbacks taken."""

    def add_time(self, key: str, since: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - since


def _noise_spec(job: PreparedJob) -> NoiseSpec:
    components, request, options = job.components, job.request, job.plan.options
    factor = vae_scale_factor(components.vae)
    return NoiseSpec(
        shape=(components.unet.config.out_channels, request.height // factor, request.width // factor),
        subseed_strength=request.subseed_strength,
        seed_resize_from=(request.seed_resize_from_w, request.seed_resize_from_h),
        eta_noise_seed_delta=options.eta_noise_seed_delta,
        generator_device=noise_generator_device(options.randn_source, components.device),
    )


def _step_generators(scheduler: SchedulerMixin, generators: list[NoiseGenerator], seeds: tuple[int, ...],
                     spec: NoiseSpec) -> list[NoiseGenerator]:
    """The per-step noise streams: each image's own. With the NV source, diffusers schedulers (which draw from
    torch generators) get CPU generators seeded with each image's seed plus the ENSD instead (docs/compat.md)."""
    if spec.generator_device != PHILOX or getattr(scheduler, "accepts_philox", False):
        return generators
    return [torch.Generator("cpu").manual_seed(seed + spec.eta_noise_seed_delta) for seed in seeds]


def _run_timesteps(scheduler: SchedulerMixin, start_index: int, from_image: bool) -> torch.Tensor:
    """The timesteps that run from schedule step `start_index` on, with the scheduler set to start there.

    diffusers schedulers: the tail of `timesteps` (`order` entries per step) and their step counter moved there
    (schedulers without one, such as DDIM, step by timestep). Ours (`SigmaScheduler`, `TimestepDdimScheduler`)
    restart on the tail as A1111 slices its list for img2img (`from_image`: the job starts from init latents)."""
    begin_at = getattr(scheduler, "begin_at", None)  # scheduler capability, as diffusers' pipelines check
    if begin_at is not None:
        return begin_at(start_index, from_image)
    start = start_index * scheduler.order
    setter = getattr(scheduler, "set_begin_index", None)
    if setter is not None:
        setter(start)
    return scheduler.timesteps[start:]


def _switch_index(scheduler: SchedulerMixin, timesteps: torch.Tensor, switch_at: float) -> int:
    """Steps the base model runs before the refiner: diffusers `denoising_end` rule, which equals A1111's
    timestep-based switch ((999 - t) / 1000 >= switch_at hands over)."""
    train_steps = scheduler.config.num_train_timesteps
    cutoff = int(round(train_steps - switch_at * train_steps))
    return int((timesteps >= cutoff).sum())


def _call(components: ComponentSet, rows: torch.Tensor, states: torch.Tensor,
          added: dict[str, torch.Tensor] | None, uncond_rows: int = 0) -> UNetCall:
    dtype, device = components.unet.dtype, components.device
    if added is not None:
        added = {key: value.to(device=device, dtype=dtype) for key, value in added.items()}
    return UNetCall(rows, states.to(device=device, dtype=dtype), added, uncond_rows)


def _text_inputs(job: PreparedJob, components: ComponentSet, conditioning: Conditioning) -> TextInputs:
    """The UNet calls of a step: one for [uncond, cond] (or cond alone without guidance), two when prompt and
    negative prompt have different lengths; AND parts add one cond row per part."""
    cond, uncond, parts = conditioning.cond, conditioning.uncond, conditioning.parts
    images = torch.arange(uncond.shape[0], device=components.device)
    rows = images if parts is None else torch.tensor(
        [image for image, image_parts in enumerate(parts) for _ in image_parts], device=components.device)
    guided = job.request.cfg_scale != 1.0 or parts is not None or job.sampler.needs_uncond
    cond_added = uncond_added = None
    if components.identity.is_sdxl:
        assert conditioning.pooled is not None and conditioning.uncond_pooled is not None
        plan, identity = job.plan, components.identity
        cond_added = sdxl_added_cond(identity, conditioning.pooled, plan.width, plan.height, plan.options, False)
        uncond_added = sdxl_added_cond(identity, conditioning.uncond_pooled, plan.width, plan.height, plan.options,
                                       True)
    calls: tuple[UNetCall, ...]
    if not guided:
        calls = (_call(components, rows, cond, cond_added),)
    elif cond.shape[1] == uncond.shape[1]:
        added = None if cond_added is None or uncond_added is None else {
            key: torch.cat([uncond_added[key], cond_added[key]]) for key in cond_added}
        calls = (_call(components, torch.cat([images, rows]), torch.cat([uncond, cond]), added, len(images)),)
    else:
        calls = (_call(components, images, uncond, uncond_added, len(images)),
                 _call(components, rows, cond, cond_added))
    return TextInputs(conditioning, calls, guided)


class _StepText:
    """`UNetPass.text`: the text inputs of a step, rebuilt only when the schedule selects other embeddings."""

    def __init__(self, schedule: ConditioningSchedule, build: Callable[[Conditioning], TextInputs]) -> None:
        self._schedule, self._build = schedule, build
        self._key: tuple[object, ...] = ()
        self._inputs: TextInputs | None = None

    def __call__(self, step: int) -> TextInputs:
        key = self._schedule.selection(step)
        if self._inputs is None or key != self._key:
            self._key, self._inputs = key, self._build(self._schedule.at_step(step))
        return self._inputs


def _unet_pass(job: PreparedJob, components: ComponentSet, schedule: ConditioningSchedule,
               image_cond: torch.Tensor | None) -> UNetPass:
    if image_cond is not None:
        batch = len(schedule.negatives)
        image_cond = image_cond.to(device=components.device, dtype=torch.float32).expand(batch, -1, -1, -1)
    text = _StepText(schedule, lambda conditioning: _text_inputs(job, components, conditioning))
    return UNetPass(components.unet, text, image_cond)


def _encoder(job: PreparedJob, components: ComponentSet) -> PromptEncoder:
    encoder = job.encoders.get(id(components))
    if encoder is None:
        options = job.plan.options
        settings = EncodeOptions(job.request.clip_skip, options.emphasis, options.comma_padding_backtrack,
                                 options.sdxl_clip_l_skip)
        lookups = None if job.textual_inversion is None else job.textual_inversion(components)
        encoder = job.encoders[id(components)] = PromptEncoder(components, settings, lookups)
    return encoder


def _encode(job: PreparedJob, components: ComponentSet, index: slice, steps: int) -> ConditioningSchedule:
    """Step 1: the batch's conditioning schedule over `steps` model calls (cached per job by prompt)."""
    started = time.perf_counter()
    schedule = encode_prompts(
        _encoder(job, components),
        job.plan.prompts[index],
        job.plan.negative_prompts[index],
        steps,
        pad_cond_uncond=job.plan.options.pad_cond_uncond,
        parser=job.parser,
    )
    job.add_time("encode_prompts", started)
    return schedule


def _passes(
    job: PreparedJob, index: slice, scheduler: SchedulerMixin, timesteps: torch.Tensor
) -> list[tuple[int, UNetPass]]:
    """Base pass from step 0, and the refiner's from the switch step when a refiner runs in this job.

    Prompt schedules count model calls over the steps the user asked for (A1111 `total_steps`), also for img2img,
    where fewer run: `scheduler.order` is the number of model calls per step."""
    steps = job.request.steps * scheduler.order
    schedule = _encode(job, job.components, index, steps)
    passes = [(0, _unet_pass(job, job.components, schedule, job.init.image_cond))]
    refiner, switch_at = job.refiner, job.request.refiner_switch_at
    if refiner is not None and switch_at < 1.0:
        if getattr(scheduler, "extends_timesteps", False):
            raise InvalidRequest(f"The refiner cannot take over from '{job.sampler.label}': it decides its steps "
                                 "while sampling, so there is no switch step; choose another sampler.")
        refiner_pass = _unet_pass(job, refiner, _encode(job, refiner, index, steps), job.init.refiner_image_cond)
        passes.append((_switch_index(scheduler, timesteps, switch_at), refiner_pass))
    return passes


def _init_latents(job: PreparedJob, seeds: tuple[int, ...], shape: tuple[int, int, int]) -> torch.Tensor:
    """Init latents of the batch; inpaint "latent noise" / "latent nothing" replace the masked area first."""
    init, repaint = job.init.latents, job.init.repaint
    assert init is not None
    latents = init.expand(len(seeds), -1, -1, -1)
    if repaint is None:
        return latents
    repaint = repaint.to(latents.device)
    fill = job.request.inpainting_fill
    if fill is InpaintFill.LATENT_NOISE:
        device = noise_generator_device(job.plan.options.randn_source, job.components.device)
        return latents * (1 - repaint) + seed_noise(seeds, shape, device).to(latents.device) * repaint
    if fill is InpaintFill.LATENT_NOTHING:
        return latents * (1 - repaint)
    return latents


def _progress(job: PreparedJob, batch_no: int) -> Callable[[int, int, torch.Tensor], None] | None:
    callback, options = job.on_progress, job.plan.options
    if callback is None:
        return None
    every = options.show_progress_every_n_steps if options.live_previews_enable else 0
    text = f"Batch {batch_no + 1} out of {job.plan.n_iter}" if job.plan.n_iter > 1 else ""
    passes = job.plan.pass_count  # A1111 counts each pass of a batch as one job
    job_no, job_count = batch_no * passes + job.pass_index, job.plan.n_iter * passes

    def on_step(step: int, total: int, denoised: torch.Tensor) -> None:
        preview = None
        if every > 0 and step % every == 0:
            preview = _preview(job, denoised[0])
        callback(ProgressEvent(step, total, job_no, job_count, preview, text))

    return on_step


def _preview(job: PreparedJob, latent: torch.Tensor) -> Image.Image:
    """A live preview of the current estimate of the first picture, by A1111's `show_progress_type`: "Full" decodes
    it with the VAE (the picture as it would be now; costs a VAE decode), else "Approx cheap" (no VAE)."""
    if job.plan.options.show_progress_type == PREVIEW_FULL:
        return tensor_to_pil(vae.decode(job.components, latent[None], job.vae))[0]
    return cheap_preview(latent, job.components.identity.is_sdxl)


def _loop_inputs(job: PreparedJob, batch_no: int, index: slice) -> LoopInputs:
    """Steps 1-5 of a batch: conditioning, noise, scheduler and timesteps, initial latents, UNet passes."""
    components, plan = job.components, job.plan
    seeds, subseeds = plan.seeds[index], plan.subseeds[index]
    device = components.device
    # 2. seeded noise, one generator per image
    spec = _noise_spec(job)
    noise, generators = batch_noise(seeds, subseeds, spec)
    noise = noise.to(device)
    # 3. scheduler: the plan's tail of the schedule
    scheduler = job.sampler.build(components.scheduler_config, plan.steps.schedule_steps, device, noise_seeds=seeds,
                                  sdxl=components.identity.is_sdxl, tuning=plan.tuning)
    timesteps = _run_timesteps(scheduler, plan.steps.start_index, job.init.latents is not None)
    # 4. initial latents: pure noise (txt2img) or init latents noised to the first timestep
    blend = None
    if job.init.latents is None:
        latents = noise * scheduler.init_noise_sigma
    else:
        noise = noise * plan.options.initial_noise_multiplier
        init = _init_latents(job, seeds, spec.shape).to(device)
        latents = scheduler.add_noise(init, noise, timesteps[:1].repeat(len(seeds)))
        if job.init.repaint is not None:
            blend = InpaintBlend(init, noise, job.init.repaint.to(device))
    latents = latents.float()
    step_generators = _step_generators(scheduler, generators, seeds, spec)
    start = getattr(scheduler, "start", None)  # our sigma-list samplers begin their run (sigma churn adds noise)
    if start is not None:
        latents = start(latents, step_generators)
    # 1, 5. text conditioning and the UNet passes (base, refiner)
    passes = _passes(job, index, scheduler, timesteps)
    return LoopInputs(
        scheduler=scheduler,
        timesteps=timesteps,
        latents=latents,
        cfg_scale=job.request.cfg_scale,
        passes=passes,
        step_kwargs=job.sampler.step_kwargs(plan.tuning.eta, step_generators),
        blend=blend,
        hooks=job.hooks,
        unet_hooks=job.unet_hooks,
        should_stop=job.cancel.should_stop_batch,
        on_step=_progress(job, batch_no),
        uncond_skip=plan.options.uncond_skip(job.sampler.on_timesteps),
    )


def _final_latents(loop: LoopInputs, result: LoopResult) -> torch.Tensor:
    """Latents to decode: the finished latents, or after a stop the latest clean estimate (A1111 `last_latent`)
    with the unmasked area put back on the init latents."""
    if not result.stopped:
        return result.latents
    latents = result.denoised
    if loop.blend is not None and pass_for(loop.passes, result.steps_done - 1).image_cond is None:
        latents = (1 - loop.blend.repaint) * loop.blend.init_latents + loop.blend.repaint * latents
    return latents


def decode_batch(job: PreparedJob, latents: torch.Tensor, refined: bool) -> list[Image.Image]:
    """Step 7: VAE decode (the refiner's VAE once it has run, as A1111 decodes with the model it ends on) and
    the paste-back of the original over the unmasked area."""
    components = job.refiner if refined and job.refiner is not None else job.components
    started = time.perf_counter()
    images = tensor_to_pil(vae.decode(components, latents, job.vae))
    job.add_time("decode", started)
    init = job.init.init
    if init is not None and init.overlay is not None:
        images = [masks.paste_back(image, init.overlay, init.paste_to) for image in images]
    return images


def _unchanged(job: PreparedJob) -> list[Image.Image]:
    """Denoising strength 0 plans no step: the processed init image is the result (pasted back for inpaint)."""
    init = job.init.init
    assert init is not None
    images = [init.image.copy() for _ in range(job.plan.batch_size)]
    if init.overlay is not None:
        images = [masks.paste_back(image, init.overlay, init.paste_to) for image in images]
    return images


@dataclass(frozen=True)
class SampledBatch:
    """The latents one pass left (finished, or the latest estimate after a stop) and whether the refiner ran."""

    latents: torch.Tensor
    stopped: bool
    refined: bool


def sample_batch(job: PreparedJob, batch_no: int) -> SampledBatch | None:
    """Steps 1-6 of batch `batch_no`: its latents, or None when it was stopped before step 1."""
    loop = _loop_inputs(job, batch_no, job.plan.batch_slice(batch_no))
    # 6. denoise, with token merging on the pass's UNets (base and refiner) while it runs
    started = time.perf_counter()
    with token_merging([unet_pass.unet for _, unet_pass in loop.passes], job.plan.token_merging_ratio):
        result = run_denoise(loop)
    job.add_time("denoise", started)
    if result.steps_done == 0:
        return None
    refined = len(loop.passes) > 1 and result.steps_done > loop.passes[-1][0]
    return SampledBatch(_final_latents(loop, result), result.stopped, refined)


def mark_incomplete(job: PreparedJob, batch_no: int) -> None:
    """Record that batch `batch_no`'s pictures were stopped before their last step."""
    index = job.plan.batch_slice(batch_no)
    job.incomplete.update(range(index.start, index.stop))


def indexed(job: PreparedJob, batch_no: int, images: list[Image.Image]) -> list[tuple[int, Image.Image]]:
    """(image index in the job, image) pairs of batch `batch_no`."""
    index = job.plan.batch_slice(batch_no)
    return list(zip(range(index.start, index.stop), images, strict=True))


def run_batch(job: PreparedJob, batch_no: int) -> list[tuple[int, Image.Image]]:
    """Generate batch `batch_no`; returns (image index in the job, image) pairs, empty if stopped before step 1."""
    if job.plan.steps.is_noop:
        return indexed(job, batch_no, _unchanged(job))
    sampled = sample_batch(job, batch_no)
    if sampled is None:
        return []
    if sampled.stopped:
        mark_incomplete(job, batch_no)
    return indexed(job, batch_no, decode_batch(job, sampled.latents, sampled.refined))

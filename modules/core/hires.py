"""Hires. fix: a txt2img batch, upscaled, then denoised again as img2img at the target size (A1111 semantics).

One batch runs two passes of the same batch machinery (`batch.sample_batch`): 1. the first pass at the request's
size, without the refiner (it joins in the second pass, A1111's default); 2. the upscale: a latent mode resizes the
first pass's latents, an image upscaler decodes them, upscales with Pillow and VAE-encodes; then the crop of
"resize to" with both sides set; 3. the second pass: img2img over the job's seeds (noise drawn at the target size),
A1111's step rule for `hr_second_pass_steps` and the denoising strength, the hires sampler and prompts; 4. decode.
A stop during the first pass, the upscale, or before the second pass's first step returns the first pass's (smaller)
images. With `hr_checkpoint_name` the second pass (its prompts' encoding, 9-channel conditioning, encode and decode)
runs on that checkpoint's components, as A1111 switches models between the passes.
With `save_images_before_highres_fix` the first pass's pictures are kept in `PreparedJob.first_pass`.
With `firstpass_image` (A1111's "Upscale" action on a finished picture) that picture stands in for step 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable

import torch
from PIL import Image

from modules.core import vae
from modules.core.batch import InitState, PreparedJob, decode_batch, indexed, mark_incomplete, sample_batch
from modules.core.init_image import inpaint_conditioning
from modules.core.latents import pil_to_tensor, tensor_to_pil, vae_scale_factor
from modules.core.plan import HiresPlan, JobPlan
from modules.errors import Interrupted
from modules.models.components import ComponentSet
from modules.prompts.encode import PromptEncoder
from modules.samplers.protocol import SamplingMethod
from modules.types import ProgressEvent
from modules.upscalers.registry import AnyUpscaler, UpscaleContext, Upscaler


@dataclasses.dataclass(frozen=True)
class HiresPass:
    """What the second pass needs besides the job: the resolved upscaler, the second pass's sampler and its model
    (`hr_checkpoint_name`; None: the first pass's)."""

    upscaler: AnyUpscaler
    sampler: SamplingMethod
    components: ComponentSet | None = None
    networks: Callable[[], contextlib.AbstractContextManager[object]] | None = None
    """Entered around each batch's second pass (its prompt encoding and sampling): the hires prompt's own LoRAs in
    place of the first prompt's (None: the same LoRAs)."""
    encoders: dict[int, PromptEncoder] = dataclasses.field(default_factory=dict)
    """The second pass's own prompt encoders when `networks` switches LoRAs: an encoding cached under the first
    pass's LoRAs must not serve the second pass."""


def _crop(latents: torch.Tensor, truncate: tuple[int, int]) -> torch.Tensor:
    """A1111's crop of the second pass's latents: `truncate` columns/rows, the odd one at the far side."""
    tx, ty = truncate
    return latents[:, :, ty // 2:latents.shape[2] - (ty + 1) // 2, tx // 2:latents.shape[3] - (tx + 1) // 2]


def _inpaint_cond(components: ComponentSet, pixels: torch.Tensor | None, size: tuple[int, int], count: int,
                  weight: float) -> torch.Tensor | None:
    """9-channel models: the second pass's conditioning (A1111: txt2img's for latent modes, the upscaled
    image's with a full mask for image upscalers); None for other models."""
    if components.unet.config.in_channels != 9:
        return None
    if pixels is None:
        return inpaint_conditioning(components.vae, None, None, size, weight, components.vae_dtype)
    return torch.cat([inpaint_conditioning(components.vae, pixels[i:i + 1], None, size, weight,
                                           components.vae_dtype) for i in range(count)])


def _tile_progress(job: PreparedJob, batch_no: int) -> Callable[[int, int], None] | None:
    """Progress of an upscaler model, tile by tile, reported as the start of the batch's second pass."""
    callback = job.on_progress
    if callback is None:
        return None
    passes = job.plan.pass_count
    job_no, job_count = batch_no * passes + 1, job.plan.n_iter * passes

    def on_tile(done: int, total: int) -> None:
        callback(ProgressEvent(done, total, job_no, job_count, None, f"Upscaling: tile {done} of {total}"))
    return on_tile


@dataclasses.dataclass
class FirstPass:
    """What the upscale starts from: the first pass's latents (decoded when an image upscaler needs pictures) or a
    given picture per image (`firstpass_image`; VAE-encoded when a latent upscaler needs latents). `job` is the
    first pass's job, whose VAE decodes and encodes."""

    job: PreparedJob
    latents: torch.Tensor | None = None
    pictures: list[Image.Image] | None = None

    def as_latents(self) -> torch.Tensor:
        if self.latents is None:
            assert self.pictures is not None
            started = time.perf_counter()
            self.latents = vae.encode(self.job.components, pil_to_tensor(self.pictures), self.job.vae)
            self.job.add_time("encode", started)
        return self.latents

    def as_pictures(self) -> list[Image.Image]:
        if self.pictures is None:
            assert self.latents is not None
            self.pictures = decode_batch(self.job, self.latents, False)
        return self.pictures


def _upscaled(job: PreparedJob, hires: HiresPlan, upscaler: AnyUpscaler, first: FirstPass, batch_no: int,
              model: ComponentSet) -> tuple[torch.Tensor, list[Image.Image] | None]:
    """Step 2: (the second pass's init latents before the crop, the upscaled pictures or None). Pictures are decoded
    with the first pass's VAE and encoded with the second pass's `model`'s."""
    width, height = hires.target.upscale_to
    if isinstance(upscaler, Upscaler) and upscaler.is_latent:
        factor = vae_scale_factor(model.vae)
        return upscaler.upscale_latents(first.as_latents(), height // factor, width // factor), None
    options = job.plan.options
    context = UpscaleContext(options.ESRGAN_tile, options.ESRGAN_tile_overlap, job.cancel.should_stop_batch,
                             _tile_progress(job, batch_no))
    decoded = first.as_pictures()
    started = time.perf_counter()
    images = [upscaler.upscale_image(image, width, height, context) for image in decoded]
    job.add_time("upscale", started)
    started = time.perf_counter()
    encoded = vae.encode(model, pil_to_tensor(images), job.vae)
    job.add_time("encode", started)
    return encoded, images


def _crop_image(image: Image.Image, truncate: tuple[int, int], factor: int) -> Image.Image:
    """The crop of `_crop` in pixels."""
    tx, ty = truncate
    return image.crop((tx // 2 * factor, ty // 2 * factor, image.width - (tx + 1) // 2 * factor,
                       image.height - (ty + 1) // 2 * factor))


def _init_state(job: PreparedJob, model: ComponentSet, latents: torch.Tensor, pixels: torch.Tensor | None,
                size: tuple[int, int], truncate: tuple[int, int]) -> InitState:
    """The second pass's init latents (cropped) and the 9-channel conditionings (made before the crop) of its
    `model` and the refiner."""
    weight, count = job.plan.options.inpainting_mask_weight, len(latents)
    conds = [None if each is None else _inpaint_cond(each, pixels, size, count, weight)
             for each in (model, job.refiner)]
    base, refiner = (None if cond is None else _crop(cond, truncate) for cond in conds)
    return InitState(latents=_crop(latents, truncate), image_cond=base, refiner_image_cond=refiner)


def second_pass_plan(plan: JobPlan) -> JobPlan:
    """The job plan of the second pass: hires steps, sampler, prompts, token merging; size = the upscale target."""
    hires = plan.hires
    assert hires is not None
    width, height = hires.target.upscale_to
    return dataclasses.replace(plan, prompts=hires.prompts, negative_prompts=hires.negative_prompts,
                               steps=hires.steps, sampler=hires.sampler, schedule=hires.schedule, tuning=hires.tuning,
                               width=width, height=height, token_merging_ratio=hires.token_merging_ratio)


def _second_pass_job(job: PreparedJob, second: HiresPass, first: FirstPass, batch_no: int
                     ) -> tuple[PreparedJob, list[Image.Image] | None]:
    """The job that runs step 3: img2img from the first pass upscaled and cropped; and the upscaled, cropped
    pictures of an image upscaler."""
    hires = job.plan.hires
    assert hires is not None
    model = second.components or job.components
    upscaled, images = _upscaled(job, hires, second.upscaler, first, batch_no, model)
    truncate, factor = hires.target.truncate, vae_scale_factor(model.vae)
    pixels = None if images is None else pil_to_tensor(images)
    init = _init_state(job, model, upscaled, pixels, (upscaled.shape[2] * factor, upscaled.shape[3] * factor),
                       truncate)
    assert init.latents is not None
    height, width = init.latents.shape[2] * factor, init.latents.shape[3] * factor
    request = job.request.with_changes(width=width, height=height, steps=hires.hr_steps)
    hr_job = dataclasses.replace(job, request=request, plan=second_pass_plan(job.plan), sampler=second.sampler,
                                 init=init, pass_index=job.plan.pass_count - 1, components=model,
                                 encoders=second.encoders if second.networks is not None else job.encoders)
    return hr_job, None if images is None else [_crop_image(image, truncate, factor) for image in images]


def _first_pass(job: PreparedJob, batch_no: int) -> tuple[FirstPass | None, bool]:
    """Step 1: (the first pass, whether it was stopped); (None, True) when stopped before its first step. A given
    `firstpass_image` stands in for it, one copy per image of the batch."""
    first_job = dataclasses.replace(job, refiner=None)
    given = job.request.firstpass_image
    if given is not None:
        return FirstPass(first_job, pictures=[given.convert("RGB")] * job.plan.batch_size), False
    sampled = sample_batch(first_job, batch_no)
    if sampled is None:
        return None, True
    return FirstPass(first_job, latents=sampled.latents), sampled.stopped


def run_hires_batch(job: PreparedJob, second: HiresPass, batch_no: int) -> list[tuple[int, Image.Image]]:
    """Both passes of batch `batch_no`; (image index in the job, image) pairs, empty if stopped before step 1."""
    first, stopped = _first_pass(job, batch_no)
    if first is None:
        return []
    if stopped:
        mark_incomplete(job, batch_no)
        return indexed(job, batch_no, first.as_pictures())
    if job.plan.options.save_images_before_highres_fix and first.latents is not None:
        job.first_pass.update(indexed(job, batch_no, first.as_pictures()))
    with second.networks() if second.networks is not None else contextlib.nullcontext():
        return indexed(job, batch_no, _second_pass(job, second, first, batch_no))


def _second_pass(job: PreparedJob, second: HiresPass, first: FirstPass, batch_no: int) -> list[Image.Image]:
    """Steps 2-4 of one batch: upscale, sample, decode; the first pass's pictures when stopped on the way."""
    try:
        hr_job, upscaled = _second_pass_job(job, second, first, batch_no)
    except Interrupted:  # stopped while an upscaler model ran: the first pass's pictures
        mark_incomplete(job, batch_no)
        return first.as_pictures()
    if hr_job.plan.steps.is_noop:  # denoising strength 0: the upscaled picture itself
        return upscaled or tensor_to_pil(_decode_init(hr_job))
    sampled = sample_batch(hr_job, batch_no)
    if sampled is None or sampled.stopped:
        mark_incomplete(job, batch_no)
    if sampled is None:
        return first.as_pictures()
    return decode_batch(hr_job, sampled.latents, sampled.refined)


def _decode_init(job: PreparedJob) -> torch.Tensor:
    assert job.init.latents is not None
    return vae.decode(job.components, job.init.latents, job.vae)

"""Request validation: every bad field becomes one `InvalidRequest` whose message names the field.

Limits follow AUTOMATIC1111's UI where it has one (sizes in multiples of 8, CFG scale from 1 in the UI but any
non-negative value through the API) and add explicit caps where A1111 has none (side length, step count), so a
typo cannot ask for a 100,000-pixel image.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from modules.core.plan import MAX_SEED, hires_target
from modules.errors import InvalidRequest
from modules.types import GenerationRequest

if TYPE_CHECKING:
    from modules.models.components import ComponentSet

MIN_SIDE = 64
MAX_SIDE = 4096
MAX_STEPS = 1000
MAX_BATCH_SIZE = 64
"""Images per batch (A1111's UI stops at 8; its API has no cap)."""
MAX_BATCH_COUNT = 1000
"""Batches per job (A1111's UI stops at 100)."""


def validate_request(request: GenerationRequest, components: ComponentSet, refiner: ComponentSet | None) -> None:
    """Raise InvalidRequest for the first field that is out of range or inconsistent with the mode."""
    _check_numbers(request)
    _check_size("width", request.width)
    _check_size("height", request.height)
    if request.mode not in ("txt2img", "img2img", "inpaint"):
        raise InvalidRequest(f"mode must be txt2img, img2img or inpaint, not {request.mode!r}")
    if request.mode != "txt2img":
        _check_init_inputs(request)
    if refiner is not None:
        _check_refiner(request, components, refiner)


def check_counts(request: GenerationRequest) -> None:
    """Batch size and batch count within the caps (also checked before a job is queued)."""
    if not 1 <= request.batch_size <= MAX_BATCH_SIZE:
        raise InvalidRequest(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {request.batch_size}")
    if not 1 <= request.n_iter <= MAX_BATCH_COUNT:
        raise InvalidRequest(f"n_iter (batch count) must be between 1 and {MAX_BATCH_COUNT}, got {request.n_iter}")


def _check_numbers(request: GenerationRequest) -> None:
    if not 1 <= request.steps <= MAX_STEPS:
        raise InvalidRequest(f"steps must be between 1 and {MAX_STEPS}, got {request.steps}")
    check_counts(request)
    if not math.isfinite(request.cfg_scale) or request.cfg_scale < 0:
        raise InvalidRequest(f"cfg_scale must be a non-negative number, got {request.cfg_scale}")
    _check_seeds(request)
    if request.clip_skip < 1:
        raise InvalidRequest(f"clip_skip must be at least 1, got {request.clip_skip}")
    if request.eta is not None and not (math.isfinite(request.eta) and request.eta >= 0):
        raise InvalidRequest(f"eta must be a non-negative number, got {request.eta}")


def _check_seeds(request: GenerationRequest) -> None:
    if not 0.0 <= request.subseed_strength <= 1.0:
        raise InvalidRequest(f"subseed_strength must be between 0 and 1, got {request.subseed_strength}")
    for name, seed in (("seed", request.seed), ("subseed", request.subseed)):
        if not -1 <= seed <= MAX_SEED - request.batch_size * request.n_iter:
            raise InvalidRequest(f"{name} must be -1 (random) or a non-negative integer below 2**63, got {seed}")
    for name, value in (("seed_resize_from_w", request.seed_resize_from_w),
                        ("seed_resize_from_h", request.seed_resize_from_h)):
        if value > MAX_SIDE:
            raise InvalidRequest(f"{name} must be at most {MAX_SIDE} (0 or -1 disables it), got {value}")


def _check_size(name: str, value: int) -> None:
    if value % 8 != 0 or not MIN_SIDE <= value <= MAX_SIDE:
        raise InvalidRequest(f"{name} must be a multiple of 8 between {MIN_SIDE} and {MAX_SIDE}, got {value}")


def _check_init_inputs(request: GenerationRequest) -> None:
    if request.init_image is None:
        raise InvalidRequest(f"init_image is required for {request.mode}")
    if not 0.0 <= request.denoising_strength <= 1.0:
        raise InvalidRequest(f"denoising_strength must be between 0 and 1, got {request.denoising_strength}")
    if request.mode != "inpaint":
        return
    if request.mask is None:
        raise InvalidRequest("mask is required for inpaint (white = repaint)")
    if request.mask.size != request.init_image.size:
        raise InvalidRequest(
            f"mask size {request.mask.width}x{request.mask.height} must equal the init_image size "
            f"{request.init_image.width}x{request.init_image.height}"
        )
    if request.mask_blur < 0:
        raise InvalidRequest(f"mask_blur must be 0 or more, got {request.mask_blur}")
    if request.inpaint_full_res_padding < 0:
        raise InvalidRequest(f"inpaint_full_res_padding must be 0 or more, got {request.inpaint_full_res_padding}")


def _check_refiner(request: GenerationRequest, components: ComponentSet, refiner: ComponentSet) -> None:
    if not 0.0 <= request.refiner_switch_at <= 1.0:
        raise InvalidRequest(f"refiner_switch_at must be between 0 and 1, got {request.refiner_switch_at}")
    if refiner.identity.is_sdxl != components.identity.is_sdxl:
        raise InvalidRequest(
            f"the refiner ({refiner.identity.describe()}) works in a different latent space than the model "
            f"({components.identity.describe()}); choose a refiner of the same family"
        )


def validate_hires_inputs(request: GenerationRequest, components: ComponentSet, hires: ComponentSet | None,
                          latent_upscale: bool, factor: int) -> None:
    """What a latent upscaler needs of the second pass's inputs: a `firstpass_image` of whole latents, and a
    second-pass checkpoint (`hires`) in the first pass's latent space, since the latents go across unchanged; an
    image upscaler decodes and re-encodes, so any size and family work."""
    given = request.firstpass_image
    if not latent_upscale:
        return
    if given is not None and (given.width % factor or given.height % factor):
        raise InvalidRequest(f"the first-pass image is {given.width}x{given.height}; a latent upscaler needs sides "
                             f"that are multiples of {factor}: choose an image upscaler (e.g. Lanczos) or resize it")
    if hires is not None and hires.identity.is_sdxl != components.identity.is_sdxl:
        raise InvalidRequest(
            f"the hires checkpoint ({hires.identity.describe()}) works in a different latent space than the model "
            f"({components.identity.describe()}), so the latent upscaler '{request.hr_upscaler}' cannot hand it "
            "the first pass's latents: choose an image upscaler (e.g. Lanczos) or a checkpoint of the same family")


def validate_hires(request: GenerationRequest, factor: int) -> None:
    """Raise InvalidRequest for hires-fix fields out of range or a target size outside the limits."""
    if not math.isfinite(request.hr_scale) or request.hr_scale <= 0:
        raise InvalidRequest(f"hr_scale must be a positive number, got {request.hr_scale}")
    for name, value in (("hr_resize_x", request.hr_resize_x), ("hr_resize_y", request.hr_resize_y)):
        if not 0 <= value <= MAX_SIDE:
            raise InvalidRequest(f"{name} must be 0 (from hr_scale) or up to {MAX_SIDE}, got {value}")
    if not 0 <= request.hr_second_pass_steps <= MAX_STEPS:
        raise InvalidRequest(f"hr_second_pass_steps must be between 0 (the first pass's) and {MAX_STEPS}, got "
                             f"{request.hr_second_pass_steps}")
    if not 0.0 <= request.denoising_strength <= 1.0:
        raise InvalidRequest(f"denoising_strength must be between 0 and 1, got {request.denoising_strength}")
    target = hires_target(request.width, request.height, request.hr_scale, request.hr_resize_x,
                          request.hr_resize_y, factor)
    width, height = target.upscale_to
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InvalidRequest(f"the hires fix target {width}x{height} must be between {MIN_SIDE} and {MAX_SIDE} "
                             f"pixels on each side: change hr_scale or hr_resize_x/hr_resize_y")

"""img2img and inpaint: A1111 step counting, equality with diffusers' pipelines, paste-back of unmasked pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline

from modules.core.generate import generate
from modules.core.init_image import inpaint_conditioning
from modules.core.latents import encode_images, pil_to_tensor
from modules.core.masks import blur_mask
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest, InpaintFill
from tests.core.helpers import (
    SD1,
    SD1_INPAINT,
    LatentCapture,
    block_mask,
    generators,
    reference_scheduler,
    sample_image,
    sd_pipeline,
    tiny,
)

REGISTRY = default_registry()
EULER = REGISTRY.resolve("Euler")
PROMPT, NEGATIVE = "a red cube", "blurry"


def _request(mode: str, **fields) -> GenerationRequest:
    values = {"mode": mode, "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": 3, "steps": 5,
              "denoising_strength": 0.6, "init_image": sample_image(), "width": 64, "height": 64, **fields}
    return GenerationRequest(**values)


def _count_steps(request: GenerationRequest) -> list[int]:
    timesteps: list[int] = []
    generate(request, tiny(SD1), EULER, hooks=[lambda ctx: timesteps.append(int(ctx.timestep))])
    return timesteps


def test_a1111_step_rule_runs_16_of_20_steps_at_075():
    request = _request("img2img", steps=20, denoising_strength=0.75, cfg_scale=1.0)
    timesteps = _count_steps(request)
    scheduler = EULER.build(tiny(SD1).scheduler_config, 20, "cpu")
    assert timesteps == [int(t) for t in scheduler.timesteps[4:]]  # t_enc = 15: the last 16 steps


def test_img2img_fix_steps_runs_the_requested_steps_of_a_longer_schedule():
    request = _request("img2img", steps=4, denoising_strength=0.5, cfg_scale=1.0,
                       overrides={"img2img_fix_steps": True})
    scheduler = EULER.build(tiny(SD1).scheduler_config, 8, "cpu")
    assert _count_steps(request) == [int(t) for t in scheduler.timesteps[4:]]


def test_img2img_equals_diffusers_running_the_same_tail(monkeypatch):
    """A1111 at 5 steps / 0.6 runs int(0.6 * 5) + 1 = 4 steps; diffusers runs int(5 * s) steps, so s = 0.8."""
    capture = LatentCapture(monkeypatch)
    generate(_request("img2img"), tiny(SD1), EULER)
    components = tiny(SD1)
    init_latents = encode_images(components.vae, pil_to_tensor([sample_image()]), torch.float32)
    pipeline = sd_pipeline(components, reference_scheduler(EULER, components), StableDiffusionImg2ImgPipeline)
    reference = pipeline(PROMPT, negative_prompt=NEGATIVE, image=init_latents, strength=0.8, num_inference_steps=5,
                         guidance_scale=7.0, generator=generators([3]), output_type="latent").images
    assert torch.equal(capture.last, reference)


@pytest.mark.slow
@pytest.mark.parametrize("identity", [SD1_INPAINT, SD1], ids=["9-channel", "4-channel"])
def test_inpaint_equals_diffusers_before_paste_back(monkeypatch, identity):
    capture = LatentCapture(monkeypatch)
    mask = block_mask()
    request = _request("inpaint", mask=mask, mask_blur=0, inpainting_fill=InpaintFill.ORIGINAL)
    generate(request, tiny(identity), EULER)
    components = tiny(identity)
    pixels = pil_to_tensor([sample_image()])
    with torch.inference_mode():
        init_latents = encode_images(components.vae, pixels, torch.float32)
        masked_latents = inpaint_conditioning(components.vae, pixels, mask, (64, 64), 1.0, torch.float32)[:, 1:]
    pipeline = sd_pipeline(components, reference_scheduler(EULER, components), StableDiffusionInpaintPipeline)
    reference = pipeline(PROMPT, negative_prompt=NEGATIVE, image=init_latents, mask_image=mask,
                         masked_image_latents=masked_latents, strength=0.8, num_inference_steps=5,
                         guidance_scale=7.0, generator=generators([3]), output_type="latent").images
    assert torch.equal(capture.last, reference)


@pytest.mark.slow
@pytest.mark.parametrize("fill", list(InpaintFill))
def test_unmasked_pixels_equal_the_original_after_paste_back(fill):
    image, mask = sample_image(), block_mask()
    request = _request("inpaint", mask=mask, mask_blur=4, inpainting_fill=fill, steps=3, denoising_strength=1.0)
    output = generate(request, tiny(SD1), EULER)
    untouched = np.asarray(blur_mask(mask, 4)) == 0
    result = np.asarray(output.images[0])
    assert np.array_equal(result[untouched], np.asarray(image)[untouched])
    assert not np.array_equal(result[~untouched], np.asarray(image)[~untouched])


def test_only_masked_inpaint_returns_the_original_size_with_the_outside_unchanged():
    image = sample_image(96, 64)
    mask = block_mask(96, 64, (60, 8, 76, 24))
    request = _request("inpaint", init_image=image, mask=mask, mask_blur=0, inpaint_full_res=True,
                       inpaint_full_res_padding=4, steps=3)
    output = generate(request, tiny(SD1), EULER)
    assert output.images[0].size == (96, 64)
    result, original = np.asarray(output.images[0]), np.asarray(image)
    assert np.array_equal(result[:, :56], original[:, :56])  # crop region is x 56..80
    assert not np.array_equal(result[8:24, 60:76], original[8:24, 60:76])


def test_inpaint_without_overlay_option_keeps_generated_pixels_everywhere():
    request = _request("inpaint", mask=block_mask(), mask_blur=0, steps=3, overrides={"overlay_inpaint": False})
    output = generate(request, tiny(SD1), EULER)
    assert not np.array_equal(np.asarray(output.images[0])[:8], np.asarray(sample_image())[:8])


def test_strength_zero_returns_the_init_image():
    output = generate(_request("img2img", denoising_strength=0.0), tiny(SD1), EULER)
    assert np.array_equal(np.asarray(output.images[0]), np.asarray(sample_image()))


@pytest.mark.parametrize("mode", ["txt2img", "img2img"])
def test_inpainting_models_also_run_txt2img_and_img2img(mode):
    """A1111 conditions them on a full mask (txt2img: of a black image, img2img: of the zeroed init image)."""
    output = generate(_request(mode, steps=2), tiny(SD1_INPAINT), EULER)
    assert output.images[0].size == (64, 64)

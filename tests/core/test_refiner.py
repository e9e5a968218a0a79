"""SDXL refiner switch: the base runs the first part of the schedule, the refiner continues on the same latents,
equal to diffusers' base `denoising_end` + refiner `denoising_start` hand-over."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline

from modules.core.generate import generate
from modules.errors import InvalidRequest
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest
from tests.core.helpers import (
    SD1,
    SDXL,
    SDXL_REFINER,
    LatentCapture,
    generators,
    reference_scheduler,
    sdxl_pipeline,
    tiny,
)

EULER = default_registry().resolve("Euler")
PROMPT, NEGATIVE = "a red cube", "blurry"


@pytest.mark.slow
def test_refiner_continues_the_schedule_like_diffusers(monkeypatch):
    capture = LatentCapture(monkeypatch)
    used = []
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=8, steps=4, width=64, height=64,
                                refiner_switch_at=0.5)
    generate(request, tiny(SDXL), EULER, refiner=tiny(SDXL_REFINER),
             hooks=[lambda ctx: used.append(ctx.conditioning.cond.shape[-1])])
    assert used == [64, 64, 32, 32]  # base (two encoders) for t >= 500, refiner (one encoder) after
    base, refiner = tiny(SDXL), tiny(SDXL_REFINER)
    base_pipe = sdxl_pipeline(base, reference_scheduler(EULER, base))
    half = base_pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=4, guidance_scale=7.0, denoising_end=0.5,
                     generator=generators([8]), output_type="latent").images
    refiner_pipe = sdxl_pipeline(refiner, reference_scheduler(EULER, refiner), StableDiffusionXLImg2ImgPipeline,
                                 requires_aesthetics_score=True)
    reference = refiner_pipe(PROMPT, negative_prompt=NEGATIVE, image=half, num_inference_steps=4, guidance_scale=7.0,
                             denoising_start=0.5, generator=generators([8]), output_type="latent").images
    assert torch.equal(capture.last, reference)


def test_refiner_of_another_latent_space_is_refused():
    request = GenerationRequest(prompt=PROMPT, seed=1, steps=2, width=64, height=64)
    with pytest.raises(InvalidRequest, match="refiner"):
        generate(request, tiny(SDXL), EULER, refiner=tiny(SD1))

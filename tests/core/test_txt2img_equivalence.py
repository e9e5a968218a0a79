"""Our txt2img loop equals diffusers' pipelines built from the same tiny components, scheduler and seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.core.generate import generate
from modules.core.latents import decode_latents
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest
from tests.core.helpers import (
    SD1,
    SD2_V,
    SDXL,
    LatentCapture,
    generators,
    reference_scheduler,
    sd_pipeline,
    sdxl_pipeline,
    tiny,
)

REGISTRY = default_registry()
PROMPT, NEGATIVE = "a red cube on a table", "blurry"


def _ours(monkeypatch, identity, sampler, **fields):
    capture = LatentCapture(monkeypatch)
    values = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": 11, "steps": 4, "width": 64, "height": 64,
              "cfg_scale": 6.0, **fields}
    request = GenerationRequest(**values)
    output = generate(request, tiny(identity), sampler)
    return output, capture.last


def _reference(identity, sampler, seeds, negative=NEGATIVE, eta=0.0, output_type="latent"):
    components = tiny(identity)
    scheduler = reference_scheduler(sampler, components)
    pipeline = sdxl_pipeline(components, scheduler) if identity.is_sdxl else sd_pipeline(components, scheduler)
    negatives = None if negative is None else [negative] * len(seeds)
    return pipeline([PROMPT] * len(seeds), negative_prompt=negatives, num_inference_steps=4, guidance_scale=6.0,
                    height=64, width=64, generator=generators(seeds), eta=eta, output_type=output_type).images


@pytest.mark.parametrize(
    ("identity", "name"),
    [(SD1, "Euler"), (SD1, "LMS"), (SD1, "UniPC"), (SD2_V, "Euler")],
)
@pytest.mark.slow
def test_sd_txt2img_equals_diffusers_in_a_batch(monkeypatch, identity, name):
    sampler = REGISTRY.resolve(name)
    eta = None  # DDIM is A1111's timestep loop, not diffusers' (tests/samplers/test_timestep_samplers.py)
    _, latents = _ours(monkeypatch, identity, sampler, batch_size=2, eta=eta)
    reference = _reference(identity, sampler, [11, 12], eta=eta or 0.0)
    assert torch.equal(latents, reference)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Euler", "UniPC"])
def test_sdxl_txt2img_equals_diffusers(monkeypatch, name):
    sampler = REGISTRY.resolve(name)
    _, latents = _ours(monkeypatch, SDXL, sampler)
    assert torch.equal(latents, _reference(SDXL, sampler, [11]))


def test_sdxl_batch_matches_diffusers_to_float_precision(monkeypatch):
    """In a batch, diffusers encodes the prompts together; the pooled projection then differs in the last bits."""
    sampler = REGISTRY.resolve("Euler")
    _, latents = _ours(monkeypatch, SDXL, sampler, batch_size=2)
    torch.testing.assert_close(latents, _reference(SDXL, sampler, [11, 12]), rtol=0, atol=1e-3)


def test_sdxl_empty_negative_prompt_uses_zero_embeddings(monkeypatch):
    """A1111 and diffusers' force_zeros_for_empty_prompt (negative_prompt=None) agree."""
    sampler = REGISTRY.resolve("Euler")
    _, latents = _ours(monkeypatch, SDXL, sampler, negative_prompt="")
    assert torch.equal(latents, _reference(SDXL, sampler, [11], negative=None))


def test_decoded_images_equal_diffusers(monkeypatch):
    sampler = REGISTRY.resolve("Euler")
    output, latents = _ours(monkeypatch, SD1, sampler)
    reference = _reference(SD1, sampler, [11], output_type="np")
    with torch.inference_mode():
        ours = decode_latents(tiny(SD1).vae, latents, torch.float32).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    expected = (255.0 * reference[0]).astype(np.uint8)  # A1111 truncates to uint8
    assert np.array_equal(np.asarray(output.images[0]), expected)


def test_clip_skip_two_is_the_normed_penultimate_layer(monkeypatch):
    """A1111 "Clip skip 2" (diffusers clip_skip=1): hidden_states[-2] through the final layer norm. diffusers 0.42
    cannot run its own clip_skip path with transformers 5, so the reference gets the embeddings precomputed."""
    sampler = REGISTRY.resolve("Euler")
    _, latents = _ours(monkeypatch, SD1, sampler, clip_skip=2)
    components = tiny(SD1)
    encoder, tokenizer = components.text_encoders[0], components.tokenizers[0]

    def embed(text):
        ids = tokenizer(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        with torch.inference_mode():
            return encoder.final_layer_norm(encoder(ids, output_hidden_states=True).hidden_states[-2])

    pipeline = sd_pipeline(components, reference_scheduler(sampler, components))
    reference = pipeline(prompt_embeds=embed(PROMPT), negative_prompt_embeds=embed(NEGATIVE), num_inference_steps=4,
                         guidance_scale=6.0, generator=generators([11]), output_type="latent").images
    assert torch.equal(latents, reference)


def test_cfg_scale_one_skips_the_uncond_pass_like_diffusers(monkeypatch):
    sampler = REGISTRY.resolve("Euler")
    capture = LatentCapture(monkeypatch)
    request = GenerationRequest(prompt=PROMPT, seed=11, steps=4, width=64, height=64, cfg_scale=1.0)
    generate(request, tiny(SD1), sampler)
    components = tiny(SD1)
    pipeline = sd_pipeline(components, reference_scheduler(sampler, components))
    reference = pipeline(PROMPT, num_inference_steps=4, guidance_scale=1.0, generator=generators([11]),
                         output_type="latent").images
    assert torch.equal(capture.last, reference)

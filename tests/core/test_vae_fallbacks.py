"""The VAE's fallbacks: tiles on request, when the whole image would not fit, or after an out-of-memory error; a
half-precision result with NaNs done again in fp32 (A1111's auto_vae_precision), each with a note for the user."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import modules.core.vae as vae_module
from modules.core.generate import generate
from modules.core.memory import DeviceMemory
from modules.core.vae import NAN_NOTE, OOM_NOTE, VaePolicy, decode
from modules.models.tiny import build_tiny_components
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest
from tests.core.helpers import SD1, tiny

EULER = default_registry().resolve("Euler")
LATENTS = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))  # 256x256, tiles of 64 px


def _request(**fields) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a cube", "seed": 1, "steps": 2, "width": 64, "height": 64, **fields})


def test_whole_image_by_default_and_tiles_on_request():
    components = tiny(SD1)
    whole = decode(components, LATENTS, VaePolicy())
    tiled = decode(components, LATENTS, VaePolicy(tiled=True))
    reference = components.vae.tiled_decode(LATENTS / components.vae.config.scaling_factor).sample
    assert torch.equal(whole, torch.clamp((components.vae.decode(
        LATENTS / components.vae.config.scaling_factor).sample + 1) / 2, 0, 1))
    assert torch.equal(tiled, torch.clamp((reference + 1) / 2, 0, 1))
    assert not torch.equal(whole, tiled)
    assert not components.vae.use_tiling  # turned off again


def test_tiles_when_the_whole_image_would_not_fit(monkeypatch):
    monkeypatch.setattr(vae_module, "device_memory", lambda device: DeviceMemory("test", 2**30, 2**20))
    components, policy = tiny(SD1), VaePolicy()
    assert torch.equal(decode(components, LATENTS, policy), decode(components, LATENTS, VaePolicy(tiled=True)))
    assert policy.notes == []  # planned, not a fallback


def test_an_out_of_memory_whole_image_pass_is_done_again_in_tiles(monkeypatch):
    components, policy = tiny(SD1), VaePolicy()
    real_decode = vae_module.decode_latents

    def decode_or_fail(vae, latents, dtype):
        if not vae.use_tiling:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_decode(vae, latents, dtype)

    monkeypatch.setattr(vae_module, "decode_latents", decode_or_fail)
    assert torch.equal(decode(components, LATENTS, policy), decode(components, LATENTS, VaePolicy(tiled=True)))
    assert policy.notes == [OOM_NOTE]


def test_nans_in_half_precision_switch_the_vae_to_fp32_for_good(monkeypatch):
    components = build_tiny_components(SD1, seed=3)
    components.vae.to(torch.bfloat16)
    components.vae_dtype = torch.bfloat16
    real_decode = vae_module.decode_latents
    calls: list[torch.dtype] = []

    def nan_in_half(vae, latents, dtype):
        calls.append(dtype)
        result = real_decode(vae, latents, dtype)
        return result * float("nan") if dtype != torch.float32 else result

    monkeypatch.setattr(vae_module, "decode_latents", nan_in_half)
    policy = VaePolicy()
    pixels = decode(components, LATENTS, policy)
    assert not torch.isnan(pixels).any() and calls == [torch.bfloat16, torch.float32]
    assert components.vae_dtype == torch.float32 and components.vae.dtype == torch.float32
    assert policy.notes == [NAN_NOTE]
    off = build_tiny_components(SD1, seed=3)
    off.vae.to(torch.bfloat16)
    off.vae_dtype = torch.bfloat16
    assert torch.isnan(decode(off, LATENTS, VaePolicy(auto_precision=False))).all()


@pytest.mark.slow
def test_the_job_reports_its_fallbacks_and_the_tiled_option_reaches_the_vae():
    plain = generate(_request(), tiny(SD1), EULER)
    assert plain.notes == ()
    tiled = generate(_request(width=128, height=128, overrides={"tiled_vae": True}), tiny(SD1), EULER)
    whole = generate(_request(width=128, height=128), tiny(SD1), EULER)
    assert not np.array_equal(np.asarray(tiled.images[0]), np.asarray(whole.images[0]))


def test_tiles_are_at_most_512_pixels_and_the_vae_is_left_as_it_was():
    components = build_tiny_components(SD1, seed=5)
    vae = components.vae
    vae.tile_sample_min_size, vae.tile_latent_min_size = 1024, 128  # SDXL's config values
    seen: list[tuple[int, int, bool]] = []
    with vae_module._Tiling(components, True):
        seen.append((vae.tile_sample_min_size, vae.tile_latent_min_size, vae.use_tiling))
    assert seen == [(512, 64, True)]
    assert (vae.tile_sample_min_size, vae.tile_latent_min_size, vae.use_tiling) == (1024, 128, False)

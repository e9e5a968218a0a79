"""The generation core on a CUDA device (skipped where there is none): fp16 and fp32 runs of a tiny model agree
with the CPU's fp32 run, and the noise does not depend on the device (it is drawn on the CPU)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from modules.core.generate import generate
from modules.models.tiny import build_tiny_components
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest
from tests.core.helpers import SD1, SDXL

pytestmark = pytest.mark.gpu

REQUEST = GenerationRequest(prompt="a red circle", negative_prompt="blurry", seed=7, steps=4, width=64, height=64,
                            sampler="Euler")


def _pixels(identity, device: str, dtype: torch.dtype) -> np.ndarray:
    components = build_tiny_components(identity, seed=0)
    for module in components.modules():
        module.to(dtype=dtype)
    components = dataclasses.replace(components, dtype=dtype, vae_dtype=dtype).to(torch.device(device))
    output = generate(REQUEST, components, default_registry().resolve(REQUEST.sampler))
    return np.asarray(output.images[0], dtype=np.float32)


@pytest.mark.parametrize("identity", [SD1, SDXL], ids=["sd1", "sdxl"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_cuda_matches_cpu(identity, dtype: torch.dtype) -> None:
    reference = _pixels(identity, "cpu", torch.float32)
    on_gpu = _pixels(identity, "cuda", dtype)
    assert on_gpu.shape == reference.shape
    tolerance = 2.0 if dtype is torch.float32 else 8.0  # colour levels: fp16 rounds, fp32 kernels differ a little
    assert np.abs(on_gpu - reference).mean() < tolerance


@pytest.mark.parametrize("seed", [0, 7, 123456789])
@pytest.mark.parametrize("shape", [(4, 8, 8), (4, 64, 64), (4, 128, 96)])
def test_gpu_rng_source_draws_torch_randn_on_the_device(seed: int, shape: tuple[int, int, int]) -> None:
    """A1111's default source "GPU": each image's noise is `torch.randn` from a CUDA generator seeded with its seed."""
    from modules.core.latents import NoiseSpec, image_noise, noise_generator_device

    device = noise_generator_device("GPU", torch.device("cuda"))
    noise, generator = image_noise(seed, 0, NoiseSpec(shape=shape, generator_device=device))
    expected = torch.randn(shape, generator=torch.Generator("cuda").manual_seed(seed), device="cuda")
    assert noise.device.type == "cuda" and generator.device.type == "cuda"
    assert torch.equal(noise, expected)


def test_gpu_rng_source_generates_on_cuda_and_omits_rng_from_the_infotext() -> None:
    components = build_tiny_components(SD1, seed=0).to(torch.device("cuda"))
    request = dataclasses.replace(REQUEST, overrides={"randn_source": "GPU"})
    output = generate(request, components, default_registry().resolve("Euler a"))
    assert output.noise_source == "GPU" and not output.notes


@pytest.mark.parametrize("seed", [0, 7, 123456789, 2**40 + 3])
@pytest.mark.parametrize("shape", [(4,), (4, 64, 64), (4, 128, 96)])
def test_nv_source_equals_torch_randn_on_cuda(seed: int, shape: tuple[int, ...]) -> None:
    """A1111's NV source draws, on the CPU, the numbers `torch.randn` draws on an NVIDIA GPU."""
    from modules.core.philox import PhiloxGenerator

    expected = torch.randn(shape, generator=torch.Generator("cuda").manual_seed(seed), device="cuda").cpu()
    torch.testing.assert_close(PhiloxGenerator(seed).randn(shape), expected, atol=1e-5, rtol=0)

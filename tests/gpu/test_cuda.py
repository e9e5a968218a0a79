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

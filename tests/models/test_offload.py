"""--medvram/--lowvram offload: hooks attached, results unchanged (on CPU the execution device is the CPU)."""

from __future__ import annotations

import pytest
import torch

from modules.core.generate import generate
from modules.devices import OFFLOAD_MODEL, OFFLOAD_NONE, OFFLOAD_SEQUENTIAL, Capabilities, plan_devices
from modules.models.identity import Family, ModelIdentity
from modules.models.offload import apply_offload
from modules.models.tiny import build_tiny_components
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest

REQUEST = GenerationRequest(prompt="a red circle", negative_prompt="blue", steps=3, width=64, height=64, seed=5,
                            sampler="Euler")


def test_flags_choose_offload_only_off_cpu() -> None:
    cuda = Capabilities(cuda=True, mps=False, cuda_count=1)
    cpu = Capabilities(cuda=False, mps=False, cuda_count=0)
    assert plan_devices(None, caps=cuda, medvram=True).offload == OFFLOAD_MODEL
    assert plan_devices(None, caps=cuda, lowvram=True, medvram=True).offload == OFFLOAD_SEQUENTIAL
    assert plan_devices(None, caps=cuda).offload == OFFLOAD_NONE
    assert plan_devices(None, caps=cpu, medvram=True).offload == OFFLOAD_NONE


@pytest.mark.slow
@pytest.mark.parametrize("mode", [OFFLOAD_MODEL, OFFLOAD_SEQUENTIAL])
def test_offloaded_components_give_the_same_image(mode: str) -> None:
    sampler = default_registry().resolve("Euler")
    identity = ModelIdentity(Family.SD1)
    plain = generate(REQUEST, build_tiny_components(identity), sampler)
    components = apply_offload(build_tiny_components(identity), mode, torch.device("cpu"))
    assert all(hasattr(module, "_hf_hook") for module in components.modules())
    offloaded = generate(REQUEST, components, sampler)
    assert plain.images[0].tobytes() == offloaded.images[0].tobytes()

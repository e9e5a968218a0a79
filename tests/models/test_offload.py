"""--medvram/--lowvram offload: hooks attached, results unchanged (on CPU the execution device is the CPU)."""

from __future__ import annotations

import pytest
import torch

from modules.core.generate import generate
from modules.devices import (
    OFFLOAD_MODEL,
    OFFLOAD_NONE,
    OFFLOAD_SEQUENTIAL,
    Capabilities,
    DevicePlan,
    plan_devices,
)
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


def test_medvram_sdxl_offloads_sdxl_checkpoints_only() -> None:
    cuda = Capabilities(cuda=True, mps=False, cuda_count=1)
    plan = plan_devices(None, caps=cuda, medvram_sdxl=True)
    assert (plan.offload_for(True), plan.offload_for(False)) == (OFFLOAD_MODEL, OFFLOAD_NONE)
    assert plan.describe() == "cuda float16, autocast, model offload for SDXL"
    lowvram = plan_devices(None, caps=cuda, medvram_sdxl=True, lowvram=True)
    assert lowvram.offload_for(True) == lowvram.offload_for(False) == OFFLOAD_SEQUENTIAL
    cpu = plan_devices(None, caps=Capabilities(cuda=False, mps=False), medvram_sdxl=True)
    assert cpu.offload_for(True) == OFFLOAD_NONE and not cpu.medvram_sdxl


@pytest.mark.slow
def test_the_manager_loads_sdxl_with_hooks_and_sd1_without(tmp_path, tiny_checkpoints) -> None:
    from modules.models.hashes import HashCache
    from modules.models.manager import ModelManager
    from modules.paths import DataPaths

    paths = DataPaths(tmp_path)
    paths.checkpoints.mkdir(parents=True)
    for identity in (ModelIdentity(Family.SD1), ModelIdentity(Family.SDXL)):
        (paths.checkpoints / f"{identity.family.value}.safetensors").symlink_to(tiny_checkpoints[identity])
    plan = DevicePlan(torch.device("cpu"), torch.float32, torch.float32, medvram_sdxl=True)
    manager = ModelManager(paths, device_plan=plan, hash_cache=HashCache(None), no_hashing=True)
    hooked = {}
    for identity in (ModelIdentity(Family.SD1), ModelIdentity(Family.SDXL)):
        with manager.get(f"{identity.family.value}.safetensors") as components:
            hooked[identity.family] = hasattr(components.unet, "_hf_hook")
            assert generate(REQUEST, components, default_registry().resolve("Euler")).images
    assert hooked == {Family.SD1: False, Family.SDXL: True}


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

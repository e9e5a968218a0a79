"""FP8 weight storage (A1111's `fp8_storage`): applied at load by the model manager to the families the setting
names, a changed setting reloads, pictures stay close to the full-precision ones, and LoRAs merge into fp8 weights
and restore them bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.core.generate import generate
from modules.models.identity import Family, ModelIdentity
from modules.models.tiny import build_tiny_components
from modules.models.weight_storage import fp8_applies, parameter_bytes, store_unet_in_fp8
from modules.networks.lora import LoraFile, apply_loras
from modules.paths import DataPaths
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest
from tests.models.test_manager import TinyLoader, make_manager
from tests.networks.helpers import kohya_state, write_lora
from tests.networks.test_lora import SD1_TE, SD1_UNET, changed, snapshot

SD1, SDXL = ModelIdentity(Family.SD1), ModelIdentity(Family.SDXL)


def _fp8(components) -> bool:
    return any(parameter.dtype == torch.float8_e4m3fn for parameter in components.unet.parameters())


@pytest.mark.parametrize(("mode", "identity", "applies"), [
    ("Disable", SDXL, False), ("Enable for SDXL", SD1, False), ("Enable for SDXL", SDXL, True), ("Enable", SD1, True),
])
def test_which_models_the_setting_names(mode, identity, applies):
    assert fp8_applies(mode, identity) is applies


def test_the_manager_stores_the_unet_in_fp8_and_reloads_when_the_setting_changes(tmp_path) -> None:
    paths = DataPaths(tmp_path)
    paths.checkpoints.mkdir(parents=True)
    (paths.checkpoints / "a.safetensors").write_bytes(b"a" * 64)
    loader = TinyLoader()
    manager = make_manager(paths, loader, fp8_storage="Enable")
    with manager.get("a") as components:
        assert _fp8(components)
        assert all(parameter.dtype == torch.float32 for parameter in components.vae.parameters())
    manager.update_options({"fp8_storage": "Enable for SDXL"})  # SD1: full precision again, after a reload
    with manager.get("a") as components:
        assert not _fp8(components)
    assert loader.loaded == ["a.safetensors", "a.safetensors"]


@pytest.mark.slow
def test_pictures_stay_close_and_the_unet_shrinks():
    full, stored = build_tiny_components(SD1, seed=4), build_tiny_components(SD1, seed=4)
    before = parameter_bytes(stored.unet)
    saved = store_unet_in_fp8(stored)
    assert saved > before / 2 and parameter_bytes(stored.unet) == before - saved
    request = GenerationRequest(prompt="a cube", seed=2, steps=3, width=64, height=64)
    euler = default_registry().resolve("Euler")
    a = np.asarray(generate(request, full, euler).images[0]).astype(int)
    b = np.asarray(generate(request, stored, euler).images[0]).astype(int)
    assert 0 < np.abs(a - b).mean() < 4


def test_loras_merge_into_fp8_weights_and_restore_them_exactly(tmp_path):
    components = build_tiny_components(SD1)
    store_unet_in_fp8(components)
    lora = LoraFile.from_path(write_lora(tmp_path / "kohya.safetensors",
                                         kohya_state(components, SD1_UNET, SD1_TE, rank=2, alpha=1.0)))
    before = snapshot(components)
    with apply_loras(components, [(lora, 1.0, 1.0)]):
        assert changed(components, before)
    assert changed(components, before) == set()

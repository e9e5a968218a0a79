"""The "Model precision" setting (`model_dtype`): bfloat16 weights and compute on any device, applied when a checkpoint
loads (`modules.devices.with_model_dtype` on the manager's launch plan); `--no-half-vae` keeps the VAE in fp32;
pictures of every family stay close to the fp32 ones; LoRAs merge into bf16 weights and restore them exactly; a CPU
without native bf16 gets a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from modules import devices
from modules.core.generate import generate
from modules.devices import MODEL_DTYPES, DevicePlan, plan_devices, with_model_dtype
from modules.errors import UserError
from modules.models.hashes import HashCache
from modules.models.identity import Family, ModelIdentity
from modules.models.manager import ModelManager, ModelOptions
from modules.models.tiny import ALL_TINY_IDENTITIES, build_tiny_components
from modules.networks.lora import LoraFile, apply_loras
from modules.options import OPTIMIZATIONS, default_table
from modules.paths import DataPaths
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest
from tests.networks.helpers import kohya_state, write_lora
from tests.networks.test_lora import SD1_TE, SD1_UNET

CPU = torch.device("cpu")
CPU_PLAN = DevicePlan(CPU, torch.float32, torch.float32)
SD1 = ModelIdentity(Family.SD1)


def _picture(components) -> np.ndarray:
    request = GenerationRequest(prompt="a cube", negative_prompt="blur", seed=2, steps=4, width=64, height=64)
    return np.asarray(generate(request, components, default_registry().resolve("Euler a")).images[0]).astype(int)


def _dtypes(components) -> tuple[torch.dtype, torch.dtype, set[torch.dtype]]:
    return (components.unet.dtype, components.vae.dtype, {encoder.dtype for encoder in components.text_encoders})


def _unet_output(components) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn((1, 4, 8, 8), generator=generator).to(components.unet.dtype)
    context = torch.randn((1, 77, components.unet.config.cross_attention_dim), generator=generator)
    with torch.no_grad():
        return components.unet(sample, 10, context.to(components.unet.dtype)).sample


def _manager(tmp_path: Path, source: Path, plan: DevicePlan = CPU_PLAN, **options) -> ModelManager:
    paths = DataPaths(tmp_path)
    paths.checkpoints.mkdir(parents=True)
    (paths.checkpoints / "tiny.safetensors").symlink_to(source)
    return ModelManager(paths, ModelOptions(**options), device_plan=plan, hash_cache=HashCache(None))


def test_the_setting_is_in_the_optimizations_section_and_reaches_the_manager() -> None:
    spec = default_table()["model_dtype"]
    assert (spec.section, spec.default, tuple(spec.choices)) == (OPTIMIZATIONS, "Automatic", MODEL_DTYPES)
    assert ModelOptions.from_mapping({"model_dtype": "bfloat16", "samples_save": False}).model_dtype == "bfloat16"
    assert ModelOptions().load_settings() != ModelOptions(model_dtype="bfloat16").load_settings()


def test_bfloat16_replaces_the_launch_flags_dtypes() -> None:
    assert with_model_dtype(CPU_PLAN, "Automatic") is CPU_PLAN
    bf16 = with_model_dtype(CPU_PLAN, "bfloat16")
    assert (bf16.device, bf16.dtype, bf16.vae_dtype, bf16.autocast) == (CPU, torch.bfloat16, torch.bfloat16, False)
    assert bf16.describe() == "cpu bfloat16"
    gpu = DevicePlan(torch.device("cuda"), torch.float16, torch.float16, autocast=True)
    assert with_model_dtype(gpu, "bfloat16").autocast is False
    no_half_vae = plan_devices("cpu", no_half_vae=True)
    assert no_half_vae.no_half_vae and no_half_vae.vae_dtype == torch.float32
    kept = with_model_dtype(no_half_vae, "bfloat16")
    assert (kept.dtype, kept.vae_dtype) == (torch.bfloat16, torch.float32)
    assert kept.describe() == "cpu bfloat16, VAE float32"
    with pytest.raises(UserError, match="Model precision 'fp8' is not one of Automatic, bfloat16"):
        with_model_dtype(CPU_PLAN, "fp8")


@pytest.mark.slow
def test_the_manager_loads_in_bfloat16_and_again_in_fp32_when_the_setting_changes(tmp_path, tiny_checkpoints) -> None:
    manager = _manager(tmp_path, tiny_checkpoints[SD1], model_dtype="bfloat16")
    with manager.get("tiny") as components:
        assert _dtypes(components) == (torch.bfloat16, torch.bfloat16, {torch.bfloat16})
        assert (components.dtype, components.vae_dtype) == (torch.bfloat16, torch.bfloat16)
        bf16_picture = _picture(components)
    assert manager.launch_plan is CPU_PLAN and manager.plan.dtype == torch.bfloat16
    manager.update_options(ModelOptions(model_dtype="Automatic"))
    with manager.get("tiny") as components:
        assert _dtypes(components) == (torch.float32, torch.float32, {torch.float32})
        fp32_picture = _picture(components)
    difference = np.abs(bf16_picture - fp32_picture)
    assert 0 < difference.mean() < 4  # bf16 rounding: a level or two on average out of 255


@pytest.mark.slow
def test_no_half_vae_keeps_the_vae_in_fp32(tmp_path, tiny_checkpoints) -> None:
    plan = DevicePlan(CPU, torch.float32, torch.float32, no_half_vae=True)
    manager = _manager(tmp_path, tiny_checkpoints[SD1], plan, model_dtype="bfloat16")
    with manager.get("tiny") as components:
        assert _dtypes(components) == (torch.bfloat16, torch.float32, {torch.bfloat16})
        assert _picture(components).std() > 0


@pytest.mark.slow
@pytest.mark.parametrize("identity", ALL_TINY_IDENTITIES, ids=lambda identity: identity.describe())
def test_every_family_paints_close_to_its_fp32_picture(identity: ModelIdentity, tiny_checkpoints) -> None:
    from modules.models.loaders import load_checkpoint

    pictures = [_picture(load_checkpoint(tiny_checkpoints[identity], identity, device=CPU, dtype=dtype,
                                         vae_dtype=dtype)) for dtype in (torch.float32, torch.bfloat16)]
    assert np.abs(pictures[0] - pictures[1]).mean() < 4


@pytest.mark.slow
def test_loras_merge_into_bfloat16_weights_and_restore_them_exactly(tmp_path, tiny_checkpoints) -> None:
    from modules.models.loaders import load_checkpoint

    components = load_checkpoint(tiny_checkpoints[SD1], SD1, device=CPU, dtype=torch.bfloat16,
                                 vae_dtype=torch.bfloat16)
    lora = LoraFile.from_path(write_lora(tmp_path / "kohya.safetensors",
                                         kohya_state(build_tiny_components(SD1), SD1_UNET, SD1_TE, rank=2, alpha=1.0)))
    before = {name: value.clone() for name, value in components.unet.state_dict().items()}
    plain = _unet_output(components)
    with apply_loras(components, [(lora, 1.0, 1.0)]) as report:
        assert not report.errors
        assert not torch.equal(_unet_output(components), plain)
    after = components.unet.state_dict()
    assert all(torch.equal(after[name], value) and after[name].dtype == torch.bfloat16
               for name, value in before.items())


def test_a_cpu_without_native_bfloat16_gets_a_warning(monkeypatch, caplog) -> None:
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    devices.warn_if_emulated(CPU_PLAN)
    assert not caplog.records
    devices.warn_if_emulated(with_model_dtype(CPU_PLAN, "bfloat16"))
    assert "no native bfloat16" in caplog.text

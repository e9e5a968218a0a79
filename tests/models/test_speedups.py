"""Load-time UNet speed-ups (`modules.models.speedups`): the settings reach the manager, which applies them at load
and reloads when one changes; channels-last and fused QKV keep pictures within float rounding; LoRAs still apply
to fused attention and restore it bit for bit; torch.compile is made once per model and falls back to eager."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from modules.core.generate import generate
from modules.errors import UserError
from modules.models.identity import Family, ModelIdentity
from modules.models.manager import ModelOptions
from modules.models.speedups import (
    COMPILE_MODES,
    CompiledForward,
    compile_unet,
    compiled_forward,
    fuse_qkv,
    to_channels_last,
)
from modules.models.tiny import build_tiny_components
from modules.networks.lora import LoraFile, apply_loras
from modules.options import OPTIMIZATIONS, default_table
from modules.paths import DataPaths
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest
from tests.models.test_manager import TinyLoader, make_manager
from tests.networks.helpers import kohya_state, write_lora
from tests.networks.test_lora import SD1_TE, SD1_UNET, unet_output

SD1 = ModelIdentity(Family.SD1)
ATTENTION = "down_blocks.0.attentions.0.transformer_blocks.0"
LORA_PATHS = [*SD1_UNET, f"{ATTENTION}.attn1.to_k", f"{ATTENTION}.attn1.to_v", f"{ATTENTION}.attn2.to_k",
              f"{ATTENTION}.attn2.to_v"]


def _picture(components, seed: int = 2) -> np.ndarray:
    request = GenerationRequest(prompt="a cube", seed=seed, steps=3, width=64, height=64)
    return np.asarray(generate(request, components, default_registry().resolve("Euler")).images[0]).astype(int)


def _processors(components) -> set[str]:
    return {type(processor).__name__ for processor in components.unet.attn_processors.values()}


def test_the_settings_are_in_the_optimizations_section_and_reach_the_manager() -> None:
    table = default_table()
    keys = ("channels_last", "fused_qkv", "torch_compile", "torch_compile_mode")
    assert all(table[key].section == OPTIMIZATIONS for key in keys)
    assert tuple(table["torch_compile_mode"].choices) == COMPILE_MODES
    options = ModelOptions.from_mapping({"channels_last": True, "fused_qkv": True, "torch_compile": True,
                                         "torch_compile_mode": "reduce-overhead", "samples_save": False})
    assert (options.channels_last, options.fused_qkv, options.torch_compile) == (True, True, True)
    assert options.torch_compile_mode == "reduce-overhead"


@pytest.mark.slow
def test_the_manager_applies_them_at_load_and_reloads_when_one_changes(tmp_path) -> None:
    paths = DataPaths(tmp_path)
    paths.checkpoints.mkdir(parents=True)
    (paths.checkpoints / "a.safetensors").write_bytes(b"a" * 64)
    loader = TinyLoader()
    manager = make_manager(paths, loader, channels_last=True, fused_qkv=True, torch_compile=True)
    with manager.get("a") as components:
        conv = components.unet.conv_in.weight
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
        assert components.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        assert _processors(components) == {"FusedAttnProcessor2_0"}
        forward = compiled_forward(components.unet)
        assert forward is not None and forward.mode == "default"
    with manager.get("a") as components:  # kept across jobs: the same compiled forward
        assert compiled_forward(components.unet) is forward
    manager.update_options(ModelOptions(channels_last=True, fused_qkv=True))  # compile off: loads again
    with manager.get("a") as components:
        assert compiled_forward(components.unet) is None
        assert _processors(components) == {"FusedAttnProcessor2_0"}
    manager.update_options(ModelOptions(channels_last=True, fused_qkv=True, sd_checkpoints_limit=1))  # no reload
    with manager.get("a"):
        pass
    assert loader.loaded == ["a.safetensors", "a.safetensors"]


@pytest.mark.slow
def test_checkpoints_load_with_sdpa_attention(tmp_path) -> None:
    from modules.models.convert import save_single_file
    from modules.models.loaders import load_checkpoint

    save_single_file(build_tiny_components(SD1), tmp_path / "a.safetensors")
    cpu = torch.device("cpu")
    components = load_checkpoint(tmp_path / "a.safetensors", SD1, device=cpu, dtype=torch.float32,
                                 vae_dtype=torch.float32)
    assert _processors(components) == {"AttnProcessor2_0"}  # torch's scaled_dot_product_attention
    assert {type(processor).__name__ for processor in components.vae.attn_processors.values()} == {"AttnProcessor2_0"}


@pytest.mark.slow
def test_channels_last_pictures_stay_within_rounding() -> None:
    plain, nhwc = build_tiny_components(SD1, seed=4), build_tiny_components(SD1, seed=4)
    to_channels_last(nhwc)
    assert np.abs(_picture(plain) - _picture(nhwc)).max() <= 1  # 8-bit pixels: at most one level of rounding


@pytest.mark.slow
def test_fused_qkv_pictures_stay_within_rounding() -> None:
    plain, fused = build_tiny_components(SD1, seed=4), build_tiny_components(SD1, seed=4)
    assert fuse_qkv(fused) > 0
    assert np.abs(_picture(plain) - _picture(fused)).max() <= 1


def _fused_weights(components) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in components.unet.state_dict().items()
            if name.rpartition(".")[0].endswith(("to_qkv", "to_kv"))}


@pytest.mark.slow
def test_loras_change_fused_attention_and_restore_it_exactly(tmp_path) -> None:
    plain, fused = build_tiny_components(SD1), build_tiny_components(SD1)
    fuse_qkv(fused)
    lora = LoraFile.from_path(write_lora(tmp_path / "kohya.safetensors",
                                         kohya_state(plain, LORA_PATHS, SD1_TE, rank=2, alpha=1.0)))
    before, fused_before = unet_output(fused), _fused_weights(fused)
    with apply_loras(plain, [(lora, 1.0, 1.0)]):
        expected = unet_output(plain)
    with apply_loras(fused, [(lora, 1.0, 1.0)]) as report:
        assert not report.errors
        with_lora = unet_output(fused)
        attention = fused.unet.get_submodule(f"{ATTENTION}.attn1")
        assert torch.equal(attention.to_qkv.weight,
                           torch.cat([attention.to_q.weight, attention.to_k.weight, attention.to_v.weight]))
    assert not torch.allclose(with_lora, before, atol=1e-3)
    torch.testing.assert_close(with_lora, expected, rtol=1e-4, atol=1e-5)  # fused matmuls round differently
    after = _fused_weights(fused)
    assert after.keys() == fused_before.keys() and all(torch.equal(after[k], fused_before[k]) for k in after)
    assert torch.equal(unet_output(fused), before)


def test_a_compile_mode_outside_the_choices_is_refused() -> None:
    with pytest.raises(UserError, match="max-autotune-no-cudagraphs"):
        CompiledForward(torch.nn.Linear(2, 2), "fastest")


def _failing_backend(graph, example_inputs):
    raise RuntimeError("no compiler here")


@pytest.mark.slow
def test_a_failed_compilation_falls_back_to_eager_once_with_a_warning(caplog) -> None:
    components = build_tiny_components(SD1)
    expected = unet_output(components)
    forward = compile_unet(components, backend=_failing_backend)
    torch._dynamo.reset()
    try:
        with caplog.at_level(logging.WARNING, logger="modules.models.speedups"):
            first = unet_output(components)
            second = unet_output(components)
    finally:
        torch._dynamo.reset()
    assert torch.equal(first, expected) and torch.equal(second, expected)
    assert forward.failure is not None and "no compiler here" in forward.failure
    assert sum("runs eagerly" in record.getMessage() for record in caplog.records) == 1


@pytest.mark.slow
def test_the_unet_compiles_once_per_shape_and_is_kept_across_jobs() -> None:
    graphs: list[int] = []

    def counting_backend(graph, example_inputs):
        graphs.append(len(example_inputs))
        return graph.forward

    components = build_tiny_components(SD1, seed=4)
    expected = _picture(build_tiny_components(SD1, seed=4))
    compile_unet(components, backend=counting_backend)
    torch._dynamo.reset()
    try:
        first = _picture(components)
        compiled = len(graphs)
        second = _picture(components, seed=3)
    finally:
        torch._dynamo.reset()
    assert compiled >= 1 and len(graphs) == compiled  # the second job, same shapes: no new compilation
    assert np.array_equal(first, expected)  # the backend runs the traced graph: same numbers as eager
    assert not np.array_equal(second, first)


def _inductor_unavailable() -> str | None:
    try:
        torch._dynamo.reset()
        torch.compile(lambda x: x * 2 + 1, backend="inductor", dynamic=False)(torch.ones(3))
    except Exception as exc:  # noqa: BLE001 - any failure means the test cannot run here
        return f"inductor cannot compile on this machine: {type(exc).__name__}: {exc}"
    finally:
        torch._dynamo.reset()
    return None


@pytest.mark.slow
def test_an_inductor_compiled_job_equals_the_eager_one_within_rounding() -> None:
    reason = _inductor_unavailable()
    if reason is not None:
        pytest.skip(reason)
    components = build_tiny_components(SD1, seed=4)
    expected = _picture(build_tiny_components(SD1, seed=4))
    forward = compile_unet(components)
    try:
        picture = _picture(components)
    finally:
        torch._dynamo.reset()
    assert forward.failure is None
    assert np.abs(picture - expected).max() <= 1


@pytest.mark.slow
def test_fused_projections_are_stored_in_fp8_with_the_rest(tmp_path) -> None:
    paths = DataPaths(tmp_path)
    paths.checkpoints.mkdir(parents=True)
    (paths.checkpoints / "a.safetensors").write_bytes(b"a" * 64)
    manager = make_manager(paths, TinyLoader(), fused_qkv=True, fp8_storage="Enable")
    with manager.get("a") as components:
        attention = components.unet.get_submodule(f"{ATTENTION}.attn1")
        assert attention.to_qkv.weight.dtype == torch.float8_e4m3fn
        assert unet_output(components).dtype == torch.float32  # computes through the fp8 casting hooks

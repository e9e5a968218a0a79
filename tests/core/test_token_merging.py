"""Token merging (ToMe for SD through `tomesd`): the patch on a UNet and its exact removal, the ratio of each pass as
A1111 chooses it, the infotext keys and their paste, and whole jobs on the tiny SD 1 model (whose UNet has
transformer blocks at the full latent resolution, the level ToMe merges)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from modules import infotext
from modules.core.denoise import StepContext
from modules.core.generate import generate
from modules.core.plan import CoreOptions
from modules.core.token_merging import patched_blocks, token_merging
from modules.errors import InvalidRequest
from modules.samplers.registry import default_registry
from modules.settings import Settings
from modules.types import GenerationRequest
from tests.core.helpers import SD1, sample_image, tiny

REGISTRY = default_registry()


def _request(**fields: Any) -> GenerationRequest:
    values = {"prompt": "a cube", "negative_prompt": "blurry", "seed": 40, "steps": 3, "width": 64, "height": 64,
              **fields}
    return GenerationRequest(**values)


def _pixels(request: GenerationRequest, **kwargs: Any) -> np.ndarray:
    output = generate(request, tiny(SD1), REGISTRY.resolve("Euler"), **kwargs)
    return np.asarray(output.images[0], dtype=np.int16)


def _unet_inputs(unet: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, 16, 16, generator=generator)
    states = torch.randn(2, 77, unet.config.cross_attention_dim, generator=generator)
    return sample, torch.tensor(500), states


def _module_state(unet: torch.nn.Module) -> dict[str, tuple[type, frozenset[str]]]:
    return {name: (type(module), frozenset(vars(module))) for name, module in unet.named_modules()}


@torch.inference_mode()
def test_the_patch_merges_at_full_resolution_and_its_removal_is_exact():
    unet = tiny(SD1).unet
    sample, timestep, states = _unet_inputs(unet)
    before, state = unet(sample, timestep, states).sample, _module_state(unet)
    with token_merging([unet, unet], 0.5):
        # the blocks of the full-resolution levels (and the mid block's, whose tokens are left alone there)
        assert patched_blocks(unet) == 4
        merged = unet(sample, timestep, states).sample
        assert torch.equal(unet(sample, timestep, states).sample, merged)
    assert not torch.allclose(merged, before, atol=1e-4)
    assert patched_blocks(unet) == 0 and _module_state(unet) == state and not unet._forward_pre_hooks
    assert torch.equal(unet(sample, timestep, states).sample, before)


@torch.inference_mode()
def test_patched_blocks_that_merge_nothing_compute_what_diffusers_does():
    """tomesd replaces the blocks' forward with its own copy of diffusers' (checked against the installed one)."""
    unet = tiny(SD1).unet
    sample, timestep, states = _unet_inputs(unet)
    before = unet(sample, timestep, states).sample
    with token_merging([unet], 0.001):  # int(256 tokens * 0.001) = 0 merged
        assert patched_blocks(unet) == 4
        assert torch.equal(unet(sample, timestep, states).sample, before)


def test_ratio_zero_patches_nothing_and_errors_remove_the_patch():
    unet = tiny(SD1).unet
    with token_merging([unet], 0.0):
        assert patched_blocks(unet) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with token_merging([unet], 0.5):
            raise RuntimeError("boom")
    assert patched_blocks(unet) == 0 and "_tome_info" not in vars(unet)


def test_each_pass_takes_the_ratio_a1111_picks():
    options = CoreOptions(token_merging_ratio=0.3)
    assert options.token_merging("txt2img") == options.token_merging("img2img") == 0.3
    assert options.token_merging_hr() == 0.3
    both = CoreOptions(token_merging_ratio=0.3, token_merging_ratio_img2img=0.5, token_merging_ratio_hr=0.6)
    assert both.token_merging("txt2img") == 0.3 and both.token_merging_hr() == 0.6
    assert both.token_merging("img2img") == both.token_merging("inpaint") == 0.5
    # a job that overrides the main ratio itself (a pasted infotext) keeps it for img2img too, unless it is 0
    assert both.token_merging("img2img", {"token_merging_ratio"}) == 0.3
    assert both.with_overrides({"token_merging_ratio": 0}).token_merging("img2img", {"token_merging_ratio"}) == 0.5
    assert CoreOptions(token_merging_ratio_img2img=0.4).token_merging("txt2img") == 0.0
    assert CoreOptions(token_merging_ratio_hr=0.4).token_merging_hr() == 0.4


@pytest.mark.slow
def test_infotext_keys_are_written_when_set_and_paste_back_as_overrides():
    ratios = {"token_merging_ratio": 0.5, "token_merging_ratio_hr": 0.3}
    output = generate(_request(steps=1, enable_hr=True, hr_scale=1.5, denoising_strength=0.5, overrides=ratios),
                      tiny(SD1), REGISTRY.resolve("Euler"))
    params = output.plan.token_merging_infotext
    assert params == {"Token merging ratio": 0.5, "Token merging ratio hr": 0.3}
    parsed = infotext.parse(infotext.build("a cube", "", {"Steps": 1, "Sampler": "Euler", "Seed": 1, **params}))
    assert infotext.setting_overrides(parsed.params) == ratios
    plain = generate(_request(steps=1), tiny(SD1), REGISTRY.resolve("Euler"))
    assert plain.plan.token_merging_infotext == {}


def test_override_settings_accept_the_ratios_in_a1111s_range():
    job = Settings().with_overrides({"token_merging_ratio": 0.5, "token_merging_ratio_img2img": 0.2,
                                     "token_merging_ratio_hr": 0.9})
    assert CoreOptions.from_mapping(job).token_merging("img2img") == 0.2
    with pytest.raises(InvalidRequest, match="token_merging_ratio"):
        Settings().with_overrides({"token_merging_ratio": 0.95})


@pytest.mark.slow
def test_a_job_with_merging_changes_the_picture_deterministically_and_leaves_the_model_as_it_was():
    unet = tiny(SD1).unet
    state = _module_state(unet)
    before = _pixels(_request())
    assert np.array_equal(_pixels(_request(overrides={"token_merging_ratio": 0.0})), before)
    torch.manual_seed(1)  # the global generator does not choose the merged tokens
    merged = _pixels(_request(overrides={"token_merging_ratio": 0.5}))
    torch.manual_seed(2)
    assert np.array_equal(_pixels(_request(overrides={"token_merging_ratio": 0.5})), merged)
    assert not np.array_equal(merged, before)
    assert _module_state(unet) == state
    assert np.array_equal(_pixels(_request()), before)


def _ratio_in_force(calls: list[tuple[int, float]]) -> Any:
    """A UNet pre-hook recording (latent width, the ToMe ratio in force) at every call."""
    def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        info = getattr(module, "_tome_info", None)
        calls.append((args[0].shape[-1], 0.0 if info is None else info["args"]["ratio"]))
    return hook


@pytest.mark.slow
def test_img2img_and_the_hires_pass_run_with_their_own_ratios():
    unet = tiny(SD1).unet
    calls: list[tuple[int, float]] = []
    handle = unet.register_forward_pre_hook(_ratio_in_force(calls))
    settings = CoreOptions(token_merging_ratio=0.3, token_merging_ratio_img2img=0.5, token_merging_ratio_hr=0.6)
    try:
        _pixels(_request(mode="img2img", init_image=sample_image(), denoising_strength=0.7), options=settings)
        assert {ratio for _, ratio in calls} == {0.5}
        calls.clear()
        _pixels(_request(enable_hr=True, hr_scale=2.0, denoising_strength=0.5), options=settings)
        assert {width: ratio for width, ratio in calls} == {8: 0.3, 16: 0.6}
    finally:
        handle.remove()
    assert patched_blocks(unet) == 0


@pytest.mark.slow
def test_an_error_during_sampling_removes_the_patch():
    def fail(ctx: StepContext) -> None:
        assert patched_blocks(tiny(SD1).unet) == 4
        raise RuntimeError("extension failed")

    with pytest.raises(RuntimeError, match="extension failed"):
        _pixels(_request(overrides={"token_merging_ratio": 0.5}), hooks=[fail])
    assert patched_blocks(tiny(SD1).unet) == 0 and "_tome_info" not in vars(tiny(SD1).unet)

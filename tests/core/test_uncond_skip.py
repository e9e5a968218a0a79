"""A1111's negative-prompt skipping: "Negative Guidance minimum sigma" (NGMS, all steps) and "Ignore negative prompt
during early sampling", in the loop, the infotext and the API's `s_min_uncond`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from modules import infotext
from modules.core.generate import generate
from modules.core.uncond_skip import UncondSkip
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest
from tests.core.helpers import SD1, tiny

REGISTRY = default_registry()


def _request(**fields: Any) -> GenerationRequest:
    values = {"prompt": "a cube", "negative_prompt": "blurry", "seed": 40, "steps": 4, "width": 64, "height": 64,
              "cfg_scale": 7.0, **fields}
    return GenerationRequest(**values)


def _pixels(output: Any) -> np.ndarray:
    return np.asarray(output.images[0], dtype=np.int16)


def _run_counting_rows(request: GenerationRequest, sampler: str = "Euler") -> tuple[Any, list[int]]:
    """The job's output and the batch size of every UNet call."""
    components = tiny(SD1)
    rows: list[int] = []
    handle = components.unet.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    try:
        return generate(request, components, REGISTRY.resolve(sampler)), rows
    finally:
        handle.remove()


def test_the_rules_follow_a1111():
    ngms = UncondSkip(min_sigma=1.0)
    assert [ngms.skips(call, 6, 0.5, 10.0) for call in range(4)] == [False, True, False, True]  # odd calls only
    assert not ngms.skips(1, 6, 1.0, 10.0)  # strictly below
    assert UncondSkip(min_sigma=1.0, all_steps=True).skips(0, 6, 0.5, 10.0)
    early = UncondSkip(early=0.25)
    assert [early.skips(call, 8, 9.0, 900.0) for call in range(4)] == [True, True, True, False]
    assert not UncondSkip().active and not UncondSkip().skips(1, 4, 0.0, 0.0)
    # A1111's timestep samplers compare the model's timestep
    assert not UncondSkip(min_sigma=5.0, by_timestep=True).skips(1, 4, 0.1, 251.0)
    assert UncondSkip(min_sigma=5.0, by_timestep=True).skips(1, 4, 0.1, 1.0)


@pytest.mark.slow
def test_skipping_every_call_is_the_picture_at_cfg_1():
    plain, _ = _run_counting_rows(_request(cfg_scale=1.0))
    every, rows = _run_counting_rows(_request(overrides={"s_min_uncond": 15.0, "s_min_uncond_all": True}))
    assert rows == [1, 1, 1, 1]
    assert np.array_equal(_pixels(every), _pixels(plain))
    early, rows = _run_counting_rows(_request(overrides={"skip_early_cond": 1.0}))
    assert rows == [1, 1, 1, 1]
    assert np.array_equal(_pixels(early), _pixels(plain))


@pytest.mark.slow
def test_ngms_skips_every_other_call_below_its_sigma():
    guided, rows = _run_counting_rows(_request())
    assert rows == [2, 2, 2, 2]
    skipped, rows = _run_counting_rows(_request(overrides={"s_min_uncond": 15.0}))
    assert rows == [2, 1, 2, 1]
    assert not np.array_equal(_pixels(skipped), _pixels(guided))
    # a minimum below every sigma of the run skips nothing
    _, rows = _run_counting_rows(_request(overrides={"s_min_uncond": 0.001}))
    assert rows == [2, 2, 2, 2]


@pytest.mark.slow
def test_timestep_samplers_compare_the_timestep():
    overrides = {"s_min_uncond": 15.0, "s_min_uncond_all": True}
    _, rows = _run_counting_rows(_request(overrides=overrides), "DDIM")
    assert rows == [2, 2, 2]  # A1111's 4-step DDIM evaluates t = 751, 501, 251: none below 15
    _, rows = _run_counting_rows(_request(steps=100, overrides=overrides), "DDIM")
    assert rows[-1] == 1 and set(rows[:-1]) == {2}  # with 100 steps the last evaluation is at t = 11


@pytest.mark.slow
def test_and_parts_take_each_images_first_part_as_the_negative():
    request = _request(prompt="a cube AND a ball", overrides={"s_min_uncond": 15.0, "s_min_uncond_all": True})
    output, rows = _run_counting_rows(request)
    assert rows == [2, 2, 2, 2]  # the two parts' rows, no negative row
    assert output.images[0].size == (64, 64)


def test_infotext_records_and_pastes_back_the_settings():
    from modules.core.plan import CoreOptions

    options = CoreOptions().with_overrides({"s_min_uncond": 2.5, "s_min_uncond_all": True, "skip_early_cond": 0.2})
    params = options.uncond_skip().infotext()
    assert params == {"Skip Early CFG": 0.2, "NGMS": 2.5, "NGMS all steps": True}
    text = infotext.build("a cube", "", {"Steps": 4, "Sampler": "Euler", "Seed": 1, **params})
    parsed = infotext.parse(text)
    assert infotext.setting_overrides(parsed.params) == {
        "s_min_uncond": 2.5, "s_min_uncond_all": True, "skip_early_cond": 0.2}
    assert CoreOptions().uncond_skip().infotext() == {}


def test_sampler_rows_know_a1111s_timestep_samplers():
    timestep = {name for name in ("DDIM", "DDIM CFG++", "PLMS", "UniPC", "Euler", "DPM++ 2M")
                if REGISTRY.resolve(name).on_timesteps}
    assert timestep == {"DDIM", "DDIM CFG++", "PLMS", "UniPC"}


def test_stand_in_negative_is_each_images_first_part():
    from modules.core.denoise import _stand_in_uncond

    class _Conditioning:
        parts = [[(0, 1.0), (1, 0.5)], [(2, 1.0)]]

    class _Text:
        conditioning = _Conditioning()

    cond = torch.arange(3.0).reshape(3, 1)
    assert torch.equal(_stand_in_uncond(_Text(), cond), torch.tensor([[0.0], [2.0]]))  # type: ignore[arg-type]
